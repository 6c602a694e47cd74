//! The HTTP API over real sockets on 127.0.0.1: training tasks, prediction in every form,
//! the error shapes and statuses, path safety, concurrency limits, auth and shutdown.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::server::Server;

fn iris_row() -> Value {
    json!([5.1, 3.5, 1.4, 0.2])
}

#[test]
fn train_poll_and_predict_in_every_form() {
    let srv = Server::start(&[]);
    let st = srv.train(json!({"dataset_path": "iris.csv", "target_column": "species", "train_config": {"epochs": 30}}));
    assert_eq!(st["status"], "completed", "{st}");
    assert_eq!(st["progress"], 100);
    assert!(st["message"].as_str().unwrap().contains("completed"));
    assert!(st["test_metrics"]["accuracy"].as_f64().unwrap() > 0.8);
    assert!(st["metrics"]["val_loss"].is_f64(), "{st}");
    let id = st["model_id"].as_str().unwrap().to_owned();

    let (s, p) = srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": iris_row()}, "model_id": id})));
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["model_id"], id.as_str());
    assert_eq!(p["predicted_label"], "setosa");
    assert_eq!(p["probabilities"].as_array().unwrap().len(), 3);
    assert!(p["confidence"].as_f64().unwrap() > 0.5 && p["predicted_class"] == 0);

    // Without model_id: the newest model.
    let (s, p2) = srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": iris_row()}})));
    assert_eq!((s, &p2["model_id"]), (200, &p["model_id"]));

    let (s, b) = srv.json("POST", "/api/ml/predict", Some(json!({"features": [iris_row(), [6.7, 3.0, 5.2, 2.3]]})));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["predictions"].as_array().unwrap().len(), 2);
    assert_eq!(b["predictions"][1]["predicted_label"], "virginica");
    let rec = json!({"records": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "species": "ignored"}]});
    let (s, r) = srv.json("POST", "/api/ml/predict", Some(json!({"data": rec})));
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["predictions"][0]["probabilities"], p["probabilities"]);

    let (s, list) = srv.json("GET", "/api/ml/models", None);
    assert_eq!(s, 200);
    assert_eq!(list[0]["model_id"], id.as_str());
    assert_eq!(list[0]["task_type"], "classification");
    assert!(list[0]["saved_at"].is_string() && list[0]["test_metrics"].is_object());
    assert_eq!((&list[0]["dataset"], &list[0]["target_column"]), (&json!("iris.csv"), &json!("species")), "{list}");
    let (s, meta) = srv.json("GET", &format!("/api/ml/models/{id}"), None);
    assert_eq!((s, &meta["model_id"]), (200, &json!(id)));
    let (s, bytes) = srv.bytes(&format!("/api/ml/models/{id}/bundle"));
    assert_eq!(s, 200);
    assert_eq!(inference::Model::from_bytes(&bytes).unwrap().spec().model_id, id);

    // A regression model answers predicted_value.
    let st = srv
        .train(json!({"dataset_path": "diabetes.csv", "target_column": "progression", "train_config": {"epochs": 5}}));
    let rid = st["model_id"].as_str().unwrap();
    let row = json!([59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87]);
    let (s, v) = srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": row}, "model_id": rid})));
    assert_eq!(s, 200, "{v}");
    assert!(v["predicted_value"].is_f64() && v.get("probabilities").is_none(), "{v}");

    let (_, metrics) = srv.call("GET", "/metrics", None, &[]);
    assert!(
        metrics.contains("http_requests_total{route=\"/api/ml/predict\",method=\"POST\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("trainings_total{outcome=\"completed\"} 2"), "{metrics}");
    assert!(metrics.contains("predictions_total 6"), "{metrics}");
}

#[test]
fn errors_have_the_documented_shape_and_status() {
    let srv = Server::start(&[]);
    let expect = |(s, v): (u16, Value), status: u16, kind: &str, needle: &str| {
        assert_eq!(s, status, "{v}");
        assert_eq!(v["error"], kind, "{v}");
        assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
    };
    expect(
        srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": [1]}}))),
        404,
        "model_not_found",
        "train one first",
    );
    let st = srv.train(json!({"dataset_path": "iris.csv", "target_column": "species", "train_config": {"epochs": 3}}));
    let id = st["model_id"].as_str().unwrap();

    expect(
        srv.json("POST", "/api/ml/train", Some(json!({"target": "x"}))),
        422,
        "validation_error",
        "unknown field `target`",
    );
    expect(
        srv.json(
            "POST",
            "/api/ml/train",
            Some(json!({"dataset_path": "iris.csv", "target_column": "species", "model_config": {"dropout_rate": 2}})),
        ),
        422,
        "invalid_config",
        "model_config.dropout_rate",
    );
    let (s, t) = srv.call("POST", "/api/ml/predict", Some("{\"data\": "), &[("content-type", "application/json")]);
    expect((s, serde_json::from_str(&t).unwrap()), 400, "malformed_json", "malformed JSON");
    let (s, t) = srv.call("POST", "/api/ml/predict", Some("{}"), &[("content-type", "text/plain")]);
    expect((s, serde_json::from_str(&t).unwrap()), 415, "unsupported_media_type", "application/json");
    // Over the 10 MB limit: the server answers 413 from the Content-Length alone.
    let (s, t) = srv.raw_post_headers("/api/ml/predict", 11 << 20);
    expect((s, serde_json::from_str(&t).unwrap()), 413, "payload_too_large", "exceeds");
    expect(
        srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": [1, 2]}}))),
        400,
        "wrong_feature_count",
        "expected 4, got 2",
    );
    expect(
        srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": ["inf", 1, 1, 1]}}))),
        400,
        "non_finite",
        "sepal_length",
    );
    expect(
        srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": ["abc", 1, 1, 1]}}))),
        400,
        "not_a_number",
        "\"abc\"",
    );
    expect(
        srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": [[1], 1, 1, 1]}}))),
        400,
        "invalid_value",
        "unsupported value (an array",
    );
    expect(
        srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": 5}}))),
        422,
        "validation_error",
        "array of values",
    );
    expect(srv.json("POST", "/api/ml/predict", Some(json!({"data": {}}))), 422, "validation_error", "data.features");
    expect(
        srv.json(
            "POST",
            "/api/ml/predict",
            Some(json!({"data": {"features": iris_row()}, "model_id": "model_1999_01_01_001"})),
        ),
        404,
        "model_not_found",
        "model_1999",
    );
    expect(srv.json("GET", "/api/ml/train/status/not-a-task", None), 404, "task_not_found", "not-a-task");
    expect(srv.json("GET", "/api/ml/models/../../etc", None), 404, "not_found", "");

    // An unknown category names column and value (train on a categorical dataset).
    let cat: String = (0..40).map(|i| format!("{},{},{}\n", i, ["red", "blue"][i % 2], ["a", "b"][i % 2])).collect();
    std::fs::write(srv.data.path().join("cat.csv"), format!("x,color,y\n{cat}")).unwrap();
    let st = srv.train(json!({"dataset_path": "cat.csv", "target_column": "y", "train_config": {"epochs": 2}}));
    let cid = st["model_id"].as_str().unwrap();
    expect(
        srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": [1, "green"]}, "model_id": cid}))),
        400,
        "unknown_category",
        "unknown category \"green\" for column `color`",
    );

    // A corrupt bundle is a 500 with a clear message, and the server keeps serving.
    let bad = srv.models.path().join("model_2099_01_01_001");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("model.safetensors"), b"not a bundle at all").unwrap();
    expect(
        srv.json(
            "POST",
            "/api/ml/predict",
            Some(json!({"data": {"features": iris_row()}, "model_id": "model_2099_01_01_001"})),
        ),
        500,
        "corrupt_model",
        "cannot be loaded",
    );
    let (s, _) = srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": iris_row()}, "model_id": id})));
    assert_eq!(s, 200);
    assert_eq!(srv.json("GET", "/health", None).0, 200);
}

#[test]
fn dataset_paths_cannot_escape_the_data_dir() {
    let srv = Server::start(&[]);
    let outside = tempfile::tempdir().unwrap();
    std::fs::copy(common::fixture("iris.csv"), outside.path().join("iris.csv")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path().join("iris.csv"), srv.data.path().join("link.csv")).unwrap();
    let abs = outside.path().join("iris.csv").display().to_string();
    for path in ["../iris.csv", "./../iris.csv", abs.as_str(), "link.csv", "missing.csv"] {
        let (s, v) = srv.json("POST", "/api/ml/train", Some(json!({"dataset_path": path, "target_column": "species"})));
        assert_eq!(s, 422, "{path}: {v}");
        assert_eq!(v["error"], "invalid_dataset_path", "{path}: {v}");
    }
    let st =
        srv.train(json!({"dataset_path": "./iris.csv", "target_column": "species", "train_config": {"epochs": 2}}));
    assert_eq!(st["status"], "completed");
}

#[test]
fn one_training_at_a_time_while_predict_keeps_answering() {
    let srv = Server::start(&["--max-concurrent-trainings", "1"]);
    let first =
        srv.train(json!({"dataset_path": "iris.csv", "target_column": "species", "train_config": {"epochs": 2}}));
    let id = first["model_id"].as_str().unwrap().to_owned();
    let long = json!({"train_config": {"epochs": 400, "patience": 0}});
    let (_, a) = srv.json("POST", "/api/ml/train", Some(long.clone()));
    let (_, b) = srv.json("POST", "/api/ml/train", Some(long));
    let (a, b) = (a["task_id"].as_str().unwrap().to_owned(), b["task_id"].as_str().unwrap().to_owned());
    let mut saw_running_with_pending = false;
    let mut predictions = 0;
    loop {
        let (_, sa) = srv.json("GET", &format!("/api/ml/train/status/{a}"), None);
        let (_, sb) = srv.json("GET", &format!("/api/ml/train/status/{b}"), None);
        assert!(!(sa["status"] == "running" && sb["status"] == "running"), "two trainings ran at once");
        let one_waits = (sa["status"] == "running" && sb["status"] == "pending")
            || (sb["status"] == "running" && sa["status"] == "pending");
        if one_waits {
            saw_running_with_pending = true;
            let (s, _) =
                srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": iris_row()}, "model_id": id})));
            assert_eq!(s, 200);
            predictions += 1;
        }
        if sa["status"] != "pending" && sb["status"] != "pending" {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(saw_running_with_pending && predictions > 0);
    assert_eq!(srv.wait(&b)["status"], "completed");
    assert_eq!(srv.wait(&a)["status"], "completed");
}

#[test]
fn api_key_guards_train_and_delete() {
    let open = Server::start(&[]);
    let st = open.train(json!({"dataset_path": "iris.csv", "target_column": "species", "train_config": {"epochs": 2}}));
    let (s, v) = open.json("DELETE", &format!("/api/ml/models/{}", st["model_id"].as_str().unwrap()), None);
    assert_eq!((s, v["error"].as_str()), (403, Some("forbidden")));

    let srv = Server::start(&["--api-key", "s3cret"]);
    let body =
        json!({"dataset_path": "iris.csv", "target_column": "species", "train_config": {"epochs": 2}}).to_string();
    let (s, _) = srv.call("POST", "/api/ml/train", Some(&body), &[("content-type", "application/json")]);
    assert_eq!(s, 401);
    let auth = [("content-type", "application/json"), ("authorization", "Bearer s3cret")];
    let (s, t) = srv.call("POST", "/api/ml/train", Some(&body), &auth);
    assert_eq!(s, 200, "{t}");
    let task: Value = serde_json::from_str(&t).unwrap();
    let id = srv.wait(task["task_id"].as_str().unwrap())["model_id"].as_str().unwrap().to_owned();
    // Reads and predict stay open.
    let (s, _) = srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": iris_row()}})));
    assert_eq!(s, 200);
    let (s, _) = srv.call("DELETE", &format!("/api/ml/models/{id}"), None, &[("authorization", "Bearer wrong")]);
    assert_eq!(s, 401);
    let (s, _) = srv.call("DELETE", &format!("/api/ml/models/{id}"), None, &[("authorization", "Bearer s3cret")]);
    assert_eq!(s, 200);
    assert_eq!(srv.json("GET", &format!("/api/ml/models/{id}"), None).0, 404);
    assert_eq!(srv.json("POST", "/api/ml/predict", Some(json!({"data": {"features": iris_row()}}))).0, 404);
}

#[test]
fn documented_client_examples_work_unchanged() {
    let srv = Server::start(&[]);
    // The request body of the documented Python service, verbatim in shape.
    let body = json!({
        "dataset_path": "iris.csv",
        "target_column": "species",
        "model_config": {"hidden_dims": [64, 32], "dropout_rate": 0.2, "activation": "relu"},
        "train_config": {"epochs": 10, "batch_size": 32, "learning_rate": 0.001, "optimizer": "adam"},
        "test_size": 0.2,
        "val_size": 0.1,
        "task_type": "classification"
    });
    let st = srv.train(body);
    assert_eq!(st["status"], "completed", "{st}");
    for key in [
        "task_id",
        "status",
        "progress",
        "message",
        "current_epoch",
        "total_epochs",
        "metrics",
        "model_id",
        "test_metrics",
    ] {
        assert!(st.get(key).is_some(), "status lacks {key}: {st}");
    }
    let (s, p) = srv.json(
        "POST",
        "/api/ml/predict",
        Some(json!({"data": {"features": iris_row()}, "model_id": st["model_id"]})),
    );
    assert_eq!(s, 200);
    for key in ["model_id", "predicted_class", "predicted_label", "confidence", "probabilities"] {
        assert!(p.get(key).is_some(), "prediction lacks {key}: {p}");
    }
    let (s, ready) = srv.json("GET", "/ready", None);
    assert_eq!((s, &ready["status"]), (200, &json!("ready")));
    let (s, spec) = srv.json("GET", "/api/ml/openapi.json", None);
    assert_eq!(s, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    // Every route the router serves (trainer/src/server/mod.rs), with its methods.
    for (path, method) in [
        ("/api/ml/train", "post"),
        ("/api/ml/tune", "post"),
        ("/api/ml/train/status/{task_id}", "get"),
        ("/api/ml/train/{task_id}", "delete"),
        ("/api/ml/train/{task_id}/cancel", "post"),
        ("/api/ml/predict", "post"),
        ("/api/ml/models", "get"),
        ("/api/ml/models/{model_id}", "get"),
        ("/api/ml/models/{model_id}", "delete"),
        ("/api/ml/models/{model_id}/bundle", "get"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
        ("/v2", "get"),
        ("/v2/health/live", "get"),
        ("/v2/health/ready", "get"),
        ("/v2/models/{model}", "get"),
        ("/v2/models/{model}/ready", "get"),
        ("/v2/models/{model}/infer", "post"),
        ("/v2/models/{model}/versions/{version}", "get"),
        ("/v2/models/{model}/versions/{version}/ready", "get"),
        ("/v2/models/{model}/versions/{version}/infer", "post"),
        ("/v1/models", "get"),
        ("/v1/models/{model}", "get"),
        ("/v1/models/{model}:predict", "post"),
        ("/v1/models/{model}:explain", "post"),
        ("/invocations", "post"),
        ("/ping", "get"),
        ("/version", "get"),
    ] {
        assert!(spec["paths"][path].get(method).is_some(), "openapi lacks {method} {path}");
    }
    assert!(spec["components"]["schemas"].get("TrainConfig").is_some());
}

#[test]
fn sigterm_stops_cleanly_without_half_written_models() {
    let srv = Server::start(&[]);
    let (_, t) = srv.json("POST", "/api/ml/train", Some(json!({"train_config": {"epochs": 1000, "patience": 0}})));
    let task = t["task_id"].as_str().unwrap().to_owned();
    while srv.json("GET", &format!("/api/ml/train/status/{task}"), None).1["status"] != "running" {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = srv.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut srv = srv;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = srv.child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "server did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let models: &Path = srv.models.path();
    assert!(common::entries(models).iter().all(|e| !e.starts_with(".tmp")), "temp dir left");
    assert!(!common::entries(models).iter().any(|e| e.starts_with("model_")), "the cancelled training saved a model");
}

#[test]
fn the_page_is_served_from_any_directory() {
    // The embedded page, from a working directory with no web/ beside it.
    let elsewhere = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let mut child = common::trainer()
        .current_dir(elsewhere.path())
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--models-dir"])
        .arg(models.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let base = line.trim().strip_prefix("listening on ").unwrap().to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let get = |path: &str| {
        // A browser's Accept: `/` answers clients without it with KServe's liveness JSON.
        let mut r = agent.get(format!("{base}{path}")).header("accept", "text/html,*/*").call().unwrap();
        let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (r.status().as_u16(), ct, r.body_mut().with_config().limit(10 << 20).read_to_vec().unwrap())
    };
    let (code, ct, page) = get("/");
    assert_eq!((code, ct.starts_with("text/html")), (200, true));
    assert!(String::from_utf8_lossy(&page).contains("<script"), "the page itself, not the API's JSON");
    for (path, ty) in
        [("/favicon.ico", "image/svg+xml"), ("/favicon.svg", "image/svg+xml"), ("/app.js", "text/javascript")]
    {
        let (code, ct, _) = get(path);
        assert_eq!((code, ct.starts_with(ty)), (200, true), "{path}: {ct}");
    }
    // The wasm is embedded when it was built before the trainer (scripts/test.sh does).
    let (code, ct, wasm) = get("/pkg/inference_bg.wasm");
    if code == 200 {
        assert_eq!(ct, "application/wasm");
        assert_eq!(&wasm[..4], b"\0asm");
    } else {
        assert_eq!(code, 404);
    }
    let _ = child.kill();
    let _ = child.wait();
}
