//! Regenerate the golden parity fixtures under `tests/fixtures/parity/<case>/`:
//! a bundle, ≥ 500 raw input rows (some cells blanked) and the trainer's own candle
//! eval-mode outputs for them. The native and wasm inference tests compare against these.
//!
//! `cargo run --release -p trainer --example parity_fixtures`

use std::path::Path;
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use inference::config::{Activation, TaskType, TrainConfig};
use inference::{Bundle, ValueRef};
use trainer::data::{self, DataContext, Table};
use trainer::engine::candle::Mlp;
use trainer::pipeline::{self, rows_csv, RunOptions};

const ROWS: usize = 600;
const BLANK: f64 = 0.05;

struct Case {
    name: &'static str,
    data: Option<&'static str>,
    target: Option<&'static str>,
    activation: Activation,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cases = [
        Case { name: "esg_relu", data: None, target: None, activation: Activation::Relu },
        Case { name: "esg_gelu", data: None, target: None, activation: Activation::Gelu },
        Case { name: "esg_tanh", data: None, target: None, activation: Activation::Tanh },
        Case { name: "esg_leaky_relu", data: None, target: None, activation: Activation::LeakyRelu },
        Case { name: "esg_sigmoid", data: None, target: None, activation: Activation::Sigmoid },
        Case {
            name: "diabetes_regression",
            data: Some("tests/fixtures/diabetes.csv"),
            target: Some("progression"),
            activation: Activation::Relu,
        },
    ];
    for case in cases {
        let mut cfg = TrainConfig {
            dataset_path: case.data.map(|d| root.join(d).display().to_string()),
            target_column: case.target.map(str::to_owned),
            ..TrainConfig::default()
        };
        cfg.model_config.activation = case.activation;
        cfg.model_config.hidden_dims = vec![32, 16];
        cfg.train_config.epochs = 15;
        let checked = cfg.clone().check()?;
        let trained = pipeline::run(&checked, &RunOptions::default(), &mut |_| {}, &AtomicBool::new(false))?;
        let id = trainer::store::id_for("2026_11_26", 1);
        let bundle_bytes = trainer::export::finish(trained, &id, chrono_now())?.bundle;
        let bundle = Bundle::from_bytes(&bundle_bytes)?;

        // Inputs: rows of the data (features only), cycled to ROWS, with cells blanked at random.
        let table = data::load(checked.source(), &DataContext::default())?;
        let inputs = blanked_inputs(&table, &bundle.metadata.preprocessing.feature_names, case.name)?;
        let csv = rows_csv(&inputs, &(0..inputs.n_rows()).collect::<Vec<_>>(), &|_, _| false)?;

        // Expected: candle eval-mode outputs on the core-preprocessed rows.
        let pre = inference::Preprocessor::new(&bundle.metadata.preprocessing);
        let n = pre.num_features();
        let mut x = vec![0f32; inputs.n_rows() * n];
        for r in 0..inputs.n_rows() {
            let row: Vec<ValueRef> = inputs.columns.iter().map(|c| c.value(r)).collect();
            pre.transform_row(row.into_iter(), &mut x[r * n..(r + 1) * n])?;
        }
        let m = Mlp::from_bundle(&bundle, &Device::Cpu)?;
        let raw = m.predict_raw(&x, inputs.n_rows())?;
        let expected: Vec<serde_json::Value> = trainer::crosscheck::api_outputs(&bundle.metadata, &raw)
            .into_iter()
            .map(|o| match bundle.metadata.task_type {
                TaskType::Classification => serde_json::json!({ "probabilities": o }),
                TaskType::Regression => serde_json::json!({ "predicted_value": o[0] }),
            })
            .collect();

        let dir = root.join("tests/fixtures/parity").join(case.name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("model.safetensors"), &bundle_bytes)?;
        std::fs::write(dir.join("inputs.csv"), csv)?;
        std::fs::write(dir.join("expected.json"), serde_json::to_vec(&expected)?)?;
        println!("{}: {} rows, model {}", case.name, inputs.n_rows(), bundle.metadata.model_id);
    }
    Ok(())
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// The feature columns of `table`, cycled to ROWS rows, with about BLANK of the cells missing.
fn blanked_inputs(table: &Table, features: &[String], seed: &str) -> Result<Table, Box<dyn std::error::Error>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.bytes().map(u64::from).sum());
    let rows: Vec<usize> = (0..ROWS).map(|i| i % table.n_rows()).collect();
    let mut columns = Vec::new();
    for f in features {
        let mut c = table.column(f).ok_or("feature column missing")?.take(&rows);
        match &mut c.data {
            data::ColumnData::Numeric(v) => {
                let blanked = v.iter().map(|x| if rng.random_bool(BLANK) { f32::NAN } else { x }).collect::<Vec<_>>();
                *v = blanked.into();
            }
            data::ColumnData::Text(v) => v.iter_mut().for_each(|x| {
                if rng.random_bool(BLANK) {
                    *x = None;
                }
            }),
        }
        columns.push(c);
    }
    Ok(Table { columns, warnings: Vec::new() })
}
