//! Training tasks: the [`TaskQueue`] trait, the task record clients poll ([`TaskStatus`]),
//! and what workers exchange with a queue. A task is delivered to a worker by [`TaskQueue::claim`]
//! and completes at most once.
//!
//! - [`local`]: in-process, with each record journaled to a file in the models directory;
//! - `redis` (scale-out): a Stream with a consumer group, records in hashes.

pub mod local;
pub mod redis;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use inference::config::TrainConfig;

use crate::error::QueueError;

/// Lifecycle of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Queued.
    Pending,
    /// Training.
    Running,
    /// Model saved.
    Completed,
    /// Stopped with an error (`error_kind` says which).
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl TaskState {
    /// Whether the task has ended.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// What `GET /api/ml/train/status/{task_id}` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Latest epoch record (`train_loss`, `val_loss`, `val_accuracy` or `val_r2`).
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
    /// Saved model id (completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// Test metrics (completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub test_metrics: Option<serde_json::Value>,
    /// Error message (failed, cancelled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error's machine-readable kind (`unusable_data`, `diverged`, `timed_out`, `cancelled`, `interrupted`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// Deliveries so far (above 1 when a worker was lost and another took over).
    #[serde(default)]
    pub attempts: u32,
    /// RFC 3339 times of submission, start and end.
    #[serde(default)]
    pub created_at: String,
    /// See `created_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// See `created_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Search progress of a tuning task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub tuning: Option<serde_json::Value>,
}

/// Now, as the records write times.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl TaskStatus {
    /// A new pending task.
    pub fn pending(task_id: String, total_epochs: usize) -> Self {
        Self {
            task_id,
            status: TaskState::Pending,
            progress: 0,
            message: "Queued for training".into(),
            current_epoch: 0,
            total_epochs,
            metrics: serde_json::json!({}),
            model_id: None,
            test_metrics: None,
            error: None,
            error_kind: None,
            attempts: 0,
            created_at: now_rfc3339(),
            started_at: None,
            finished_at: None,
            tuning: None,
        }
    }

    /// Record that a worker started (attempt `attempt`).
    pub fn start(&mut self, attempt: u32) {
        self.status = TaskState::Running;
        self.attempts = attempt;
        self.message = format!("Training... (Epoch {}/{})", self.current_epoch, self.total_epochs);
        self.started_at = Some(now_rfc3339());
    }

    /// Apply a progress update (progress never decreases).
    pub fn advance(&mut self, p: &Progress) {
        self.current_epoch = p.current_epoch;
        self.total_epochs = p.total_epochs;
        self.progress = self.progress.max(p.progress.min(99));
        self.message = p.message.clone();
        self.metrics = p.metrics.clone();
        if p.tuning.is_some() {
            self.tuning = p.tuning.clone();
        }
    }

    /// Record the saved model (or a tuning trial's result, which saves none).
    pub fn complete(&mut self, c: &Completion) {
        self.status = TaskState::Completed;
        self.progress = 100;
        self.message = match &c.model_id {
            Some(id) => format!("Training completed: model {id}"),
            None => "Trial completed".to_owned(),
        };
        self.model_id = c.model_id.clone();
        self.test_metrics = c.model_id.as_ref().map(|_| c.test_metrics.clone());
        if c.tuning.is_some() {
            self.tuning = c.tuning.clone();
        }
        self.finished_at = Some(now_rfc3339());
    }

    /// Record a failure (kind `cancelled` ends the task as cancelled).
    pub fn fail(&mut self, f: &TaskFailure) {
        self.status = if f.kind == CANCELLED { TaskState::Cancelled } else { TaskState::Failed };
        self.message = match self.status {
            TaskState::Cancelled => format!("Training cancelled: {}", f.message),
            _ => format!("Training failed: {}", f.message),
        };
        self.error = Some(f.message.clone());
        self.error_kind = Some(f.kind.clone());
        self.finished_at = Some(now_rfc3339());
    }
}

/// The error kind of a cancelled task.
pub const CANCELLED: &str = "cancelled";

/// The message of a task cancelled while its finished model was being saved (then discarded).
pub const LATE_CANCEL: &str = "cancelled while its model was being saved; the model was discarded";

/// What a worker needs to run a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The training config (checked again by the worker, within its caps).
    pub config: TrainConfig,
    /// What to do with it.
    #[serde(default)]
    pub job: Job,
}

impl TaskSpec {
    /// A plain training of `config`.
    pub fn train(config: TrainConfig) -> Self {
        Self { config, job: Job::Train }
    }
}

/// The kinds of task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Train and publish a model.
    #[default]
    Train,
    /// Train and publish the winner of a distributed search, recording the search.
    TrainTuned {
        /// The search's record ([`crate::tune::TuningRecord`]).
        tuning: serde_json::Value,
        /// The base config (trial 0), for the k-fold check of the winner against it
        /// ([`crate::tune::confirm`]); absent from a tuner that predates the check.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<Box<TrainConfig>>,
    },
    /// A whole search in the worker's process, then its winner.
    Tune {
        /// The search.
        options: Box<crate::tune::TuneOptions>,
    },
    /// One trial of a distributed search: no model, a [`crate::tune::TrialRecord`].
    Trial {
        /// Which.
        trial: crate::tune::distributed::TrialSpec,
    },
}

/// A task handed to a worker.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Task id.
    pub id: String,
    /// What to run.
    pub spec: TaskSpec,
    /// 1 for the first delivery.
    pub attempt: u32,
    /// Set when the task is cancelled (or the queue shuts down): training stops at the next batch.
    pub cancel: Arc<AtomicBool>,
}

/// A worker's progress report.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Last finished epoch.
    pub current_epoch: usize,
    /// Configured epochs.
    pub total_epochs: usize,
    /// 0..99 (completion sets 100).
    pub progress: u8,
    /// Human-readable.
    pub message: String,
    /// The epoch record.
    pub metrics: serde_json::Value,
    /// Search progress (tune tasks).
    pub tuning: Option<serde_json::Value>,
}

/// A finished task's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The saved model (none for a tuning trial).
    pub model_id: Option<String>,
    /// Its test metrics.
    pub test_metrics: serde_json::Value,
    /// The search record (tune tasks).
    pub tuning: Option<serde_json::Value>,
}

/// Why a task failed.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFailure {
    /// Machine-readable kind ([`CANCELLED`] for cancellation).
    pub kind: String,
    /// Message.
    pub message: String,
}

/// Training tasks: submitted by servers, run by workers, polled by clients.
#[async_trait]
pub trait TaskQueue: Send + Sync {
    /// Queue a task; returns its pending record.
    async fn submit(&self, spec: TaskSpec) -> Result<TaskStatus, QueueError>;
    /// The next task for `worker`, waiting up to `wait` for one.
    async fn claim(&self, worker: &str, wait: Duration) -> Result<Option<Claim>, QueueError>;
    /// Report progress of a claimed task.
    async fn progress(&self, id: &str, p: Progress) -> Result<(), QueueError>;
    /// Finish a task with its model; `false` when it had already finished (the result is discarded).
    async fn complete(&self, id: &str, c: Completion) -> Result<bool, QueueError>;
    /// Finish a task with an error.
    async fn fail(&self, id: &str, f: TaskFailure) -> Result<(), QueueError>;
    /// Cancel a task: a pending one ends at once, a running one at its next batch.
    async fn cancel(&self, id: &str) -> Result<TaskStatus, QueueError>;
    /// A task's record.
    async fn get(&self, id: &str) -> Result<Option<TaskStatus>, QueueError>;
    /// Tasks pending or running.
    async fn unfinished(&self) -> Result<usize, QueueError>;
    /// Stop: running tasks are told to cancel, unfinished ones end as failed.
    async fn shut_down(&self);
}
