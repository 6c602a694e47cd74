//! A search whose trials are tasks on the shared queue (`trainer tune --redis`): this process
//! samples, keeps up to `parallel` trial tasks in flight, and tells the sampler each result;
//! workers train the trials and prune them against rungs kept in Redis
//! ([`super::prune::RedisRungs`]). The winner is then trained once more as an ordinary train
//! task that records the search, so its bundle is published like any other.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use inference::config::TrainConfig;

use super::prune::PruningOptions;
use super::{space, Planned, Study, TrialRecord, TrialState, TuneOptions, TuneProgress, TuningRecord};
use crate::error::TrainingError;
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

fn queue_error(e: crate::error::QueueError) -> TrainingError {
    TrainingError::Engine(format!("the shared queue failed during the search: {e}"))
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

/// Wait for task `id` to finish.
async fn wait(queue: &dyn TaskQueue, id: &str) -> Result<TaskStatus, TrainingError> {
    loop {
        match queue.get(id).await.map_err(queue_error)? {
            Some(s) if s.status.is_finished() => return Ok(s),
            Some(_) => tokio::time::sleep(POLL).await,
            None => return Err(TrainingError::Engine(format!("task {id} disappeared from the queue"))),
        }
    }
}

/// Run the search on `queue`; returns the record and the winner's finished train task.
pub async fn search(
    queue: &dyn TaskQueue,
    base: &TrainConfig,
    options: &TuneOptions,
    on_trial: &(dyn Fn(&TuneProgress) + Sync),
) -> Result<(TuningRecord, TaskStatus), TrainingError> {
    let study_id = uuid::Uuid::new_v4().to_string();
    let mut study = Study::new(base, options);
    let mut in_flight: Vec<(Planned, String)> = Vec::new();
    loop {
        while in_flight.len() < options.parallel {
            let Some(planned) = study.plan() else { break };
            let spec = TaskSpec {
                config: planned.config.clone(),
                job: Job::Trial {
                    trial: TrialSpec { study: study_id.clone(), number: planned.number, pruning: options.pruning },
                },
            };
            let task = queue.submit(spec).await.map_err(queue_error)?;
            in_flight.push((planned, task.task_id));
        }
        if in_flight.is_empty() {
            break;
        }
        let mut i = 0;
        let mut finished_any = false;
        while i < in_flight.len() {
            match queue.get(&in_flight[i].1).await.map_err(queue_error)? {
                Some(s) if s.status.is_finished() => {
                    let (planned, _) = in_flight.swap_remove(i);
                    study.finish(&planned, trial_record(&planned, options, &s));
                    finished_any = true;
                }
                Some(_) => i += 1,
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
        if finished_any {
            on_trial(&study.progress());
        } else {
            tokio::time::sleep(POLL).await;
        }
    }
    let (record, winner) = study.conclude()?;
    let tuning = serde_json::to_value(&record).map_err(|e| TrainingError::Engine(e.to_string()))?;
    let task = queue.submit(TaskSpec { config: winner, job: Job::TrainTuned { tuning } }).await.map_err(queue_error)?;
    let done = wait(queue, &task.task_id).await?;
    if done.status != TaskState::Completed {
        return Err(TrainingError::Engine(format!(
            "the winner's training task {} ended {:?}: {}",
            task.task_id,
            done.status,
            done.error.clone().unwrap_or_default()
        )));
    }
    Ok((record, done))
}
