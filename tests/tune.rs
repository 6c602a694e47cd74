//! `trainer tune` and `POST /api/ml/tune`: the search's winner is a normal bundle recording
//! the search, the test split is used once, the same seed gives the same winner, and trials
//! spread over workers through Redis.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::redis::Redis;
use common::server::Server;
use common::{fixture, run, stderr, trainer};

fn tune(models: &std::path::Path, extra: &[&str]) -> Value {
    let o = run(trainer()
        .args([
            "tune",
            "--data",
            &fixture("iris.csv"),
            "--target",
            "species",
            "--epochs",
            "30",
            "--json",
            "--models-dir",
        ])
        .arg(models)
        .args(extra));
    assert!(o.status.success(), "{}", stderr(&o));
    common::last_json(&o)
}

fn metadata(dir: &str) -> Value {
    serde_json::from_slice(&std::fs::read(std::path::Path::new(dir).join("metadata.json")).unwrap()).unwrap()
}

#[test]
fn the_winner_is_a_bundle_that_records_its_search() {
    let models = tempfile::tempdir().unwrap();
    let s = tune(models.path(), &["--trials", "8", "--warmup-trials", "4"]);
    let dir = s["model_dir"].as_str().unwrap();
    let meta = metadata(dir);
    let t = &meta["tuning"];
    let trials = t["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 8);
    assert_eq!(s["trials"], 8);
    assert_eq!(t["options"]["trials"], 8);
    assert!(t["options"]["space"]["model_config"]["hidden_dims"]["width"]["log"].as_bool().unwrap());
    let pruned = trials.iter().filter(|r| r["state"] == "pruned").count();
    assert_eq!(s["pruned"], pruned);
    for r in trials.iter().filter(|r| r["state"] == "pruned") {
        let rungs = r["rung_losses"].as_array().unwrap();
        assert_eq!(r["epochs_run"], rungs.last().unwrap()["epoch"], "a pruned trial stops at its rung: {r}");
    }
    // The winner follows the one-standard-error rule (the default): the trial with the lowest
    // validation loss, unless the base config (trial 0) is within one standard error of it.
    // Its bundle was trained again with its config and the same seed: the same losses.
    let best = t["best_trial"].as_u64().unwrap() as usize;
    let winner = &trials[best];
    assert_eq!(winner["state"], "completed");
    let loss = |r: &Value| r["best_val_loss"].as_f64().unwrap();
    let completed: Vec<&Value> = trials.iter().filter(|r| r["state"] == "completed").collect();
    assert!(completed.iter().all(|r| r["best_val_loss_se"].as_f64().unwrap() > 0.0), "{completed:?}");
    let lowest = completed
        .iter()
        .min_by(|a, b| loss(a).total_cmp(&loss(b)).then(a["number"].as_u64().cmp(&b["number"].as_u64())))
        .unwrap();
    let min = loss(lowest);
    let se = lowest["best_val_loss_se"].as_f64().unwrap();
    // On small data a winner other than the base is checked against it over 3 folds of the
    // train and validation rows, by the same rule; with this seed the check runs.
    let check = &t["confirmation"];
    assert!(check.is_object(), "{t}");
    let d = &meta["dataset"];
    assert_eq!(check["rows"], d["train_rows"].as_u64().unwrap() + d["val_rows"].as_u64().unwrap());
    assert_eq!(check["folds"], 3);
    assert_eq!((&check["challenger"]["trial"], &check["base"]["trial"]), (&lowest["number"], &json!(0)));
    assert_eq!(check["base"]["folds"].as_array().unwrap().len(), 3);
    let (b, c) = (&check["base"], &check["challenger"]);
    let base_within = b["val_loss"].as_f64().unwrap() <= c["val_loss"].as_f64().unwrap() + c["se"].as_f64().unwrap();
    assert!(loss(&trials[0]) > min + se, "the held-out rule shipped the lowest, so the check ran: {t}");
    assert_eq!(check["shipped"], best);
    if base_within {
        assert_eq!((best, t["lowest_trial"].as_u64()), (0, lowest["number"].as_u64()), "{t}");
    } else {
        assert_eq!((best as u64, t["lowest_trial"].as_u64()), (lowest["number"].as_u64().unwrap(), None), "{t}");
    }
    assert!(t["selected_by"].as_str().unwrap().starts_with("one_se"), "{t}");
    assert_eq!(s["selected_by"], t["selected_by"]);
    // `--selection lowest` runs the same trials and ships the lowest, unchecked; so does the
    // rule without the check (`--confirm-folds 0`).
    let other = tempfile::tempdir().unwrap();
    let l = tune(other.path(), &["--trials", "8", "--warmup-trials", "4", "--selection", "lowest"]);
    assert_eq!(l["best_trial"], lowest["number"]);
    assert!(l["lowest_trial"].is_null());
    assert!(metadata(l["model_dir"].as_str().unwrap())["tuning"]["confirmation"].is_null());
    let u = tune(other.path(), &["--trials", "8", "--warmup-trials", "4", "--confirm-folds", "0"]);
    assert_eq!(u["best_trial"], lowest["number"]);
    assert!(u["selected_by"].as_str().unwrap().starts_with("one_se: "), "{u}");
    assert!(metadata(u["model_dir"].as_str().unwrap())["tuning"]["confirmation"].is_null());
    let min = loss(winner);
    let history_best = meta["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["val_loss"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(history_best, min);
    let p = &winner["params"];
    assert_eq!(meta["config"]["model_config"]["hidden_dims"], p["hidden_dims"]);
    assert_eq!(meta["config"]["train_config"]["learning_rate"], p["learning_rate"]);
    assert_eq!(s["best_params"], *p);
    assert!(meta["test_metrics"]["accuracy"].as_f64().unwrap() > 0.5);
    // The table and the plot beside the bundle.
    let csv = std::fs::read_to_string(std::path::Path::new(dir).join("tuning.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9);
    assert!(csv.starts_with("number,state,best_val_loss,best_val_loss_se,epochs_run,seconds,hidden_dims"));
    let svg = std::fs::read_to_string(std::path::Path::new(dir).join("tuning.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("best so far"));
    // A bundle like any other: predictions load it.
    let o = run(trainer().args(["predict", "--model", dir, "--features", "5.1,3.5,1.4,0.2", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn the_same_seed_gives_the_same_winner_and_threads_run_trials_at_once() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = ["--trials", "6", "--warmup-trials", "3", "--seed", "7"];
    let (x, y) = (tune(a.path(), &args), tune(b.path(), &args));
    assert_eq!(x["best_trial"], y["best_trial"]);
    assert_eq!(x["best_params"], y["best_params"]);
    let (mx, my) = (metadata(x["model_dir"].as_str().unwrap()), metadata(y["model_dir"].as_str().unwrap()));
    assert_eq!(mx["weights_sha256"], my["weights_sha256"]);
    let strip = |m: &Value| {
        let mut t = m["tuning"]["trials"].clone();
        for r in t.as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("seconds");
        }
        t
    };
    assert_eq!(strip(&mx), strip(&my), "every trial is the same");
    let c = tempfile::tempdir().unwrap();
    let p = tune(c.path(), &["--trials", "6", "--parallel", "2", "--sampler", "random", "--no-pruning"]);
    assert_eq!((p["trials"].as_u64(), p["pruned"].as_u64()), (Some(6), Some(0)));
    // A space file narrows the search (without the base config as trial 0); a bad one is a
    // typed config error.
    let space = c.path().join("space.json");
    std::fs::write(&space, r#"{"model_config": {"hidden_dims": {"depth": {"low": 1, "high": 1}, "width": {"low": 8, "high": 8}}, "activation": null}}"#).unwrap();
    let s = tune(c.path(), &["--trials", "3", "--no-base-trial", "--space", space.to_str().unwrap()]);
    assert_eq!(s["best_params"]["hidden_dims"], json!([8]));
    assert!(s["best_params"].get("activation").is_none());
    std::fs::write(&space, r#"{"model_config": {"layers": 3}}"#).unwrap();
    let o = run(trainer().args(["tune", "--trials", "2", "--space", space.to_str().unwrap()]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown field `layers`"), "{}", stderr(&o));
}

#[test]
fn the_http_api_tunes_like_it_trains() {
    let s = Server::start(&["--max-trials", "20"]);
    let body = json!({"dataset_path": "iris.csv", "target_column": "species", "train_config": {"epochs": 30},
        "tune": {"trials": 5, "warmup_trials": 2, "selection": "lowest"}});
    let (code, r) = s.json("POST", "/api/ml/tune", Some(body.clone()));
    assert_eq!(code, 200, "{r}");
    let st = s.wait(r["task_id"].as_str().unwrap());
    assert_eq!(st["status"], "completed", "{st}");
    assert_eq!(st["tuning"]["trials_done"], 5);
    assert!(st["tuning"]["best_val_loss"].as_f64().unwrap() > 0.0);
    let model = st["model_id"].as_str().unwrap();
    let (_, m) = s.json("GET", &format!("/api/ml/models/{model}"), None);
    assert_eq!(m["tuning"]["trials"].as_array().unwrap().len(), 5, "{m}");
    // The finished status names the shipped winner, chosen as the body asked.
    assert_eq!(m["tuning"]["options"]["selection"], "lowest", "{m}");
    assert_eq!(
        (&st["tuning"]["best_trial"], &st["tuning"]["selected_by"]),
        (&m["tuning"]["best_trial"], &m["tuning"]["selected_by"])
    );
    assert_eq!(st["tuning"]["selected_by"], "the lowest validation loss");
    assert!(m["tuning"]["confirmation"].is_null(), "`lowest` ships unchecked: {m}");
    // With the default rule the worker's search may run the k-fold check; the status then
    // names the winner it kept, as the bundle does.
    let mut checked = body.clone();
    checked["tune"] = json!({"trials": 8, "warmup_trials": 4});
    let (code, r) = s.json("POST", "/api/ml/tune", Some(checked));
    assert_eq!(code, 200, "{r}");
    let st = s.wait(r["task_id"].as_str().unwrap());
    assert_eq!(st["status"], "completed", "{st}");
    let (_, m) = s.json("GET", &format!("/api/ml/models/{}", st["model_id"].as_str().unwrap()), None);
    let t = &m["tuning"];
    assert_eq!((&st["tuning"]["best_trial"], &st["tuning"]["lowest_trial"]), (&t["best_trial"], &t["lowest_trial"]));
    assert_eq!(st["tuning"]["selected_by"], t["selected_by"]);
    assert_eq!(t["confirmation"]["shipped"], t["best_trial"], "with these trials the check runs: {t}");
    // The server's limits hold.
    let mut big = body.clone();
    big["tune"]["trials"] = json!(21);
    let (code, e) = s.json("POST", "/api/ml/tune", Some(big));
    assert_eq!((code, e["error"].as_str()), (422, Some("invalid_config")), "{e}");
    assert!(e["message"].as_str().unwrap().contains("tune.trials"), "{e}");
    let mut bad = body.clone();
    bad["tune"]["confirm"] = json!({"folds": 21});
    let (code, e) = s.json("POST", "/api/ml/tune", Some(bad));
    assert_eq!(code, 422, "{e}");
    assert!(e["message"].as_str().unwrap().contains("tune.confirm.folds"), "{e}");
    for (field, value) in [("sampler", "grid"), ("selection", "median")] {
        let mut bad = body.clone();
        bad["tune"][field] = json!(value);
        let (code, e) = s.json("POST", "/api/ml/tune", Some(bad));
        assert_eq!(code, 422, "{field}: {e}");
    }
}

#[test]
fn trials_spread_over_workers_through_redis() {
    let redis = Redis::start(&[]);
    let data = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("iris.csv"), data.path().join("iris.csv")).unwrap();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let models = tempfile::tempdir().unwrap();
            let mut child = trainer()
                .args(["worker", "--redis", &redis.url, "--models-dir"])
                .arg(models.path())
                .arg("--data-dir")
                .arg(data.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
            assert!(line.contains("ready"), "{line}");
            (child, models)
        })
        .collect();
    let models = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let o = run(trainer()
        .current_dir(data.path())
        .args(["tune", "--data", "iris.csv", "--target", "species", "--epochs", "30", "--trials", "8"])
        .args(["--warmup-trials", "4", "--parallel", "2", "--json", "--redis", &redis.url, "--models-dir"])
        .arg(models.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(start.elapsed() < Duration::from_secs(120));
    let s = common::last_json(&o);
    assert_eq!(s["trials"], 8);
    let model = s["model_id"].as_str().unwrap();
    assert!(model.starts_with("model_"), "{s}");
    // The winner is in the shared store, with the search in its metadata.
    let api = Server::start(&["--redis", &redis.url, "--workers", "0"]);
    let (code, m) = api.json("GET", &format!("/api/ml/models/{model}"), None);
    assert_eq!(code, 200, "{m}");
    let trials = m["tuning"]["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 8);
    assert!(trials.iter().all(|t| t["params"]["hidden_dims"].is_array()), "{trials:?}");
    // The workers' records keep each completed trial's standard error, which the rule needs.
    let completed: Vec<&Value> = trials.iter().filter(|t| t["state"] == "completed").collect();
    assert!(
        !completed.is_empty() && completed.iter().all(|t| t["best_val_loss_se"].as_f64().is_some_and(|se| se > 0.0)),
        "{trials:?}"
    );
    assert!(m["tuning"]["selected_by"].as_str().is_some_and(|w| !w.contains("unknown")), "{m}");
    assert_eq!(m["tuning"]["best_trial"], s["best_trial"]);
    // The worker that trained the winner ran the k-fold check when the held-out rule picked a
    // challenger (which trials run depends on the workers' timing), and the tuner reports it.
    assert_eq!(m["tuning"]["selected_by"], s["selected_by"]);
    match m["tuning"]["confirmation"].as_object() {
        Some(c) => assert_eq!(c["shipped"], s["best_trial"], "{m}"),
        None => assert_eq!(s["best_trial"], 0, "{m}"),
    }
    let (_, list) = api.json("GET", "/api/ml/models", None);
    assert_eq!(list.as_array().unwrap().len(), 1, "trials publish no models: {list}");
    for (mut c, _) in workers {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[test]
fn an_interrupted_distributed_search_cancels_its_queued_trials() {
    let redis = Redis::start(&[]);
    let data = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("iris.csv"), data.path().join("iris.csv")).unwrap();
    let models = tempfile::tempdir().unwrap();
    // No worker: the trial tasks stay pending until the search is interrupted.
    let mut child = trainer()
        .current_dir(data.path())
        .args(["tune", "--data", "iris.csv", "--target", "species", "--trials", "6", "--parallel", "3"])
        .args(["--redis", &redis.url, "--models-dir"])
        .arg(models.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("searching on") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "tune ended before searching");
    }
    let mut con = redis.con(&redis.url);
    let queued =
        || -> usize { redis::cmd("SCARD").arg("trainer:unfinished").query(&mut redis.con(&redis.url)).unwrap() };
    let start = Instant::now();
    while queued() < 3 {
        assert!(start.elapsed() < Duration::from_secs(10), "the trials were never queued");
        std::thread::sleep(Duration::from_millis(50));
    }
    let int = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(int.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(status.code(), Some(5), "{rest}");
    assert!(rest.contains("interrupted; 3 task(s) in flight cancelled"), "{rest}");
    let left: usize = redis::cmd("SCARD").arg("trainer:unfinished").query(&mut con).unwrap();
    assert_eq!(left, 0, "no trial is left for workers to run for nobody");
}

use trainer::error::QueueError;
use trainer::queue::{Claim, Completion, Progress, TaskFailure, TaskQueue, TaskSpec, TaskStatus};

/// The in-process queue, keeping every progress report a worker sends.
struct Recording {
    inner: trainer::queue::local::LocalQueue,
    reports: std::sync::Mutex<Vec<Progress>>,
}

#[async_trait::async_trait]
impl TaskQueue for Recording {
    async fn submit(&self, spec: TaskSpec) -> Result<TaskStatus, QueueError> {
        self.inner.submit(spec).await
    }
    async fn claim(&self, worker: &str, wait: Duration) -> Result<Option<Claim>, QueueError> {
        self.inner.claim(worker, wait).await
    }
    async fn progress(&self, id: &str, p: Progress) -> Result<(), QueueError> {
        self.reports.lock().unwrap().push(p.clone());
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
        self.inner.get(id).await
    }
    async fn unfinished(&self) -> Result<usize, QueueError> {
        self.inner.unfinished().await
    }
    async fn shut_down(&self) {
        self.inner.shut_down().await
    }
}

#[test]
fn a_tune_task_s_status_follows_its_stages_through_the_check_and_the_winner_s_training() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use trainer::queue::Job;

    let models = tempfile::tempdir().unwrap();
    let queue = Arc::new(Recording {
        inner: trainer::queue::local::LocalQueue::new(None, Default::default()).unwrap(),
        reports: Default::default(),
    });
    let store = trainer::store::fs::FsStore::open_dir(models.path(), trainer::store::fs::FsOptions::default()).unwrap();
    let config = serde_json::from_value(json!({"dataset_path": fixture("iris.csv"), "target_column": "species",
        "train_config": {"epochs": 30}}))
    .unwrap();
    // The trials of the HTTP test above, with which the k-fold check runs.
    let options = serde_json::from_value(json!({"trials": 8, "warmup_trials": 4})).unwrap();
    let ctx = trainer::worker::WorkerContext {
        queue: queue.clone(),
        store: Arc::new(store),
        run: trainer::pipeline::RunOptions { data: Default::default(), save_test_rows: false, save_split: false },
        caps: Default::default(),
        device: None,
        redis: None,
        on_finished: Arc::new(|_| {}),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let status = rt.block_on(async {
        let task = queue.submit(TaskSpec { config, job: Job::Tune { options: Box::new(options) } }).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let worker = tokio::spawn(trainer::worker::run(ctx, "w".into(), stop.clone()));
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            let s = queue.get(&task.task_id).await.unwrap().unwrap();
            if s.status.is_finished() || Instant::now() > deadline {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        worker.await.unwrap();
        status
    });
    assert_eq!(serde_json::to_value(status.status).unwrap(), "completed", "{status:?}");
    assert_eq!(status.tuning.as_ref().unwrap()["stage"], "finished", "{status:?}");
    let reports = queue.reports.lock().unwrap();
    let stages: Vec<String> =
        reports.iter().map(|p| p.tuning.as_ref().unwrap()["stage"].as_str().unwrap().to_owned()).collect();
    let rank = |s: &str| ["searching", "checking", "training_winner"].iter().position(|x| *x == s).unwrap();
    assert!(stages.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])), "stages go forward: {stages:?}");
    assert_eq!(stages.iter().filter(|s| *s == "searching").count(), 8, "one report per trial: {stages:?}");
    let checking: Vec<_> = reports.iter().filter(|p| p.tuning.as_ref().unwrap()["stage"] == "checking").collect();
    assert_eq!(checking.len(), 1, "{stages:?}");
    assert!(checking[0].message.contains("checking on 3 folds"), "{}", checking[0].message);
    // The winner's training reports its epochs, naming the trial the check kept.
    let last = reports.last().unwrap();
    let shipped = &status.tuning.as_ref().unwrap()["best_trial"];
    assert_eq!(&last.tuning.as_ref().unwrap()["best_trial"], shipped);
    assert!(last.current_epoch > 0 && last.message.contains("training the winner"), "{}", last.message);
    assert!(last.message.contains(&format!("(trial {shipped})")), "{}", last.message);
}
