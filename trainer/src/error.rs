//! The trainer's error types, one enum per failure domain; `main` maps them to exit codes
//! and the server to HTTP statuses, each in one place.

use std::path::PathBuf;

use thiserror::Error;

pub use inference::{BundleError, ConfigError, PredictError};

/// The dataset could not be read or is unusable as given.
#[derive(Debug, Error)]
pub enum DataLoadError {
    /// File-system error, with the path.
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The path is a directory.
    #[error("{0} is a directory, not a data file")]
    IsDirectory(PathBuf),
    /// Neither `.csv` nor `.json`.
    #[error("unsupported data file {0}: expected a .csv or .json file, or redis:KEY")]
    UnsupportedFormat(String),
    /// Zero bytes, or nothing but whitespace.
    #[error("{0} is empty")]
    Empty(String),
    /// A header but no data rows.
    #[error("{0} has a header but no data rows")]
    NoRows(String),
    /// Malformed CSV (ragged row, bad quoting), with its line.
    #[error("{source_name}, line {line}: {message}")]
    Csv { source_name: String, line: u64, message: String },
    /// Bytes that are not UTF-8.
    #[error("{source_name}, line {line}: invalid UTF-8 in column `{column}`")]
    InvalidUtf8 { source_name: String, line: u64, column: String },
    /// Two columns of the same name.
    #[error("{source_name}: duplicate column name `{0}`", source_name = .1)]
    DuplicateColumn(String, String),
    /// A column without a name.
    #[error("{source_name}: column {index} has a blank name", index = .0 + 1, source_name = .1)]
    BlankColumn(usize, String),
    /// An infinite number in a numeric column.
    #[error("{source_name}, row {row}: column `{column}` holds a non-finite number {value:?}")]
    NonFinite { source_name: String, row: u64, column: String, value: String },
    /// JSON that is neither an array of records nor an object of column arrays.
    #[error("{source_name}: {message}")]
    JsonShape { source_name: String, message: String },
    /// Invalid JSON syntax.
    #[error("{source_name}: invalid JSON: {message}")]
    Json { source_name: String, message: String },
    /// The target column is absent.
    #[error("target column `{target}` not found; the columns are: {columns}")]
    TargetNotFound { target: String, columns: String },
    /// Redis failure, naming the key.
    #[error("redis key `{key}`: {message}")]
    Redis { key: String, message: String },
}

/// A model id or directory that does not hold a bundle.
#[derive(Debug, Error)]
#[error("model `{model}` not found in {models_dir}{hint}")]
pub struct ModelNotFoundError {
    /// What was asked for.
    pub model: String,
    /// Where it was looked for.
    pub models_dir: PathBuf,
    /// A list of available ids, or empty.
    pub hint: String,
}

/// Training could not produce a model.
#[derive(Debug, Error)]
pub enum TrainingError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data could not be loaded.
    #[error(transparent)]
    Data(#[from] DataLoadError),
    /// The data loaded but cannot train this task.
    #[error("{0}")]
    Unusable(String),
    /// The loss became NaN or infinite.
    #[error("training diverged: loss is {loss} at epoch {epoch} (try a smaller learning rate)")]
    NonFiniteLoss { epoch: usize, loss: f64 },
    /// The tensor engine failed (first line of candle's message; its backtrace is dropped).
    #[error("tensor engine error: {0}")]
    Engine(String),
    /// The requested device is unavailable.
    #[error("{0}")]
    Device(String),
    /// Writing the bundle failed (nothing was left behind).
    #[error("cannot save the model under {path}: {message}")]
    Export { path: PathBuf, message: String },
    /// Stopped on request (server shutdown).
    #[error("training cancelled: {0}")]
    Cancelled(String),
}

/// Prediction through the CLI failed.
#[derive(Debug, Error)]
pub enum PredictionError {
    /// No such model.
    #[error(transparent)]
    ModelNotFound(#[from] ModelNotFoundError),
    /// The bundle is corrupt.
    #[error("cannot load model {path}: {source}")]
    Bundle { path: PathBuf, source: BundleError },
    /// A row could not be predicted.
    #[error("row {row}: {source}")]
    Row { row: usize, source: PredictError },
    /// The input file could not be read.
    #[error(transparent)]
    Input(#[from] DataLoadError),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
}

impl From<candle_core::Error> for TrainingError {
    fn from(e: candle_core::Error) -> Self {
        TrainingError::Engine(e.to_string().lines().next().unwrap_or_default().to_owned())
    }
}
