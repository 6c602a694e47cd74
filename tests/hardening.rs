//! `trainer serve` against hostile or careless clients, over real sockets on 127.0.0.1: each
//! test is one defect of the hardening issue that once existed (auth, confinement, bounded
//! work, slow clients, task limits and cancel, unsafe files, class caps, pagination, the
//! task journal, echo limits).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::server::Server;
use common::{run, stderr, trainer};
use serde_json::{json, Value};

fn iris() -> Value {
    json!({"dataset_path": "iris.csv", "target_column": "species", "train_config": {"epochs": 2}})
}

#[test]
fn unsafe_auth_settings_refuse_to_start() {
    for (args, env, needle) in [
        (vec!["--api-key", ""], None, "API key is empty"),
        (vec![], Some(""), "API key is empty"),
        (vec!["--host", "0.0.0.0"], None, "without --api-key"),
    ] {
        let mut cmd = trainer();
        if let Some(v) = env {
            cmd.env("TRAINER_API_KEY", v);
        }
        let d = tempfile::tempdir().unwrap();
        let o = run(cmd
            .args(["serve", "--port", "0", "--models-dir"])
            .arg(d.path())
            .args(["--data-dir"])
            .arg(d.path())
            .args(&args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{}", stderr(&o));
    }
}

#[test]
fn auth_is_checked_before_the_body_and_the_scheme_is_case_insensitive() {
    let srv = Server::start(&["--api-key", "k3y"]);
    // No key and a malformed body: 401, not a schema error.
    let (s, t) = srv.call("POST", "/api/ml/train", Some("{not json"), &[("content-type", "application/json")]);
    assert_eq!(s, 401, "{t}");
    let (s, _) = srv.call("DELETE", "/api/ml/train/whatever", None, &[]);
    assert_eq!(s, 401);
    let (s, t) = srv.call(
        "POST",
        "/api/ml/train",
        Some(&iris().to_string()),
        &[("content-type", "application/json"), ("authorization", "bearer k3y")],
    );
    assert_eq!(s, 200, "{t}");
    let (s, _) = srv.call("DELETE", "/api/ml/models/x", None, &[("authorization", "Bearer k3y-longer")]);
    assert_eq!(s, 401);
}

#[test]
fn only_the_data_dir_is_readable_and_failures_name_no_server_paths() {
    let srv = Server::start(&[]);
    let data = srv.data.path().to_str().unwrap().to_owned();
    for path in ["../etc/passwd", "/etc/passwd", "missing.csv"] {
        let (s, v) = srv.json("POST", "/api/ml/train", Some(json!({"dataset_path": path, "target_column": "y"})));
        assert_eq!((s, v["error"].as_str()), (422, Some("invalid_dataset_path")), "{path}: {v}");
        assert!(!v["message"].as_str().unwrap().contains(&data), "the server's data dir leaked: {v}");
    }
    // A data file that fails to parse names itself relative to the data dir.
    std::fs::write(srv.data.path().join("bad.json"), "[1, 2]").unwrap();
    let st = srv.train(json!({"dataset_path": "bad.json", "target_column": "y"}));
    assert_eq!(st["status"], "failed");
    assert_eq!(st["error_kind"], "malformed_json");
    assert!(st["error"].as_str().unwrap().starts_with("bad.json: "), "{st}");
}

#[test]
fn predict_work_is_bounded_per_request() {
    let srv = Server::start(&["--max-batch-rows", "5"]);
    srv.train(iris());
    let rows = |n: usize| json!({"data": {"features": vec![json!([5.1, 3.5, 1.4, 0.2]); n]}});
    assert_eq!(srv.json("POST", "/api/ml/predict", Some(rows(5))).0, 200);
    let (s, v) = srv.json("POST", "/api/ml/predict", Some(rows(6)));
    assert_eq!((s, v["error"].as_str()), (413, Some("too_many_rows")), "{v}");
    let records = json!({"data": {"records": vec![json!({"sepal_length": 5.1}); 6]}});
    assert_eq!(srv.json("POST", "/api/ml/predict", Some(records)).1["error"], "too_many_rows");
    // The same limit, the same status, in every protocol (the --help promise).
    let (_, list) = srv.json("GET", "/api/ml/models", None);
    let id = list[0]["model_id"].as_str().unwrap().to_owned();
    let kserve = json!({"instances": vec![json!([5.1, 3.5, 1.4, 0.2]); 6]});
    let (s, v) = srv.json("POST", &format!("/v1/models/{id}:predict"), Some(kserve));
    assert_eq!(s, 413, "{v}");
    // Explanations are bounded by the work they cost, not only by their rows: 5 rows × 64
    // permutations × 100 background rows × 5 evaluations is past a limit of 100,000.
    let srv = Server::start(&["--max-explain-evals", "100000"]);
    srv.train(iris());
    let ask = |permutations: u64| {
        json!({"data": {"features": vec![json!([5.1, 3.5, 1.4, 0.2]); 5]},
               "explain": {"method": "permutation", "permutations": permutations}})
    };
    let (s, v) = srv.json("POST", "/api/ml/predict", Some(ask(64)));
    assert_eq!((s, v["error"].as_str()), (413, Some("explain_too_costly")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("over the per-request limit of 100000"), "{v}");
    assert_eq!(srv.json("POST", "/api/ml/predict", Some(ask(2))).0, 200);
    // Python's NaN is a missing cell, never an absent field: a NaN model id names no model
    // (not the newest), a NaN seed is a type error (not the default).
    let post = |body: &str| srv.call("POST", "/api/ml/predict", Some(body), &[("content-type", "application/json")]);
    let (s, t) = post(r#"{"data": {"features": [5.1, NaN, 1.4, 0.2]}}"#);
    assert_eq!(s, 200, "{t}");
    let (s, t) = post(r#"{"data": {"features": [5.1, 3.5, 1.4, 0.2]}, "model_id": NaN}"#);
    assert_eq!(s, 404, "{t}");
    let (s, t) = post(r#"{"data": {"features": [5.1, 3.5, 1.4, 0.2]}, "explain": {"seed": NaN}}"#);
    assert_eq!(s, 422, "{t}");
    // Echoed input is bounded: a 1 MB model_id comes back as a short 404.
    let long = "m".repeat(1 << 20);
    let (s, t) = srv.call(
        "POST",
        "/api/ml/predict",
        Some(&json!({"data": {"features": [1, 2, 3, 4]}, "model_id": long}).to_string()),
        &[("content-type", "application/json")],
    );
    assert_eq!(s, 404);
    assert!(t.len() < 1000, "{} bytes echoed", t.len());
}

/// `n` connections to `addr` that send part of a request head and then nothing more.
fn tricklers(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
            s
        })
        .collect()
}

#[test]
fn slow_header_clients_are_cut_off_and_others_still_served() {
    let srv = Server::start(&["--header-timeout", "1", "--max-connections", "4"]);
    let addr = srv.base.trim_start_matches("http://").to_owned();
    let mut slow = tricklers(&addr, 4);
    // While all four slots are held, a fifth client waits; once the timeout frees them it is served.
    let start = Instant::now();
    let (s, _) = srv.json("GET", "/health", None);
    assert_eq!(s, 200);
    assert!(start.elapsed() < Duration::from_secs(8), "served after {:?}", start.elapsed());
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        // Closed by the server (0 bytes, or a reset), possibly after a 408.
        let closed = match s.read(&mut buf) {
            Ok(0) => true,
            Ok(n) => String::from_utf8_lossy(&buf[..n]).contains("408") || s.read(&mut buf).is_ok_and(|n| n == 0),
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut,
        };
        assert!(closed, "a slow client was kept open");
    }
    // A connection that never sends a byte is closed at the same timeout, below the cap too.
    let mut silent = TcpStream::connect(&addr).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    assert!(matches!(silent.read(&mut buf), Ok(0)) || start.elapsed() < Duration::from_secs(4), "kept open");
    assert!(start.elapsed() < Duration::from_secs(4), "closed after {:?}", start.elapsed());
}

/// Three new clients at the connection cap are each served within seconds.
fn assert_served_at_the_cap(srv: &Server) {
    for _ in 0..3 {
        let start = Instant::now();
        let (s, _) = srv.json("GET", "/health", None);
        assert_eq!(s, 200);
        assert!(start.elapsed() < Duration::from_secs(5), "served after {:?}", start.elapsed());
    }
}

/// How many of `streams` the server has closed (end of stream or reset within 500 ms).
fn closed_by_the_server(streams: &mut [TcpStream]) -> usize {
    let mut closed = 0;
    for s in streams {
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut buf = [0u8; 64];
        let r = s.read(&mut buf);
        if matches!(r, Ok(0)) || matches!(r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset) {
            closed += 1;
        }
    }
    closed
}

#[test]
fn header_tricklers_at_the_cap_are_evicted_for_new_clients() {
    // A header timeout far longer than the test: only eviction can free a slot in time.
    let srv = Server::start(&["--header-timeout", "60", "--max-connections", "3"]);
    let addr = srv.base.trim_start_matches("http://").to_owned();
    let mut slow = tricklers(&addr, 3);
    std::thread::sleep(Duration::from_millis(300)); // all three accepted
    assert_served_at_the_cap(&srv);
    // The oldest tricklers were closed to make room.
    let closed = closed_by_the_server(&mut slow);
    assert!(closed >= 1, "no trickler was evicted");
}

#[test]
fn parked_keep_alive_connections_at_the_cap_are_evicted_for_new_clients() {
    let srv = Server::start(&["--header-timeout", "60", "--max-connections", "3"]);
    let addr = srv.base.trim_start_matches("http://").to_owned();
    // Three clients that each finish a request and keep their connection open, idle.
    let mut parked: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 512];
            assert!(s.read(&mut buf).unwrap() > 0, "no answer on a parked connection");
            s
        })
        .collect();
    assert_served_at_the_cap(&srv);
    let closed = closed_by_the_server(&mut parked);
    assert!(closed >= 1, "no idle connection was closed");
}

#[test]
fn tasks_have_caps_a_time_limit_and_can_be_cancelled() {
    let srv = Server::start(&["--max-epochs", "500", "--max-train-seconds", "1"]);
    let (s, v) = srv.json("POST", "/api/ml/train", Some(json!({"train_config": {"epochs": 501}})));
    assert_eq!((s, v["error"].as_str()), (422, Some("invalid_config")), "{v}");
    let (s, v) = srv.json("POST", "/api/ml/train", Some(json!({"train_config": {"patience": 101}})));
    assert_eq!((s, v["error"].as_str()), (422, Some("invalid_config")), "{v}");
    let (s, v) = srv.json("POST", "/api/ml/train", Some(json!({"dataset_path": "iris.csv"})));
    assert!(s == 422 && v["message"].as_str().unwrap().contains("target_column"), "{v}");
    // The server's time limit ends a long run.
    let long = json!({"train_config": {"epochs": 500, "patience": 0}});
    let (_, t) = srv.json("POST", "/api/ml/train", Some(long.clone()));
    let st = srv.wait(t["task_id"].as_str().unwrap());
    assert_eq!((st["status"].as_str(), st["error_kind"].as_str()), (Some("failed"), Some("timed_out")), "{st}");

    let srv = Server::start(&["--max-epochs", "1000"]);
    let (_, t) = srv.json("POST", "/api/ml/train", Some(json!({"train_config": {"epochs": 1000, "patience": 0}})));
    let (_, queued) = srv.json("POST", "/api/ml/train", Some(long));
    let task = t["task_id"].as_str().unwrap().to_owned();
    while srv.json("GET", &format!("/api/ml/train/status/{task}"), None).1["status"] != "running" {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Pending: cancelled at once. Running: at the next batch.
    let (s, v) = srv.json("DELETE", &format!("/api/ml/train/{}", queued["task_id"].as_str().unwrap()), None);
    assert_eq!((s, v["status"].as_str()), (200, Some("cancelled")), "{v}");
    let (s, _) = srv.json("POST", &format!("/api/ml/train/{task}/cancel"), None);
    assert_eq!(s, 200);
    let st = srv.wait(&task);
    assert_eq!((st["status"].as_str(), st["error_kind"].as_str()), (Some("cancelled"), Some("cancelled")), "{st}");
    assert!(!common::entries(srv.models.path()).iter().any(|e| e.starts_with("model_")));
    assert_eq!(srv.json("DELETE", "/api/ml/train/no-such-task", None).0, 404);
    // Both count as cancelled trainings once, the pending one too (it never reached a worker),
    // however often they are cancelled again.
    srv.json("DELETE", &format!("/api/ml/train/{}", queued["task_id"].as_str().unwrap()), None);
    let (_, metrics) = srv.call("GET", "/metrics", None, &[]);
    assert!(metrics.contains("trainings_total{outcome=\"cancelled\"} 2"), "{metrics}");
}

#[test]
fn unsafe_model_files_never_block_or_leak() {
    let srv = Server::start(&[]);
    let ok = srv.train(iris());
    let ok_id = ok["model_id"].as_str().unwrap();
    let models = srv.models.path();
    // Newer ids than the good model: a FIFO bundle and a symlink to /etc/passwd.
    std::fs::create_dir(models.join("model_2999_01_01_001")).unwrap();
    let fifo = std::ffi::CString::new(models.join("model_2999_01_01_001/model.safetensors").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::create_dir(models.join("model_2999_01_01_002")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", models.join("model_2999_01_01_002/model.safetensors")).unwrap();
    std::thread::sleep(Duration::from_millis(300)); // past the store's refresh interval
    for id in ["model_2999_01_01_001", "model_2999_01_01_002"] {
        let start = Instant::now();
        let (s, body) = srv.bytes(&format!("/api/ml/models/{id}/bundle"));
        assert_eq!(s, 500, "{id}: {}", String::from_utf8_lossy(&body));
        assert!(!String::from_utf8_lossy(&body).contains("root:"), "/etc/passwd leaked");
        assert!(start.elapsed() < Duration::from_secs(2));
    }
    assert_eq!(srv.json("GET", "/health", None).0, 200);
    // The newest *loadable* model answers; the list reports the others as unloadable.
    let (s, p) = srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": [5.1, 3.5, 1.4, 0.2]}})));
    assert_eq!((s, p["model_id"].as_str()), (200, Some(ok_id)), "{p}");
    let (_, list) = srv.json("GET", "/api/ml/models", None);
    let status: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["model_id"].as_str().unwrap(), m["status"].as_str().unwrap()))
        .collect();
    assert_eq!(status, [("model_2999_01_01_002", "unloadable"), ("model_2999_01_01_001", "unloadable"), (ok_id, "ok")]);
    // A verified bundle comes with its digest, and revalidates.
    let res = srv.agent.get(format!("{}/api/ml/models/{ok_id}/bundle", srv.base)).call().unwrap();
    let etag = res.headers().get("etag").unwrap().to_str().unwrap().to_owned();
    assert!(res.headers().get("content-digest").unwrap().to_str().unwrap().starts_with("sha-256=:"));
    let again = srv
        .agent
        .get(format!("{}/api/ml/models/{ok_id}/bundle", srv.base))
        .header("if-none-match", &etag)
        .call()
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);
    // Two If-None-Match lines are one list; a 304 carries no Content-Length but the 200's (RFC 9110 §8.6).
    let length = res.headers().get("content-length").unwrap().to_str().unwrap().to_owned();
    let mut tcp = TcpStream::connect(srv.base.trim_start_matches("http://")).unwrap();
    let head = format!(
        "GET /api/ml/models/{ok_id}/bundle HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: \"other\"\r\n\
         If-None-Match: {etag}\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 304"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(!lower.contains("content-length: 0\r\n"), "a 304 claims an empty representation: {answer}");
    assert!(!lower.contains("content-length:") || lower.contains(&format!("content-length: {length}\r\n")), "{answer}");
    let (_, meta) = srv.json("GET", &format!("/api/ml/models/{ok_id}"), None);
    assert_eq!(format!("\"{}\"", meta["bundle_sha256"].as_str().unwrap()), etag);

    // Byte ranges: an interrupted download resumes where it stopped, and only of this file.
    let (_, whole) = srv.bytes(&format!("/api/ml/models/{ok_id}/bundle"));
    let len = whole.len();
    let get = |headers: &[(&str, &str)]| {
        let mut req = srv.agent.get(format!("{}/api/ml/models/{ok_id}/bundle", srv.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut res = req.call().unwrap();
        let h = |k: &str| res.headers().get(k).map(|v| v.to_str().unwrap().to_owned());
        let (range, digest, repr) = (h("content-range"), h("content-digest"), h("repr-digest"));
        let status = res.status().as_u16();
        (status, range, digest, repr, res.body_mut().read_to_vec().unwrap())
    };
    let (s, range, digest, repr, body) = get(&[("range", "bytes=100-")]);
    assert_eq!((s, range), (206, Some(format!("bytes 100-{}/{len}", len - 1))));
    assert_eq!(body, whole[100..]);
    assert_eq!(digest, None, "Content-Digest would be the part's");
    assert!(repr.unwrap().starts_with("sha-256=:"), "the whole file's digest");
    let (s, _, _, _, body) = get(&[("range", "bytes=-10"), ("if-range", &etag)]);
    assert_eq!((s, body.as_slice()), (206, &whole[len - 10..]));
    // Another file's If-Range, several ranges or a malformed one: the whole file.
    for headers in [
        [("range", "bytes=0-9"), ("if-range", "\"0000\"")],
        [("range", "bytes=0-9, 20-29"), ("x-none", "")],
        [("range", "bytes=9-0"), ("x-none", "")],
    ] {
        let (s, _, digest, _, body) = get(&headers);
        assert_eq!((s, body.len()), (200, len), "{headers:?}");
        assert!(digest.is_some());
    }
    let (s, range, _, _, body) = get(&[("range", &format!("bytes={len}-"))]);
    assert_eq!((s, range), (416, Some(format!("bytes */{len}"))));
    let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(e["error"], "range_not_satisfiable", "{e}");
}

#[test]
fn class_counts_are_capped_before_training() {
    let srv = Server::start(&["--max-classes", "50"]);
    let csv: String = (0..300).map(|i| format!("{},{}\n", i % 7, i % 60)).collect();
    std::fs::write(srv.data.path().join("many.csv"), format!("x,y\n{csv}")).unwrap();
    let start = Instant::now();
    let st = srv.train(json!({"dataset_path": "many.csv", "target_column": "y", "task_type": "classification"}));
    assert_eq!(st["status"], "failed");
    assert!(st["error"].as_str().unwrap().contains("60 classes, over max_classes = 50"), "{st}");
    assert_eq!(st["current_epoch"], 0, "refused before training");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn the_model_list_is_paginated() {
    let srv = Server::start(&[]);
    let ids: Vec<String> = (0..3).map(|_| srv.train(iris())["model_id"].as_str().unwrap().to_owned()).collect();
    let res = srv.agent.get(format!("{}/api/ml/models?limit=2", srv.base)).call().unwrap();
    let cursor = res.headers().get("x-next-cursor").unwrap().to_str().unwrap().to_owned();
    assert!(res.headers().get("link").unwrap().to_str().unwrap().contains("rel=\"next\""));
    let page1: Value = serde_json::from_str(&res.into_body().read_to_string().unwrap()).unwrap();
    let (_, page2) = srv.json("GET", &format!("/api/ml/models?limit=2&cursor={cursor}"), None);
    let got: Vec<&str> = page1
        .as_array()
        .unwrap()
        .iter()
        .chain(page2.as_array().unwrap())
        .map(|m| m["model_id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(got, want);
    for q in ["limit=0", "limit=-1", "limit=abc", "limit=1&limit=2"] {
        let (s, v) = srv.json("GET", &format!("/api/ml/models?{q}"), None);
        assert_eq!((s, v["error"].as_str()), (422, Some("validation_error")), "{q}: {v}");
    }
}

#[test]
fn task_records_survive_a_crash() {
    let srv = Server::start(&["--max-epochs", "1000"]);
    let done = srv.train(iris());
    let done_id = done["task_id"].as_str().unwrap().to_owned();
    let (_, t) = srv.json("POST", "/api/ml/train", Some(json!({"train_config": {"epochs": 1000, "patience": 0}})));
    let running = t["task_id"].as_str().unwrap().to_owned();
    while srv.json("GET", &format!("/api/ml/train/status/{running}"), None).1["status"] != "running" {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (models, data) = srv.kill(); // SIGKILL
    let srv = Server::start_in(models, data, &[]);
    let (_, a) = srv.json("GET", &format!("/api/ml/train/status/{done_id}"), None);
    assert_eq!((a["status"].as_str(), a["model_id"].as_str()), (Some("completed"), done["model_id"].as_str()));
    let (_, b) = srv.json("GET", &format!("/api/ml/train/status/{running}"), None);
    assert_eq!((b["status"].as_str(), b["error"].as_str()), (Some("failed"), Some("interrupted by restart")), "{b}");
}

#[test]
fn the_api_prints_numbers_as_the_cli_does() {
    let srv = Server::start(&[]);
    let st = srv.train(iris());
    let id = st["model_id"].as_str().unwrap();
    let (_, text) = srv.call(
        "POST",
        "/api/ml/predict",
        Some(&json!({"data": {"features": [5.1, 3.5, 1.4, 0.2]}, "model_id": id}).to_string()),
        &[("content-type", "application/json")],
    );
    let o = run(trainer()
        .args(["predict", "--json", "--features", "5.1,3.5,1.4,0.2", "--model", id, "--models-dir"])
        .arg(srv.models.path()));
    let cli = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    // Byte for byte, after the model id: the shortest decimal of each f32 on both surfaces.
    assert_eq!(text, format!("{{\"model_id\":\"{id}\",{}", &cli[1..]));
}

#[test]
fn what_a_request_cannot_run_is_refused_at_submit() {
    let mut cmd = trainer();
    cmd.env_remove("REDIS_URL").env_remove("TRAINER_REDIS_URL");
    let srv = Server::start_with(cmd, tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), &[]);
    // No Redis named (--redis or REDIS_URL): no key is read, not whatever answers on localhost.
    let (s, v) =
        srv.json("POST", "/api/ml/train", Some(json!({"dataset_path": "redis:datasets:x", "target_column": "y"})));
    assert_eq!((s, v["error"].as_str()), (422, Some("key_not_allowed")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("no Redis is configured"), "{v}");
    // A directory inside the data dir.
    std::fs::create_dir(srv.data.path().join("sub")).unwrap();
    let (s, v) = srv.json("POST", "/api/ml/train", Some(json!({"dataset_path": "sub", "target_column": "y"})));
    assert_eq!((s, v["error"].as_str()), (422, Some("not_a_data_file")), "{v}");
    // A repeated key means two readings of one body: refused on every JSON route.
    let body = r#"{"dataset_path": "a.csv", "dataset_path": "b.csv", "target_column": "y", "tune": {"trials": 3}}"#;
    let (s, t) = srv.call("POST", "/api/ml/tune", Some(body), &[("content-type", "application/json")]);
    assert_eq!(s, 422, "{t}");
    assert!(t.contains("duplicate field `dataset_path`"), "{t}");
    // A search range past the server's caps would only fail every trial later.
    let space = json!({"tune": {"trials": 3, "space": {"train_config": {"epochs": {"low": 1, "high": 1000000}}}}});
    let (s, v) = srv.json("POST", "/api/ml/tune", Some(space));
    assert_eq!((s, v["error"].as_str()), (422, Some("invalid_config")), "{v}");
    let m = v["message"].as_str().unwrap();
    assert!(m.contains("`space.train_config.epochs`") && m.contains("1..=1000, got 1000000"), "{v}");
    // As is a space whose deepest, widest network is past the parameter limit (each range
    // alone is within its bounds), and a batch size no trial could use.
    for (space, field) in [
        (
            json!({"model_config": {"hidden_dims": {"depth": {"low": 1, "high": 4}, "width": {"low": 16, "high": 8192}}}}),
            "space.model_config.hidden_dims",
        ),
        (json!({"train_config": {"batch_size": {"choices": [64, 4194304, 32]}}}), "space.train_config.batch_size"),
    ] {
        let (s, v) = srv.json("POST", "/api/ml/tune", Some(json!({"tune": {"trials": 3, "space": space}})));
        assert_eq!((s, v["error"].as_str()), (422, Some("invalid_config")), "{v}");
        assert!(v["message"].as_str().unwrap().contains(field), "{field}: {v}");
    }
    let nested = r#"{"target_column": "y", "tune": {"trials": 3, "trials": 1}}"#;
    let (s, t) = srv.call("POST", "/api/ml/tune", Some(nested), &[("content-type", "application/json")]);
    assert!(s == 422 && t.contains("duplicate field `trials`"), "{s} {t}");
}

#[test]
fn exact_explanations_are_refused_past_their_feature_limit() {
    let srv = Server::start(&[]);
    let st = srv.train(json!({"train_config": {"epochs": 2}}));
    assert_eq!(st["status"], "completed", "{st}");
    let row =
        json!([38.9, 60.2, 1.83, 59.8, 16.6, 31.3, 82.4, 3.8, 58.0, "Consumer", "Europe", "Small", 794.4, 3689, 9]);
    // 15 features: 2^15 coalitions per background row (at 40 features the request once aborted the server).
    let (s, v) =
        srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": row}, "explain": {"method": "exact"}})));
    assert_eq!((s, v["error"].as_str()), (422, Some("validation_error")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("at most 10 features"), "{v}");
    let (s, v) =
        srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": row}, "explain": {"method": "auto"}})));
    assert_eq!((s, v["explanation"]["method"].as_str()), (200, Some("permutation")), "{v}");
}

/// One raw HTTP/1.1 request naming `host`; the status line and the body.
fn raw_get(srv: &Server, path: &str, host: &str) -> (String, String) {
    let mut tcp = TcpStream::connect(srv.base.trim_start_matches("http://")).unwrap();
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    let status = answer.lines().next().unwrap_or_default().to_owned();
    (status, answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

#[test]
fn a_loopback_server_answers_only_its_own_host_names() {
    let srv = Server::start(&["--allowed-host", "models.example.com"]);
    // A DNS-rebinding page's requests name the attacker's host.
    let (status, body) = raw_get(&srv, "/api/ml/models", "attacker.example:9003");
    assert!(status.starts_with("HTTP/1.1 403"), "{status}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["error"], "host_not_allowed", "{e}");
    assert!(e["message"].as_str().unwrap().contains("--allowed-host"), "{e}");
    // In each protocol's own error shape.
    let (status, body) = raw_get(&srv, "/v2/health/ready", "attacker.example");
    assert!(status.starts_with("HTTP/1.1 403") && body.contains("\"error\""), "{status} {body}");
    for host in ["127.0.0.1", "localhost:9003", "[::1]:80", "models.example.com"] {
        let (status, _) = raw_get(&srv, "/health", host);
        assert!(status.starts_with("HTTP/1.1 200"), "{host}: {status}");
    }
}

#[test]
fn client_request_ids_are_kept_only_when_short_tokens() {
    let srv = Server::start(&[]);
    let id_of = |sent: &str| {
        let res = srv.agent.get(format!("{}/health", srv.base)).header("x-request-id", sent).call().unwrap();
        res.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned()
    };
    assert_eq!(id_of("trace-42.a:b"), "trace-42.a:b");
    for bad in ["<script>alert(1)</script>", &"a".repeat(6000)] {
        let id = id_of(bad);
        assert!(id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'), "{id}");
    }
}
