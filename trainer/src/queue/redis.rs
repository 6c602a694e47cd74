//! The task queue shared by servers and workers through Redis, with Redis's own primitives:
//!
//! - `{prefix}tasks`: a Stream of task ids, consumed by the group `{prefix}workers`;
//! - `{prefix}task:{id}`: a hash per task, the [`TaskStatus`] fields plus control fields
//!   (`spec`, `entry`, `worker`, `heartbeat`, `cancel`); finished records expire after a TTL;
//! - `{prefix}unfinished`: the set of pending and running task ids (the queue's size).
//!
//! Delivery is at least once, completion at most once: every transition is one Lua script
//! that checks the record's state and the caller's attempt number, so a late worker's
//! progress or result is discarded. A worker heartbeats from a thread of its own (training
//! cannot starve it) by re-claiming its stream entry (`XCLAIM … JUSTID` resets the entry's
//! idle time) and reading the cancel flag. A worker that stops heartbeating loses its task:
//! after `claim_after` another worker takes it with `XAUTOCLAIM`, up to `max_attempts`
//! deliveries, after which the task fails with `worker_lost`. Finished entries are acked and
//! deleted, and `XADD … MAXLEN ~` bounds the stream besides.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::{Script, Value};

use super::{Claim, Completion, Progress, TaskFailure, TaskQueue, TaskSpec, TaskState, TaskStatus};
use crate::error::QueueError;
use crate::redis_pool::Pool;

/// Settings of the Redis queue.
#[derive(Debug, Clone, Copy)]
pub struct RedisQueueOptions {
    /// Most tasks pending or running; more are refused.
    pub max_queued: usize,
    /// A task whose worker has not heartbeaten for this long is given to another worker.
    pub claim_after: Duration,
    /// Deliveries of one task before it fails as `worker_lost`.
    pub max_attempts: u32,
    /// How long finished task records are kept.
    pub ttl: Duration,
}

impl Default for RedisQueueOptions {
    fn default() -> Self {
        Self {
            max_queued: 100,
            claim_after: Duration::from_secs(30),
            max_attempts: 3,
            ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Stream length bound on top of deleting finished entries.
const STREAM_MAXLEN: usize = 100_000;

const SUBMIT: &str = r"
-- KEYS: task hash, unfinished set, stream. ARGV: max_queued, id, maxlen, field/value pairs.
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('SADD', KEYS[2], ARGV[2])
local entry = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'task', ARGV[2])
redis.call('HSET', KEYS[1], 'entry', entry)
return 1";

const START: &str = r"
-- KEYS: task hash, unfinished set, stream. ARGV: group, entry, worker, now, max_attempts,
-- ttl, id, then the field/value pairs of a worker_lost failure.
local function drop() redis.call('XACK', KEYS[3], ARGV[1], ARGV[2]); redis.call('XDEL', KEYS[3], ARGV[2]) end
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'pending' and st ~= 'running' then drop(); return {-1} end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts > tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'attempts', attempts - 1, unpack(ARGV, 8))
  redis.call('HDEL', KEYS[1], 'spec', 'cancel')
  redis.call('SREM', KEYS[2], ARGV[7])
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  drop()
  return {-2}
end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[3], 'started_at', ARGV[4],
  'heartbeat', ARGV[4], 'entry', ARGV[2])
return {attempts, redis.call('HGETALL', KEYS[1])}";

const HEARTBEAT: &str = r"
-- KEYS: task hash, stream. ARGV: group, worker, entry, attempt, now.
-- 0: keep going; 1: cancel requested; 2: the task is no longer this worker's.
local v = redis.call('HMGET', KEYS[1], 'status', 'attempts', 'cancel')
if v[1] ~= 'running' or v[2] ~= ARGV[4] then return 2 end
redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
redis.call('HSET', KEYS[1], 'heartbeat', ARGV[5])
if v[3] then return 1 end
return 0";

const PROGRESS: &str = r"
-- KEYS: task hash. ARGV: attempt, progress, field/value pairs.
local v = redis.call('HMGET', KEYS[1], 'status', 'attempts', 'progress')
if v[1] ~= 'running' or v[2] ~= ARGV[1] then return 0 end
local p = math.max(tonumber(v[3]) or 0, tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'progress', p, unpack(ARGV, 3))
return 1";

const FINISH: &str = r"
-- KEYS: task hash, unfinished set, stream. ARGV: attempt ('' = any), group, ttl, id, then
-- field/value pairs, or the single pair 'cancel_if_running', '1' for a cancel request; a
-- completion starts with the pair 'unless_cancelled', '1' and returns 3 (recording nothing)
-- when a cancel was asked for meanwhile: the cancel the client was told of wins.
local v = redis.call('HMGET', KEYS[1], 'status', 'attempts', 'entry', 'cancel')
if not v[1] then return -1 end
if v[1] ~= 'pending' and v[1] ~= 'running' then return 0 end
if ARGV[1] ~= '' and v[2] ~= ARGV[1] then return 0 end
if ARGV[5] == 'cancel_if_running' then
  if v[1] == 'running' then redis.call('HSET', KEYS[1], 'cancel', '1'); return 2 end
  table.remove(ARGV, 5); table.remove(ARGV, 5)
elseif ARGV[5] == 'unless_cancelled' then
  if v[4] == '1' then return 3 end
  table.remove(ARGV, 5); table.remove(ARGV, 5)
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('HDEL', KEYS[1], 'spec', 'cancel')
redis.call('SREM', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if v[3] then redis.call('XACK', KEYS[3], ARGV[2], v[3]); redis.call('XDEL', KEYS[3], v[3]) end
return 1";

const REQUEUE: &str = r"
-- KEYS: task hash, stream. ARGV: group, attempt, id, maxlen, message.
-- A worker that stops gracefully hands its task back at once; the attempt does not count.
local v = redis.call('HMGET', KEYS[1], 'status', 'attempts', 'entry')
if v[1] ~= 'running' or v[2] ~= ARGV[2] then return 0 end
if v[3] then redis.call('XACK', KEYS[2], ARGV[1], v[3]); redis.call('XDEL', KEYS[2], v[3]) end
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'task', ARGV[3])
redis.call('HSET', KEYS[1], 'status', 'pending', 'entry', entry, 'message', ARGV[5],
  'attempts', tonumber(ARGV[2]) - 1)
redis.call('HDEL', KEYS[1], 'worker', 'heartbeat')
return 1";

/// A task this process holds.
struct Held {
    attempt: u32,
    cancel: Arc<AtomicBool>,
    /// Stops the heartbeat thread.
    done: Arc<AtomicBool>,
}

struct Scripts {
    submit: Script,
    start: Script,
    heartbeat: Script,
    progress: Script,
    finish: Script,
    requeue: Script,
}

/// The queue's key names.
struct Keys {
    stream: String,
    group: String,
    unfinished: String,
    task_prefix: String,
}

impl Keys {
    fn task(&self, id: &str) -> String {
        format!("{}{id}", self.task_prefix)
    }
}

/// The queue.
pub struct RedisQueue {
    pool: Pool,
    keys: Arc<Keys>,
    opts: RedisQueueOptions,
    scripts: Arc<Scripts>,
    held: Mutex<HashMap<String, Held>>,
    shutting_down: AtomicBool,
}

/// Task ids are UUIDs; anything else names no task (and never reaches a key).
fn valid_task_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn backend(e: String) -> QueueError {
    QueueError::Backend(e)
}

/// A record as hash fields (control fields aside).
fn to_fields(s: &TaskStatus) -> Vec<(&'static str, String)> {
    let json = |v: &serde_json::Value| v.to_string();
    let mut f = vec![
        ("status", state_name(s.status).to_owned()),
        ("progress", s.progress.to_string()),
        ("message", s.message.clone()),
        ("current_epoch", s.current_epoch.to_string()),
        ("total_epochs", s.total_epochs.to_string()),
        ("metrics", json(&s.metrics)),
        ("attempts", s.attempts.to_string()),
        ("created_at", s.created_at.clone()),
    ];
    let optional = [
        ("model_id", s.model_id.clone()),
        ("test_metrics", s.test_metrics.as_ref().map(json)),
        ("error", s.error.clone()),
        ("error_kind", s.error_kind.clone()),
        ("started_at", s.started_at.clone()),
        ("finished_at", s.finished_at.clone()),
        ("tuning", s.tuning.as_ref().map(json)),
    ];
    f.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    f
}

fn state_name(s: TaskState) -> &'static str {
    match s {
        TaskState::Pending => "pending",
        TaskState::Running => "running",
        TaskState::Completed => "completed",
        TaskState::Failed => "failed",
        TaskState::Cancelled => "cancelled",
    }
}

/// A record from its hash fields.
fn from_fields(id: &str, mut h: HashMap<String, String>) -> Option<TaskStatus> {
    let status = serde_json::from_value(serde_json::Value::String(h.remove("status")?)).ok()?;
    let num = |h: &HashMap<String, String>, k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let json = |h: &mut HashMap<String, String>, k: &str| h.remove(k).and_then(|v| serde_json::from_str(&v).ok());
    Some(TaskStatus {
        task_id: id.to_owned(),
        status,
        progress: num(&h, "progress").min(100) as u8,
        current_epoch: num(&h, "current_epoch") as usize,
        total_epochs: num(&h, "total_epochs") as usize,
        attempts: num(&h, "attempts") as u32,
        metrics: json(&mut h, "metrics").unwrap_or_else(|| serde_json::json!({})),
        test_metrics: json(&mut h, "test_metrics"),
        tuning: json(&mut h, "tuning"),
        message: h.remove("message").unwrap_or_default(),
        model_id: h.remove("model_id"),
        error: h.remove("error"),
        error_kind: h.remove("error_kind"),
        created_at: h.remove("created_at").unwrap_or_default(),
        started_at: h.remove("started_at"),
        finished_at: h.remove("finished_at"),
    })
}

/// The fields a failure (or cancellation) sets.
fn failure_fields(f: &TaskFailure) -> Vec<(&'static str, String)> {
    let mut s = TaskStatus::pending(String::new(), 0);
    s.fail(f);
    let keep = ["status", "message", "error", "error_kind", "finished_at"];
    to_fields(&s).into_iter().filter(|(k, _)| keep.contains(k)).collect()
}

fn pairs(fields: &[(&'static str, String)]) -> Vec<String> {
    fields.iter().flat_map(|(k, v)| [(*k).to_owned(), v.clone()]).collect()
}

/// `[id, [field, value, …]]` entries of an XREADGROUP or XAUTOCLAIM reply, as (entry, task).
fn entries(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Value::Array(items) = v else { return out };
    for item in items {
        let Value::Array(parts) = item else { continue };
        let (Some(Value::BulkString(id)), Some(Value::Array(fields))) = (parts.first(), parts.get(1)) else {
            continue;
        };
        let task = fields.chunks(2).find_map(|kv| match kv {
            [Value::BulkString(k), Value::BulkString(v)] if k == b"task" => {
                Some(String::from_utf8_lossy(v).into_owned())
            }
            _ => None,
        });
        if let Some(task) = task {
            out.push((String::from_utf8_lossy(id).into_owned(), task));
        }
    }
    out
}

/// Create the consumer group (and the stream) if missing; a Redis that restarted empty
/// lost both, and reading a missing group fails with NOGROUP until then.
fn ensure_group(pool: &Pool, stream: &str, group: &str) -> redis::RedisResult<()> {
    let r: redis::RedisResult<()> =
        pool.run(|c| redis::cmd("XGROUP").arg("CREATE").arg(stream).arg(group).arg("0").arg("MKSTREAM").query(c));
    match r {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Take the next (entry, task id) for `worker`: first one whose worker went quiet for
/// `claim_after`, else a new one, waiting up to `wait`.
fn take(
    pool: &Pool,
    keys: &Keys,
    worker: &str,
    claim_after: Duration,
    wait: Duration,
) -> redis::RedisResult<Option<(String, String)>> {
    let (stream, group) = (&keys.stream, &keys.group);
    let idle_ms = claim_after.as_millis() as u64;
    let stale: redis::RedisResult<Value> = pool.run(|c| {
        redis::cmd("XAUTOCLAIM").arg(stream).arg(group).arg(worker).arg(idle_ms).arg("0-0").arg("COUNT").arg(1).query(c)
    });
    let stale = match stale {
        Err(e) if e.code() == Some("NOGROUP") => {
            ensure_group(pool, stream, group)?;
            return Ok(None);
        }
        r => r?,
    };
    if let Value::Array(parts) = &stale {
        if let Some(first) = parts.get(1).map(entries).and_then(|e| e.into_iter().next()) {
            return Ok(Some(first));
        }
    }
    let block_ms = wait.as_millis().max(1) as u64;
    let fresh: redis::RedisResult<Value> = pool.run_blocking(wait, |c| {
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(worker)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query(c)
    });
    let fresh = match fresh {
        Err(e) if e.code() == Some("NOGROUP") => {
            ensure_group(pool, stream, group)?;
            return Ok(None);
        }
        r => r?,
    };
    // [[stream, [entries…]]]
    let Value::Array(streams) = fresh else { return Ok(None) };
    Ok(streams.iter().find_map(|s| match s {
        Value::Array(kv) => kv.get(1).map(entries).and_then(|e| e.into_iter().next()),
        _ => None,
    }))
}

impl RedisQueue {
    /// A queue on `pool`; creates the stream and its consumer group when absent.
    pub fn new(pool: Pool, opts: RedisQueueOptions) -> Self {
        let scripts = Scripts {
            submit: Script::new(SUBMIT),
            start: Script::new(START),
            heartbeat: Script::new(HEARTBEAT),
            progress: Script::new(PROGRESS),
            finish: Script::new(FINISH),
            requeue: Script::new(REQUEUE),
        };
        let keys = Keys {
            stream: pool.key("tasks"),
            group: pool.key("workers"),
            unfinished: pool.key("unfinished"),
            task_prefix: pool.key("task:"),
        };
        Self {
            pool,
            keys: Arc::new(keys),
            opts,
            scripts: Arc::new(scripts),
            held: Mutex::default(),
            shutting_down: AtomicBool::new(false),
        }
    }

    fn stream(&self) -> String {
        self.keys.stream.clone()
    }
    fn group(&self) -> String {
        self.keys.group.clone()
    }
    fn unfinished_key(&self) -> String {
        self.keys.unfinished.clone()
    }
    fn task_key(&self, id: &str) -> String {
        self.keys.task(id)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Heartbeat `id` until `done`, cancelling on request or when the task was lost.
    fn heartbeat(&self, id: &str, worker: &str, entry: String, held: &Held) {
        let (pool, scripts) = (self.pool.clone(), self.scripts.clone());
        let (key, stream, group) = (self.task_key(id), self.stream(), self.group());
        let (attempt, cancel, done) = (held.attempt, held.cancel.clone(), held.done.clone());
        let every = (self.opts.claim_after / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let (task, worker) = (id.to_owned(), worker.to_owned());
        let spawned = std::thread::Builder::new().name(format!("heartbeat-{id}")).spawn(move || {
            let id = task;
            let mut warned = false;
            while !done.load(Ordering::SeqCst) {
                let r: redis::RedisResult<i64> = pool.run(|c| {
                    scripts
                        .heartbeat
                        .key(&key)
                        .key(&stream)
                        .arg(&group)
                        .arg(&worker)
                        .arg(&entry)
                        .arg(attempt)
                        .arg(super::now_rfc3339())
                        .invoke(c)
                });
                match r {
                    Ok(0) => warned = false,
                    Ok(1) => cancel.store(true, Ordering::SeqCst),
                    Ok(_) => {
                        tracing::warn!(task_id = %id, "the task was given to another worker; stopping");
                        cancel.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) if !warned => {
                        tracing::warn!(task_id = %id, error = %e, "heartbeat failed; training goes on");
                        warned = true;
                    }
                    Err(_) => {}
                }
                std::thread::sleep(every);
            }
        });
        if let Err(e) = spawned {
            tracing::error!(task_id = %id, error = %e, "cannot start the heartbeat thread");
        }
    }

    /// Drop `id` from the held tasks (stopping its heartbeat); its attempt, if held.
    fn release(&self, id: &str) -> Option<(u32, bool)> {
        self.held().remove(id).map(|h| {
            h.done.store(true, Ordering::SeqCst);
            (h.attempt, h.cancel.load(Ordering::SeqCst))
        })
    }

    async fn finish(
        &self,
        id: &str,
        attempt: Option<u32>,
        fields: Vec<(&'static str, String)>,
    ) -> Result<i64, QueueError> {
        let (scripts, keys) = (self.scripts.clone(), [self.task_key(id), self.unfinished_key(), self.stream()]);
        let args = (
            attempt.map(|a| a.to_string()).unwrap_or_default(),
            self.group(),
            self.opts.ttl.as_secs().max(1),
            id.to_owned(),
            pairs(&fields),
        );
        self.pool
            .call(move |p| {
                p.run(|c| {
                    scripts
                        .finish
                        .key(&keys[0])
                        .key(&keys[1])
                        .key(&keys[2])
                        .arg(&args.0)
                        .arg(&args.1)
                        .arg(args.2)
                        .arg(&args.3)
                        .arg(&args.4)
                        .invoke(c)
                })
            })
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl TaskQueue for RedisQueue {
    async fn submit(&self, spec: TaskSpec) -> Result<TaskStatus, QueueError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(QueueError::Full { limit: self.opts.max_queued });
        }
        let id = uuid::Uuid::new_v4().to_string();
        let status = TaskStatus::pending(id.clone(), spec.config.train_config.epochs);
        let mut fields = to_fields(&status);
        fields.push(("spec", serde_json::to_string(&spec).map_err(|e| backend(e.to_string()))?));
        let (scripts, keys) = (self.scripts.clone(), [self.task_key(&id), self.unfinished_key(), self.stream()]);
        let (max, task) = (self.opts.max_queued, id.clone());
        let ok: i64 = self
            .pool
            .call(move |p| {
                p.run(|c| {
                    scripts
                        .submit
                        .key(&keys[0])
                        .key(&keys[1])
                        .key(&keys[2])
                        .arg(max)
                        .arg(&task)
                        .arg(STREAM_MAXLEN)
                        .arg(pairs(&fields))
                        .invoke(c)
                })
            })
            .await
            .map_err(backend)?;
        if ok == 0 {
            return Err(QueueError::Full { limit: self.opts.max_queued });
        }
        Ok(status)
    }

    async fn claim(&self, worker: &str, wait: Duration) -> Result<Option<Claim>, QueueError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let (keys, scripts, opts, w) = (self.keys.clone(), self.scripts.clone(), self.opts, worker.to_owned());
        let started = self
            .pool
            .call(move |pool| {
                let Some((entry, task)) = take(pool, &keys, &w, opts.claim_after, wait)? else { return Ok(None) };
                let lost = failure_fields(&TaskFailure {
                    kind: "worker_lost".into(),
                    message: format!(
                        "worker lost: the task was delivered {} times and no worker finished it",
                        opts.max_attempts
                    ),
                });
                let r: Value = pool.run(|c| {
                    scripts
                        .start
                        .key(keys.task(&task))
                        .key(&keys.unfinished)
                        .key(&keys.stream)
                        .arg(&keys.group)
                        .arg(&entry)
                        .arg(&w)
                        .arg(super::now_rfc3339())
                        .arg(opts.max_attempts)
                        .arg(opts.ttl.as_secs().max(1))
                        .arg(&task)
                        .arg(pairs(&lost))
                        .invoke(c)
                })?;
                Ok(Some((entry, task, r)))
            })
            .await
            .map_err(backend)?;
        let Some((entry, task, reply)) = started else { return Ok(None) };
        let Value::Array(parts) = reply else { return Ok(None) };
        let attempt = match parts.first() {
            Some(Value::Int(a)) if *a > 0 => *a as u32,
            _ => {
                tracing::info!(task_id = %task, "skipped a finished or exhausted task");
                return Ok(None);
            }
        };
        let fields: HashMap<String, String> = match parts.get(1) {
            Some(v) => redis::from_redis_value(v.clone()).map_err(|e| backend(e.to_string()))?,
            None => HashMap::new(),
        };
        let cancelled = fields.contains_key("cancel");
        let spec: TaskSpec = match fields.get("spec").map(|s| serde_json::from_str(s)) {
            Some(Ok(spec)) => spec,
            _ => {
                let f =
                    TaskFailure { kind: "invalid_task".into(), message: "the task record has no readable spec".into() };
                self.finish(&task, Some(attempt), failure_fields(&f)).await?;
                return Ok(None);
            }
        };
        let mut status =
            from_fields(&task, fields).ok_or_else(|| backend(format!("task {task}: unreadable record")))?;
        status.start(attempt);
        let (scripts, key, message) = (self.scripts.clone(), self.task_key(&task), status.message.clone());
        let _ = self
            .pool
            .call(move |p| {
                p.run(|c| -> redis::RedisResult<i64> {
                    scripts.progress.key(&key).arg(attempt).arg(0).arg("message").arg(&message).invoke(c)
                })
            })
            .await;
        let held =
            Held { attempt, cancel: Arc::new(AtomicBool::new(cancelled)), done: Arc::new(AtomicBool::new(false)) };
        self.heartbeat(&task, worker, entry, &held);
        let cancel = held.cancel.clone();
        self.held().insert(task.clone(), held);
        Ok(Some(Claim { id: task, spec, attempt, cancel }))
    }

    async fn progress(&self, id: &str, p: Progress) -> Result<(), QueueError> {
        let Some(attempt) = self.held().get(id).map(|h| h.attempt) else { return Ok(()) };
        let mut s = TaskStatus::pending(id.to_owned(), p.total_epochs);
        s.advance(&p);
        let keep = ["message", "current_epoch", "total_epochs", "metrics", "tuning"];
        let fields: Vec<_> = to_fields(&s).into_iter().filter(|(k, _)| keep.contains(k)).collect();
        let (scripts, key, progress) = (self.scripts.clone(), self.task_key(id), s.progress);
        self.pool
            .call(move |pool| {
                pool.run(|c| -> redis::RedisResult<i64> {
                    scripts.progress.key(&key).arg(attempt).arg(progress).arg(pairs(&fields)).invoke(c)
                })
            })
            .await
            .map(drop)
            .map_err(backend)
    }

    async fn complete(&self, id: &str, c: Completion) -> Result<bool, QueueError> {
        let Some((attempt, _)) = self.release(id) else { return Ok(false) };
        let mut s = TaskStatus::pending(id.to_owned(), 0);
        s.complete(&c);
        let keep = ["status", "progress", "message", "model_id", "test_metrics", "tuning", "finished_at"];
        let mut fields = vec![("unless_cancelled", "1".to_owned())];
        fields.extend(to_fields(&s).into_iter().filter(|(k, _)| keep.contains(k)));
        match self.finish(id, Some(attempt), fields).await? {
            1 => Ok(true),
            3 => {
                // Cancelled while its model was being saved: the caller discards the model.
                let f = TaskFailure { kind: super::CANCELLED.into(), message: super::LATE_CANCEL.into() };
                self.finish(id, Some(attempt), failure_fields(&f)).await?;
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    async fn fail(&self, id: &str, f: TaskFailure) -> Result<(), QueueError> {
        let Some((attempt, _)) = self.release(id) else { return Ok(()) };
        if self.shutting_down.load(Ordering::SeqCst) && f.kind == super::CANCELLED {
            // Stopped by our shutdown, not by a cancel request: hand the task back.
            let (scripts, key, stream, group, task) =
                (self.scripts.clone(), self.task_key(id), self.stream(), self.group(), id.to_owned());
            let message = "Queued for training (requeued: its worker stopped)";
            let requeued: Result<i64, String> = self
                .pool
                .call(move |p| {
                    p.run(|c| {
                        scripts
                            .requeue
                            .key(&key)
                            .key(&stream)
                            .arg(&group)
                            .arg(attempt)
                            .arg(&task)
                            .arg(STREAM_MAXLEN)
                            .arg(message)
                            .invoke(c)
                    })
                })
                .await;
            match requeued {
                Ok(1) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(backend(e)),
            }
        }
        self.finish(id, Some(attempt), failure_fields(&f)).await.map(drop)
    }

    async fn cancel(&self, id: &str) -> Result<TaskStatus, QueueError> {
        if !valid_task_id(id) {
            return Err(QueueError::NotFound(id.to_owned()));
        }
        let f = TaskFailure { kind: super::CANCELLED.into(), message: "cancelled before it started".into() };
        let mut fields = vec![("cancel_if_running", "1".to_owned())];
        fields.extend(failure_fields(&f));
        match self.finish(id, None, fields).await? {
            -1 => return Err(QueueError::NotFound(id.to_owned())),
            2 => {
                // Ours: stop at once rather than at the next heartbeat.
                if let Some(h) = self.held().get(id) {
                    h.cancel.store(true, Ordering::SeqCst);
                }
            }
            _ => {}
        }
        self.get(id).await?.ok_or_else(|| QueueError::NotFound(id.to_owned()))
    }

    async fn get(&self, id: &str) -> Result<Option<TaskStatus>, QueueError> {
        if !valid_task_id(id) {
            return Ok(None);
        }
        let key = self.task_key(id);
        let fields: HashMap<String, String> =
            self.pool.call(move |p| p.run(|c| redis::cmd("HGETALL").arg(&key).query(c))).await.map_err(backend)?;
        Ok(if fields.is_empty() { None } else { from_fields(id, fields) })
    }

    async fn unfinished(&self) -> Result<usize, QueueError> {
        let key = self.unfinished_key();
        self.pool.call(move |p| p.run(|c| redis::cmd("SCARD").arg(&key).query(c))).await.map_err(backend)
    }

    async fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for h in self.held().values() {
            h.cancel.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_hash_fields() {
        let mut s = TaskStatus::pending("t-1".into(), 10);
        s.start(2);
        s.complete(&Completion {
            model_id: Some("m".into()),
            test_metrics: serde_json::json!({"accuracy": 0.5}),
            tuning: None,
        });
        let h: HashMap<String, String> = to_fields(&s).into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        assert_eq!(from_fields("t-1", h), Some(s));
        assert!(valid_task_id("0b0c5a52-4d5e-4c3f-9d43-9b1e1d6c2f10"));
        assert!(!valid_task_id("x:y") && !valid_task_id("") && !valid_task_id(&"a".repeat(65)));
    }
}
