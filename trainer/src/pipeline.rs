//! The whole job, shared by `trainer train`, the server's workers and `trainer tune`:
//! load → prepare → train → evaluate, giving a [`Trained`] model that [`crate::export`] turns
//! into a bundle and a [`crate::store::ModelStore`] saves.

use std::sync::atomic::AtomicBool;

use inference::config::{CheckedConfig, TaskType, TrainConfig};
use inference::record::{EpochRecord, Metadata, TestMetrics};
use inference::spec::FORMAT_VERSION;
use inference::Tensor;

use crate::data::{self, ColumnData, DataContext, Table, EMBEDDED_SOURCE, EMBEDDED_TARGET};
use crate::error::TrainingError;
use crate::export::CURVES_FILE;
use crate::prep::{self, Prepared};
use crate::{device, metrics, plot, train};

/// Where and how to run, beyond the training config itself.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Where datasets are read from.
    pub data: DataContext,
    /// Also keep the raw test rows, to be written as `test_rows.csv` beside the bundle.
    pub save_test_rows: bool,
    /// Also write `split.json`: which data rows went to train, validation and test.
    pub save_split: bool,
}

/// Progress of a run.
#[derive(Debug)]
pub enum Event<'a> {
    /// The data is loaded and split.
    Prepared {
        /// The prepared splits.
        prepared: &'a Prepared,
        /// Whether the task was guessed from the target.
        task_guessed: bool,
        /// The device's name.
        device: &'a str,
    },
    /// An epoch finished.
    Epoch {
        /// Its record.
        record: &'a EpochRecord,
        /// The configured number of epochs.
        total_epochs: usize,
    },
}

/// A trained model, not yet saved: metadata (without id, time and hash), tensors and the
/// files that go beside the bundle.
#[derive(Debug, Clone)]
pub struct Trained {
    /// Everything but `model_id`, `saved_at` and `weights_sha256`, which saving fills in.
    pub metadata: Metadata,
    /// The network's (and the explanation background's) tensors.
    pub tensors: std::collections::BTreeMap<String, Tensor>,
    /// Extra files: the training curves, and the test rows when asked.
    pub extra: Vec<(String, Vec<u8>)>,
    /// Training rows per second of the training loop.
    pub samples_per_second: f64,
}

/// File name of the optional raw test rows.
pub const TEST_ROWS_FILE: &str = "test_rows.csv";
/// File name of the optional split: 0-based data rows (file order) of each split.
pub const SPLIT_FILE: &str = "split.json";

/// The data loaded, prepared and split, and the device chosen: everything a training of
/// this config's data needs (`trainer tune` trains many configs on one of these).
pub struct PreparedRun {
    /// `test_rows.csv` when asked for (`RunOptions::save_test_rows`). The table itself is
    /// dropped once split: training holds only the encoded splits.
    pub test_rows_csv: Option<Vec<u8>>,
    /// The splits and fitted preprocessing.
    pub prepared: Prepared,
    /// Dataset source, as recorded.
    pub source: String,
    /// Target column.
    pub target: String,
    /// Where training runs.
    pub device: candle_core::Device,
    /// Its name (`cpu`, `cuda:0`).
    pub device_name: String,
}

/// Load the data, prepare and split it (fitted on the train split only), pick the device.
pub fn prepare(cfg: &CheckedConfig, opts: &RunOptions) -> Result<PreparedRun, TrainingError> {
    prepare_table(data::load(cfg.source(), &opts.data)?, cfg, opts, None)
}

/// [`prepare`] a loaded table, optionally as one fold of k ([`prep::plan`]).
pub fn prepare_table(
    table: data::Table,
    cfg: &CheckedConfig,
    opts: &RunOptions,
    fold: Option<prep::split::Fold>,
) -> Result<PreparedRun, TrainingError> {
    let config = cfg.config();
    let source = config.dataset_path.clone().unwrap_or_else(|| EMBEDDED_SOURCE.to_owned());
    let target = cfg.target_column().unwrap_or(EMBEDDED_TARGET).to_owned();
    let plan = prep::plan(&table, config, &target, &source, fold)?;
    let test_rows_csv = opts.save_test_rows.then(|| plan.test_rows_csv(&table)).transpose()?;
    let prepared = prep::encode(table, plan)?;
    let (device, device_name) = device::select(config.train_config.device)?;
    Ok(PreparedRun { test_rows_csv, prepared, source, target, device, device_name })
}

/// Run the whole pipeline.
pub fn run(
    cfg: &CheckedConfig,
    opts: &RunOptions,
    on_event: &mut dyn FnMut(Event<'_>),
    cancel: &AtomicBool,
) -> Result<Trained, TrainingError> {
    let data = prepare(cfg, opts)?;
    let config = cfg.config();
    on_event(Event::Prepared {
        prepared: &data.prepared,
        task_guessed: config.task_type.is_none(),
        device: &data.device_name,
    });
    let trained = train::train(
        &data.prepared,
        config,
        &data.device,
        &mut |record, total_epochs| on_event(Event::Epoch { record, total_epochs }),
        cancel,
    )?;
    finish(config, &data, trained, opts)
}

/// The warning of a run without a test split.
pub const NO_TEST_ROWS: &str = "test_size is 0: there are no test rows, so test_metrics is null";

/// Evaluate a trained network on the test split (the only place the test split is used) and
/// assemble what export needs: metadata, tensors, the explanation background and the curves.
pub fn finish(
    config: &TrainConfig,
    data: &PreparedRun,
    trained: train::Trained,
    opts: &RunOptions,
) -> Result<Trained, TrainingError> {
    let (prepared, source) = (&data.prepared, &data.source);
    // No test rows, no scores: zeros would read as a model that is always wrong.
    let test_metrics = (prepared.test.rows > 0).then(|| test_metrics(trained.model.as_ref(), prepared)).transpose()?;
    let mut warnings = prepared.warnings.clone();
    if prepared.test.rows == 0 {
        warnings.push(NO_TEST_ROWS.into());
    }
    let mut recorded = config.clone();
    recorded.target_column = Some(data.target.clone());
    recorded.task_type = Some(prepared.task);
    let mut metadata = Metadata {
        format_version: FORMAT_VERSION,
        model_id: String::new(),
        saved_at: String::new(),
        task_type: prepared.task,
        architecture: trained.model.architecture().clone(),
        config: recorded,
        test_metrics,
        preprocessing: prepared.preprocessing.clone(),
        classes: prepared.classes.clone(),
        explain: None,
        history: trained.history.clone(),
        epochs_run: trained.epochs_run,
        best_epoch: trained.best_epoch,
        dataset: prepared.dataset.clone(),
        train_seconds: trained.train_seconds,
        device: data.device_name.clone(),
        engine: trained.model.engine().to_owned(),
        warnings,
        tuning: None,
        weights_sha256: String::new(),
    };
    let mut tensors = trained.model.export()?;
    crate::importance::attach(&mut metadata, &mut tensors, &prepared.train, &prepared.test)?;
    let title = format!("{} on {}", metadata.task_type.as_str(), source);
    let mut extra = Vec::new();
    match plot::training_curves_svg(&metadata.history, &title) {
        Ok(svg) => extra.push((CURVES_FILE.to_owned(), svg.into_bytes())),
        Err(e) => tracing::warn!("could not draw the training curves: {e}"),
    }
    if let Some(csv) = &data.test_rows_csv {
        extra.push((TEST_ROWS_FILE.to_owned(), csv.clone()));
    }
    if opts.save_split {
        let split = serde_json::json!({
            "train": prepared.train.table_rows,
            "val": prepared.val.table_rows,
            "test": prepared.test.table_rows,
        });
        extra.push((SPLIT_FILE.to_owned(), split.to_string().into_bytes()));
    }
    Ok(Trained { metadata, tensors, extra, samples_per_second: trained.samples_per_second })
}

/// Test-split metrics from the trained network's eval-mode outputs.
fn test_metrics(m: &dyn crate::engine::Trainable, p: &Prepared) -> Result<TestMetrics, TrainingError> {
    let out = m.predict_raw(&p.test.x, p.test.rows)?;
    Ok(match p.task {
        TaskType::Classification => {
            let k = p.output_dim();
            TestMetrics::Classification(metrics::classification(&p.test.class_ids, &metrics::argmax_rows(&out, k), k))
        }
        TaskType::Regression => {
            let t = p.preprocessing.target_scaler;
            let pred: Vec<f64> =
                out.iter().map(|&v| t.map_or(f64::from(v), |t| f64::from(v) * t.scale + t.mean)).collect();
            TestMetrics::Regression(metrics::regression(&p.test.values, &pred))
        }
    })
}

/// The given table rows as CSV text (missing cells, and those `blank(column, row)` names, empty).
pub fn rows_csv(table: &Table, rows: &[usize], blank: &dyn Fn(usize, usize) -> bool) -> Result<Vec<u8>, TrainingError> {
    let err = |e: &dyn std::fmt::Display| TrainingError::Unusable(format!("cannot write {TEST_ROWS_FILE}: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(table.columns.iter().map(|c| c.name.as_str())).map_err(|e| err(&e))?;
    for &r in rows {
        w.write_record(table.columns.iter().enumerate().map(|(j, c)| match &c.data {
            _ if blank(j, r) => String::new(),
            ColumnData::Numeric(v) if v[r].is_nan() => String::new(),
            ColumnData::Numeric(v) => v[r].to_string(),
            ColumnData::Text(v) => v[r].clone().unwrap_or_default(),
        }))
        .map_err(|e| err(&e))?;
    }
    w.into_inner().map_err(|e| err(&e))
}
