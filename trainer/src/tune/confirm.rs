//! The k-fold check of a search's winner against its base config.
//!
//! On a small validation split the lowest of many losses is partly luck, and even a winner
//! that beats the base by several standard errors on 57 rows can be the worse model (measured
//! in `bench/quality`: breast cancer). So before a search ships a trial over its base config,
//! both are trained on k folds of the train and validation rows together, and the
//! one-standard-error rule is applied again to their k-fold losses: Breiman's rule as he
//! stated it, on cross-validated error. The test split stays out of every fold. Only small
//! data is checked (`max_rows`): there the k trainings are cheap and the held-out split is
//! noisy; on large data the held-out loss is already precise.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use inference::config::TrainConfig;

use super::{Selection, TrialState, TuningRecord};
use crate::error::TrainingError;
use crate::prep::split::Fold;
use crate::train::MeanLoss;

/// When and how the winner is checked: the `confirm` object of the tune options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ConfirmOptions {
    /// Folds (0 or 1: no check).
    pub folds: usize,
    /// Check only when the train and validation rows together are at most this many.
    pub max_rows: usize,
}

impl Default for ConfirmOptions {
    fn default() -> Self {
        Self { folds: 3, max_rows: 20_000 }
    }
}

/// Most folds a check may use.
pub const MAX_FOLDS: usize = 20;

/// One config's k-fold validation loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FoldLosses {
    /// The trial whose config it is.
    pub trial: usize,
    /// The mean of the folds' losses (each the loss of the epoch early stopping kept).
    pub val_loss: f64,
    /// Its standard error, from the folds' own (√(Σ se²) / k).
    pub se: f64,
    /// Each fold's loss.
    pub folds: Vec<f64>,
}

impl FoldLosses {
    fn of(trial: usize, losses: &[MeanLoss]) -> Self {
        let k = losses.len().max(1) as f64;
        Self {
            trial,
            val_loss: losses.iter().map(|l| l.mean).sum::<f64>() / k,
            se: losses.iter().map(|l| l.se * l.se).sum::<f64>().sqrt() / k,
            folds: losses.iter().map(|l| l.mean).collect(),
        }
    }
}

/// The check as the record keeps it (`tuning.confirmation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Confirmation {
    /// Folds.
    pub folds: usize,
    /// Rows partitioned (train and validation together).
    pub rows: usize,
    /// The base config's losses.
    pub base: FoldLosses,
    /// The held-out winner's losses.
    pub challenger: FoldLosses,
    /// The trial shipped.
    pub shipped: usize,
    /// Wall seconds of the check.
    pub seconds: f64,
}

/// Whether the search that produced `record`, over `rows` train and validation rows, should
/// check its winner: the one-standard-error rule shipped another trial than the base.
pub fn wanted(record: &TuningRecord, rows: usize) -> bool {
    let o = &record.options;
    o.confirm.folds >= 2
        && rows <= o.confirm.max_rows
        && o.base_trial
        && o.selection == Selection::OneSe
        && record.best_trial != 0
        && record.trials.iter().any(|t| t.number == 0 && t.state == TrialState::Completed)
}

/// Check the record's winner (`winner`, its config) against the base config (`base`, trial 0)
/// on `folds` folds of `rows` rows. `fold_loss(config, fold)` trains a config on one fold and
/// returns its kept validation loss. Updates the record (winner, reason, `confirmation`) and
/// returns the config to ship. A fold that fails to train leaves the held-out choice, with the
/// reason in `selected_by`; a cancel is an error.
pub fn confirm(
    record: &mut TuningRecord,
    base: &TrainConfig,
    winner: TrainConfig,
    rows: usize,
    fold_loss: &mut dyn FnMut(&TrainConfig, Fold) -> Result<MeanLoss, TrainingError>,
) -> Result<TrainConfig, TrainingError> {
    let start = Instant::now();
    let k = record.options.confirm.folds;
    let challenger_trial = record.best_trial;
    let mut run = |config: &TrainConfig| -> Result<Vec<MeanLoss>, TrainingError> {
        (0..k).map(|index| fold_loss(config, Fold { k, index })).collect()
    };
    let base_losses = match run(base) {
        Ok(l) => l,
        Err(e) => return not_run(record, e, winner, start),
    };
    let challenger_losses = match run(&winner) {
        Ok(l) => l,
        // The base trains on every fold and the challenger diverges on one: that is evidence
        // against it, not a reason to skip the check.
        Err(e @ TrainingError::NonFiniteLoss { .. }) => {
            ship_base(record, challenger_trial, &format!("trial {challenger_trial} diverged on a fold ({e})"));
            record.seconds += start.elapsed().as_secs_f64();
            return Ok(base.clone());
        }
        Err(e) => return not_run(record, e, winner, start),
    };
    let (b, c) = (FoldLosses::of(0, &base_losses), FoldLosses::of(challenger_trial, &challenger_losses));
    let keep_base = b.val_loss <= c.val_loss + c.se;
    let shipped = if keep_base { 0 } else { challenger_trial };
    let summary = format!(
        "over {k} folds of {rows} rows, trial {challenger_trial}'s loss {:.4} ± {:.4} against the base config's {:.4}",
        c.val_loss, c.se, b.val_loss
    );
    if keep_base {
        let why = format!("the base config is within one standard error of trial {challenger_trial} ({summary})");
        ship_base(record, challenger_trial, &why);
    } else {
        record.selected_by.push_str(&format!("; confirmed {summary}"));
    }
    let seconds = start.elapsed().as_secs_f64();
    record.seconds += seconds;
    record.confirmation = Some(Confirmation { folds: k, rows, base: b, challenger: c, shipped, seconds });
    Ok(if keep_base { base.clone() } else { winner })
}

/// The base (trial 0) ships instead of `challenger`, because of `why` (over the folds).
fn ship_base(record: &mut TuningRecord, challenger: usize, why: &str) {
    record.selected_by = format!(
        "one_se over {} folds: {why}, so the base config ships, though trial {challenger} had beaten it on the \
         validation split ({})",
        record.options.confirm.folds, record.selected_by
    );
    record.lowest_trial = record.lowest_trial.or(Some(challenger));
    record.best_trial = 0;
    if let Some(loss) = record.trials.iter().find(|t| t.number == 0).and_then(|t| t.best_val_loss) {
        record.best_val_loss = loss;
    }
}

/// A fold failed with `e`: a cancel stops the search; anything else leaves the held-out choice.
fn not_run(
    record: &mut TuningRecord,
    e: TrainingError,
    winner: TrainConfig,
    start: Instant,
) -> Result<TrainConfig, TrainingError> {
    if let TrainingError::Cancelled(_) = e {
        return Err(e);
    }
    record.seconds += start.elapsed().as_secs_f64();
    Ok(skipped(record, &e.to_string(), winner))
}

/// The check could not run (`why`): the held-out choice, `winner`, stands, and the record says so.
pub fn skipped(record: &mut TuningRecord, why: &str, winner: TrainConfig) -> TrainConfig {
    let k = record.options.confirm.folds;
    record.selected_by.push_str(&format!("; the {k}-fold check could not run ({why}), so the held-out choice stands"));
    winner
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::{TrialRecord, TuneOptions};

    fn record(best_trial: usize) -> TuningRecord {
        let trial = |number: usize, loss: f64| TrialRecord {
            number,
            state: TrialState::Completed,
            params: serde_json::json!({}),
            rung_losses: vec![],
            best_val_loss: Some(loss),
            best_val_loss_se: Some(0.01),
            epochs_run: 5,
            seconds: 0.1,
            error: None,
        };
        TuningRecord {
            options: TuneOptions::default(),
            trials: vec![trial(0, 0.5), trial(1, 0.3)],
            best_trial,
            best_val_loss: 0.3,
            lowest_trial: None,
            selected_by: "one_se: trial 1 beats the base".into(),
            confirmation: None,
            seconds: 1.0,
            stopped_by: "trials".into(),
        }
    }

    fn configs() -> (TrainConfig, TrainConfig) {
        let base = TrainConfig::default();
        let mut winner = base.clone();
        winner.train_config.learning_rate = 0.005;
        (base, winner)
    }

    /// A fold "training" that returns `loss(config)` with standard error `se`, counting calls.
    fn folds(
        base_loss: f64,
        winner_loss: f64,
        se: f64,
        calls: &mut Vec<Fold>,
    ) -> impl FnMut(&TrainConfig, Fold) -> Result<MeanLoss, TrainingError> + '_ {
        move |c: &TrainConfig, f: Fold| {
            calls.push(f);
            let mean = if c.train_config.learning_rate == 0.005 { winner_loss } else { base_loss };
            Ok(MeanLoss { mean: mean + f.index as f64 * 1e-3, se })
        }
    }

    #[test]
    fn the_check_runs_only_when_the_rule_shipped_another_trial_on_small_data() {
        assert!(wanted(&record(1), 1000));
        assert!(!wanted(&record(0), 1000), "the base already ships");
        assert!(!wanted(&record(1), 20_001), "large data: the held-out loss is precise");
        let mut r = record(1);
        r.options.confirm.folds = 1;
        assert!(!wanted(&r, 1000));
        let mut r = record(1);
        r.options.selection = Selection::Lowest;
        assert!(!wanted(&r, 1000));
        let mut r = record(1);
        r.trials[0].state = TrialState::Pruned;
        assert!(!wanted(&r, 1000), "no completed base to fall back on");
    }

    #[test]
    fn a_winner_within_one_standard_error_over_the_folds_gives_way_to_the_base() {
        let (base, winner) = configs();
        let mut calls = Vec::new();
        let mut r = record(1);
        let shipped = confirm(&mut r, &base, winner, 120, &mut folds(0.50, 0.49, 0.03, &mut calls)).unwrap();
        assert_eq!(shipped, base);
        assert_eq!(calls.len(), 6, "3 folds of each config");
        assert_eq!(calls.iter().filter(|f| f.index == 2).count(), 2);
        assert_eq!((r.best_trial, r.lowest_trial, r.best_val_loss), (0, Some(1), 0.5));
        let c = r.confirmation.as_ref().unwrap();
        assert_eq!((c.folds, c.rows, c.shipped, c.base.trial, c.challenger.trial), (3, 120, 0, 0, 1));
        assert!((c.base.val_loss - 0.501).abs() < 1e-12, "{c:?}");
        assert!((c.challenger.se - 0.03 * 3f64.sqrt() / 3.0).abs() < 1e-12, "{c:?}");
        assert!(r.selected_by.starts_with("one_se over 3 folds: the base config"), "{}", r.selected_by);
    }

    #[test]
    fn a_clear_winner_over_the_folds_is_confirmed() {
        let (base, winner) = configs();
        let mut calls = Vec::new();
        let mut r = record(1);
        let shipped = confirm(&mut r, &base, winner.clone(), 120, &mut folds(0.50, 0.30, 0.03, &mut calls)).unwrap();
        assert_eq!(shipped, winner);
        assert_eq!((r.best_trial, r.lowest_trial), (1, None));
        assert_eq!(r.confirmation.as_ref().map(|c| c.shipped), Some(1));
        assert!(r.selected_by.contains("; confirmed over 3 folds of 120 rows"), "{}", r.selected_by);
    }

    #[test]
    fn a_failed_fold_leaves_the_held_out_choice_and_a_cancel_stops_the_search() {
        let (base, winner) = configs();
        let mut r = record(1);
        let mut fail = |_: &TrainConfig, _: Fold| Err(TrainingError::Unusable("no rows".into()));
        assert_eq!(confirm(&mut r, &base, winner.clone(), 120, &mut fail).unwrap(), winner);
        assert_eq!((r.best_trial, r.confirmation.is_none()), (1, true));
        assert!(r.selected_by.ends_with("could not run (no rows), so the held-out choice stands"), "{}", r.selected_by);
        // A challenger that diverges where the base trains is evidence against it.
        let mut r = record(1);
        let mut diverge = |c: &TrainConfig, _: Fold| match c.train_config.learning_rate == 0.005 {
            true => Err(TrainingError::NonFiniteLoss { epoch: 3, loss: f64::NAN }),
            false => Ok(MeanLoss { mean: 0.5, se: 0.01 }),
        };
        assert_eq!(confirm(&mut r, &base, winner.clone(), 120, &mut diverge).unwrap(), base);
        assert_eq!((r.best_trial, r.lowest_trial, r.best_val_loss), (0, Some(1), 0.5));
        assert!(r.selected_by.contains("trial 1 diverged on a fold"), "{}", r.selected_by);
        let mut cancel = |_: &TrainConfig, _: Fold| Err(TrainingError::Cancelled("stop requested".into()));
        assert_eq!(confirm(&mut record(1), &base, winner, 120, &mut cancel).unwrap_err().kind(), "cancelled");
    }
}
