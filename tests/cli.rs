//! End-to-end CLI tests: train → bundle on disk → predict, reproducibility, config handling,
//! and the documented error lines and exit codes.

mod common;

use std::collections::BTreeMap;

use common::{entries, fixture, last_json, run, stderr, stdout, train, trainer};
use sha2::{Digest, Sha256};

/// Parse a safetensors file by hand (independently of the inference crate).
fn read_safetensors(bytes: &[u8]) -> (serde_json::Map<String, serde_json::Value>, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header.as_object().unwrap().clone(), &bytes[8 + n..])
}

#[test]
fn train_writes_a_complete_verifiable_bundle() {
    let models = tempfile::tempdir().unwrap();
    let s = train(
        models.path(),
        &["--data", &fixture("iris.csv"), "--target", "species", "--epochs", "40", "--save-test-rows"],
    );
    let id = s["model_id"].as_str().unwrap();
    assert!(id.starts_with("model_") && id.len() == "model_2026_11_26_001".len(), "{id}");
    let dir = models.path().join(id);
    let mut files = entries(&dir);
    files.sort();
    assert_eq!(files, ["metadata.json", "model.safetensors", "summary.json", "test_rows.csv", "training_curves.svg"]);
    assert!(entries(models.path()).iter().all(|e| !e.starts_with(".tmp")), "temp dir left behind");

    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("metadata.json")).unwrap()).unwrap();
    for key in [
        "format_version",
        "model_id",
        "saved_at",
        "task_type",
        "architecture",
        "config",
        "test_metrics",
        "preprocessing",
        "classes",
        "history",
        "epochs_run",
        "best_epoch",
        "dataset",
        "weights_sha256",
    ] {
        assert!(!meta[key].is_null(), "metadata lacks {key}");
    }
    assert_eq!(meta["format_version"], 2);
    assert_eq!(meta["model_id"], id);
    assert_eq!(meta["task_type"], "classification");
    assert_eq!(meta["classes"], serde_json::json!(["setosa", "versicolor", "virginica"]));
    for key in ["input_dim", "hidden_dims", "output_dim", "dropout_rate", "activation"] {
        assert!(!meta["architecture"][key].is_null(), "architecture lacks {key}");
    }
    for key in [
        "accuracy",
        "precision",
        "recall",
        "f1_score",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "confusion_matrix",
    ] {
        assert!(!meta["test_metrics"][key].is_null(), "test_metrics lacks {key}");
    }
    let pre = &meta["preprocessing"];
    assert_eq!(pre["feature_names"].as_array().unwrap().len(), 4);
    assert_eq!(pre["scaler"]["mean"].as_array().unwrap().len(), 4);
    assert_eq!(pre["features"][0]["kind"], "numeric");
    assert!(!pre["missing_strategy"].is_null());
    for key in ["source", "rows", "dropped_rows"] {
        assert!(!meta["dataset"][key].is_null(), "dataset lacks {key}");
    }
    let h = &meta["history"][0];
    assert!(h["train_loss"].is_f64() && h["val_loss"].is_f64() && h["val_accuracy"].is_f64(), "{h}");
    assert_eq!(meta["history"].as_array().unwrap().len() as u64, meta["epochs_run"].as_u64().unwrap());

    // The safetensors header embeds the same metadata; the hash covers the tensors in name order.
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let (header, data) = read_safetensors(&bytes);
    let embedded: serde_json::Value = serde_json::from_str(header["__metadata__"]["bundle"].as_str().unwrap()).unwrap();
    assert_eq!(embedded, meta);
    let tensors: BTreeMap<&String, &serde_json::Value> = header.iter().filter(|(k, _)| *k != "__metadata__").collect();
    let mut hasher = Sha256::new();
    for t in tensors.values() {
        let off = t["data_offsets"].as_array().unwrap();
        hasher.update(&data[off[0].as_u64().unwrap() as usize..off[1].as_u64().unwrap() as usize]);
        assert_eq!(t["dtype"], "F32");
    }
    let sha: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(meta["weights_sha256"], sha);

    // Shapes follow the architecture: 4 → 128 → 64 → 32 → 3.
    let shape = |n: &str| tensors[&n.to_owned()]["shape"].clone();
    assert_eq!(shape("hidden.0.linear.weight"), serde_json::json!([128, 4]));
    assert_eq!(shape("hidden.1.linear.weight"), serde_json::json!([64, 128]));
    assert_eq!(shape("hidden.2.bn.running_var"), serde_json::json!([32]));
    assert_eq!(shape("out.weight"), serde_json::json!([3, 32]));
    assert_eq!(shape("out.bias"), serde_json::json!([3]));
    // Six tensors per hidden block, the output layer, and the explanation background.
    assert_eq!(tensors.len(), 3 * 6 + 2 + 1);
    assert_eq!(shape("explain.background")[1], serde_json::json!(4));
    let svg = std::fs::read_to_string(dir.join("training_curves.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("validation loss"));
}

#[test]
fn predict_on_the_test_rows_reproduces_the_reported_accuracy() {
    let models = tempfile::tempdir().unwrap();
    // The embedded dataset has categorical columns and missing cells.
    let s = train(models.path(), &["--epochs", "25", "--save-test-rows"]);
    let dir = models.path().join(s["model_id"].as_str().unwrap());
    let o = run(trainer()
        .args(["predict", "--model"])
        .arg(&dir)
        .arg("--input")
        .arg(dir.join("test_rows.csv"))
        .arg("--json"));
    assert!(o.status.success(), "{}", stderr(&o));
    let labels: Vec<String> = csv::Reader::from_path(dir.join("test_rows.csv"))
        .unwrap()
        .deserialize::<BTreeMap<String, String>>()
        .map(|r| r.unwrap()["esg_rating"].clone())
        .collect();
    let preds: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(preds.len(), labels.len());
    let correct = preds.iter().zip(&labels).filter(|(p, l)| p["predicted_label"] == **l).count();
    let acc = correct as f64 / labels.len() as f64;
    assert_eq!(acc, s["test_metrics"]["accuracy"].as_f64().unwrap());
    for p in &preds {
        let probs = p["probabilities"].as_array().unwrap();
        assert_eq!(probs.len(), 5);
        let sum: f64 = probs.iter().map(|v| v.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-5);
        assert!(p["confidence"].is_f64() && p["predicted_class"].is_u64());
    }
}

#[test]
fn a_json_key_with_surrounding_whitespace_still_matches_its_test_rows_header() {
    // JSON keys are names as given ("x1\n"); a CSV header is read trimmed ("x1"). Names are
    // compared by their trim, so the model predicts from its own test_rows.csv.
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<serde_json::Value> = (0..80)
        .map(|i| {
            let x = f64::from(i) / 10.0;
            serde_json::json!({"x1\n": x, " x2": (x * 7.0) % 3.0, "y": if x > 4.0 { "hi" } else { "lo" }})
        })
        .collect();
    let data = dir.path().join("rows.json");
    std::fs::write(&data, serde_json::to_vec(&rows).unwrap()).unwrap();
    let models = dir.path().join("models");
    let s = train(&models, &["--data", data.to_str().unwrap(), "--target", "y", "--epochs", "30", "--save-test-rows"]);
    let model = models.join(s["model_id"].as_str().unwrap());
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(model.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["preprocessing"]["feature_names"], serde_json::json!(["x1\n", " x2"]));
    let o = run(trainer().args(["predict", "--model"]).arg(&model).arg("--input").arg(model.join("test_rows.csv")));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).lines().count(),
        s["test_metrics"]["confusion_matrix"].as_array().map_or(0, |m| {
            m.iter().flat_map(|r| r.as_array().unwrap()).map(|v| v.as_u64().unwrap() as usize).sum()
        })
    );
}

#[test]
fn crosscheck_compares_each_engine_with_the_inference_core() {
    // The parity fixtures: a classification case with categories and missing cells, and a regression case.
    for case in ["esg_relu", "esg_gelu", "diabetes_regression"] {
        let dir = common::root().join("tests/fixtures/parity").join(case);
        for engine in ["fused", "candle"] {
            let mut cmd = trainer();
            if engine == "candle" {
                cmd.env("TRAINER_ENGINE", "candle");
            }
            let o =
                run(cmd.args(["crosscheck", "--json", "--model"]).arg(&dir).arg("--input").arg(dir.join("inputs.csv")));
            assert!(o.status.success(), "{case} {engine}: {}", stderr(&o));
            let c = last_json(&o);
            assert_eq!(c["engine"], engine);
            assert_eq!(c["rows"], 600, "{case}");
            assert_eq!(c["class_disagreements"], 0, "{case}");
            assert!(c["max_abs_diff"].as_f64().unwrap() <= 1e-5, "{case} {engine}: {c}");
            assert_eq!(c["ok"], true);
        }
    }
    // Without --input it reads the model's own test rows; without them it says which file is missing.
    let models = tempfile::tempdir().unwrap();
    let s = train(models.path(), &["--epochs", "2", "--save-test-rows"]);
    let dir = models.path().join(s["model_id"].as_str().unwrap());
    let o = run(trainer().args(["crosscheck", "--model"]).arg(&dir));
    assert!(o.status.success() && stdout(&o).contains("(OK)"), "{}", stderr(&o));
    std::fs::remove_file(dir.join("test_rows.csv")).unwrap();
    let e = fails(&["crosscheck", "--model", dir.to_str().unwrap()], 6);
    assert!(e.contains("test_rows.csv"), "{e}");
    // "Built without CUDA" is one error: the same line and exit code as `train --device cuda`.
    let e = fails(
        &["crosscheck", "--model", dir.to_str().unwrap(), "--input", &fixture("iris.csv"), "--device", "cuda"],
        5,
    );
    let m = models.path().to_str().unwrap();
    let t = fails(&["train", "--device", "cuda", "--epochs", "1", "--models-dir", m], 5);
    assert!(e.contains("without CUDA support"), "{e}");
    assert_eq!(e.lines().last(), t.lines().last());
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let models = tempfile::tempdir().unwrap();
    let args = ["--data", &fixture("wine.csv"), "--target", "class", "--epochs", "8"];
    let sha = |s: &serde_json::Value| {
        let dir = models.path().join(s["model_id"].as_str().unwrap());
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("metadata.json")).unwrap()).unwrap();
        m["weights_sha256"].as_str().unwrap().to_owned()
    };
    let a = sha(&train(models.path(), &args));
    let b = sha(&train(models.path(), &args));
    let mut other = args.to_vec();
    other.extend(["--seed", "7"]);
    let c = sha(&train(models.path(), &other));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn public_datasets_meet_the_quality_bar() {
    let models = tempfile::tempdir().unwrap();
    for (file, target) in [("iris.csv", "species"), ("wine.csv", "class"), ("breast_cancer.csv", "diagnosis")] {
        let s = train(models.path(), &["--data", &fixture(file), "--target", target]);
        let acc = s["test_metrics"]["accuracy"].as_f64().unwrap();
        assert!(acc >= 0.93, "{file}: accuracy {acc}");
    }
    let s = train(models.path(), &["--data", &fixture("diabetes.csv"), "--target", "progression"]);
    assert_eq!(s["task_type"], "regression");
    let r2 = s["test_metrics"]["r2"].as_f64().unwrap();
    assert!(r2 >= 0.35, "diabetes: r2 {r2}");
}

#[test]
fn config_file_is_overridden_by_flags() {
    let models = tempfile::tempdir().unwrap();
    let cfg = models.path().join("cfg.json");
    std::fs::write(
        &cfg,
        serde_json::json!({
            "dataset_path": fixture("iris.csv"), "target_column": "species",
            "model_config": {"hidden_dims": [16, 8], "dropout_rate": 0.1, "activation": "tanh"},
            "train_config": {"epochs": 5, "batch_size": 16, "lr": 0.01, "optimizer": "sgd"},
            "missing_strategy": "median"
        })
        .to_string(),
    )
    .unwrap();
    let s = train(models.path(), &["--config", cfg.to_str().unwrap(), "--epochs", "3", "--activation", "gelu"]);
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(models.path().join(s["model_id"].as_str().unwrap()).join("metadata.json")).unwrap(),
    )
    .unwrap();
    let tc = &meta["config"];
    assert_eq!(tc["train_config"]["epochs"], 3);
    assert_eq!(tc["train_config"]["learning_rate"], 0.01);
    assert_eq!(tc["train_config"]["optimizer"], "sgd");
    assert_eq!(tc["model_config"]["hidden_dims"], serde_json::json!([16, 8]));
    assert_eq!(tc["model_config"]["activation"], "gelu");
    assert_eq!(tc["missing_strategy"], "median");
    assert_eq!(meta["architecture"]["activation"], "gelu");
    assert_eq!(meta["epochs_run"], 3);
    // A config file that cannot be read is a config error (exit 2), not a data error.
    let gone = models.path().join("gone.json");
    let e = fails(&["train", "--config", gone.to_str().unwrap(), "--models-dir", models.path().to_str().unwrap()], 2);
    assert!(e.contains("ConfigError") && e.contains("cannot read") && e.contains("gone.json"), "{e}");
}

/// Run `trainer ARGS`, expect failure with `code`, and return stderr.
fn fails(args: &[&str], code: i32) -> String {
    let o = run(trainer().args(args));
    assert_eq!(o.status.code(), Some(code), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
    let e = stderr(&o);
    assert!(!e.contains("panicked"), "{e}");
    e
}

#[test]
fn errors_are_one_clear_line_with_distinct_exit_codes() {
    let models = tempfile::tempdir().unwrap();
    let m = models.path().to_str().unwrap();
    let e = fails(&["train", "--data", "nope.csv", "--target", "y", "--models-dir", m], 3);
    assert!(e.contains("DataLoadError") && e.contains("nope.csv"), "{e}");
    let e = fails(&["train", "--data", &fixture("iris.csv"), "--target", "kind", "--models-dir", m], 3);
    assert!(
        e.contains("`kind` not found") && e.contains("sepal_length, sepal_width, petal_length, petal_width, species"),
        "{e}"
    );
    let e = fails(
        &["train", "--data", &fixture("iris.csv"), "--target", "species", "--dropout", "1.5", "--models-dir", m],
        2,
    );
    assert!(e.contains("model_config.dropout_rate"), "{e}");
    let e = fails(&["train", "--data", &fixture("iris.csv"), "--models-dir", m], 2);
    assert!(e.contains("target_column"), "{e}");
    let e = fails(
        &["train", "--data", &fixture("iris.csv"), "--target", "species", "--device", "cuda", "--models-dir", m],
        5,
    );
    assert!(e.contains("without CUDA support") || e.contains("CUDA device"), "{e}");

    let small = models.path().join("small.csv");
    std::fs::write(&small, "x,y\n1,a\n2,b\n3,a\n4,b\n").unwrap();
    let e = fails(&["train", "--data", small.to_str().unwrap(), "--target", "y", "--models-dir", m], 5);
    assert!(e.contains("at least 10"), "{e}");
    let one = models.path().join("one.csv");
    std::fs::write(&one, (0..20).fold("x,y\n".to_owned(), |s, i| s + &format!("{i},a\n"))).unwrap();
    let e = fails(&["train", "--data", one.to_str().unwrap(), "--target", "y", "--models-dir", m], 5);
    assert!(e.contains("single class"), "{e}");
    let diverge = [
        "train",
        "--data",
        &fixture("diabetes.csv"),
        "--target",
        "progression",
        "--optimizer",
        "sgd",
        "--lr",
        "10",
        "--models-dir",
        m,
    ];
    let e = fails(&diverge, 5);
    // Host engines stop at the first non-finite batch, in the epoch it happened.
    assert!(e.contains("diverged") && e.contains("at epoch 1 "), "{e}");
    assert!(entries(models.path()).iter().all(|e| !e.starts_with("model_")), "a failed run left a model");

    let e = fails(&["predict", "--model", "model_1999_01_01_001", "--models-dir", m, "--features", "1,2,3,4"], 4);
    assert!(e.contains("ModelNotFoundError"), "{e}");
}

#[test]
fn predict_features_errors_name_the_problem() {
    let models = tempfile::tempdir().unwrap();
    let s = train(models.path(), &["--epochs", "3"]);
    let id = s["model_id"].as_str().unwrap();
    let m = models.path().to_str().unwrap();
    let e = fails(&["predict", "--model", id, "--models-dir", m, "--features", "1,2,3"], 6);
    assert!(e.contains("expected 15, got 3"), "{e}");
    let row = "38.9,60.2,1.83,59.8,16.6,31.3,82.4,3.8,58.0,Mars,Europe,Small,794.4,3689,9";
    let e = fails(&["predict", "--model", id, "--models-dir", m, "--features", row], 6);
    assert!(e.contains("unknown category \"Mars\" for column `sector`"), "{e}");
    // Empty cells are missing values and get the training fill.
    let row = "38.9,,1.83,59.8,16.6,31.3,82.4,3.8,58.0,Energy,,Small,794.4,3689,9";
    let o = run(trainer().args(["predict", "--model", id, "--models-dir", m, "--features", row, "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(last_json(&o)["predicted_label"].is_string());
    // An empty line is one empty field, not "no rows" (exit 0 with nothing printed).
    let e = fails(&["predict", "--model", id, "--models-dir", m, "--features", ""], 6);
    assert!(e.contains("expected 15, got 1"), "{e}");
    // A CSV whose header lacks a feature is refused: a typo would impute the whole column.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "carbon_intensity,sector\n38.9,Energy\n").unwrap();
    let e = fails(&["predict", "--model", id, "--models-dir", m, "--input", csv.to_str().unwrap()], 6);
    assert!(e.contains("missing columns `renewable_energy_pct`"), "{e}");
    // An export that cannot be written says so (not "cannot read").
    let out = dir.path().join("no/such/dir/m.onnx");
    let e = fails(&["export", "--model", id, "--models-dir", m, "--format", "onnx", "--out", out.to_str().unwrap()], 6);
    assert!(e.contains("cannot write") && e.contains("m.onnx"), "{e}");
}

#[test]
fn save_split_writes_a_partition_of_the_data_rows() {
    let models = tempfile::tempdir().unwrap();
    let s =
        train(models.path(), &["--data", &fixture("iris.csv"), "--target", "species", "--epochs", "2", "--save-split"]);
    let dir = std::path::Path::new(s["model_dir"].as_str().unwrap());
    let split: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("split.json")).unwrap()).unwrap();
    let part = |k: &str| split[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect::<Vec<_>>();
    let (tr, va, te) = (part("train"), part("val"), part("test"));
    assert_eq!((tr.len(), va.len(), te.len()), (105, 15, 30));
    let mut all: Vec<u64> = tr.into_iter().chain(va).chain(te).collect();
    all.sort_unstable();
    assert_eq!(all, (0..150).collect::<Vec<u64>>());
}

#[test]
fn hidden_none_trains_a_linear_model_and_bad_widths_say_why() {
    let models = tempfile::tempdir().unwrap();
    let s = train(models.path(), &["--hidden", "none", "--epochs", "2"]);
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(std::path::Path::new(s["model_dir"].as_str().unwrap()).join("metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["architecture"]["hidden_dims"], serde_json::json!([]), "{}", meta["architecture"]);
    let o = run(trainer().args(["train", "--hidden", "64,x", "--models-dir"]).arg(models.path()));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`x` is not a width: give widths like 128,64, or none"), "{}", stderr(&o));
}

#[test]
fn without_test_rows_the_metrics_are_null_not_zero() {
    let models = tempfile::tempdir().unwrap();
    let args = ["--data", &fixture("iris.csv"), "--target", "species", "--epochs", "2", "--test-size", "0"];
    let s = train(models.path(), &args);
    assert!(s["test_metrics"].is_null(), "{}", s["test_metrics"]);
    let dir = std::path::Path::new(s["model_dir"].as_str().unwrap());
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("metadata.json")).unwrap()).unwrap();
    assert!(meta["test_metrics"].is_null(), "{}", meta["test_metrics"]);
    assert!(meta["warnings"].to_string().contains("no test rows"), "{}", meta["warnings"]);
    // The bundle still loads and predicts.
    let o = run(trainer().args(["predict", "--features", "5.1,3.5,1.4,0.2", "--json", "--model"]).arg(dir));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("predicted_class"), "{}", stdout(&o));
}
