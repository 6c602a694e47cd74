//! The in-process task queue of a single `trainer serve`: records in memory, each also
//! journaled as `<models>/.tasks/<task_id>.json` (written to a temp file and renamed, so a
//! record is whole or absent), so that after a crash or restart finished tasks keep their
//! result and interrupted ones read `failed` with "interrupted by restart".

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{Claim, Completion, Progress, TaskFailure, TaskQueue, TaskSpec, TaskState, TaskStatus};
use crate::error::QueueError;

/// Directory of the journal inside the models directory.
pub const JOURNAL_DIR: &str = ".tasks";
/// Largest journal record read back.
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// Limits of a local queue.
#[derive(Debug, Clone, Copy)]
pub struct LocalOptions {
    /// Most tasks pending or running; more are refused.
    pub max_queued: usize,
    /// Finished tasks kept (in memory and journal); older ones are forgotten first.
    pub max_finished: usize,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self { max_queued: 100, max_finished: 1000 }
    }
}

struct Entry {
    status: TaskStatus,
    spec: Option<TaskSpec>,
    cancel: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    tasks: HashMap<String, Entry>,
    pending: VecDeque<String>,
    finished: VecDeque<String>,
    shutting_down: bool,
}

/// The queue.
pub struct LocalQueue {
    state: Mutex<State>,
    notify: tokio::sync::Notify,
    journal: Option<PathBuf>,
    opts: LocalOptions,
}

impl LocalQueue {
    /// A queue journaled under `models_dir` (or not journaled, with `None`), recovering
    /// the records an earlier process left.
    pub fn new(models_dir: Option<&Path>, opts: LocalOptions) -> std::io::Result<Self> {
        let journal = match models_dir {
            Some(d) => {
                let j = d.join(JOURNAL_DIR);
                std::fs::create_dir_all(&j)?;
                Some(j)
            }
            None => None,
        };
        let q = Self { state: Mutex::default(), notify: tokio::sync::Notify::new(), journal, opts };
        q.recover();
        Ok(q)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write a record: temp file, then rename (atomic against crashes of this process).
    fn persist(&self, status: &TaskStatus) {
        let Some(dir) = &self.journal else { return };
        let path = dir.join(format!("{}.json", status.task_id));
        let tmp = dir.join(format!(".{}.json.tmp", status.task_id));
        let write = || -> std::io::Result<()> {
            std::fs::write(&tmp, serde_json::to_vec(status).map_err(std::io::Error::other)?)?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            tracing::warn!(task_id = %status.task_id, error = %e, "cannot journal the task record");
        }
    }

    fn forget(&self, id: &str) {
        if let Some(dir) = &self.journal {
            let _ = std::fs::remove_file(dir.join(format!("{id}.json")));
        }
    }

    /// Read the journal back: unfinished tasks were interrupted.
    fn recover(&self) {
        let Some(dir) = &self.journal else { return };
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        let mut records: Vec<TaskStatus> = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".json") && !n.starts_with('.')))
            .filter_map(|e| crate::store::fs::read_regular(&e.path(), MAX_RECORD_BYTES).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        records.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        let excess = records.len().saturating_sub(self.opts.max_finished);
        for old in records.drain(..excess) {
            self.forget(&old.task_id);
        }
        let mut st = self.lock();
        for mut r in records {
            if !r.status.is_finished() {
                r.fail(&TaskFailure { kind: "interrupted".into(), message: "interrupted by restart".into() });
                self.persist(&r);
            }
            st.finished.push_back(r.task_id.clone());
            let id = r.task_id.clone();
            st.tasks.insert(id, Entry { status: r, spec: None, cancel: Arc::default() });
        }
    }

    /// Bound the finished records kept.
    fn finished(&self, st: &mut State, id: &str) {
        st.finished.push_back(id.to_owned());
        while st.finished.len() > self.opts.max_finished {
            if let Some(old) = st.finished.pop_front() {
                st.tasks.remove(&old);
                self.forget(&old);
            }
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut TaskStatus) -> bool) -> Result<bool, QueueError> {
        let mut st = self.lock();
        let entry = st.tasks.get_mut(id).ok_or_else(|| QueueError::NotFound(id.to_owned()))?;
        if entry.status.status.is_finished() {
            return Ok(false);
        }
        let persist = f(&mut entry.status);
        let status = entry.status.clone();
        if status.status.is_finished() {
            entry.spec = None;
            self.finished(&mut st, id);
        }
        drop(st);
        if persist {
            self.persist(&status);
        }
        Ok(true)
    }
}

#[async_trait]
impl TaskQueue for LocalQueue {
    async fn submit(&self, spec: TaskSpec) -> Result<TaskStatus, QueueError> {
        let status = {
            let mut st = self.lock();
            let unfinished = st.tasks.len() - st.finished.len();
            if st.shutting_down || unfinished >= self.opts.max_queued {
                return Err(QueueError::Full { limit: self.opts.max_queued });
            }
            let id = uuid::Uuid::new_v4().to_string();
            let status = TaskStatus::pending(id.clone(), spec.config.train_config.epochs);
            st.tasks.insert(id.clone(), Entry { status: status.clone(), spec: Some(spec), cancel: Arc::default() });
            st.pending.push_back(id);
            status
        };
        self.persist(&status);
        self.notify.notify_one();
        Ok(status)
    }

    async fn claim(&self, _worker: &str, wait: Duration) -> Result<Option<Claim>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let claimed = {
                let mut st = self.lock();
                if st.shutting_down {
                    return Ok(None);
                }
                let mut claimed = None;
                while let Some(id) = st.pending.pop_front() {
                    let Some(e) = st.tasks.get_mut(&id) else { continue };
                    let Some(spec) = e.spec.clone() else { continue };
                    if e.status.status != TaskState::Pending {
                        continue;
                    }
                    e.status.start(1);
                    claimed = Some((Claim { id, spec, attempt: 1, cancel: e.cancel.clone() }, e.status.clone()));
                    break;
                }
                claimed
            };
            if let Some((claim, status)) = claimed {
                self.persist(&status);
                return Ok(Some(claim));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn progress(&self, id: &str, p: Progress) -> Result<(), QueueError> {
        // Progress stays in memory: after a restart a running task is failed anyway.
        self.update(id, |s| {
            s.advance(&p);
            false
        })
        .map(drop)
    }

    async fn complete(&self, id: &str, c: Completion) -> Result<bool, QueueError> {
        // A cancel the client was told of wins over a completion that raced it: the caller
        // then discards the model.
        let cancelled = self.lock().tasks.get(id).is_some_and(|e| e.cancel.load(Ordering::SeqCst));
        if cancelled {
            let f = TaskFailure { kind: super::CANCELLED.into(), message: super::LATE_CANCEL.into() };
            self.update(id, |s| {
                s.fail(&f);
                true
            })?;
            return Ok(false);
        }
        self.update(id, |s| {
            s.complete(&c);
            true
        })
    }

    async fn fail(&self, id: &str, f: TaskFailure) -> Result<(), QueueError> {
        self.update(id, |s| {
            s.fail(&f);
            true
        })
        .map(drop)
    }

    async fn cancel(&self, id: &str) -> Result<TaskStatus, QueueError> {
        let pending = {
            let st = self.lock();
            let e = st.tasks.get(id).ok_or_else(|| QueueError::NotFound(id.to_owned()))?;
            e.cancel.store(true, Ordering::SeqCst);
            e.status.status == TaskState::Pending
        };
        if pending {
            self.update(id, |s| {
                s.fail(&TaskFailure { kind: super::CANCELLED.into(), message: "cancelled before it started".into() });
                true
            })?;
        }
        self.get(id).await?.ok_or_else(|| QueueError::NotFound(id.to_owned()))
    }

    async fn get(&self, id: &str) -> Result<Option<TaskStatus>, QueueError> {
        Ok(self.lock().tasks.get(id).map(|e| e.status.clone()))
    }

    async fn unfinished(&self) -> Result<usize, QueueError> {
        let st = self.lock();
        Ok(st.tasks.len() - st.finished.len())
    }

    async fn shut_down(&self) {
        let ids: Vec<String> = {
            let mut st = self.lock();
            st.shutting_down = true;
            st.tasks
                .iter()
                .filter(|(_, e)| !e.status.status.is_finished())
                .map(|(id, e)| {
                    e.cancel.store(true, Ordering::SeqCst);
                    id.clone()
                })
                .collect()
        };
        for id in ids {
            let _ = self.update(&id, |s| {
                s.fail(&TaskFailure { kind: "shutdown".into(), message: "server shutting down".into() });
                true
            });
        }
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inference::TrainConfig;

    fn spec() -> TaskSpec {
        TaskSpec::train(TrainConfig::default())
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn tasks_run_once_and_survive_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let rt = rt();
        let q = LocalQueue::new(Some(d.path()), LocalOptions::default()).unwrap();
        let (a, b) = rt.block_on(async { (q.submit(spec()).await.unwrap(), q.submit(spec()).await.unwrap()) });
        let claim = rt.block_on(q.claim("w", Duration::from_millis(10))).unwrap().unwrap();
        assert_eq!(claim.id, a.task_id);
        let done = Completion { model_id: Some("m1".into()), test_metrics: serde_json::json!({}), tuning: None };
        assert!(rt.block_on(q.complete(&a.task_id, done.clone())).unwrap());
        assert!(!rt.block_on(q.complete(&a.task_id, done)).unwrap(), "a second completion is discarded");
        let _running = rt.block_on(q.claim("w", Duration::from_millis(10))).unwrap().unwrap();
        drop(q); // a crash: b is running

        let q = LocalQueue::new(Some(d.path()), LocalOptions::default()).unwrap();
        let a2 = rt.block_on(q.get(&a.task_id)).unwrap().unwrap();
        assert_eq!((a2.status, a2.model_id.as_deref()), (TaskState::Completed, Some("m1")));
        let b2 = rt.block_on(q.get(&b.task_id)).unwrap().unwrap();
        assert_eq!(b2.status, TaskState::Failed);
        assert_eq!(b2.error.as_deref(), Some("interrupted by restart"));
        assert_eq!(b2.error_kind.as_deref(), Some("interrupted"));
    }

    #[test]
    fn cancel_ends_pending_tasks_and_signals_running_ones() {
        let rt = rt();
        let q = LocalQueue::new(None, LocalOptions { max_queued: 2, max_finished: 10 }).unwrap();
        let a = rt.block_on(q.submit(spec())).unwrap();
        let b = rt.block_on(q.submit(spec())).unwrap();
        assert!(matches!(rt.block_on(q.submit(spec())), Err(QueueError::Full { limit: 2 })));
        let claim = rt.block_on(q.claim("w", Duration::from_millis(10))).unwrap().unwrap();
        assert_eq!(rt.block_on(q.cancel(&b.task_id)).unwrap().status, TaskState::Cancelled);
        let running = rt.block_on(q.cancel(&a.task_id)).unwrap();
        assert_eq!(running.status, TaskState::Running);
        assert!(claim.cancel.load(Ordering::SeqCst), "the worker sees the cancel");
        rt.block_on(q.fail(&a.task_id, TaskFailure { kind: super::super::CANCELLED.into(), message: "stop".into() }))
            .unwrap();
        assert_eq!(rt.block_on(q.get(&a.task_id)).unwrap().unwrap().status, TaskState::Cancelled);
        assert!(rt.block_on(q.claim("w", Duration::from_millis(10))).unwrap().is_none());
        assert!(matches!(rt.block_on(q.cancel("nope")), Err(QueueError::NotFound(_))));
    }

    #[test]
    fn a_cancel_wins_over_a_completion_that_raced_it() {
        let rt = rt();
        let q = LocalQueue::new(None, LocalOptions::default()).unwrap();
        let a = rt.block_on(q.submit(spec())).unwrap();
        let _claim = rt.block_on(q.claim("w", Duration::from_millis(10))).unwrap().unwrap();
        // The client is told "cancelling" while the worker is already saving its model.
        assert_eq!(rt.block_on(q.cancel(&a.task_id)).unwrap().status, TaskState::Running);
        let done = Completion { model_id: Some("m1".into()), test_metrics: serde_json::json!({}), tuning: None };
        assert!(!rt.block_on(q.complete(&a.task_id, done)).unwrap(), "the model is to be discarded");
        let st = rt.block_on(q.get(&a.task_id)).unwrap().unwrap();
        assert_eq!((st.status, st.model_id), (TaskState::Cancelled, None));
    }
}
