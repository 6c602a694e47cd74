//! The whole job, shared by `trainer train` and the HTTP server: load → prepare → train →
//! evaluate → export.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use inference::config::{TaskType, TrainConfig};
use inference::metadata::{EpochRecord, Metadata, TestMetrics, FORMAT_VERSION};

use crate::data::{self, redis::RedisOptions, ColumnData, Table, EMBEDDED_SOURCE, EMBEDDED_TARGET};
use crate::error::{ConfigError, TrainingError};
use crate::export::{self, CURVES_FILE};
use crate::prep::{self, Prepared};
use crate::{device, metrics, plot, train};

/// Where and how to run, beyond the training config itself.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Parent directory of model directories.
    pub models_dir: PathBuf,
    /// Redis connection for `redis:KEY` datasets.
    pub redis: RedisOptions,
    /// Also write the raw test rows as `test_rows.csv` into the model directory.
    pub save_test_rows: bool,
    /// Relative dataset paths are read from here (the server's `--data-dir`); the metadata
    /// records the path as given.
    pub data_dir: Option<PathBuf>,
}

/// Progress of a run.
#[derive(Debug)]
pub enum Event<'a> {
    /// The data is loaded and split.
    Prepared { prepared: &'a Prepared, task_guessed: bool, device: &'a str },
    /// An epoch finished.
    Epoch { record: &'a EpochRecord, total_epochs: usize },
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The saved model's metadata.
    pub metadata: Metadata,
    /// Its directory.
    pub model_dir: PathBuf,
    /// Training rows per second of the training loop.
    pub samples_per_second: f64,
}

/// File name of the optional raw test rows.
pub const TEST_ROWS_FILE: &str = "test_rows.csv";

/// Run the whole pipeline.
pub fn run(
    cfg: &TrainConfig,
    opts: &RunOptions,
    on_event: &mut dyn FnMut(Event<'_>),
    cancel: &AtomicBool,
) -> Result<RunResult, TrainingError> {
    cfg.validate()?;
    let source = cfg.dataset_path.clone().unwrap_or_else(|| EMBEDDED_SOURCE.to_owned());
    let target = match (&cfg.target_column, &cfg.dataset_path) {
        (Some(t), _) => t.clone(),
        (None, None) => EMBEDDED_TARGET.to_owned(),
        (None, Some(_)) => {
            return Err(ConfigError {
                field: "target_column".into(),
                message: "is required with a dataset_path".into(),
            }
            .into())
        }
    };
    let resolved = match (&opts.data_dir, &cfg.dataset_path) {
        (Some(dir), Some(p)) if !p.starts_with("redis:") => Some(dir.join(p).display().to_string()),
        _ => cfg.dataset_path.clone(),
    };
    let table = data::load(resolved.as_deref(), &opts.redis)?;
    let prepared = prep::prepare(&table, cfg, &target, &source)?;
    let (device, device_name) = device::select(cfg.train_config.device)?;
    on_event(Event::Prepared { prepared: &prepared, task_guessed: cfg.task_type.is_none(), device: &device_name });

    let trained = train::train(
        &prepared,
        cfg,
        &device,
        &mut |record, total_epochs| on_event(Event::Epoch { record, total_epochs }),
        cancel,
    )?;
    let test_metrics = test_metrics(trained.model.as_ref(), &prepared)?;
    let mut warnings = prepared.warnings.clone();
    if prepared.test.rows == 0 {
        warnings.push("test_size is 0: test_metrics are not meaningful".into());
    }
    let mut train_config = cfg.clone();
    train_config.target_column = Some(target);
    train_config.task_type = Some(prepared.task);
    let metadata = Metadata {
        format_version: FORMAT_VERSION,
        model_id: String::new(),
        saved_at: String::new(),
        task_type: prepared.task,
        architecture: trained.model.architecture().clone(),
        train_config,
        test_metrics,
        preprocessing: prepared.preprocessing.clone(),
        classes: prepared.classes.clone(),
        history: trained.history.clone(),
        epochs_run: trained.epochs_run,
        best_epoch: trained.best_epoch,
        dataset: prepared.dataset.clone(),
        train_seconds: trained.train_seconds,
        device: device_name,
        engine: trained.model.engine().to_owned(),
        warnings,
        weights_sha256: String::new(),
    };
    let title = format!("{} on {}", metadata.task_type.as_str(), source);
    let mut extra = Vec::new();
    match plot::training_curves_svg(&metadata.history, &title) {
        Ok(svg) => extra.push((CURVES_FILE, svg.into_bytes())),
        Err(e) => tracing::warn!("could not draw the training curves: {e}"),
    }
    if opts.save_test_rows {
        extra.push((TEST_ROWS_FILE, rows_csv(&table, &prepared.test.table_rows)?));
    }
    let (metadata, model_dir) = export::save(&opts.models_dir, metadata, trained.model.export()?, &extra)?;
    Ok(RunResult { metadata, model_dir, samples_per_second: trained.samples_per_second })
}

/// Test-split metrics from the trained network's eval-mode outputs.
fn test_metrics(m: &dyn crate::model::Trainable, p: &Prepared) -> Result<TestMetrics, TrainingError> {
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

/// The given table rows as CSV text (missing cells empty).
pub fn rows_csv(table: &Table, rows: &[usize]) -> Result<Vec<u8>, TrainingError> {
    let err = |e: csv::Error| TrainingError::Export { path: TEST_ROWS_FILE.into(), message: e.to_string() };
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(table.columns.iter().map(|c| c.name.as_str())).map_err(err)?;
    for &r in rows {
        w.write_record(table.columns.iter().map(|c| match &c.data {
            ColumnData::Numeric(v) if v[r].is_nan() => String::new(),
            ColumnData::Numeric(v) => v[r].to_string(),
            ColumnData::Text(v) => v[r].clone().unwrap_or_default(),
        }))
        .map_err(err)?;
    }
    w.into_inner().map_err(|e| TrainingError::Export { path: TEST_ROWS_FILE.into(), message: e.to_string() })
}
