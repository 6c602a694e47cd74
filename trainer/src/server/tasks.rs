//! Background training tasks: a bounded number run at once on the blocking pool, the rest
//! wait as `pending`; status is updated every epoch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use uuid::Uuid;

use inference::config::TrainConfig;

use super::AppState;
use crate::error::TrainingError;
use crate::pipeline::{self, Event, RunOptions};

/// Lifecycle of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Queued.
    Pending,
    /// Training.
    Running,
    /// Model saved.
    Completed,
    /// Stopped with an error.
    Failed,
}

/// What `GET /api/ml/train/status/{task_id}` returns.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TaskStatus {
    /// Task id.
    pub task_id: String,
    /// State.
    pub status: TaskState,
    /// 0..100, never decreasing.
    pub progress: u8,
    /// e.g. `Training... (Epoch 5/10)`.
    pub message: String,
    /// Last finished epoch.
    pub current_epoch: usize,
    /// Configured epochs.
    pub total_epochs: usize,
    /// Latest validation metrics (`val_loss`, `val_accuracy` or `val_r2`, `train_loss`).
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
    /// Saved model id (completed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// Test metrics (completed).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub test_metrics: Option<serde_json::Value>,
    /// Error message (failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Finished tasks kept for status queries; older ones are forgotten first.
const MAX_FINISHED: usize = 1000;

/// Trainings allowed to wait for a slot; more are refused with 429.
pub const MAX_QUEUED: usize = 100;

/// All tasks of this server process.
#[derive(Default)]
pub struct TaskStore {
    tasks: Mutex<HashMap<String, TaskStatus>>,
    order: Mutex<Vec<String>>,
    /// Set on shutdown; running trainings stop at the next batch.
    pub cancel: Arc<AtomicBool>,
}

impl TaskStore {
    /// Tasks not yet finished.
    pub fn unfinished(&self) -> usize {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.values().filter(|t| matches!(t.status, TaskState::Pending | TaskState::Running)).count()
    }

    /// A task's status.
    pub fn get(&self, id: &str) -> Option<TaskStatus> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut TaskStatus)) {
        if let Some(t) = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get_mut(id) {
            f(t);
        }
    }

    fn insert(&self, status: TaskStatus) {
        let id = status.task_id.clone();
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let mut order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        if order.len() >= MAX_FINISHED {
            // Forget the oldest finished task.
            if let Some(pos) = order.iter().position(|o| {
                tasks.get(o).is_some_and(|t| matches!(t.status, TaskState::Completed | TaskState::Failed))
            }) {
                let old = order.remove(pos);
                tasks.remove(&old);
            }
        }
        order.push(id.clone());
        tasks.insert(id, status);
    }

    /// Mark every unfinished task failed: the server is going down.
    pub fn shut_down(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        for t in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).values_mut() {
            if matches!(t.status, TaskState::Pending | TaskState::Running) {
                fail(t, "server shutting down");
            }
        }
    }
}

fn fail(t: &mut TaskStatus, error: &str) {
    t.status = TaskState::Failed;
    t.message = format!("Training failed: {error}");
    t.error = Some(error.to_owned());
}

/// Queue a training run and return its id at once.
pub fn submit(state: Arc<AppState>, cfg: TrainConfig) -> String {
    let id = Uuid::new_v4().to_string();
    let total = cfg.train_config.epochs;
    state.tasks.insert(TaskStatus {
        task_id: id.clone(),
        status: TaskState::Pending,
        progress: 0,
        message: "Queued for training".into(),
        current_epoch: 0,
        total_epochs: total,
        metrics: serde_json::json!({}),
        model_id: None,
        test_metrics: None,
        error: None,
    });
    let task_id = id.clone();
    tokio::spawn(async move {
        let Ok(_permit) = state.training_slots.clone().acquire_owned().await else {
            return;
        };
        if state.tasks.cancel.load(Ordering::SeqCst) {
            return;
        }
        state.tasks.update(&task_id, |t| {
            t.status = TaskState::Running;
            t.message = format!("Training... (Epoch 0/{total})");
        });
        let st = state.clone();
        let tid = task_id.clone();
        let result = tokio::task::spawn_blocking(move || {
            let opts = RunOptions {
                models_dir: st.config.models_dir.clone(),
                redis: st.config.redis.clone(),
                save_test_rows: false,
                data_dir: st.config.data_dir.canonicalize().ok(),
            };
            pipeline::run(
                &cfg,
                &opts,
                &mut |event| {
                    if let Event::Epoch { record, total_epochs } = event {
                        st.tasks.update(&tid, |t| {
                            t.current_epoch = record.epoch;
                            t.total_epochs = total_epochs;
                            // Early stopping may end before 100; completion sets it.
                            t.progress = t.progress.max((record.epoch * 99 / total_epochs.max(1)) as u8);
                            t.message = format!("Training... (Epoch {}/{total_epochs})", record.epoch);
                            t.metrics = serde_json::to_value(record).unwrap_or_default();
                        });
                    }
                },
                &st.tasks.cancel,
            )
        })
        .await;
        let outcome = match result {
            Ok(Ok(r)) => {
                let test_metrics = serde_json::to_value(&r.metadata.test_metrics).ok();
                state.models.evict(&r.metadata.model_id);
                state.tasks.update(&task_id, |t| {
                    t.status = TaskState::Completed;
                    t.progress = 100;
                    t.message = format!("Training completed: model {}", r.metadata.model_id);
                    t.model_id = Some(r.metadata.model_id.clone());
                    t.test_metrics = test_metrics;
                });
                tracing::info!(task_id, model_id = %r.metadata.model_id, "training completed");
                "completed"
            }
            Ok(Err(e)) => {
                let msg = match e {
                    TrainingError::Cancelled(_) => "server shutting down".to_owned(),
                    e => e.to_string(),
                };
                tracing::warn!(task_id, error = %msg, "training failed");
                state.tasks.update(&task_id, |t| fail(t, &msg));
                "failed"
            }
            Err(join) => {
                tracing::error!(task_id, error = %join, "training task panicked");
                state.tasks.update(&task_id, |t| fail(t, "internal error: the training task panicked"));
                "failed"
            }
        };
        state.telemetry.training_finished(outcome);
    });
    id
}
