//! A worker: claims tasks from a [`TaskQueue`], runs the pipeline on the blocking pool,
//! reports progress per epoch, saves the model in a [`ModelStore`] and completes the task.
//! `trainer serve` runs some in-process; `trainer worker` runs them on their own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use inference::config::{Caps, DeviceChoice};

use crate::error::TrainingError;
use crate::pipeline::{self, Event, RunOptions};
use crate::queue::{Claim, Completion, Progress, TaskFailure, TaskQueue};
use crate::store::ModelStore;

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
    /// Called with `completed`, `failed` or `cancelled` as each task ends.
    pub on_finished: Arc<dyn Fn(&'static str) + Send + Sync>,
}

/// How long one claim waits before checking for shutdown again.
const CLAIM_WAIT: Duration = Duration::from_millis(500);

/// Claim and run tasks until `stop` is set.
pub async fn run(ctx: WorkerContext, name: String, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match ctx.queue.claim(&name, CLAIM_WAIT).await {
            Ok(Some(claim)) => run_task(&ctx, claim).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(worker = %name, error = %e, "cannot claim a task; retrying");
                tokio::time::sleep(CLAIM_WAIT).await;
            }
        }
    }
}

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
        tracing::info!(worker = %name, concurrency, "worker ready");
        println!("worker {name} ready");
        crate::server::shutdown_signal().await;
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
    tracing::info!(task_id = %id, attempt = claim.attempt, "training started");
    let outcome = match train(ctx, &claim).await {
        Ok(c) => {
            let model_id = c.model_id.clone();
            match ctx.queue.complete(&id, c).await {
                Ok(true) => tracing::info!(task_id = %id, %model_id, "training completed"),
                Ok(false) => {
                    // Another delivery finished first (or the task was cancelled): exactly
                    // one model per task, so this one goes.
                    tracing::warn!(task_id = %id, %model_id, "task had already finished: result discarded");
                    if let Ok(mid) = crate::store::ModelId::parse(&model_id) {
                        if let Err(e) = ctx.store.delete(&mid).await {
                            tracing::warn!(task_id = %id, %model_id, error = %e, "cannot delete the discarded model");
                        }
                    }
                }
                Err(e) => tracing::error!(task_id = %id, error = %e, "cannot record the completion"),
            }
            "completed"
        }
        Err(e) => {
            let kind = e.kind();
            let message = match &e {
                TrainingError::Cancelled(_) if claim.cancel.load(Ordering::SeqCst) => "cancelled by request".to_owned(),
                e => e.to_string(),
            };
            tracing::warn!(task_id = %id, error = %message, "training failed");
            if let Err(qe) = ctx.queue.fail(&id, TaskFailure { kind: kind.to_owned(), message }).await {
                tracing::error!(task_id = %id, error = %qe, "cannot record the failure");
            }
            if kind == crate::queue::CANCELLED {
                "cancelled"
            } else {
                "failed"
            }
        }
    };
    (ctx.on_finished)(outcome);
}

async fn train(ctx: &WorkerContext, claim: &Claim) -> Result<Completion, TrainingError> {
    let mut config = claim.spec.config.clone();
    if let Some(device) = ctx.device {
        config.train_config.device = device;
    }
    let checked = config.check_with(&ctx.caps)?;
    ctx.run.data.admit(checked.source())?;
    let (queue, id, run, cancel) = (ctx.queue.clone(), claim.id.clone(), ctx.run.clone(), claim.cancel.clone());
    let handle = tokio::runtime::Handle::current();
    let trained = tokio::task::spawn_blocking(move || {
        pipeline::run(
            &checked,
            &run,
            &mut |event| {
                if let Event::Epoch { record, total_epochs } = event {
                    let p = Progress {
                        current_epoch: record.epoch,
                        total_epochs,
                        // Early stopping may end before 100; completion sets it.
                        progress: (record.epoch * 99 / total_epochs.max(1)) as u8,
                        message: format!("Training... (Epoch {}/{total_epochs})", record.epoch),
                        metrics: serde_json::to_value(record).unwrap_or_default(),
                        tuning: None,
                    };
                    if let Err(e) = handle.block_on(queue.progress(&id, p)) {
                        tracing::warn!(task_id = %id, error = %e, "cannot report progress");
                    }
                }
            },
            &cancel,
        )
    })
    .await
    .map_err(|e| TrainingError::Engine(format!("the training task panicked: {e}")))??;
    let metadata = crate::export::publish(ctx.store.as_ref(), trained).await?;
    Ok(Completion {
        model_id: metadata.model_id,
        test_metrics: serde_json::to_value(&metadata.test_metrics).unwrap_or_default(),
        tuning: None,
    })
}
