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
    let dir = tempfile::tempdir().unwrap();
    let fixture = common::root().join("tests/fixtures/parity/esg_relu/model.safetensors");
    let mut b = inference::Bundle::from_bytes(&std::fs::read(fixture).unwrap()).unwrap();
    b.metadata.model_id = ID.into();
    std::fs::create_dir(dir.path().join(ID)).unwrap();
    std::fs::write(dir.path().join(ID).join(BUNDLE_FILE), b.to_safetensors().unwrap()).unwrap();
    let config = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        api_key: api_key.map(str::to_owned),
        insecure_no_auth: false,
        web_dir: None,
        mlflow_model: None,
        run: RunOptions {
            data: DataContext { data_dir: Some(dir.path().to_owned()), ..DataContext::default() },
            ..RunOptions::default()
        },
        caps: Caps::default(),
        limits: Limits::default(),
        workers: 0,
        max_trials: 10,
    };
    let store = FsStore::open_dir(dir.path(), FsOptions::default()).unwrap();
    let queue = LocalQueue::new(None, LocalOptions::default()).unwrap();
    (router(AppState::new(config, Arc::new(store), Arc::new(queue))), dir)
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
        Some(json!({"features": ROW, "explain": {"class": "C", "method": "exact"}})),
        None,
    )
    .await;
    assert_eq!(
        (by_label["explanation"]["class"].as_u64(), by_label["explanation"]["method"].as_str()),
        (Some(2), Some("exact"))
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
