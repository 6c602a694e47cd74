//! Golden parity: the native inference core reproduces the trainer's candle eval-mode outputs
//! on every fixture row (argmax equal, |Δp| ≤ 1e-5; regression relative error ≤ 1e-5).
//! Fixtures: `cargo run --release -p trainer --example parity_fixtures`.

mod common;

use inference::{Model, Prediction, ValueRef};

const CASES: [&str; 6] = ["esg_relu", "esg_gelu", "esg_tanh", "esg_leaky_relu", "esg_sigmoid", "diabetes_regression"];

#[test]
fn native_core_matches_candle_on_every_fixture_row() {
    for case in CASES {
        let dir = common::root().join("tests/fixtures/parity").join(case);
        let model = Model::from_bytes(&std::fs::read(dir.join("model.safetensors")).unwrap()).unwrap();
        let expected: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let mut rdr = csv::Reader::from_path(dir.join("inputs.csv")).unwrap();
        let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_owned).collect();
        assert_eq!(header, model.feature_names(), "{case}: inputs follow feature order");
        let mut rows = 0;
        let mut max_diff = 0f64;
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.unwrap();
            let p = model
                .predict(rec.iter().map(ValueRef::Text).collect::<Vec<_>>().into_iter())
                .unwrap_or_else(|e| panic!("{case} row {i}: {e}"));
            match p {
                Prediction::Class { predicted_class, probabilities, .. } => {
                    let want: Vec<f64> =
                        expected[i]["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
                    let argmax =
                        want.iter().enumerate().fold((0, f64::MIN), |b, (j, &v)| if v > b.1 { (j, v) } else { b }).0;
                    assert_eq!(predicted_class, argmax, "{case} row {i}");
                    for (a, b) in probabilities.iter().zip(&want) {
                        max_diff = max_diff.max((f64::from(*a) - b).abs());
                    }
                }
                Prediction::Value { predicted_value } => {
                    let want = expected[i]["predicted_value"].as_f64().unwrap();
                    max_diff = max_diff.max((f64::from(predicted_value) - want).abs() / want.abs().max(1.0));
                }
            }
            rows += 1;
        }
        assert!(rows >= 500, "{case}: only {rows} rows");
        assert!(max_diff <= 1e-5, "{case}: max difference {max_diff:e}");
    }
}

#[test]
fn batch_and_single_row_paths_agree() {
    let dir = common::root().join("tests/fixtures/parity/esg_relu");
    let model = Model::from_bytes(&std::fs::read(dir.join("model.safetensors")).unwrap()).unwrap();
    let mut rdr = csv::Reader::from_path(dir.join("inputs.csv")).unwrap();
    let recs: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    let batch = model.predict_batch(recs.iter().map(|r| r.iter().map(ValueRef::Text).collect::<Vec<_>>())).unwrap();
    for (r, b) in recs.iter().zip(&batch) {
        let single = model.predict(r.iter().map(ValueRef::Text).collect::<Vec<_>>().into_iter()).unwrap();
        match (single, b) {
            (Prediction::Class { probabilities: a, .. }, Prediction::Class { probabilities: b, .. }) => {
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() <= 1e-6, "{x} vs {y}");
                }
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn format_1_bundles_still_load_completely() {
    // The committed fixtures were written by format 1 (config nested as `train_config`).
    for case in CASES {
        let bytes =
            std::fs::read(common::root().join("tests/fixtures/parity").join(case).join("model.safetensors")).unwrap();
        let b = inference::Bundle::from_bytes(&bytes).unwrap();
        assert_eq!(b.metadata.format_version, 1, "{case}");
        assert_eq!(b.metadata.config.model_config.hidden_dims, [32, 16], "{case}");
        assert_eq!(b.metadata.config.train_config.epochs, 15, "{case}");
        assert!(Model::from_bytes(&bytes).unwrap().spec().explain.is_none());
    }
}
