//! The trainer's error types, one enum per failure domain, each with a machine-readable
//! `kind()`. They are mapped once at each edge: to exit codes by [`ExitCode`] (used by
//! `main.rs`) and to HTTP statuses in `server/error.rs`.
//!
//! Messages never echo cell contents of the data (a dataset may hold secrets): they name
//! rows, columns and sources.

use std::path::PathBuf;

use thiserror::Error;

pub use inference::{BundleError, ConfigError, PredictError, RequestError};

/// The process exit code of an error family (documented in the README).
pub trait ExitCode {
    /// 2 config, 3 data, 4 model not found, 5 training (and device), 6 prediction.
    fn exit_code(&self) -> u8;
    /// The error family's name, printed before the message (`ConfigError: …`).
    fn family(&self) -> &'static str;
}

/// The dataset could not be read or is unusable as given.
#[derive(Debug, Error)]
pub enum DataLoadError {
    /// File-system error, with the path as the user gave it.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path (relative to the server's data dir when it came from a request).
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path is a directory.
    #[error("{0} is a directory, not a data file")]
    IsDirectory(PathBuf),
    /// The path is a FIFO, socket or device: reading it could block forever.
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    /// Larger than the configured limit.
    #[error("{name} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// The source.
        name: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
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
    Csv {
        /// The source.
        source_name: String,
        /// 1-based line.
        line: u64,
        /// What is wrong (never the cell text).
        message: String,
    },
    /// Bytes that are not UTF-8.
    #[error("{source_name}, line {line}: invalid UTF-8 in column `{column}`")]
    InvalidUtf8 {
        /// The source.
        source_name: String,
        /// 1-based line.
        line: u64,
        /// The column.
        column: String,
    },
    /// Two columns of the same name.
    #[error("{source_name}: duplicate column name `{0}`", source_name = .1)]
    DuplicateColumn(String, String),
    /// A column without a name.
    #[error("{source_name}: column {index} has a blank name", index = .0 + 1, source_name = .1)]
    BlankColumn(usize, String),
    /// An infinite (or beyond-f32) number in a numeric column.
    #[error(
        "{source_name}, row {row}: column `{column}` holds an infinite number or one beyond f32's range (±3.4e38)"
    )]
    NonFinite {
        /// The source.
        source_name: String,
        /// The row (data lines from 1 for CSV, records from 0 for JSON).
        row: u64,
        /// The column.
        column: String,
    },
    /// JSON that is neither an array of records nor an object of column arrays.
    #[error("{source_name}: {message}")]
    JsonShape {
        /// The source.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// Invalid JSON syntax.
    #[error("{source_name}: invalid JSON: {message}")]
    Json {
        /// The source.
        source_name: String,
        /// The parser's message (positions only).
        message: String,
    },
    /// The target column is absent.
    #[error("target column `{target}` not found{columns}")]
    TargetNotFound {
        /// The target asked for.
        target: String,
        /// `; the columns are: …` when the data parsed as a table of several columns, else empty.
        columns: String,
    },
    /// A file path outside the data dir, or that does not exist there.
    #[error("{0}")]
    OutsideDataDir(String),
    /// A Redis key the server does not allow reading.
    #[error("redis key `{key}` is not allowed here (the server reads only keys matching {allowed})")]
    KeyNotAllowed {
        /// The key (truncated).
        key: String,
        /// The allowed patterns.
        allowed: String,
    },
    /// Redis failure, naming the key.
    #[error("redis key `{key}`: {message}")]
    Redis {
        /// The key.
        key: String,
        /// What failed.
        message: String,
    },
}

impl DataLoadError {
    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "data_unreadable",
            Self::IsDirectory(_) | Self::NotAFile(_) => "not_a_data_file",
            Self::TooLarge { .. } => "data_too_large",
            Self::UnsupportedFormat(_) => "unsupported_format",
            Self::Empty(_) | Self::NoRows(_) => "no_data",
            Self::Csv { .. } | Self::InvalidUtf8 { .. } => "malformed_csv",
            Self::DuplicateColumn(..) | Self::BlankColumn(..) => "bad_header",
            Self::NonFinite { .. } => "non_finite",
            Self::JsonShape { .. } | Self::Json { .. } => "malformed_json",
            Self::TargetNotFound { .. } => "target_not_found",
            Self::OutsideDataDir(_) => "invalid_dataset_path",
            Self::KeyNotAllowed { .. } => "key_not_allowed",
            Self::Redis { .. } => "redis_error",
        }
    }
}

impl ExitCode for DataLoadError {
    fn exit_code(&self) -> u8 {
        3
    }
    fn family(&self) -> &'static str {
        "DataLoadError"
    }
}

/// A model id or directory that does not hold a bundle.
#[derive(Debug, Error)]
#[error("model `{model}` not found{hint}")]
pub struct ModelNotFoundError {
    /// What was asked for (truncated).
    pub model: String,
    /// A list of available ids, or empty.
    pub hint: String,
}

impl ModelNotFoundError {
    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        "model_not_found"
    }
}

impl ExitCode for ModelNotFoundError {
    fn exit_code(&self) -> u8 {
        4
    }
    fn family(&self) -> &'static str {
        "ModelNotFoundError"
    }
}

/// The requested training device is unavailable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeviceError {
    /// This binary has no CUDA support.
    #[error("this trainer was built without CUDA support: rebuild with `cargo build --release -p trainer --features cuda` (see scripts/build-cuda.sh)")]
    CudaNotBuilt,
    /// CUDA is built in, but no device could be opened.
    #[error("no usable CUDA device: {0}")]
    CudaUnavailable(String),
}

impl DeviceError {
    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        "device_unavailable"
    }
}

impl ExitCode for DeviceError {
    fn exit_code(&self) -> u8 {
        5
    }
    fn family(&self) -> &'static str {
        "TrainingError"
    }
}

/// A model store could not do what was asked.
#[derive(Debug, Error)]
pub enum StoreError {
    /// No such model.
    #[error(transparent)]
    NotFound(#[from] ModelNotFoundError),
    /// The stored bundle does not load (corrupt, truncated, edited).
    #[error("model `{id}` cannot be loaded: {source}")]
    Corrupt {
        /// The model id.
        id: String,
        /// Why.
        source: BundleError,
    },
    /// The stored bundle is larger than the store accepts.
    #[error("model `{id}` is {size} bytes, over the store's limit of {limit}")]
    TooLarge {
        /// The model id.
        id: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The storage itself failed (disk, Redis).
    #[error("model store: {0}")]
    Backend(String),
}

impl StoreError {
    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "model_not_found",
            Self::Corrupt { .. } => "corrupt_model",
            Self::TooLarge { .. } => "model_too_large",
            Self::Backend(_) => "store_unavailable",
        }
    }
}

/// A task queue could not do what was asked.
#[derive(Debug, Error)]
pub enum QueueError {
    /// Too many tasks are waiting.
    #[error("{limit} trainings are already queued or running; retry later")]
    Full {
        /// The limit.
        limit: usize,
    },
    /// No such task.
    #[error("no training task `{0}`")]
    NotFound(String),
    /// The queue's storage failed (journal, Redis).
    #[error("task queue: {0}")]
    Backend(String),
}

impl QueueError {
    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Full { .. } => "too_many_trainings",
            Self::NotFound(_) => "task_not_found",
            Self::Backend(_) => "queue_unavailable",
        }
    }
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
    NonFiniteLoss {
        /// 1-based epoch.
        epoch: usize,
        /// The loss.
        loss: f64,
    },
    /// The tensor engine failed (first line of candle's message; its backtrace is dropped).
    #[error("tensor engine error: {0}")]
    Engine(String),
    /// The requested device is unavailable.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Saving the model failed (nothing was left behind).
    #[error("cannot save the model: {0}")]
    Store(#[from] StoreError),
    /// Stopped on request (cancel, shutdown).
    #[error("training cancelled: {0}")]
    Cancelled(String),
    /// The training loop ran past its time limit.
    #[error("training stopped at its time limit of {seconds} s (train_config.max_seconds)")]
    TimedOut {
        /// The limit.
        seconds: f64,
    },
}

impl TrainingError {
    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Config(e) => e.kind(),
            Self::Data(e) => e.kind(),
            Self::Unusable(_) => "unusable_data",
            Self::NonFiniteLoss { .. } => "diverged",
            Self::Engine(_) => "engine_error",
            Self::Device(e) => e.kind(),
            Self::Store(e) => e.kind(),
            Self::Cancelled(_) => "cancelled",
            Self::TimedOut { .. } => "timed_out",
        }
    }
}

impl ExitCode for TrainingError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            Self::Data(_) => 3,
            _ => 5,
        }
    }
    fn family(&self) -> &'static str {
        match self {
            Self::Config(_) => "ConfigError",
            Self::Data(_) => "DataLoadError",
            _ => "TrainingError",
        }
    }
}

impl From<candle_core::Error> for TrainingError {
    fn from(e: candle_core::Error) -> Self {
        TrainingError::Engine(e.to_string().lines().next().unwrap_or_default().to_owned())
    }
}

/// Prediction (or a cross-check) through the CLI failed.
#[derive(Debug, Error)]
pub enum PredictionError {
    /// No such model, or it does not load.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A row could not be predicted; rows count data lines from 1.
    #[error("{}{source}", row.map(|r| format!("row {r}: ")).unwrap_or_default())]
    Row {
        /// 1-based data row, when the error is about one.
        row: Option<usize>,
        /// The core's error (its own `row` field counts from 0).
        source: RequestError,
    },
    /// The input file could not be read.
    #[error(transparent)]
    Input(#[from] DataLoadError),
    /// The requested device is unavailable.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The engine failed computing the reference outputs.
    #[error("engine: {0}")]
    Engine(String),
    /// A cross-check found the engine and the core disagreeing.
    #[error("the engine and the inference core differ by {max_abs_diff:.3e} (tolerance {tolerance:.0e}) with {class_disagreements} class disagreements")]
    Mismatch {
        /// Largest difference.
        max_abs_diff: f64,
        /// Tolerance.
        tolerance: f64,
        /// Rows whose class differs.
        class_disagreements: usize,
    },
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// An output file (an export) could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The path as given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<RequestError> for PredictionError {
    fn from(source: RequestError) -> Self {
        let row = source.row().map(|r| r + 1);
        // The core's own message names its 0-based row: keep only the cause.
        let source = match source {
            RequestError::Value { source, .. } => RequestError::Value { row: None, source },
            other => other,
        };
        PredictionError::Row { row, source }
    }
}

impl PredictionError {
    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Store(e) => e.kind(),
            Self::Row { source, .. } => source.kind(),
            Self::Input(e) => e.kind(),
            Self::Device(e) => e.kind(),
            Self::Engine(_) => "engine_error",
            Self::Mismatch { .. } => "mismatch",
            Self::Usage(_) => "usage",
            Self::Write { .. } => "write_failed",
        }
    }
}

impl ExitCode for PredictionError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Store(StoreError::NotFound(_)) => 4,
            Self::Device(e) => e.exit_code(),
            _ => 6,
        }
    }
    fn family(&self) -> &'static str {
        match self {
            Self::Store(StoreError::NotFound(_)) => "ModelNotFoundError",
            Self::Device(e) => e.family(),
            _ => "PredictionError",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_cuda_build_is_one_error_with_one_exit_code() {
        let train = TrainingError::from(DeviceError::CudaNotBuilt);
        let check = PredictionError::from(DeviceError::CudaNotBuilt);
        assert_eq!(train.to_string(), check.to_string());
        assert_eq!((train.exit_code(), train.kind()), (check.exit_code(), check.kind()));
        assert_eq!(train.exit_code(), 5);
    }

    #[test]
    fn cli_rows_count_from_one() {
        let core = RequestError::Value { row: Some(0), source: PredictError::MissingValue { column: "x".into() } };
        let e = PredictionError::from(core);
        assert!(e.to_string().starts_with("row 1: column `x` is missing"), "{e}");
        assert_eq!(e.exit_code(), 6);
    }
}

/// `trainer serve` / `trainer worker` could not start or run.
#[derive(Debug, Error)]
pub enum ServeError {
    /// A setting is unsafe or contradictory (an empty API key, no auth beyond loopback, …).
    #[error("{0}")]
    Config(String),
    /// Binding, listening or opening the stores failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ServeError {
    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Config(_) => "invalid_config",
            Self::Io(_) => "io",
        }
    }
}

impl ExitCode for ServeError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            Self::Io(_) => 1,
        }
    }
    fn family(&self) -> &'static str {
        match self {
            Self::Config(_) => "ConfigError",
            Self::Io(_) => "ServerError",
        }
    }
}
