//! `trainer tune` and `POST /api/ml/tune`: hyperparameter search over a [`SearchSpace`],
//! seeded ([`sampler`]: random, then TPE), with successive-halving pruning ([`prune`]).
//!
//! Every trial trains on the same prepared splits and is judged by its best validation loss
//! only; the test split is touched once, when the winner is trained again (same seed, so the
//! same weights) and evaluated like any `trainer train` model. Trials run in this process
//! over `parallel` threads ([`search`]), or as tasks on the shared Redis queue so that many
//! workers run them ([`distributed`]). The winner's bundle records the search (`tuning`),
//! beside `tuning.csv` and `tuning.svg`.

pub mod confirm;
pub mod distributed;
pub mod prune;
pub mod report;
pub mod sampler;
pub mod space;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use inference::config::{Caps, CheckedConfig, ConfigError, TrainConfig};

use crate::error::TrainingError;
use crate::pipeline::PreparedRun;
use prune::{PruningOptions, Rungs};
use sampler::{Sampler, SamplerKind};
use space::SearchSpace;

/// The options of a search: the `tune` object of `POST /api/ml/tune`, the flags of `trainer
/// tune`, and `tuning.options` in the winner's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TuneOptions {
    /// Trials to run.
    pub trials: usize,
    /// Start no trial after this many seconds (running ones finish).
    pub budget_seconds: Option<f64>,
    /// Trials at once (threads in one process; tasks in flight with Redis).
    pub parallel: usize,
    /// `tpe` (uniform for the warm-up trials, then TPE) or `random`.
    pub sampler: SamplerKind,
    /// Uniform trials before TPE.
    pub warmup_trials: usize,
    /// Successive halving.
    pub pruning: PruningOptions,
    /// What to search.
    pub space: SearchSpace,
    /// Trial 0 is the base config itself (as Optuna's `enqueue_trial`), so the winner is never
    /// worse on validation than the config the search started from.
    pub base_trial: bool,
    /// How the winner is chosen from the completed trials.
    pub selection: Selection,
    /// The k-fold check of a winner other than the base config, on small data ([`confirm`]).
    pub confirm: confirm::ConfirmOptions,
}

/// How a search picks the config it ships.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// The trial with the lowest validation loss.
    Lowest,
    /// The base config (trial 0) unless the lowest trial beats it by more than one standard
    /// error of that trial's validation loss: Breiman's one-standard-error rule, with the base
    /// as the simpler choice. On a small validation split the lowest loss is partly luck (the
    /// more trials, the more luck), and a config that only wins by luck is no better on new rows.
    #[default]
    OneSe,
}

impl Default for TuneOptions {
    fn default() -> Self {
        Self {
            trials: 40,
            budget_seconds: None,
            parallel: 1,
            sampler: SamplerKind::Tpe,
            warmup_trials: 10,
            pruning: PruningOptions::default(),
            space: SearchSpace::default(),
            base_trial: true,
            selection: Selection::default(),
            confirm: confirm::ConfirmOptions::default(),
        }
    }
}

/// Most trials one search may run.
pub const MAX_TRIALS: usize = 10_000;

impl TuneOptions {
    /// Check the options (the base config is checked on its own).
    pub fn check(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_TRIALS).contains(&self.trials) {
            return Err(ConfigError::new("tune.trials", format!("must be in 1..={MAX_TRIALS}, got {}", self.trials)));
        }
        if !(1..=256).contains(&self.parallel) {
            return Err(ConfigError::new("tune.parallel", format!("must be in 1..=256, got {}", self.parallel)));
        }
        if let Some(b) = self.budget_seconds.filter(|b| !(b.is_finite() && *b > 0.0)) {
            return Err(ConfigError::new("tune.budget_seconds", format!("must be > 0, got {b}")));
        }
        if self.pruning.reduction_factor < 2 || self.pruning.min_epochs == 0 {
            return Err(ConfigError::new("tune.pruning", "needs reduction_factor ≥ 2 and min_epochs ≥ 1"));
        }
        if self.confirm.folds > confirm::MAX_FOLDS {
            return Err(ConfigError::new(
                "tune.confirm.folds",
                format!("must be at most {}, got {}", confirm::MAX_FOLDS, self.confirm.folds),
            ));
        }
        self.space.check()
    }
}

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    /// Trained to the end (or early-stopped).
    Completed,
    /// Stopped at a rung.
    Pruned,
    /// Its config was refused or its training failed.
    Failed,
}

/// A rung a trial reached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RungLoss {
    /// The rung's epoch.
    pub epoch: usize,
    /// The trial's best validation loss up to it.
    pub val_loss: f64,
}

/// One trial of the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrialRecord {
    /// 0-based, in order of sampling.
    pub number: usize,
    /// How it ended.
    pub state: TrialState,
    /// The tuned values.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// The rungs it reached.
    pub rung_losses: Vec<RungLoss>,
    /// The search's objective: for a completed trial, the validation loss of the epoch early
    /// stopping kept (the weights it would ship); for a pruned one, the lowest it reached.
    pub best_val_loss: Option<f64>,
    /// The standard error of that loss (completed trials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_val_loss_se: Option<f64>,
    /// Epochs run.
    pub epochs_run: usize,
    /// Wall seconds.
    pub seconds: f64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole search, as the winner's metadata records it (`tuning`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TuningRecord {
    /// The options, space included.
    pub options: TuneOptions,
    /// Every trial, in order.
    pub trials: Vec<TrialRecord>,
    /// The winner's number: the trial whose config was trained again and shipped.
    pub best_trial: usize,
    /// Its validation loss.
    pub best_val_loss: f64,
    /// The trial with the lowest validation loss, when the selection rule shipped another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lowest_trial: Option<usize>,
    /// Why the winner was chosen, in words.
    #[serde(default)]
    pub selected_by: String,
    /// The k-fold check of the winner against the base config, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<confirm::Confirmation>,
    /// Wall seconds of the search and of the k-fold check (the winner's final training excluded).
    pub seconds: f64,
    /// `trials`, `budget` or `cancelled`: what ended the search.
    pub stopped_by: String,
}

/// What a tune task is doing, as its status shows it (`tuning.stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TuneStage {
    /// Running trials.
    #[default]
    Searching,
    /// The k-fold check of the held-out winner against the base config.
    Checking,
    /// Training the shipped winner again, to save it.
    TrainingWinner,
    /// Done: the winner is saved.
    Finished,
}

/// Progress of a search, as a task's status shows it (`tuning`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneProgress {
    /// What the task is doing now.
    #[serde(default)]
    pub stage: TuneStage,
    /// Trials finished.
    pub trials_done: usize,
    /// Of which pruned.
    pub pruned: usize,
    /// Of which failed.
    pub failed: usize,
    /// Trials planned.
    pub trials: usize,
    /// Best validation loss so far (once finished: the winner's).
    pub best_val_loss: Option<f64>,
    /// Its trial.
    pub best_trial: Option<usize>,
    /// Once finished, when the selection rule shipped another trial: the lowest-loss trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lowest_trial: Option<usize>,
    /// Once finished: why the winner won.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_by: Option<String>,
}

impl TuneProgress {
    /// The progress of `trials` out of `planned`.
    pub fn of(trials: &[TrialRecord], planned: usize) -> Self {
        let best = best_of(trials);
        Self {
            stage: TuneStage::Searching,
            trials_done: trials.len(),
            pruned: trials.iter().filter(|t| t.state == TrialState::Pruned).count(),
            failed: trials.iter().filter(|t| t.state == TrialState::Failed).count(),
            trials: planned,
            best_val_loss: best.and_then(|t| t.best_val_loss),
            best_trial: best.map(|t| t.number),
            lowest_trial: None,
            selected_by: None,
        }
    }

    /// The progress of a concluded search at `stage`: its winner, not merely the lowest loss.
    pub fn concluded(record: &TuningRecord, stage: TuneStage) -> Self {
        Self {
            stage,
            best_val_loss: Some(record.best_val_loss),
            best_trial: Some(record.best_trial),
            lowest_trial: record.lowest_trial,
            selected_by: Some(record.selected_by.clone()),
            ..Self::of(&record.trials, record.options.trials)
        }
    }
}

/// The completed trial with the lowest validation loss (ties: the earlier).
pub fn best_of(trials: &[TrialRecord]) -> Option<&TrialRecord> {
    trials.iter().filter(|t| t.state == TrialState::Completed && t.best_val_loss.is_some_and(f64::is_finite)).min_by(
        |a, b| {
            let (x, y) = (a.best_val_loss.unwrap_or(f64::INFINITY), b.best_val_loss.unwrap_or(f64::INFINITY));
            x.total_cmp(&y).then(a.number.cmp(&b.number))
        },
    )
}

/// One point to try: its number, config and the values the sampler is told.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Trial number.
    pub number: usize,
    /// The config to train.
    pub config: TrainConfig,
    /// The sampled values (NaN where unused).
    pub used: Vec<f64>,
}

/// The sampling side of a search: plans trials and collects their records.
pub struct Study {
    options: TuneOptions,
    base: TrainConfig,
    sampler: Sampler,
    planned: usize,
    records: Vec<TrialRecord>,
    /// Every planned trial's config, by number.
    configs: Vec<TrainConfig>,
    started: Instant,
    stopped_by: Option<&'static str>,
}

impl Study {
    /// A study of `options` around `base` (seeded by the base config's seed).
    pub fn new(base: &TrainConfig, options: &TuneOptions) -> Self {
        let sampler = Sampler::new(options.space.dims(), options.sampler, options.warmup_trials, base.seed);
        Self {
            options: options.clone(),
            base: base.clone(),
            sampler,
            planned: 0,
            records: Vec::new(),
            configs: Vec::new(),
            started: Instant::now(),
            stopped_by: None,
        }
    }

    /// The next trial, unless the trial count or the time budget is spent.
    pub fn plan(&mut self) -> Option<Planned> {
        if self.planned >= self.options.trials {
            self.stopped_by.get_or_insert("trials");
            return None;
        }
        if self.options.budget_seconds.is_some_and(|b| self.started.elapsed().as_secs_f64() >= b) {
            self.stopped_by.get_or_insert("budget");
            return None;
        }
        let (config, used) = if self.planned == 0 && self.options.base_trial {
            // Not a point of the space (its widths may differ per layer): told as unused.
            (self.base.clone(), vec![f64::NAN; self.options.space.dims().len()])
        } else {
            let point = self.sampler.ask();
            self.options.space.apply(&self.base, &point)
        };
        let number = self.planned;
        self.planned += 1;
        self.configs.push(config.clone());
        Some(Planned { number, config, used })
    }

    /// Record a finished trial and tell the sampler.
    pub fn finish(&mut self, planned: &Planned, record: TrialRecord) {
        // Pruned trials count with the loss they reached: worse than their rung's survivors.
        self.sampler.tell(&planned.used, record.best_val_loss.unwrap_or(f64::INFINITY));
        self.records.push(record);
        self.records.sort_by_key(|r| r.number);
    }

    /// Stop planning (a cancel).
    pub fn cancel(&mut self) {
        self.stopped_by = Some("cancelled");
        self.planned = self.options.trials;
    }

    /// The records so far.
    pub fn records(&self) -> &[TrialRecord] {
        &self.records
    }

    /// The progress so far.
    pub fn progress(&self) -> TuneProgress {
        TuneProgress::of(&self.records, self.options.trials)
    }

    /// The search's record and the winner's config, once every planned trial has finished.
    pub fn conclude(self) -> Result<(TuningRecord, TrainConfig), TrainingError> {
        if best_of(&self.records).is_none() && self.stopped_by == Some("budget") {
            // The search's time ran out before any trial finished: a time limit, not bad data.
            return Err(TrainingError::TimedOut { seconds: self.options.budget_seconds.unwrap_or(0.0) });
        }
        let lowest = best_of(&self.records).ok_or_else(|| {
            let why =
                self.records.iter().find_map(|r| r.error.clone()).unwrap_or_else(|| "every trial was pruned".into());
            TrainingError::Unusable(format!("no trial completed ({} run): {why}", self.records.len()))
        })?;
        let (best, selected_by) = select(&self.records, lowest, &self.options);
        let number = best.number;
        let winner = self.configs.get(number).cloned().unwrap_or_else(|| self.base.clone());
        let record = TuningRecord {
            best_trial: number,
            best_val_loss: best.best_val_loss.unwrap_or(f64::NAN),
            lowest_trial: (lowest.number != number).then_some(lowest.number),
            selected_by,
            confirmation: None,
            options: self.options.clone(),
            trials: self.records.clone(),
            seconds: self.started.elapsed().as_secs_f64(),
            stopped_by: self.stopped_by.unwrap_or("trials").to_owned(),
        };
        Ok((record, winner))
    }
}

/// The trial to ship by `options.selection`, given the completed trial with the lowest loss,
/// and why, in words.
fn select<'r>(records: &'r [TrialRecord], lowest: &'r TrialRecord, options: &TuneOptions) -> (&'r TrialRecord, String) {
    let loss = |t: &TrialRecord| t.best_val_loss.unwrap_or(f64::INFINITY);
    let base = records.iter().find(|t| t.number == 0 && t.state == TrialState::Completed);
    match (options.selection, base) {
        (Selection::OneSe, Some(base)) if options.base_trial && base.number != lowest.number => {
            // A record from a worker that predates the standard error has none to judge by.
            let Some(se) = lowest.best_val_loss_se else {
                return (lowest, "the lowest validation loss (its standard error is unknown)".to_owned());
            };
            if loss(base) <= loss(lowest) + se {
                let why = format!(
                    "one_se: the base config (trial 0, validation loss {:.4}) is within one standard error of \
                     the lowest, trial {}'s {:.4} ± {se:.4}",
                    loss(base),
                    lowest.number,
                    loss(lowest)
                );
                (base, why)
            } else {
                let why = format!(
                    "one_se: trial {}'s validation loss {:.4} ± {se:.4} beats the base config's {:.4} by more \
                     than one standard error",
                    lowest.number,
                    loss(lowest),
                    loss(base)
                );
                (lowest, why)
            }
        }
        _ => (lowest, "the lowest validation loss".to_owned()),
    }
}

/// The winner a finished search ships: the held-out choice `winner`, or the base config when
/// the k-fold check against it ([`confirm`]; `base` is trial 0's config, `None` when unknown)
/// is wanted and says so. `record` is updated by the check.
pub fn settle(
    record: &mut TuningRecord,
    base: Option<&CheckedConfig>,
    winner: TrainConfig,
    data: &PreparedRun,
    caps: &Caps,
    run: &crate::pipeline::RunOptions,
    cancel: &AtomicBool,
) -> Result<TrainConfig, TrainingError> {
    let rows = check_rows(data);
    match base {
        Some(base) if confirm::wanted(record, rows) => check_winner(record, base, winner, rows, caps, run, cancel),
        _ => Ok(winner),
    }
}

/// The rows the k-fold check of [`settle`] folds: the search's train and validation rows.
pub fn check_rows(data: &PreparedRun) -> usize {
    data.prepared.train.rows + data.prepared.val.rows
}

/// Ship the [`settle`]d winner: train it on the search's own `data`, evaluate it on the test
/// split and record the search in it ([`attach`]).
pub fn ship(
    record: &TuningRecord,
    winner: TrainConfig,
    data: &PreparedRun,
    caps: &Caps,
    run: &crate::pipeline::RunOptions,
    on_epoch: &mut dyn FnMut(&inference::record::EpochRecord, usize),
    cancel: &AtomicBool,
) -> Result<crate::pipeline::Trained, TrainingError> {
    let winner = winner.check_with(caps)?;
    let trained = crate::train::train(&data.prepared, winner.config(), &data.device, on_epoch, cancel)?;
    let mut out = crate::pipeline::finish(winner.config(), data, trained, run)?;
    attach(&mut out, record)?;
    Ok(out)
}

/// The k-fold check of [`settle`], on the data loaded again (the search's copy is encoded for its
/// own split), within what is left of the search's time budget.
fn check_winner(
    record: &mut TuningRecord,
    base: &CheckedConfig,
    winner: TrainConfig,
    rows: usize,
    caps: &Caps,
    run: &crate::pipeline::RunOptions,
    cancel: &AtomicBool,
) -> Result<TrainConfig, TrainingError> {
    let started = Instant::now();
    let budget = record.options.budget_seconds;
    if budget.is_some_and(|b| record.seconds >= b) {
        return Ok(confirm::skipped(record, "the search spent its budget_seconds", winner));
    }
    let deadline = budget.map(|b| started + Duration::from_secs_f64(b - record.seconds));
    let table = match crate::data::load(base.source(), &run.data) {
        Ok(t) => t,
        Err(e) => {
            record.seconds += started.elapsed().as_secs_f64();
            return Ok(confirm::skipped(record, &format!("the data could not be read again: {e}"), winner));
        }
    };
    record.seconds += started.elapsed().as_secs_f64(); // the reload; `confirm` counts the folds
    let run = crate::pipeline::RunOptions { save_test_rows: false, save_split: false, ..run.clone() };
    confirm::confirm(record, base.config(), winner, rows, &mut |config, fold| {
        let mut config = config.clone();
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now()).as_secs_f64();
            if left <= 0.0 {
                return Err(TrainingError::Unusable("the search's budget_seconds ran out during the check".into()));
            }
            config.train_config.max_seconds = Some(config.train_config.max_seconds.map_or(left, |s| s.min(left)));
        }
        let checked = config.check_with(caps)?;
        let data = crate::pipeline::prepare_table(table.clone(), &checked, &run, Some(fold))?;
        let trained = crate::train::train(&data.prepared, checked.config(), &data.device, &mut |_, _| {}, cancel)?;
        trained.kept_val_loss.ok_or_else(|| TrainingError::Unusable("a fold has no validation rows".into()))
    })
}

/// Record the search in its trained winner: `tuning` in the metadata, and `tuning.csv` and
/// `tuning.svg` beside the bundle.
pub fn attach(trained: &mut crate::pipeline::Trained, record: &TuningRecord) -> Result<(), TrainingError> {
    trained.metadata.tuning = Some(serde_json::to_value(record).map_err(|e| TrainingError::Engine(e.to_string()))?);
    trained.extra.push((report::CSV_FILE.to_owned(), report::csv(record).map_err(TrainingError::Engine)?));
    match report::svg(record) {
        Ok(svg) => trained.extra.push((report::SVG_FILE.to_owned(), svg.into_bytes())),
        Err(e) => tracing::warn!("could not draw the tuning plot: {e}"),
    }
    Ok(())
}

/// Train one trial on prepared data: pruned at the first rung it does not survive.
pub fn run_trial(
    planned: &Planned,
    space: &SearchSpace,
    caps: &Caps,
    data: &PreparedRun,
    pruning: &PruningOptions,
    rungs: &dyn Rungs,
    cancel: &AtomicBool,
) -> TrialRecord {
    let start = Instant::now();
    let params = space::params_of(space, &planned.config);
    let mut record = TrialRecord {
        number: planned.number,
        state: TrialState::Failed,
        params,
        rung_losses: Vec::new(),
        best_val_loss: None,
        best_val_loss_se: None,
        epochs_run: 0,
        seconds: 0.0,
        error: None,
    };
    let checked = match planned.config.clone().check_with(caps) {
        Ok(c) => c,
        Err(e) => {
            record.error = Some(e.to_string());
            return record;
        }
    };
    let rung_epochs = pruning.rungs(checked.config().train_config.epochs);
    let stop = AtomicBool::new(false);
    let (mut best, mut pruned, mut epochs) = (f64::INFINITY, false, 0);
    let mut rung_losses = Vec::new();
    let outcome = {
        let mut on_epoch = |r: &inference::record::EpochRecord, _: usize| {
            epochs = r.epoch;
            best = best.min(r.val_loss.unwrap_or(r.train_loss));
            if cancel.load(Ordering::Relaxed) {
                stop.store(true, Ordering::Relaxed);
            }
            if rung_epochs.contains(&r.epoch) {
                rung_losses.push(RungLoss { epoch: r.epoch, val_loss: best });
                if !rungs.report(r.epoch, planned.number, best) {
                    pruned = true;
                    stop.store(true, Ordering::Relaxed);
                }
            }
        };
        crate::train::train(&data.prepared, checked.config(), &data.device, &mut on_epoch, &stop)
    };
    record.rung_losses = rung_losses;
    record.epochs_run = epochs;
    record.best_val_loss = best.is_finite().then_some(best);
    record.seconds = start.elapsed().as_secs_f64();
    match outcome {
        Ok(trained) => {
            record.state = TrialState::Completed;
            // Ranked by the loss of the weights it would ship: the kept epoch's, which
            // `min_delta` may hold above the lowest epoch's.
            if let Some(kept) = trained.kept_val_loss {
                record.best_val_loss = Some(kept.mean);
                record.best_val_loss_se = Some(kept.se);
            }
        }
        Err(TrainingError::Cancelled(_)) if pruned => record.state = TrialState::Pruned,
        Err(e) => {
            record.error = Some(e.to_string());
            record.best_val_loss = None;
        }
    }
    record
}

/// Run a search in this process over `options.parallel` threads (capped at the machine's
/// cores); `on_trial` sees the progress after each trial. Returns the record and the
/// winner's config.
pub fn search(
    base: &CheckedConfig,
    options: &TuneOptions,
    caps: &Caps,
    data: &PreparedRun,
    on_trial: &(dyn Fn(&TuneProgress) + Sync),
    cancel: &AtomicBool,
) -> Result<(TuningRecord, TrainConfig), TrainingError> {
    if data.prepared.val.rows == 0 {
        return Err(TrainingError::Unusable("tuning needs a validation split: set val_size > 0".into()));
    }
    let study = Mutex::new(Study::new(base.config(), options));
    let rungs = prune::LocalRungs::new(options.pruning.reduction_factor);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = options.parallel.clamp(1, cores);
    let lock = || study.lock().unwrap_or_else(|p| p.into_inner());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                if cancel.load(Ordering::Relaxed) {
                    lock().cancel();
                }
                let Some(planned) = lock().plan() else { break };
                let record = run_trial(&planned, &options.space, caps, data, &options.pruning, &rungs, cancel);
                let progress = {
                    let mut st = lock();
                    st.finish(&planned, record);
                    st.progress()
                };
                on_trial(&progress);
            });
        }
    });
    if cancel.load(Ordering::Relaxed) {
        return Err(TrainingError::Cancelled("stop requested".into()));
    }
    study.into_inner().unwrap_or_else(|p| p.into_inner()).conclude()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(number: usize, state: TrialState, loss: Option<f64>) -> TrialRecord {
        TrialRecord {
            number,
            state,
            params: serde_json::json!({}),
            rung_losses: vec![],
            best_val_loss: loss,
            best_val_loss_se: None,
            epochs_run: 1,
            seconds: 0.0,
            error: None,
        }
    }

    #[test]
    fn the_best_completed_trial_wins() {
        let t = [
            record(0, TrialState::Completed, Some(0.5)),
            record(1, TrialState::Pruned, Some(0.1)),
            record(2, TrialState::Completed, Some(0.3)),
            record(3, TrialState::Failed, None),
            record(4, TrialState::Completed, Some(0.3)),
        ];
        assert_eq!(best_of(&t).map(|r| r.number), Some(2));
        let p = TuneProgress::of(&t, 10);
        assert_eq!((p.trials_done, p.pruned, p.failed, p.best_trial), (5, 1, 1, Some(2)));
        assert!(TuneOptions { trials: 0, ..TuneOptions::default() }.check().is_err());
        TuneOptions::default().check().unwrap();
    }

    #[test]
    fn a_study_replays_its_winner_and_stops_at_its_trial_count() {
        let options = TuneOptions { trials: 3, ..TuneOptions::default() };
        let mut s = Study::new(&TrainConfig::default(), &options);
        let mut configs = Vec::new();
        while let Some(p) = s.plan() {
            let params = space::params_of(&options.space, &p.config);
            let loss = p.config.train_config.learning_rate;
            let mut r = record(p.number, TrialState::Completed, Some(loss));
            r.params = params;
            configs.push((loss, p.config.clone()));
            s.finish(&p, r);
        }
        assert_eq!(s.records().len(), 3);
        let (rec, winner) = s.conclude().unwrap();
        let want = configs.iter().min_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
        assert_eq!(winner, want.1);
        assert_eq!(rec.stopped_by, "trials");
    }

    #[test]
    fn a_budget_spent_before_any_trial_finished_is_a_time_limit() {
        let options = TuneOptions { trials: 5, budget_seconds: Some(0.02), ..TuneOptions::default() };
        let mut s = Study::new(&TrainConfig::default(), &options);
        let p = s.plan().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        s.finish(&p, record(p.number, TrialState::Failed, None));
        assert!(s.plan().is_none(), "the budget is spent");
        let e = s.conclude().unwrap_err();
        assert_eq!(e.kind(), "timed_out", "{e}");
    }

    #[test]
    fn one_se_keeps_the_base_unless_the_lowest_beats_it_by_more_than_its_standard_error() {
        let with_se = |number, loss, se| TrialRecord {
            best_val_loss_se: Some(se),
            ..record(number, TrialState::Completed, Some(loss))
        };
        let conclude = |trials: Vec<TrialRecord>, selection, base_trial| {
            let options = TuneOptions { trials: trials.len(), selection, base_trial, ..TuneOptions::default() };
            let mut s = Study::new(&TrainConfig::default(), &options);
            for t in trials {
                let p = s.plan().unwrap();
                s.finish(&p, TrialRecord { number: p.number, ..t });
            }
            s.conclude().unwrap().0
        };
        // 0.70 ≤ 0.66 + 0.05: within one standard error, the base ships.
        let close = vec![with_se(0, 0.70, 0.04), with_se(1, 0.66, 0.05), with_se(2, 0.80, 0.05)];
        let r = conclude(close.clone(), Selection::OneSe, true);
        assert_eq!((r.best_trial, r.lowest_trial, r.best_val_loss), (0, Some(1), 0.70));
        assert!(r.selected_by.contains("within one standard error"), "{}", r.selected_by);
        // A clear win ships the lowest.
        let clear = vec![with_se(0, 0.70, 0.01), with_se(1, 0.60, 0.02)];
        let r = conclude(clear, Selection::OneSe, true);
        assert_eq!((r.best_trial, r.lowest_trial), (1, None));
        assert!(r.selected_by.contains("beats the base"), "{}", r.selected_by);
        // `lowest`, or no base trial to prefer: the lowest.
        assert_eq!(conclude(close.clone(), Selection::Lowest, true).best_trial, 1);
        assert_eq!(conclude(close.clone(), Selection::OneSe, false).best_trial, 1);
        // Without a standard error (a record from an older worker) there is nothing to judge by.
        let no_se = vec![with_se(0, 0.70, 0.04), record(1, TrialState::Completed, Some(0.66))];
        let r = conclude(no_se, Selection::OneSe, true);
        assert_eq!(r.best_trial, 1);
        assert!(r.selected_by.contains("unknown"), "{}", r.selected_by);
        // A base that did not complete cannot be kept.
        let failed_base = vec![record(0, TrialState::Pruned, Some(0.65)), with_se(1, 0.66, 0.05)];
        assert_eq!(conclude(failed_base, Selection::OneSe, true).best_trial, 1);
    }

    #[test]
    fn trial_zero_is_the_base_config_unless_turned_off() {
        let base = TrainConfig::default();
        let first = |base_trial| {
            let options = TuneOptions { trials: 2, base_trial, ..TuneOptions::default() };
            Study::new(&base, &options).plan().map(|p| p.config)
        };
        assert_eq!(first(true), Some(base.clone()));
        assert_ne!(first(false), Some(base));
    }
}
