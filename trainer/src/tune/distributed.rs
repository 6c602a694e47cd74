//! A search whose trials are tasks on the shared queue (`trainer tune --redis`): this process
//! samples, keeps up to `parallel` trial tasks in flight, and tells the sampler each result;
//! workers train the trials and prune them against rungs kept in Redis
//! ([`super::prune::RedisRungs`]). The winner is then trained once more as a train task that
//! records the search, so its bundle is published like any other; the worker that takes it
//! also runs the k-fold check against the base config ([`super::confirm`]), which holds the data.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use inference::config::TrainConfig;

use super::prune::PruningOptions;
use super::{space, Planned, Study, TrialRecord, TrialState, TuneOptions, TuneProgress, TuningRecord};
use crate::error::{QueueError, TrainingError};
use crate::queue::{Job, TaskQueue, TaskSpec, TaskState, TaskStatus};

/// What a worker needs to run one trial of a distributed search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialSpec {
    /// The search's id (names its rungs in Redis).
    pub study: String,
    /// The trial's number.
    pub number: usize,
    /// The search's pruning.
    pub pruning: PruningOptions,
}

/// How often in-flight tasks are polled.
const POLL: Duration = Duration::from_millis(200);

/// The longest wait between retries while the shared queue is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How a distributed search rides out its surroundings.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// How long the shared queue may stay unreachable (or full) before the search fails; the
    /// trials already running on workers go on meanwhile (`trainer tune --redis-outage-seconds`).
    pub outage: Duration,
    /// After this long with no trial task claimed by any worker, say so (and again as long as
    /// it lasts, at this interval).
    pub no_worker_notice: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Self { outage: Duration::from_secs(300), no_worker_notice: Duration::from_secs(15) }
    }
}

fn queue_error(e: crate::error::QueueError) -> TrainingError {
    TrainingError::Engine(format!("the shared queue failed during the search: {e}"))
}

/// The queue calls of one search: each retried while the queue is unreachable or full, for up
/// to `patience.outage`, and given up when `stop` fires.
struct Link<'a, S> {
    queue: &'a dyn TaskQueue,
    patience: Patience,
    notice: &'a (dyn Fn(&str) + Sync),
    stop: Pin<&'a mut S>,
    stopped: bool,
}

impl<S: Future<Output = ()>> Link<'_, S> {
    /// Sleep for `d`, or less when `stop` fires (then `stopped` is set).
    async fn sleep(&mut self, d: Duration) {
        if self.stopped {
            return;
        }
        tokio::select! {
            _ = self.stop.as_mut() => self.stopped = true,
            _ = tokio::time::sleep(d) => {}
        }
    }

    /// `call`, again while it fails for a reason that passes (the queue down, or full).
    async fn retry<T, F, Fut>(&mut self, what: &str, mut call: F) -> Result<T, TrainingError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, QueueError>>,
    {
        let mut since: Option<Instant> = None;
        let mut wait = POLL;
        loop {
            let e = match call().await {
                Ok(v) => {
                    if since.is_some() {
                        (self.notice)("the shared queue answers again; the search goes on");
                    }
                    return Ok(v);
                }
                Err(e @ (QueueError::Backend(_) | QueueError::Full { .. })) => e,
                Err(e) => return Err(queue_error(e)),
            };
            let first = *since.get_or_insert_with(|| {
                (self.notice)(&format!(
                    "cannot {what}: {e}; retrying for up to {} s (--redis-outage-seconds)",
                    self.patience.outage.as_secs_f64()
                ));
                Instant::now()
            });
            if first.elapsed() >= self.patience.outage {
                return Err(TrainingError::Engine(format!(
                    "the shared queue failed for {} s during the search (cannot {what}): {e}",
                    self.patience.outage.as_secs_f64()
                )));
            }
            self.sleep(wait).await;
            if self.stopped {
                return Err(TrainingError::Cancelled(format!("interrupted while the shared queue was down ({e})")));
            }
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    }

    /// Cancel `ids` (best effort: the search is ending) and say how it went.
    async fn cancel_all(&mut self, ids: &[String]) -> TrainingError {
        let mut left = Vec::new();
        for id in ids {
            if let Err(e) = self.queue.cancel(id).await {
                left.push(format!("{id} ({e})"));
            }
        }
        let mut why = format!("interrupted; {} task(s) in flight cancelled", ids.len() - left.len());
        if !left.is_empty() {
            why.push_str(&format!(", {} could not be: {}", left.len(), left.join(", ")));
        }
        TrainingError::Cancelled(why)
    }
}

/// The record of a finished trial task.
fn trial_record(planned: &Planned, options: &TuneOptions, status: &TaskStatus) -> TrialRecord {
    let params = space::params_of(&options.space, &planned.config);
    let parsed = status.tuning.clone().and_then(|v| serde_json::from_value::<TrialRecord>(v).ok());
    match (status.status, parsed) {
        (TaskState::Completed, Some(mut r)) => {
            r.number = planned.number;
            r.params = params;
            r
        }
        _ => TrialRecord {
            number: planned.number,
            state: TrialState::Failed,
            params,
            rung_losses: Vec::new(),
            best_val_loss: None,
            best_val_loss_se: None,
            epochs_run: status.current_epoch,
            seconds: 0.0,
            error: Some(status.error.clone().unwrap_or_else(|| format!("trial task ended {:?}", status.status))),
        },
    }
}

/// Run the search on `queue`; returns the record and the winner's finished train task.
/// `notice` hears what a person at the terminal should know (an outage, no worker taking the
/// trials); when `stop` fires (Ctrl-C), the tasks in flight are cancelled, so no trial is left
/// queued for workers to run for nobody.
pub async fn search(
    queue: &dyn TaskQueue,
    base: &TrainConfig,
    options: &TuneOptions,
    patience: Patience,
    on_trial: &(dyn Fn(&TuneProgress) + Sync),
    notice: &(dyn Fn(&str) + Sync),
    stop: impl Future<Output = ()>,
) -> Result<(TuningRecord, TaskStatus), TrainingError> {
    let stop = std::pin::pin!(stop);
    let mut link = Link { queue, patience, notice, stop, stopped: false };
    let study_id = uuid::Uuid::new_v4().to_string();
    let mut study = Study::new(base, options);
    let mut in_flight: Vec<(Planned, String)> = Vec::new();
    // Since when no worker has taken any of the tasks in flight (None: one is running).
    let mut unclaimed_since: Option<Instant> = None;
    let mut next_notice = patience.no_worker_notice;
    loop {
        while in_flight.len() < options.parallel && !link.stopped {
            let Some(planned) = study.plan() else { break };
            let spec = TaskSpec {
                config: planned.config.clone(),
                job: Job::Trial {
                    trial: TrialSpec { study: study_id.clone(), number: planned.number, pruning: options.pruning },
                },
            };
            // Retried after an outage: a submit whose answer was lost may run twice (a wasted
            // trial on some worker; this search reads only the copy it was told of).
            let task = link.retry("queue a trial", || queue.submit(spec.clone())).await?;
            in_flight.push((planned, task.task_id));
        }
        if link.stopped {
            let ids: Vec<String> = in_flight.iter().map(|(_, id)| id.clone()).collect();
            return Err(link.cancel_all(&ids).await);
        }
        if in_flight.is_empty() {
            break;
        }
        let mut i = 0;
        let (mut finished_any, mut all_pending) = (false, true);
        while i < in_flight.len() {
            let id = in_flight[i].1.clone();
            match link.retry("read a trial's status", || queue.get(&id)).await? {
                Some(s) if s.status.is_finished() => {
                    let (planned, _) = in_flight.swap_remove(i);
                    study.finish(&planned, trial_record(&planned, options, &s));
                    finished_any = true;
                }
                Some(s) => {
                    all_pending &= s.status == TaskState::Pending;
                    i += 1;
                }
                None => {
                    let (planned, id) = in_flight.swap_remove(i);
                    let mut s = TaskStatus::pending(id, 0);
                    s.status = TaskState::Failed;
                    s.error = Some("the trial task disappeared from the queue".into());
                    study.finish(&planned, trial_record(&planned, options, &s));
                    finished_any = true;
                }
            }
        }
        if finished_any || !all_pending {
            unclaimed_since = None;
            next_notice = patience.no_worker_notice;
        } else {
            let since = *unclaimed_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= next_notice {
                notice(&format!(
                    "no worker has taken a trial for {} s ({} queued): is `trainer worker --redis` running on \
                     this Redis and key prefix? Ctrl-C cancels the search and its queued trials",
                    since.elapsed().as_secs(),
                    in_flight.len()
                ));
                next_notice += patience.no_worker_notice;
            }
        }
        if finished_any {
            on_trial(&study.progress());
        } else {
            link.sleep(POLL).await;
        }
    }
    let (record, winner) = study.conclude()?;
    let tuning = serde_json::to_value(&record).map_err(|e| TrainingError::Engine(e.to_string()))?;
    // The worker that trains the winner holds the data, so it runs the k-fold check too.
    let spec = TaskSpec { config: winner, job: Job::TrainTuned { tuning, base: Some(Box::new(base.clone())) } };
    let task = link.retry("queue the winner's training", || queue.submit(spec.clone())).await?;
    let done = loop {
        match link.retry("read the winner's status", || queue.get(&task.task_id)).await? {
            Some(s) if s.status.is_finished() => break s,
            Some(_) => {
                link.sleep(POLL).await;
                if link.stopped {
                    return Err(link.cancel_all(std::slice::from_ref(&task.task_id)).await);
                }
            }
            None => return Err(TrainingError::Engine(format!("task {} disappeared from the queue", task.task_id))),
        }
    };
    if done.status != TaskState::Completed {
        return Err(TrainingError::Engine(format!(
            "the winner's training task {} ended {:?}: {}",
            task.task_id,
            done.status,
            done.error.clone().unwrap_or_default()
        )));
    }
    // The worker's record, which the k-fold check may have changed.
    let record = match done.tuning.clone().map(serde_json::from_value::<TuningRecord>) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            notice(&format!(
                "the winner's worker sent an unreadable search record ({e}); the published model's metadata has it"
            ));
            record
        }
        None => record,
    };
    Ok((record, done))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::queue::local::{LocalOptions, LocalQueue};
    use crate::queue::{Claim, Completion, Progress, TaskFailure};

    /// The in-process queue, with `get` failing as an unreachable Redis would for its next
    /// `down` calls.
    struct Flaky {
        inner: LocalQueue,
        down: AtomicUsize,
    }

    #[async_trait]
    impl TaskQueue for Flaky {
        async fn submit(&self, spec: TaskSpec) -> Result<TaskStatus, QueueError> {
            self.inner.submit(spec).await
        }
        async fn claim(&self, worker: &str, wait: Duration) -> Result<Option<Claim>, QueueError> {
            self.inner.claim(worker, wait).await
        }
        async fn progress(&self, id: &str, p: Progress) -> Result<(), QueueError> {
            self.inner.progress(id, p).await
        }
        async fn complete(&self, id: &str, c: Completion) -> Result<bool, QueueError> {
            self.inner.complete(id, c).await
        }
        async fn fail(&self, id: &str, f: TaskFailure) -> Result<(), QueueError> {
            self.inner.fail(id, f).await
        }
        async fn cancel(&self, id: &str) -> Result<TaskStatus, QueueError> {
            self.inner.cancel(id).await
        }
        async fn get(&self, id: &str) -> Result<Option<TaskStatus>, QueueError> {
            if self.down.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err(QueueError::Backend("connection refused".into()));
            }
            self.inner.get(id).await
        }
        async fn unfinished(&self) -> Result<usize, QueueError> {
            self.inner.unfinished().await
        }
        async fn shut_down(&self) {
            self.inner.shut_down().await
        }
    }

    fn flaky(down: usize) -> Flaky {
        Flaky { inner: LocalQueue::new(None, LocalOptions::default()).unwrap(), down: AtomicUsize::new(down) }
    }

    fn options(trials: usize) -> TuneOptions {
        TuneOptions { trials, parallel: 2, warmup_trials: trials, ..TuneOptions::default() }
    }

    /// Completes every task it claims at once: a trial with a loss of 1 + its number, the
    /// winner's training with model `m`.
    async fn fake_worker(q: &dyn TaskQueue) {
        loop {
            let Ok(Some(c)) = q.claim("w", Duration::from_millis(20)).await else { continue };
            let tuning = match &c.spec.job {
                Job::Trial { trial } => Some(serde_json::json!({
                    "number": trial.number, "state": "completed", "params": {}, "rung_losses": [],
                    "best_val_loss": 1.0 + trial.number as f64, "best_val_loss_se": 0.01,
                    "epochs_run": 1, "seconds": 0.0
                })),
                _ => None,
            };
            let model_id = tuning.is_none().then(|| "m".to_owned());
            q.complete(&c.id, Completion { model_id, test_metrics: serde_json::json!({}), tuning }).await.unwrap();
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn an_outage_shorter_than_the_patience_is_ridden_out() {
        // Three failures in a row: retried after 0.2, 0.4 and 0.8 s.
        let (q, notes) = (flaky(3), Mutex::new(Vec::<String>::new()));
        let patience = Patience { outage: Duration::from_secs(30), ..Patience::default() };
        let (base, opts) = (TrainConfig::default(), options(3));
        let note = |n: &str| notes.lock().unwrap().push(n.to_owned());
        let (record, done) = rt()
            .block_on(async {
                tokio::select! {
                    r = search(&q, &base, &opts, patience, &|_| {}, &note, std::future::pending()) => r,
                    _ = fake_worker(&q) => unreachable!(),
                }
            })
            .unwrap();
        assert_eq!((record.trials.len(), done.model_id.as_deref()), (3, Some("m")));
        let notes = notes.lock().unwrap();
        assert!(notes[0].starts_with("cannot read a trial's status: task queue: connection refused"), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("answers again")), "{notes:?}");
    }

    #[test]
    fn an_outage_past_the_patience_fails_the_search() {
        let q = flaky(usize::MAX);
        let patience = Patience { outage: Duration::from_millis(300), ..Patience::default() };
        let e = rt()
            .block_on(search(
                &q,
                &TrainConfig::default(),
                &options(2),
                patience,
                &|_| {},
                &|_| {},
                std::future::pending(),
            ))
            .unwrap_err();
        assert!(e.to_string().contains("the shared queue failed for 0.3 s during the search"), "{e}");
    }

    #[test]
    fn with_no_worker_it_says_so_and_a_stop_cancels_the_queued_trials() {
        let (q, notes) = (flaky(0), Mutex::new(Vec::<String>::new()));
        let patience = Patience { no_worker_notice: Duration::from_millis(100), ..Patience::default() };
        let rt = rt();
        let e = rt
            .block_on(search(
                &q,
                &TrainConfig::default(),
                &options(5),
                patience,
                &|_| {},
                &|n| notes.lock().unwrap().push(n.to_owned()),
                async { tokio::time::sleep(Duration::from_millis(450)).await },
            ))
            .unwrap_err();
        assert_eq!(e.kind(), "cancelled", "{e}");
        assert!(e.to_string().contains("2 task(s) in flight cancelled"), "{e}");
        let notes = notes.lock().unwrap();
        assert!(
            !notes.is_empty() && notes[0].starts_with("no worker has taken a trial for 0 s (2 queued)"),
            "{notes:?}"
        );
        assert!(notes.len() >= 2, "repeated while it lasts: {notes:?}");
        assert_eq!(rt.block_on(q.unfinished()).unwrap(), 0, "nothing is left queued");
    }
}
