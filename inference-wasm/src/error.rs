//! Typed errors of the inference core. Every malformed input ends in one of these, never a panic.

use thiserror::Error;

/// A training configuration value that is out of range, named by its field path.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("invalid config field `{field}`: {message}")]
pub struct ConfigError {
    /// Dotted path of the offending field, e.g. `model_config.dropout_rate`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(field: &str, message: impl Into<String>) -> Self {
        Self { field: field.to_owned(), message: message.into() }
    }
}

/// Why a bundle (untrusted bytes) could not be loaded.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BundleError {
    /// The bytes are not a valid safetensors file.
    #[error("not a valid safetensors file: {0}")]
    Safetensors(String),
    /// The safetensors header carries no `__metadata__.bundle` entry.
    #[error("the safetensors header has no `__metadata__.bundle` entry: not a model bundle (load the two-file layout with from_parts)")]
    MissingMetadata,
    /// The metadata JSON does not parse into the schema.
    #[error("invalid bundle metadata: {0}")]
    Metadata(String),
    /// `format_version` is not one this build reads.
    #[error("unsupported bundle format_version {found}: this build reads version {supported}")]
    UnsupportedVersion { found: u32, supported: u32 },
    /// The tensors do not hash to `weights_sha256`.
    #[error(
        "weights_sha256 mismatch: metadata says {expected}, the tensors hash to {actual} (corrupt or edited weights)"
    )]
    HashMismatch { expected: String, actual: String },
    /// A tensor the architecture needs is absent.
    #[error("tensor `{0}` is missing from the weights")]
    MissingTensor(String),
    /// A tensor the architecture does not know is present.
    #[error("unexpected tensor `{0}` in the weights")]
    UnexpectedTensor(String),
    /// A tensor's shape disagrees with the architecture.
    #[error("tensor `{name}` has shape {actual:?}, the architecture needs {expected:?}")]
    ShapeMismatch { name: String, expected: Vec<usize>, actual: Vec<usize> },
    /// A tensor is not f32.
    #[error("tensor `{name}` has dtype {dtype}, expected F32")]
    Dtype { name: String, dtype: String },
    /// A tensor holds NaN or infinity.
    #[error("tensor `{name}` holds a non-finite value at index {index}")]
    NonFinite { name: String, index: usize },
    /// The metadata parses but contradicts itself (lengths, dimensions, classes).
    #[error("inconsistent bundle metadata: {0}")]
    Inconsistent(String),
}

/// Why one input row could not be turned into a prediction.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PredictError {
    /// A positional row has the wrong length.
    #[error("wrong number of features: expected {expected}, got {got}")]
    WrongFeatureCount { expected: usize, got: usize },
    /// A categorical value that the training data never had.
    #[error("unknown category {value:?} for column `{column}` (known: {known})")]
    UnknownCategory { column: String, value: String, known: String },
    /// Text where a number is expected.
    #[error("column `{column}` expects a number, got {value:?}")]
    NotANumber { column: String, value: String },
    /// NaN is missing; infinities are rejected.
    #[error("column `{column}` got a non-finite number ({value})")]
    NonFinite { column: String, value: f64 },
    /// A missing value where the model has no fill value (trained with `missing_strategy = drop`).
    #[error(
        "column `{column}` is missing and the model has no fill value (it was trained with missing_strategy \"drop\")"
    )]
    MissingValue { column: String },
    /// A JSON value of a type that is no feature value (bool, array, object).
    #[error("column `{column}` got an unsupported value {value} (expected a number, a string or null)")]
    InvalidValue { column: String, value: String },
    /// A batch whose flat buffer does not divide into rows.
    #[error("batch of {len} values does not hold {rows} rows of {features} features")]
    BatchShape { len: usize, rows: usize, features: usize },
    /// The request is not of a shape the API knows.
    #[error("{0}")]
    BadRequest(String),
}

impl PredictError {
    /// A short machine-readable kind, shared by HTTP and JS errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::WrongFeatureCount { .. } => "wrong_feature_count",
            Self::UnknownCategory { .. } => "unknown_category",
            Self::NotANumber { .. } => "not_a_number",
            Self::NonFinite { .. } => "non_finite",
            Self::MissingValue { .. } => "missing_value",
            Self::InvalidValue { .. } => "invalid_value",
            Self::BatchShape { .. } => "batch_shape",
            Self::BadRequest(_) => "bad_request",
        }
    }
}
