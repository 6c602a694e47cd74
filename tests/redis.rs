//! `redis:KEY` datasets against a real `redis-server` started on a free loopback port
//! (persistence off) and stopped afterwards.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{fixture, run, stderr, trainer};

use common::redis::Redis;

fn sha_of(models: &std::path::Path, summary: &serde_json::Value) -> String {
    let dir = models.join(summary["model_id"].as_str().unwrap());
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("metadata.json")).unwrap()).unwrap();
    m["weights_sha256"].as_str().unwrap().to_owned()
}

fn train_redis(url: &str, models: &std::path::Path, data: &str, target: &str) -> Result<serde_json::Value, String> {
    let o = run(trainer()
        .env("REDIS_URL", url)
        .env("REDIS_TIMEOUT", "2")
        .args(["train", "--epochs", "3", "--json", "--target", target, "--data", data, "--models-dir"])
        .arg(models));
    if o.status.success() {
        Ok(common::last_json(&o))
    } else {
        Err(stderr(&o))
    }
}

#[test]
fn every_layout_gives_the_same_model_as_the_file() {
    let r = Redis::start(&[]);
    let models = tempfile::tempdir().unwrap();
    let esg = common::root().join("trainer/data/esg_ratings.csv").display().to_string();
    let from_file = train_redis(&r.url, models.path(), &esg, "esg_rating").unwrap();
    let want = sha_of(models.path(), &from_file);
    for layout in ["string", "list", "hash"] {
        let key = format!("esg:{layout}");
        let o = run(trainer().env("REDIS_URL", &r.url).args(["redis-put", &key, &esg, "--as", layout]));
        assert!(o.status.success(), "{}", stderr(&o));
        let s = train_redis(&r.url, models.path(), &format!("redis:{key}"), "esg_rating").unwrap();
        assert_eq!(sha_of(models.path(), &s), want, "layout {layout}");
        assert_eq!(s["test_metrics"], from_file["test_metrics"]);
    }
    // CSV text in a string key is detected and read as CSV.
    let mut con = r.con(&r.url);
    let _: () = redis::cmd("SET").arg("esg:csv").arg(std::fs::read(&esg).unwrap()).query(&mut con).unwrap();
    let s = train_redis(&r.url, models.path(), "redis:esg:csv", "esg_rating").unwrap();
    assert_eq!(sha_of(models.path(), &s), want);
}

#[test]
fn redis_failures_are_data_load_errors_naming_the_key() {
    let r = Redis::start(&[]);
    let models = tempfile::tempdir().unwrap();
    let e = train_redis(&r.url, models.path(), "redis:absent", "y").unwrap_err();
    assert!(e.contains("DataLoadError") && e.contains("redis key `absent`: no such key"), "{e}");
    let mut con = r.con(&r.url);
    let _: () = redis::cmd("SADD").arg("aset").arg("x").query(&mut con).unwrap();
    let e = train_redis(&r.url, models.path(), "redis:aset", "y").unwrap_err();
    assert!(e.contains("holds a set"), "{e}");
    let _: () = redis::cmd("SET").arg("junk").arg("{not json").query(&mut con).unwrap();
    let e = train_redis(&r.url, models.path(), "redis:junk", "y").unwrap_err();
    assert!(e.contains("invalid JSON"), "{e}");

    // Nothing listens: refused at once.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = train_redis(&format!("redis://127.0.0.1:{port}"), models.path(), "redis:k", "y").unwrap_err();
    assert!(e.contains("redis key `k`") && e.contains("cannot connect"), "{e}");

    // A peer that accepts and never answers: the timeout ends it, no hang.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("redis://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let start = Instant::now();
    let e = train_redis(&silent_url, models.path(), "redis:k", "y").unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    assert!(e.contains("redis key `k`"), "{e}");
    drop(silent);
    assert!(common::entries(models.path()).iter().all(|e| !e.starts_with("model_")));
}

#[test]
fn passwords_and_db_indices_come_from_the_url() {
    let r = Redis::start(&["--requirepass", "pw"]);
    let models = tempfile::tempdir().unwrap();
    let authed = format!("{}/3", r.url.replace("redis://", "redis://:pw@"));
    let o = run(trainer().env("REDIS_URL", &authed).args(["redis-put", "iris", &fixture("iris.csv"), "--as", "list"]));
    assert!(o.status.success(), "{}", stderr(&o));
    train_redis(&authed, models.path(), "redis:iris", "species").unwrap();
    let e = train_redis(&r.url, models.path(), "redis:iris", "species").unwrap_err();
    assert!(e.contains("redis key `iris`") && (e.contains("NOAUTH") || e.to_lowercase().contains("auth")), "{e}");
    assert!(!e.contains(":pw@"), "password leaked: {e}");
    // db 0 does not hold the key.
    let wrong_db = r.url.replace("redis://", "redis://:pw@");
    let e = train_redis(&wrong_db, models.path(), "redis:iris", "species").unwrap_err();
    assert!(e.contains("no such key"), "{e}");
}

#[test]
fn the_http_api_trains_from_redis() {
    let r = Redis::start(&[]);
    let o = run(trainer().env("REDIS_URL", &r.url).args(["redis-put", "datasets:iris", &fixture("iris.csv")]));
    assert!(o.status.success(), "{}", stderr(&o));
    let models = tempfile::tempdir().unwrap();
    let (mut child, base) =
        common::serve(trainer().env("REDIS_URL", &r.url), &["--models-dir", models.path().to_str().unwrap()]);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let body = serde_json::json!({"dataset_path": "redis:datasets:iris", "target_column": "species", "train_config": {"epochs": 5}});
    let mut res = agent
        .post(format!("{base}/api/ml/train"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap();
    let task: serde_json::Value = serde_json::from_str(&res.body_mut().read_to_string().unwrap()).unwrap();
    let start = Instant::now();
    let status = loop {
        let mut res =
            agent.get(format!("{base}/api/ml/train/status/{}", task["task_id"].as_str().unwrap())).call().unwrap();
        let st: serde_json::Value = serde_json::from_str(&res.body_mut().read_to_string().unwrap()).unwrap();
        if st["status"] == "completed" || st["status"] == "failed" {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(30));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status["status"], "completed", "{status}");
}

#[test]
fn the_server_reads_only_allowed_keys_and_never_echoes_values() {
    use redis::Commands;
    let r = Redis::start(&[]);
    let mut con = r.con(&r.url);
    let secret = "db_password=hunter2\nfoo";
    let _: () = con.set("secretcfg", secret).unwrap();
    let _: () = con.set("datasets:leak", secret).unwrap();
    let srv = common::server::Server::start_with(
        {
            let mut c = trainer();
            c.env("REDIS_URL", &r.url);
            c
        },
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        &[],
    );
    let body = |key: &str| serde_json::json!({"dataset_path": format!("redis:{key}"), "target_column": "zz"});
    let (s, v) = srv.json("POST", "/api/ml/train", Some(body("secretcfg")));
    assert_eq!((s, v["error"].as_str()), (422, Some("key_not_allowed")), "{v}");
    assert!(!v.to_string().contains("hunter2"));
    // An allowed key whose value is no table fails without echoing it.
    let st = srv.train(body("datasets:leak"));
    assert_eq!(st["status"], "failed");
    assert!(!st.to_string().contains("hunter2") && !st.to_string().contains("db_password"), "{st}");
}

#[test]
fn a_cancel_wins_over_a_completion_that_raced_it_in_the_shared_queue() {
    use trainer::queue::redis::{RedisQueue, RedisQueueOptions};
    use trainer::queue::{Completion, TaskQueue, TaskSpec, TaskState};
    use trainer::redis_pool::{Pool, RedisLink};
    let redis = Redis::start(&[]);
    let link = RedisLink { url: redis.url.clone(), prefix: "t:".into(), timeout: Duration::from_secs(2) };
    let q = RedisQueue::new(Pool::new(link).unwrap(), RedisQueueOptions::default());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let task = q.submit(TaskSpec::train(inference::config::TrainConfig::default())).await.unwrap();
        // The first claim creates the consumer group (as a worker's first poll does).
        let mut claim = None;
        for _ in 0..5 {
            claim = q.claim("w", Duration::from_millis(200)).await.unwrap();
            if claim.is_some() {
                break;
            }
        }
        let claim = claim.expect("a claim");
        assert_eq!(claim.id, task.task_id);
        // The client is told the running task is being cancelled; the worker finishes first.
        assert_eq!(q.cancel(&task.task_id).await.unwrap().status, TaskState::Running);
        let done = Completion {
            model_id: Some("model_2026_01_01_001".into()),
            test_metrics: serde_json::json!({}),
            tuning: None,
        };
        assert!(!q.complete(&task.task_id, done).await.unwrap(), "the worker must discard its model");
        let st = q.get(&task.task_id).await.unwrap().unwrap();
        assert_eq!((st.status, st.model_id, st.error_kind.as_deref()), (TaskState::Cancelled, None, Some("cancelled")));
    });
}

#[test]
fn dataset_keys_that_reach_the_deployments_own_keys_are_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let (models, data) = (dir.path().join("models"), dir.path().join("data"));
    let o = run(trainer()
        .env_remove("REDIS_URL")
        .args(["serve", "--port", "0", "--redis", "redis://127.0.0.1:1", "--redis-prefix", "datasets:"])
        .arg("--models-dir")
        .arg(&models)
        .arg("--data-dir")
        .arg(&data));
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("matches this deployment's own keys (e.g. datasets:task:x)"), "{e}");
}
