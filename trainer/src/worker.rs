//! A worker: claims tasks from a [`TaskQueue`], runs the pipeline on the blocking pool,
//! reports progress per epoch, saves the model in a [`ModelStore`] and completes the task.
//! `trainer serve` runs some in-process; `trainer worker` runs them on their own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use inference::config::{Caps, DeviceChoice, TrainConfig};

use crate::error::TrainingError;
use crate::pipeline::{self, RunOptions};
use crate::queue::{Claim, Completion, Job, Progress, TaskFailure, TaskQueue};
use crate::redis_pool::Pool;
use crate::store::ModelStore;
use crate::tune::{self, TrialRecord, TuneProgress, TuneStage, TuningRecord};

/// What every task of a worker shares.
#[derive(Clone)]
pub struct WorkerContext {
    /// Where tasks come from.
    pub queue: Arc<dyn TaskQueue>,
    /// Where models go.
    pub store: Arc<dyn ModelStore>,
    /// How datasets are read.
    pub run: RunOptions,
    /// Limits on configs.
    pub caps: Caps,
    /// Train on this device whatever the task says (`trainer worker --device`).
    pub device: Option<DeviceChoice>,
    /// The shared Redis, when there is one (distributed tuning keeps its rungs there).
    pub redis: Option<Pool>,
    /// Called with `completed`, `failed` or `cancelled` as each task ends.
    pub on_finished: Arc<dyn Fn(&'static str) + Send + Sync>,
}

/// How long one claim waits before checking for shutdown again.
const CLAIM_WAIT: Duration = Duration::from_millis(500);

/// Claim and run tasks until `stop` is set.
pub async fn run(ctx: WorkerContext, name: String, stop: Arc<AtomicBool>) {
    // While the queue is unreachable: retry at doubling waits up to MAX_CLAIM_BACKOFF, and
    // warn when it fails and when it answers again, not at every try.
    let mut backoff = CLAIM_WAIT;
    let mut failing = false;
    while !stop.load(Ordering::SeqCst) {
        match ctx.queue.claim(&name, CLAIM_WAIT).await {
            Ok(claim) => {
                if std::mem::take(&mut failing) {
                    tracing::info!(worker = %name, "the task queue answers again");
                }
                backoff = CLAIM_WAIT;
                if let Some(claim) = claim {
                    run_task(&ctx, claim).await;
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(worker = %name, error = %e, "cannot claim a task; retrying until the queue answers");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_CLAIM_BACKOFF);
            }
        }
    }
}

/// The longest wait between claims while the queue is unreachable.
const MAX_CLAIM_BACKOFF: Duration = Duration::from_secs(5);

/// A name for this process's workers that no other process shares (a consumer name).
pub fn process_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!("{}-{}", if host.is_empty() { "worker" } else { host }, std::process::id())
}

/// `trainer worker`: run `concurrency` workers on `ctx` until SIGINT or SIGTERM, then hand the
/// running tasks back to the queue and wait for them to stop.
pub fn run_process(ctx: WorkerContext, concurrency: usize) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let name = process_name();
        let workers: Vec<_> = (0..concurrency.max(1))
            .map(|i| tokio::spawn(run(ctx.clone(), format!("{name}-{i}"), stop.clone())))
            .collect();
        // Before "ready": whoever waits for that line may signal at once.
        let signal = crate::server::shutdown_signal();
        tracing::info!(worker = %name, concurrency, "worker ready");
        println!("worker {name} ready");
        signal.await;
        tracing::info!(worker = %name, "stopping: handing running tasks back");
        stop.store(true, Ordering::SeqCst);
        ctx.queue.shut_down().await;
        for w in workers {
            let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
        }
    });
    rt.shutdown_timeout(Duration::from_secs(10));
    Ok(())
}

/// Run one claimed task to its end.
pub async fn run_task(ctx: &WorkerContext, claim: Claim) {
    let id = claim.id.clone();
    tracing::info!(task_id = %id, attempt = claim.attempt, "task started");
    // Counted before the queue records the end: a client that sees the task finished then
    // finds it counted in /metrics too.
    match execute(ctx, &claim).await {
        Ok(c) => {
            let model_id = c.model_id.clone();
            (ctx.on_finished)("completed");
            match ctx.queue.complete(&id, c).await {
                Ok(true) => {
                    tracing::info!(task_id = %id, model_id = model_id.as_deref().unwrap_or("-"), "task completed")
                }
                Ok(false) => {
                    // Another delivery finished first (or the task was cancelled): exactly
                    // one model per task, so this one goes.
                    tracing::warn!(task_id = %id, "task had already finished: result discarded");
                    if let Some(mid) = model_id.as_deref().and_then(|m| crate::store::ModelId::parse(m).ok()) {
                        if let Err(e) = ctx.store.delete(&mid).await {
                            tracing::warn!(task_id = %id, model_id = %mid, error = %e, "cannot delete the discarded model");
                        }
                    }
                }
                Err(e) => tracing::error!(task_id = %id, error = %e, "cannot record the completion"),
            }
        }
        Err(e) => {
            let kind = e.kind();
            let message = match &e {
                TrainingError::Cancelled(_) if claim.cancel.load(Ordering::SeqCst) => "cancelled by request".to_owned(),
                e => e.to_string(),
            };
            tracing::warn!(task_id = %id, error = %message, "task failed");
            (ctx.on_finished)(if kind == crate::queue::CANCELLED { "cancelled" } else { "failed" });
            if let Err(qe) = ctx.queue.fail(&id, TaskFailure { kind: kind.to_owned(), message }).await {
                tracing::error!(task_id = %id, error = %qe, "cannot record the failure");
            }
        }
    }
}

/// Reports progress to the queue from the blocking pool.
#[derive(Clone)]
struct Reporter {
    queue: Arc<dyn TaskQueue>,
    id: String,
    handle: tokio::runtime::Handle,
}

impl Reporter {
    fn send(&self, p: Progress) {
        if let Err(e) = self.handle.block_on(self.queue.progress(&self.id, p)) {
            tracing::warn!(task_id = %self.id, error = %e, "cannot report progress");
        }
    }

    fn epoch(&self, record: &inference::record::EpochRecord, total_epochs: usize) {
        self.send(Progress {
            current_epoch: record.epoch,
            total_epochs,
            // Early stopping may end before 100; completion sets it.
            progress: (record.epoch * 99 / total_epochs.max(1)) as u8,
            message: format!("Training... (Epoch {}/{total_epochs})", record.epoch),
            metrics: serde_json::to_value(record).unwrap_or_default(),
            tuning: None,
        });
    }

    /// A concluded search's progress at its stage: `doing`, then the winner's epoch once it trains.
    fn concluded(&self, p: &TuneProgress, doing: &str, epoch: Option<(usize, usize)>) {
        let winner = p.best_trial.map_or_else(String::new, |t| format!(" (trial {t})"));
        let message = match epoch {
            Some((e, total)) => format!("Tuning... {doing}{winner} (Epoch {e}/{total})"),
            None => format!("Tuning... {doing}{winner}"),
        };
        let (current_epoch, total_epochs) = epoch.unwrap_or_default();
        self.send(Progress {
            current_epoch,
            total_epochs,
            progress: 99,
            message,
            metrics: serde_json::json!({}),
            tuning: serde_json::to_value(p).ok(),
        });
    }

    fn search(&self, p: &TuneProgress) {
        self.send(Progress {
            current_epoch: 0,
            total_epochs: 0,
            progress: (p.trials_done * 99 / p.trials.max(1)) as u8,
            message: format!("Tuning... (trial {}/{}, {} pruned)", p.trials_done, p.trials, p.pruned),
            metrics: serde_json::json!({}),
            tuning: serde_json::to_value(p).ok(),
        });
    }
}

/// `config` on the worker's device (`trainer worker --device`), when it names one.
fn pin_device(mut config: TrainConfig, device: Option<DeviceChoice>) -> TrainConfig {
    if let Some(device) = device {
        config.train_config.device = device;
    }
    config
}

/// Run the task's job on the blocking pool.
async fn execute(ctx: &WorkerContext, claim: &Claim) -> Result<Completion, TrainingError> {
    let checked = pin_device(claim.spec.config.clone(), ctx.device).check_with(&ctx.caps)?;
    ctx.run.data.admit(checked.source())?;
    let job = claim.spec.job.clone();
    if let Job::Tune { options } = &job {
        options.check()?;
    }
    let reporter =
        Reporter { queue: ctx.queue.clone(), id: claim.id.clone(), handle: tokio::runtime::Handle::current() };
    let (run, cancel, caps, redis) = (ctx.run.clone(), claim.cancel.clone(), ctx.caps, ctx.redis.clone());
    let device = ctx.device;
    let done = tokio::task::spawn_blocking(move || -> Result<Finished, TrainingError> {
        let data = pipeline::prepare(&checked, &run)?;
        let mut epoch = |r: &inference::record::EpochRecord, total: usize| reporter.epoch(r, total);
        match job {
            Job::Train => {
                let trained = crate::train::train(&data.prepared, checked.config(), &data.device, &mut epoch, &cancel)?;
                Ok(Finished::Model(Box::new(pipeline::finish(checked.config(), &data, trained, &run)?), None))
            }
            Job::TrainTuned { tuning, base } => {
                let mut record: TuningRecord = serde_json::from_value(tuning)
                    .map_err(|e| TrainingError::Engine(format!("unreadable tuning record: {e}")))?;
                let base = base.map(|b| pin_device(*b, device).check_with(&caps)).transpose()?;
                let winner =
                    tune::settle(&mut record, base.as_ref(), checked.config().clone(), &data, &caps, &run, &cancel)?;
                let out = tune::ship(&record, winner, &data, &caps, &run, &mut epoch, &cancel)?;
                // The tuner reads the record back: the check may have shipped another trial.
                Ok(Finished::Model(Box::new(out), serde_json::to_value(&record).ok()))
            }
            Job::Tune { options } => {
                let (mut record, winner) =
                    tune::search(&checked, &options, &caps, &data, &|p| reporter.search(p), &cancel)?;
                let rows = tune::check_rows(&data);
                if tune::confirm::wanted(&record, rows) {
                    let doing =
                        format!("checking on {} folds against the base config: the winner", options.confirm.folds);
                    reporter.concluded(&TuneProgress::concluded(&record, TuneStage::Checking), &doing, None);
                }
                let winner = tune::settle(&mut record, Some(&checked), winner, &data, &caps, &run, &cancel)?;
                let training = TuneProgress::concluded(&record, TuneStage::TrainingWinner);
                reporter.concluded(&training, "training the winner", None);
                let mut epoch = |r: &inference::record::EpochRecord, total: usize| {
                    reporter.concluded(&training, "training the winner", Some((r.epoch, total)));
                };
                let out = tune::ship(&record, winner, &data, &caps, &run, &mut epoch, &cancel)?;
                let summary = serde_json::to_value(TuneProgress::concluded(&record, TuneStage::Finished)).ok();
                Ok(Finished::Model(Box::new(out), summary))
            }
            Job::Trial { trial } => {
                let rungs: Box<dyn tune::prune::Rungs> = match redis {
                    Some(pool) => Box::new(tune::prune::RedisRungs::new(
                        pool,
                        &trial.study,
                        trial.pruning.reduction_factor,
                        Duration::from_secs(7 * 24 * 3600),
                    )),
                    None => Box::new(tune::prune::LocalRungs::new(trial.pruning.reduction_factor)),
                };
                let planned =
                    tune::Planned { number: trial.number, config: checked.config().clone(), used: Vec::new() };
                let space = tune::space::SearchSpace::default();
                let record = tune::run_trial(&planned, &space, &caps, &data, &trial.pruning, rungs.as_ref(), &cancel);
                if cancel.load(Ordering::SeqCst) {
                    return Err(TrainingError::Cancelled("stop requested".into()));
                }
                Ok(Finished::Trial(record))
            }
        }
    })
    .await
    .map_err(|e| TrainingError::Engine(format!("the training task panicked: {e}")))??;
    match done {
        Finished::Model(trained, tuning) => {
            let metadata = crate::export::publish(ctx.store.as_ref(), *trained).await?;
            Ok(Completion {
                model_id: Some(metadata.model_id),
                test_metrics: serde_json::to_value(&metadata.test_metrics).unwrap_or_default(),
                tuning,
            })
        }
        Finished::Trial(record) => Ok(Completion {
            model_id: None,
            test_metrics: serde_json::Value::Null,
            tuning: serde_json::to_value(&record).ok(),
        }),
    }
}

/// What a job produced.
enum Finished {
    /// A model to publish (and a search summary for the status).
    Model(Box<pipeline::Trained>, Option<serde_json::Value>),
    /// A trial's record.
    Trial(TrialRecord),
}
