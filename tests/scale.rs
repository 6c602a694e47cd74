//! Scale-out through Redis: servers and workers sharing tasks, status, model ids and models
//! through a real `redis-server` on a free loopback port (started and stopped here).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::redis::Redis;
use common::server::Server;
use common::trainer;

const KEY: &str = "scale-test-key";

/// A `trainer worker` on the shared queue, killed (SIGKILL) on drop.
struct Worker {
    child: Child,
    _models: tempfile::TempDir,
}

impl Worker {
    fn start(redis: &str, extra: &[&str]) -> Worker {
        let models = tempfile::tempdir().unwrap();
        // Dataset paths resolve against each worker's own data dir.
        std::fs::create_dir_all(models.path().join("data")).unwrap();
        std::fs::copy(common::fixture("iris.csv"), models.path().join("data/iris.csv")).unwrap();
        let mut child = trainer()
            .args(["worker", "--redis", redis, "--models-dir"])
            .arg(models.path())
            .arg("--data-dir")
            .arg(models.path().join("data"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("trainer worker");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("worker ") && line.trim_end().ends_with(" ready"), "bad first line {line:?}");
        Worker { child, _models: models }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shared_server(redis: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--redis", redis, "--api-key", KEY, "--claim-after", "2"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn submit(s: &Server, body: Value) -> String {
    let (code, r) = s.call("POST", "/api/ml/train", Some(&body.to_string()), &auth());
    assert_eq!(code, 200, "{r}");
    serde_json::from_str::<Value>(&r).unwrap()["task_id"].as_str().unwrap().to_owned()
}

fn auth() -> [(&'static str, &'static str); 2] {
    [("content-type", "application/json"), ("authorization", "Bearer scale-test-key")]
}

fn status(s: &Server, task: &str) -> Value {
    s.json("GET", &format!("/api/ml/train/status/{task}"), None).1
}

/// Poll `task` on `s` until `done` holds for its record.
fn wait_for(s: &Server, task: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let st = status(s, task);
        if done(&st) {
            return st;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting on {task}: {st}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finished(st: &Value) -> bool {
    ["completed", "failed", "cancelled"].contains(&st["status"].as_str().unwrap_or(""))
}

fn model_ids(s: &Server) -> Vec<String> {
    let (code, list) = s.json("GET", "/api/ml/models?limit=1000", None);
    assert_eq!(code, 200, "{list}");
    list.as_array().unwrap().iter().map(|m| m["model_id"].as_str().unwrap().to_owned()).collect()
}

const ROW: &str = r#"{"data": {"features": [5.1, 3.5, 1.4, 0.2]}, "model_id": "MODEL"}"#;

/// The embedded dataset for `epochs` epochs, without early stopping (a few seconds' work).
fn esg(epochs: usize) -> Value {
    json!({"target_column": "esg_rating", "train_config": {"epochs": epochs, "patience": 0}})
}

fn iris(epochs: usize) -> Value {
    json!({"dataset_path": "iris.csv", "target_column": "species", "train_config": {"epochs": epochs}})
}

#[test]
fn servers_and_workers_share_tasks_models_and_ids() {
    let redis = Redis::start(&[]);
    let (a, b) = (shared_server(&redis.url, &["--workers", "0"]), shared_server(&redis.url, &["--workers", "0"]));
    let _w1 = Worker::start(&redis.url, &["--claim-after", "2"]);
    let _w2 = Worker::start(&redis.url, &["--claim-after", "2"]);

    // Train via A, poll via B, predict via B with the new model.
    let task = submit(&a, iris(5));
    let st = wait_for(&b, &task, 60, finished);
    assert_eq!(st["status"], "completed", "{st}");
    assert_eq!(st["attempts"], 1);
    let model = st["model_id"].as_str().unwrap().to_owned();
    let (code, pred) =
        b.json("POST", "/api/ml/predict", Some(serde_json::from_str(&ROW.replace("MODEL", &model)).unwrap()));
    assert_eq!(code, 200, "{pred}");
    assert_eq!(pred["model_id"], model.as_str());
    let (code, a_pred) =
        a.json("POST", "/api/ml/predict", Some(serde_json::from_str(&ROW.replace("MODEL", &model)).unwrap()));
    assert_eq!((code, &a_pred), (200, &pred), "both servers answer the same");
    // B's copy is the bundle A's worker published, byte for byte.
    let (_, bundle_b) = b.bytes(&format!("/api/ml/models/{model}/bundle"));
    let (_, bundle_a) = a.bytes(&format!("/api/ml/models/{model}/bundle"));
    assert!(!bundle_b.is_empty() && bundle_a == bundle_b);

    // 20 concurrent submissions over both servers: ids unique, every task completes once.
    let tasks: Vec<String> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                sc.spawn({
                    let s = if i % 2 == 0 { &a } else { &b };
                    move || submit(s, iris(1))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ids = BTreeSet::new();
    for t in &tasks {
        let st = wait_for(&a, t, 120, finished);
        assert_eq!(st["status"], "completed", "{st}");
        assert!(ids.insert(st["model_id"].as_str().unwrap().to_owned()), "duplicate model id in {st}");
    }
    assert_eq!(ids.len(), 20);
    let listed: BTreeSet<String> = model_ids(&b).into_iter().collect();
    assert_eq!(listed.len(), 21);
    assert!(ids.iter().all(|i| listed.contains(i)) && listed.contains(&model));

    // Deleting via A removes the model everywhere (B re-checks cached models within a second).
    let (code, _) = a.call("DELETE", &format!("/api/ml/models/{model}"), None, &auth());
    assert_eq!(code, 200);
    std::thread::sleep(Duration::from_millis(1200));
    let (code, err) =
        b.json("POST", "/api/ml/predict", Some(serde_json::from_str(&ROW.replace("MODEL", &model)).unwrap()));
    assert_eq!((code, err["error"].as_str()), (404, Some("model_not_found")), "{err}");
    assert_eq!(model_ids(&a).len(), 20);

    // Cancel reaches the worker that holds the task.
    let long = submit(&b, esg(1000));
    wait_for(&a, &long, 30, |st| st["status"] == "running" && st["current_epoch"].as_u64().unwrap_or(0) >= 1);
    let (code, _) = a.call("DELETE", &format!("/api/ml/train/{long}"), None, &auth());
    assert_eq!(code, 200);
    let st = wait_for(&b, &long, 20, finished);
    assert_eq!((st["status"].as_str(), st["error_kind"].as_str()), (Some("cancelled"), Some("cancelled")), "{st}");
    assert_eq!(model_ids(&a).len(), 20, "a cancelled task publishes nothing");
}

#[test]
fn a_killed_worker_s_task_is_taken_over_and_completes_once() {
    let redis = Redis::start(&[]);
    let api = shared_server(&redis.url, &["--workers", "0"]);
    let w1 = Worker::start(&redis.url, &["--claim-after", "2"]);
    let body = esg(400);
    let task = submit(&api, body.clone());
    wait_for(&api, &task, 30, |st| st["status"] == "running" && st["current_epoch"].as_u64().unwrap_or(0) >= 2);
    w1.kill();
    let w2 = Worker::start(&redis.url, &["--claim-after", "2"]);
    let st = wait_for(&api, &task, 120, finished);
    assert_eq!(st["status"], "completed", "{st}");
    assert_eq!(st["attempts"], 2, "the status shows the second delivery: {st}");
    assert_eq!(model_ids(&api), [st["model_id"].as_str().unwrap()], "exactly one model for the task");
    w2.kill();

    // A worker stopped gracefully (SIGTERM) hands its task back at once; that does not count
    // as an attempt.
    let task = submit(&api, body.clone());
    let w = Worker::start(&redis.url, &["--claim-after", "30"]);
    wait_for(&api, &task, 30, |st| st["status"] == "running");
    let term = std::process::Command::new("kill").args(["-TERM", &w.child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let st = wait_for(&api, &task, 20, |st| st["status"] == "pending");
    assert!(st["message"].as_str().unwrap().contains("requeued"), "{st}");
    let w = Worker::start(&redis.url, &["--claim-after", "30"]);
    let st = wait_for(&api, &task, 60, finished);
    assert_eq!((st["status"].as_str(), st["attempts"].as_u64()), (Some("completed"), Some(1)), "{st}");
    w.kill();

    // Past --max-attempts the task fails as worker_lost.
    let task = submit(&api, body);
    let w3 = Worker::start(&redis.url, &["--claim-after", "2"]);
    wait_for(&api, &task, 30, |st| st["status"] == "running");
    w3.kill();
    let _w4 = Worker::start(&redis.url, &["--claim-after", "2", "--max-attempts", "1"]);
    let st = wait_for(&api, &task, 30, finished);
    assert_eq!((st["status"].as_str(), st["error_kind"].as_str()), (Some("failed"), Some("worker_lost")), "{st}");
    assert_eq!(st["attempts"], 1);
}

#[test]
fn pooled_connections_outlive_a_redis_restart_without_a_failed_request() {
    let mut redis = Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let api = shared_server(&redis.url, &["--workers", "0", "--redis-timeout", "1"]);
    let task = submit(&api, iris(3));
    // Several calls at once leave several idle connections in the pool, then Redis restarts:
    // each first use finds its connection dropped, which must not reach the client as a 503.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| assert_eq!(api.json("GET", &format!("/api/ml/train/status/{task}"), None).0, 200));
        }
    });
    redis.restart();
    std::thread::sleep(std::time::Duration::from_millis(300));
    for _ in 0..6 {
        let (code, v) = api.json("GET", &format!("/api/ml/train/status/{task}"), None);
        assert_eq!(code, 200, "{v}");
    }
}

#[test]
fn tasks_and_records_survive_restarts_and_an_outage_fails_nothing_silently() {
    let mut redis = Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let api = shared_server(&redis.url, &["--workers", "0", "--redis-timeout", "1"]);
    // Queued with no worker yet, then Redis restarts: the tasks are still there and run.
    let queued: Vec<String> = (0..2).map(|_| submit(&api, iris(3))).collect();
    redis.restart();
    let worker = Worker::start(&redis.url, &["--claim-after", "2", "--redis-timeout", "1"]);
    for t in &queued {
        assert_eq!(wait_for(&api, t, 60, finished)["status"], "completed");
    }
    // A restarted server still answers for old tasks.
    let (models, data) = api.kill();
    let api = Server::start_in(
        models,
        data,
        &["--redis", &redis.url, "--workers", "0", "--api-key", KEY, "--redis-timeout", "1"],
    );
    let old = status(&api, &queued[0]);
    assert_eq!(old["status"], "completed", "{old}");
    let model = old["model_id"].as_str().unwrap().to_owned();
    let row: Value = serde_json::from_str(&ROW.replace("MODEL", &model)).unwrap();
    let (code, before) = api.json("POST", "/api/ml/predict", Some(row.clone()));
    assert_eq!(code, 200, "{before}");

    // Redis goes away during a training: the server keeps answering health and cached
    // predictions, status reads fail with a typed 503, and when Redis is back the task ends.
    let long = submit(&api, esg(300));
    wait_for(&api, &long, 30, |st| st["status"] == "running");
    redis.stop();
    assert_eq!(api.json("GET", "/health", None).0, 200);
    let (code, during) = api.json("POST", "/api/ml/predict", Some(row.clone()));
    assert_eq!((code, &during), (200, &before), "cached models keep serving");
    let (code, err) = api.json("GET", &format!("/api/ml/train/status/{long}"), None);
    assert_eq!((code, err["error"].as_str()), (503, Some("queue_unavailable")), "{err}");
    let (code, err) = api.json("GET", "/api/ml/models", None);
    assert_eq!((code, err["error"].as_str()), (503, Some("store_unavailable")), "{err}");
    // Where the store lives is the server's log's business, not an anonymous client's.
    let message = err["message"].as_str().unwrap();
    assert!(!message.contains("127.0.0.1") && !message.contains("redis://"), "{err}");
    std::thread::sleep(Duration::from_secs(2));
    redis.restart();
    let st = wait_for(&api, &long, 120, finished);
    assert_eq!(st["status"], "completed", "{st}");
    let ids = model_ids(&api);
    assert_eq!(ids.iter().filter(|i| **i == st["model_id"].as_str().unwrap()).count(), 1);
    assert_eq!(ids.len(), 3, "one model per task: {ids:?}");
    drop(worker);
}

#[test]
fn a_deployment_keeps_one_model_store_and_ids_never_repeat() {
    for (store, other) in [("dir", "redis"), ("redis", "dir")] {
        let redis = Redis::start(&[]);
        let srv = Server::start(&["--redis", &redis.url, "--model-store", store]);
        let first = srv.train(esg(2));
        let id1 = first["model_id"].as_str().unwrap().to_owned();
        // The id counter is lost (evicted alone, or with Redis's data): the next id is still
        // new, not one a model already has (a dir's save would fail after the training; Redis
        // would replace the model).
        let date = &id1["model_".len()..id1.len() - 4];
        let mut con = redis.con(&redis.url);
        let _: () = redis::cmd("DEL").arg(format!("trainer:model_seq:{date}")).query(&mut con).unwrap();
        let second = srv.train(esg(2));
        assert_eq!(second["status"], "completed", "{store}: {second}");
        let id2 = second["model_id"].as_str().unwrap().to_owned();
        assert!(id2 > id1, "{store}: {id1} then {id2}");
        assert_eq!(model_ids(&srv), vec![id2, id1], "{store}");
        // A process started with the other store would publish where this deployment never looks.
        let models = tempfile::tempdir().unwrap();
        let o = common::run(
            trainer()
                .args(["worker", "--redis", &redis.url, "--model-store", other, "--models-dir"])
                .arg(models.path()),
        );
        let e = common::stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{store}: {e}");
        assert!(e.contains(&format!("this deployment keeps its models in `{store}`")), "{e}");
        assert!(e.contains(&format!("Start it with --model-store {store}")), "{e}");
    }
}
