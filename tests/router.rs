//! The router in-process, as axum's examples test: `AppState::new` over a real store and
//! queue in temp dirs, requests through `tower::ServiceExt::oneshot`, no sockets.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

use inference::config::Caps;
use trainer::data::DataContext;
use trainer::pipeline::RunOptions;
use trainer::queue::local::{LocalOptions, LocalQueue};
use trainer::server::{router, AppState, Limits, ServerConfig};
use trainer::store::fs::{FsOptions, FsStore, BUNDLE_FILE};

const ID: &str = "model_2026_01_01_001";

/// A router over a models dir holding the ESG parity fixture as model `ID`.
fn router_over_fixture(api_key: Option<&str>) -> (axum::Router, tempfile::TempDir) {
    router_with(api_key, None)
}

/// The same, with MLflow's `/invocations` bound to model `mlflow_model`.
fn router_with(api_key: Option<&str>, mlflow_model: Option<&str>) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let fixture = common::root().join("tests/fixtures/parity/esg_relu/model.safetensors");
    let mut b = inference::Bundle::from_bytes(&std::fs::read(fixture).unwrap()).unwrap();
    b.metadata.model_id = ID.into();
    std::fs::create_dir(dir.path().join(ID)).unwrap();
    std::fs::write(dir.path().join(ID).join(BUNDLE_FILE), b.to_safetensors().unwrap()).unwrap();
    (router_over_dir(dir.path(), api_key, mlflow_model, Limits::default()), dir)
}

/// A router over the models in `dir`, with `limits`.
fn router_over_dir(
    dir: &std::path::Path,
    api_key: Option<&str>,
    mlflow_model: Option<&str>,
    limits: Limits,
) -> axum::Router {
    let config = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        api_key: api_key.map(str::to_owned),
        insecure_no_auth: false,
        allowed_hosts: vec![],
        web_dir: None,
        mlflow_model: mlflow_model.map(str::to_owned),
        run: RunOptions {
            data: DataContext { data_dir: Some(dir.to_owned()), ..DataContext::default() },
            ..RunOptions::default()
        },
        caps: Caps::default(),
        limits,
        workers: 0,
        max_trials: 10,
    };
    let store = FsStore::open_dir(dir, FsOptions::default()).unwrap();
    let queue = LocalQueue::new(None, LocalOptions::default()).unwrap();
    router(AppState::new(config, Arc::new(store), Arc::new(queue)))
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
    auth: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let res = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

const ROW: [&str; 15] = [
    "38.9", "60.2", "1.83", "59.8", "16.6", "31.3", "82.4", "3.8", "58.0", "Consumer", "Europe", "Small", "794.4",
    "3689", "9",
];

#[tokio::test]
async fn every_predict_shape_is_one_contract() {
    let (app, _dir) = router_over_fixture(None);
    let (s, one) = call(&app, "POST", "/api/ml/predict", Some(json!({"data": {"features": ROW}})), None).await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_eq!(one["model_id"], ID);
    let (s, batch) = call(&app, "POST", "/api/ml/predict", Some(json!({"features": [ROW, ROW]})), None).await;
    assert_eq!(s, StatusCode::OK);
    // KServe V1 instances on the documented route, as arrays and as records.
    let names = "carbon_intensity,renewable_energy_pct,water_usage,waste_recycling_pct,employee_turnover_pct,gender_diversity_pct,board_independence_pct,controversy_score,esg_disclosure_score,sector,region,market_cap_tier,revenue_musd,employees,years_public".split(',');
    let record: serde_json::Map<String, Value> = names.zip(ROW).map(|(n, v)| (n.to_string(), json!(v))).collect();
    let (s, v1) = call(&app, "POST", "/api/ml/predict", Some(json!({"instances": [ROW, record]})), None).await;
    assert_eq!(s, StatusCode::OK, "{v1}");
    assert_eq!(v1["model_id"], ID);
    let strip = |p: &Value| {
        let mut p = p.clone();
        p.as_object_mut().unwrap().remove("model_id");
        p
    };
    assert_eq!(batch["predictions"][0], strip(&one));
    assert_eq!(v1["predictions"][0], strip(&one));
    assert_eq!(v1["predictions"][1], strip(&one), "a record by name equals the positional row");
}

#[tokio::test]
async fn train_bodies_are_checked_at_submit() {
    let (app, _dir) = router_over_fixture(None);
    let (s, v) = call(&app, "POST", "/api/ml/train", Some(json!({"dataset_path": "x.csv"})), None).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_config")), "{v}");
    let (s, v) = call(&app, "POST", "/api/ml/train", Some(json!({"redis": {"url": "redis://10.0.0.1"}})), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["message"].as_str().unwrap().contains("redis"));
    let (s, v) = call(&app, "POST", "/api/ml/train", Some(json!({})), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, st) =
        call(&app, "GET", &format!("/api/ml/train/status/{}", v["task_id"].as_str().unwrap()), None, None).await;
    assert_eq!((s, st["status"].as_str()), (StatusCode::OK, Some("pending")), "no workers: it waits");
}

#[tokio::test]
async fn keys_guard_train_and_delete() {
    let (app, _dir) = router_over_fixture(Some("k"));
    assert_eq!(call(&app, "POST", "/api/ml/train", Some(json!({})), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, "POST", "/api/ml/train", Some(json!({})), Some("Bearer k")).await.0, StatusCode::OK);
    assert_eq!(call(&app, "DELETE", &format!("/api/ml/models/{ID}"), None, None).await.0, StatusCode::UNAUTHORIZED);
    let (s, v) = call(&app, "DELETE", &format!("/api/ml/models/{ID}"), None, Some("BEARER k")).await;
    assert_eq!((s, v["deleted"].as_str()), (StatusCode::OK, Some(ID)));
    assert_eq!(call(&app, "GET", &format!("/api/ml/models/{ID}"), None, None).await.0, StatusCode::NOT_FOUND);
    let (open, _d) = router_over_fixture(None);
    assert_eq!(call(&open, "DELETE", &format!("/api/ml/models/{ID}"), None, None).await.0, StatusCode::FORBIDDEN);
    let (s, v) = call(&open, "GET", "/health", None, None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
}

#[tokio::test]
async fn explanations_ride_on_every_predict_shape() {
    let (app, _dir) = router_over_fixture(None);
    let (s, one) =
        call(&app, "POST", "/api/ml/predict", Some(json!({"data": {"features": ROW}, "explain": true})), None).await;
    assert_eq!(s, StatusCode::OK, "{one}");
    let e = &one["explanation"];
    // The fixture is format 1: explained against its fill row, by permutation (15 features).
    assert_eq!((e["method"].as_str(), e["background"].as_str()), (Some("permutation"), Some("fill_row")));
    assert_eq!(e["class"], one["predicted_class"]);
    let total = e["base_value"].as_f64().unwrap()
        + e["values"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum::<f64>();
    assert!((total - one["confidence"].as_f64().unwrap()).abs() < 1e-5, "{total} vs {}", one["confidence"]);
    let (_, all) =
        call(&app, "POST", "/api/ml/predict", Some(json!({"features": [ROW, ROW], "explain": {"class": "all"}})), None)
            .await;
    let classes = all["predictions"][1]["explanation"]["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 5);
    assert_eq!(
        all["predictions"][0]["explanation"], all["predictions"][1]["explanation"],
        "identical rows, identical values"
    );
    let (_, by_label) = call(
        &app,
        "POST",
        "/api/ml/predict",
        Some(json!({"features": ROW, "explain": {"class": "C", "method": "permutation"}})),
        None,
    )
    .await;
    assert_eq!(
        (by_label["explanation"]["class"].as_u64(), by_label["explanation"]["method"].as_str()),
        (Some(2), Some("permutation"))
    );
    let (s, v) =
        call(&app, "POST", "/api/ml/predict", Some(json!({"features": ROW, "explain": {"class": "Z"}})), None).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_error")), "{v}");
    let many = json!({"features": vec![ROW; 101], "explain": true});
    let (s, v) = call(&app, "POST", "/api/ml/predict", Some(many), None).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("too_many_rows")), "{v}");
    // KServe V1 :explain.
    let (s, v1) =
        call(&app, "POST", &format!("/v1/models/{ID}:explain"), Some(json!({"instances": [ROW]})), None).await;
    assert_eq!(s, StatusCode::OK, "{v1}");
    assert_eq!(v1["explanations"][0]["values"], one["explanation"]["values"]);
    assert_eq!(v1["predictions"][0]["predicted_class"], one["predicted_class"]);
}

/// A request with raw bytes and headers; the answer's status, `Content-Type` and JSON body.
async fn raw(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, String, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let status = res.status();
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    (status, ct, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

const JSON_CT: (&str, &str) = ("content-type", "application/json");

/// One OIP input per feature, from [`ROW`] (BYTES for the categorical ones), minus `skip`.
fn oip_inputs(skip: &[&str]) -> Value {
    let names = [
        "carbon_intensity",
        "renewable_energy_pct",
        "water_usage",
        "waste_recycling_pct",
        "employee_turnover_pct",
        "gender_diversity_pct",
        "board_independence_pct",
        "controversy_score",
        "esg_disclosure_score",
        "sector",
        "region",
        "market_cap_tier",
        "revenue_musd",
        "employees",
        "years_public",
    ];
    let inputs: Vec<Value> = names
        .iter()
        .zip(ROW)
        .filter(|(n, _)| !skip.contains(n))
        .map(|(n, v)| match v.parse::<f64>() {
            Ok(x) => json!({"name": n, "datatype": "FP64", "shape": [1], "data": [x]}),
            Err(_) => json!({"name": n, "datatype": "BYTES", "shape": [1], "data": [v]}),
        })
        .collect();
    json!({ "inputs": inputs })
}

#[tokio::test]
async fn open_inference_protocol_requests_are_checked_as_triton_checks_them() {
    let (app, _dir) = router_over_fixture(None);
    let infer = format!("/v2/models/{ID}/infer");
    let post = |body: Value| {
        let app = app.clone();
        let uri = infer.clone();
        async move { raw(&app, "POST", &uri, &[JSON_CT], body.to_string().into_bytes()).await }
    };
    let (s, _, ok) = post(oip_inputs(&[])).await;
    assert_eq!(s, StatusCode::OK, "{ok}");
    // Every declared input is required: a misspelt or absent one is no imputed column.
    let (s, _, v) = post(oip_inputs(&["region", "employees"])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("missing inputs `region`, `employees`"), "{e}");
    // JSON elements must match the datatype.
    let one =
        |dt: &str, data: Value| json!({"inputs": [{"name": "x", "datatype": dt, "shape": [1, 15], "data": data}]});
    let nums: Vec<Value> = (0..15).map(|i| json!(i)).collect();
    // The first element is the wrong one; the other 14 fill the shape.
    let first = |v: Value| json!(std::iter::once(v).chain(std::iter::repeat_n(json!(0), 14)).collect::<Vec<_>>());
    for (dt, data, want) in [
        ("INT64", json!(0.5), "is 0.5, expected an integer"),
        ("UINT8", json!(300), "is 300, out of its range"),
        ("FP32", json!("0.5"), "is a string, expected a number"),
        ("BYTES", json!(0.5), "is a number, expected a string"),
        ("BOOL", json!(2), "is a number, expected true or false"),
    ] {
        let (s, _, v) = post(one(dt, first(data))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{dt}: {v}");
        assert!(v["error"].as_str().unwrap().contains(want), "{dt}: {v}");
    }
    let (s, _, v) = post(one("INT64", json!(nums))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "categorical columns hold text: {v}");
    // No outputs named means all of them; a repeated one and the classification extension are refused.
    let mut req = oip_inputs(&[]);
    req["outputs"] = json!([]);
    let (s, _, v) = post(req.clone()).await;
    assert_eq!((s, v["outputs"].as_array().map(Vec::len)), (StatusCode::OK, Some(3)), "{v}");
    req["outputs"] = json!([{"name": "probabilities"}, {"name": "probabilities"}]);
    let (s, _, v) = post(req.clone()).await;
    assert!(s == StatusCode::BAD_REQUEST && v["error"].as_str().unwrap().contains("twice"), "{v}");
    req["outputs"] = json!([{"name": "probabilities", "parameters": {"classification": 2}}]);
    let (s, _, v) = post(req).await;
    assert!(s.is_client_error() || s == StatusCode::NOT_IMPLEMENTED, "{s}");
    assert!(v["error"].as_str().unwrap().contains("classification extension"), "{v}");
    // Versions: only 1 exists.
    for uri in [format!("/v2/models/{ID}/versions/2"), format!("/v2/models/{ID}/versions/2/ready")] {
        let (s, _, v) = raw(&app, "GET", &uri, &[], Vec::new()).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
        assert!(v["error"].as_str().unwrap().contains("no version `2`"), "{v}");
    }
    let (s, _, _) = raw(&app, "GET", &format!("/v2/models/{ID}/versions/1/ready"), &[], Vec::new()).await;
    assert_eq!(s, StatusCode::OK);
    // An unknown model is a 404 whatever the body.
    let (s, _, v) = raw(&app, "POST", "/v2/models/model_2020_01_01_009/infer", &[JSON_CT], b"{".to_vec()).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    // Inference-Header-Content-Length must be a count; 0 means "all JSON", as in Triton.
    let body = oip_inputs(&[]).to_string().into_bytes();
    let (s, _, v) =
        raw(&app, "POST", &infer, &[JSON_CT, ("inference-header-content-length", "abc")], body.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("must be a byte count"), "{v}");
    let (s, _, _) = raw(&app, "POST", &infer, &[JSON_CT, ("inference-header-content-length", "0")], body).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn compressed_bodies_are_inflated_within_the_limit_and_errors_keep_each_protocols_shape() {
    use std::io::Write;
    let (app, _dir) = router_over_fixture(None);
    let infer = format!("/v2/models/{ID}/infer");
    let body = oip_inputs(&[]).to_string().into_bytes();
    let (_, _, plain) = raw(&app, "POST", &infer, &[JSON_CT], body.clone()).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&body).unwrap();
    let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zl.write_all(&body).unwrap();
    for (coding, bytes) in [("gzip", gz.finish().unwrap()), ("deflate", zl.finish().unwrap())] {
        let (s, _, v) = raw(&app, "POST", &infer, &[JSON_CT, ("content-encoding", coding)], bytes).await;
        assert_eq!((s, &v), (StatusCode::OK, &plain), "{coding}");
    }
    let (s, _, v) = raw(&app, "POST", &infer, &[JSON_CT, ("content-encoding", "br")], body).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(v["error"].as_str().unwrap().contains("Content-Encoding \"br\""), "{v}");
    // A small body that inflates past --max-body-bytes is refused, not inflated.
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![b' '; 11 << 20]).unwrap();
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 64 << 10);
    let (s, _, v) = raw(&app, "POST", "/invocations", &[JSON_CT, ("content-encoding", "gzip")], bomb).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["error_code"], "BAD_REQUEST", "MLflow's shape: {v}");
    // 413 and 405 answer in the route's protocol.
    let big = [JSON_CT, ("content-length", "99999999")];
    let (s, _, v) = raw(&app, "POST", &infer, &big, b"{}".to_vec()).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(v["error"].is_string(), "OIP's shape: {v}");
    let (s, ct, v) = raw(&app, "GET", &infer, &[], Vec::new()).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert!(ct.starts_with("application/json") && v["error"].as_str().unwrap().contains("GET"), "{ct} {v}");
    let (s, _, v) = raw(&app, "GET", "/invocations", &[], Vec::new()).await;
    assert_eq!((s, v["error_code"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("BAD_REQUEST")), "{v}");
}

#[tokio::test]
async fn misnamed_absent_and_repeated_columns_are_errors_not_imputed_values() {
    let (app, _dir) = router_over_fixture(None);
    let v1 = format!("/v1/models/{ID}:predict");
    // A record naming no feature.
    let (s, v) = call(&app, "POST", &v1, Some(json!({"instances": [{"sectr": "Energy"}]})), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("none of the given columns (`sectr`)"), "{v}");
    // A record naming a feature twice (last-wins elsewhere would differ by format).
    let twice = r#"{"instances": [{"sector": "Energy", "sector": "Consumer"}]}"#.to_owned();
    let (s, _, v) = raw(&app, "POST", &v1, &[JSON_CT], twice.into_bytes()).await;
    assert!(s == StatusCode::BAD_REQUEST && v["error"].as_str().unwrap().contains("`sector` is given twice"), "{v}");
    // A record may leave features out (missing values, imputed).
    let (s, v) = call(&app, "POST", &v1, Some(json!({"instances": [{"sector": "Energy"}]})), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // MLflow enforces its schema: every column, none twice; `params` is a dictionary.
    let names: Vec<String> = {
        let (_, meta) = call(&app, "GET", &format!("/v2/models/{ID}"), None, None).await;
        meta["inputs"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()).collect()
    };
    let split = |cols: &[String], row: &[&str]| json!({"dataframe_split": {"columns": cols, "data": [row]}});
    let (s, v) = call(&app, "POST", "/invocations", Some(split(&names, &ROW)), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(&app, "POST", "/invocations", Some(split(&names[1..], &ROW[1..])), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("missing column `carbon_intensity`"), "{v}");
    let mut dup = names.clone();
    dup[1] = dup[0].clone();
    let (s, v) = call(&app, "POST", "/invocations", Some(split(&dup, &ROW)), None).await;
    assert!(s == StatusCode::BAD_REQUEST && v["message"].as_str().unwrap().contains("given twice"), "{v}");
    let mut with_params = split(&names, &ROW);
    with_params["params"] = json!([1]);
    let (s, v) = call(&app, "POST", "/invocations", Some(with_params), None).await;
    assert!(s == StatusCode::BAD_REQUEST && v["message"].as_str().unwrap().contains("`params`"), "{v}");
    // A CSV header must hold every feature (a typo would otherwise impute a whole column).
    let header = names[1..].join(",");
    let csv = format!("{header}\n{}\n", ROW[1..].join(","));
    let (s, _, v) = raw(&app, "POST", "/invocations", &[("content-type", "text/csv")], csv.into_bytes()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("missing column `carbon_intensity`"), "{v}");
}

#[tokio::test]
async fn an_envelope_of_many_keys_is_answered_not_hung_on() {
    let (app, _dir) = router_over_fixture(None);
    // 200k members under the body limit, the first repeated at the end: read in one pass
    // (a scan per member took 37 s per route for this body; the timeout is 250x the linear time).
    let mut members: Vec<String> = (0..200_000).map(|i| format!("\"k{i}\":0")).collect();
    members.push("\"k0\":1".into());
    let body = format!("{{{}}}", members.join(","));
    for uri in ["/api/ml/predict".to_owned(), format!("/v1/models/{ID}:predict"), format!("/v2/models/{ID}/infer")] {
        let answer = raw(&app, "POST", &uri, &[JSON_CT], body.clone().into_bytes());
        let (s, _, v) = tokio::time::timeout(std::time::Duration::from_secs(10), answer).await.expect(&uri);
        assert!(s.is_client_error(), "{uri}: {s}");
        assert!(v.to_string().contains("duplicate field `k0`"), "{uri}: {v}");
    }
    // The same for an Open Inference Protocol list of outputs.
    let mut infer = oip_inputs(&[]);
    infer["outputs"] = (0..200_000).map(|i| json!({"name": format!("o{i}")})).collect();
    let uri = format!("/v2/models/{ID}/infer");
    let answer = raw(&app, "POST", &uri, &[JSON_CT], infer.to_string().into_bytes());
    let (s, _, v) = tokio::time::timeout(std::time::Duration::from_secs(10), answer).await.expect("outputs");
    assert!(s.is_client_error() && v.to_string().contains("unknown output `o0`"), "{s}: {v}");
}

#[tokio::test]
async fn rejections_from_extractors_are_json_too() {
    let (app, _dir) = router_over_fixture(None);
    for uri in ["/api/ml/models?limit=abc", "/api/ml/models?limit=-1", "/api/ml/models/%ff", "/api/ml/train/status/%ff"]
    {
        let (s, ct, v) = raw(&app, "GET", uri, &[], Vec::new()).await;
        assert!(s.is_client_error(), "{uri}: {s}");
        assert!(ct.starts_with("application/json"), "{uri}: {ct}");
        assert!(v["error"].is_string() && v["message"].as_str().is_some_and(|m| !m.is_empty()), "{uri}: {v}");
    }
}

#[tokio::test]
async fn mlflow_ping_is_ready_only_when_its_model_loads() {
    let (app, _dir) = router_over_fixture(None);
    assert_eq!(call(&app, "GET", "/ping", None, None).await.0, StatusCode::OK);
    let (app, _dir) = router_with(None, Some("model_2099_01_01_001"));
    let (s, v) = call(&app, "GET", "/ping", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error_code"], "RESOURCE_DOES_NOT_EXIST", "MLflow's error shape: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_stops_its_explanations() {
    // A model with a 100-row background: one explained row costs ~10^5 forward rows.
    let models = tempfile::tempdir().unwrap();
    common::train(models.path(), &["--epochs", "1"]);
    let limits = Limits {
        request: inference::request::Limits {
            max_explain_rows: 10_000,
            max_explain_evals: u64::MAX,
            ..inference::request::Limits::default()
        },
        max_heavy_predicts: 1,
        ..Limits::default()
    };
    let app = router_over_dir(models.path(), None, None, limits);
    // Minutes of explanations, for a client that leaves after a second.
    let slow = json!({"features": vec![ROW; 5_000], "explain": {"method": "permutation", "permutations": 64}});
    let abandoned = tokio::spawn({
        let app = app.clone();
        async move { call(&app, "POST", "/api/ml/predict", Some(slow), None).await }
    });
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    abandoned.abort();
    // One heavy slot: this explanation runs only once the abandoned one has given it back.
    let quick = json!({"features": ROW, "explain": true});
    let (s, v) = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        call(&app, "POST", "/api/ml/predict", Some(quick), None),
    )
    .await
    .expect("the abandoned explanations kept the only heavy slot");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["explanation"]["values"].is_object(), "{v}");
    let res = app.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let text = String::from_utf8(axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    assert!(text.contains("predicts_cancelled_total 1"), "{text}");
}
