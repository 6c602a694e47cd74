//! Typed errors of the inference core. Every malformed input ends in one of these, never a
//! panic; each names its `kind()`, and request errors also their row and column as fields.

use thiserror::Error;

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
    #[error("unsupported bundle format_version {found}: this build reads versions {supported}")]
    UnsupportedVersion {
        /// The bundle's version.
        found: u32,
        /// The versions this build reads, e.g. `1, 2`.
        supported: String,
    },
    /// The tensors do not hash to `weights_sha256`.
    #[error(
        "weights_sha256 mismatch: metadata says {expected}, the tensors hash to {actual} (corrupt or edited weights)"
    )]
    HashMismatch {
        /// The metadata's hash.
        expected: String,
        /// The tensors' hash.
        actual: String,
    },
    /// A tensor the architecture needs is absent.
    #[error("tensor `{0}` is missing from the weights")]
    MissingTensor(String),
    /// A tensor the architecture does not know is present.
    #[error("unexpected tensor `{0}` in the weights")]
    UnexpectedTensor(String),
    /// A tensor's shape disagrees with the architecture.
    #[error("tensor `{name}` has shape {actual:?}, the architecture needs {expected:?}")]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// What the architecture implies.
        expected: Vec<usize>,
        /// What the file holds.
        actual: Vec<usize>,
    },
    /// A tensor is not f32.
    #[error("tensor `{name}` has dtype {dtype}, expected F32")]
    Dtype {
        /// Tensor name.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// A tensor holds NaN or infinity.
    #[error("tensor `{name}` holds a non-finite value at index {index}")]
    NonFinite {
        /// Tensor name.
        name: String,
        /// First bad element.
        index: usize,
    },
    /// The metadata parses but contradicts itself (lengths, dimensions, classes).
    #[error("inconsistent bundle metadata: {0}")]
    Inconsistent(String),
}

impl BundleError {
    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Safetensors(_) => "not_safetensors",
            Self::MissingMetadata => "missing_metadata",
            Self::Metadata(_) => "invalid_metadata",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::HashMismatch { .. } => "hash_mismatch",
            Self::MissingTensor(_) | Self::UnexpectedTensor(_) | Self::ShapeMismatch { .. } | Self::Dtype { .. } => {
                "tensor_mismatch"
            }
            Self::NonFinite { .. } => "non_finite_weights",
            Self::Inconsistent(_) => "inconsistent_metadata",
        }
    }
}

/// Why one input value or row could not be turned into a prediction.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PredictError {
    /// A positional row has the wrong length.
    #[error("wrong number of features: expected {expected}, got {got}")]
    WrongFeatureCount {
        /// The model's feature count.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// A categorical value that the training data never had.
    #[error("unknown category {value:?} for column `{column}` (known: {known})")]
    UnknownCategory {
        /// Feature name.
        column: String,
        /// The value given (truncated).
        value: String,
        /// A preview of the vocabulary.
        known: String,
    },
    /// Text where a number is expected.
    #[error("column `{column}` expects a number, got {value:?}")]
    NotANumber {
        /// Feature name.
        column: String,
        /// The value given (truncated).
        value: String,
    },
    /// NaN is missing; infinities (and finite values beyond f32) are rejected.
    #[error("column `{column}` got an infinite number or one beyond f32's range ({value})")]
    NonFinite {
        /// Feature name.
        column: String,
        /// The value given.
        value: f64,
    },
    /// A missing value where the model has no fill value (trained with `missing_strategy = drop`).
    #[error(
        "column `{column}` is missing and the model has no fill value (it was trained with missing_strategy \"drop\")"
    )]
    MissingValue {
        /// Feature name.
        column: String,
    },
    /// A JSON value of a type that is no feature value (array, object).
    #[error("column `{column}` got an unsupported value ({value}; expected a number, a string or null)")]
    InvalidValue {
        /// Feature name.
        column: String,
        /// What was given, e.g. `an array`.
        value: String,
    },
    /// A batch whose flat buffer does not divide into rows.
    /// No key of a record, column of a table or CSV header names a feature (a misspelt or
    /// foreign schema, which would otherwise predict from imputed values alone).
    #[error("none of the given columns ({given}) is a feature of the model (its features: {features})")]
    NoKnownColumn {
        /// The names given (truncated).
        given: String,
        /// The model's feature names (truncated).
        features: String,
    },
    /// Features absent where every feature is required (MLflow's schema enforcement).
    #[error("missing column{} {columns}: every feature is required (a missing value is an empty cell or null, not an absent column)", if *count == 1 { "" } else { "s" })]
    MissingColumns {
        /// The absent features, quoted (truncated).
        columns: String,
        /// How many are absent.
        count: usize,
    },
    /// A feature named twice in one row, table or header.
    #[error("column `{column}` is given twice")]
    DuplicateColumn {
        /// The feature.
        column: String,
    },
    #[error("batch of {len} values does not hold {rows} rows of {features} features")]
    BatchShape {
        /// Values given.
        len: usize,
        /// Rows claimed.
        rows: usize,
        /// Features per row.
        features: usize,
    },
    /// The call does not fit this model (e.g. the numeric-only batch path on a model with categories).
    #[error("{0}")]
    Unsupported(String),
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
            Self::NoKnownColumn { .. } => "unknown_columns",
            Self::MissingColumns { .. } => "missing_columns",
            Self::DuplicateColumn { .. } => "duplicate_column",
            Self::BatchShape { .. } => "batch_shape",
            Self::Unsupported(_) => "unsupported",
        }
    }

    /// The feature the error is about, if one.
    pub fn column(&self) -> Option<&str> {
        match self {
            Self::UnknownCategory { column, .. }
            | Self::NotANumber { column, .. }
            | Self::NonFinite { column, .. }
            | Self::MissingValue { column }
            | Self::InvalidValue { column, .. }
            | Self::DuplicateColumn { column } => Some(column),
            Self::WrongFeatureCount { .. }
            | Self::NoKnownColumn { .. }
            | Self::MissingColumns { .. }
            | Self::BatchShape { .. }
            | Self::Unsupported(_) => None,
        }
    }
}

/// Why a prediction request (any protocol) could not be answered. Rows count from 0, as the
/// request's array index.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RequestError {
    /// The body is not valid JSON (or CSV).
    #[error("malformed {format}: {message}")]
    Malformed {
        /// `JSON` or `CSV`.
        format: &'static str,
        /// The parser's message, with its position.
        message: String,
    },
    /// Valid syntax, wrong shape: a missing, extra or mistyped field.
    #[error("{0}")]
    Invalid(String),
    /// A value of a row could not be used; `row` is `None` for single-row requests.
    #[error("{}{source}", row.map(|r| format!("row {r}: ")).unwrap_or_default())]
    Value {
        /// 0-based row index within the request.
        row: Option<usize>,
        /// What was wrong with it.
        source: PredictError,
    },
    /// More rows in one request than the server allows.
    #[error("the request holds more than {limit} rows (the per-request limit)")]
    TooManyRows {
        /// The limit.
        limit: usize,
    },
    /// Explanations that would evaluate more network rows than the server allows.
    #[error(
        "these explanations would evaluate {cost} network rows, over the per-request limit of {limit}: \
         explain fewer rows, or ask for fewer permutations (or \"method\": \"permutation\" over \"exact\")"
    )]
    TooCostly {
        /// The request's cost ([`crate::Model::explain_cost`] × rows).
        cost: u64,
        /// The limit.
        limit: u64,
    },
    /// A content type or charset the protocol does not accept.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A protocol feature this implementation does not offer.
    #[error("{0}")]
    NotImplemented(String),
    /// The caller gave up before the answer was ready ([`crate::request::Request::answer_unless`];
    /// only a server raises it, for a client that has gone).
    #[error("the request was cancelled before its explanations were done")]
    Cancelled,
}

impl From<crate::json::JsonError> for RequestError {
    fn from(e: crate::json::JsonError) -> Self {
        match e {
            crate::json::JsonError::Malformed(message) => Self::Malformed { format: "JSON", message },
            crate::json::JsonError::Invalid(m) => Self::Invalid(m),
        }
    }
}

impl RequestError {
    /// A short machine-readable kind, shared by HTTP and JS errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed { format: "CSV", .. } => "malformed_csv",
            Self::Malformed { .. } => "malformed_json",
            Self::Invalid(_) => "validation_error",
            Self::Value { source, .. } => source.kind(),
            Self::TooManyRows { .. } => "too_many_rows",
            Self::TooCostly { .. } => "explain_too_costly",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::NotImplemented(_) => "not_implemented",
            Self::Cancelled => "cancelled",
        }
    }

    /// The row the error is about, if one.
    pub fn row(&self) -> Option<usize> {
        match self {
            Self::Value { row, .. } => *row,
            _ => None,
        }
    }

    /// The column the error is about, if one.
    pub fn column(&self) -> Option<&str> {
        match self {
            Self::Value { source, .. } => source.column(),
            _ => None,
        }
    }

    /// A value error in row `row` (or the single row).
    pub(crate) fn at(row: Option<usize>, source: PredictError) -> Self {
        Self::Value { row, source }
    }
}

/// Longest input echoed back in a message; longer text is cut with an ellipsis, so a
/// megabyte of garbage never comes back in an error.
pub const ECHO_LIMIT: usize = 200;

/// `s` cut to [`ECHO_LIMIT`] characters (on a char boundary).
pub fn truncate_echo(s: &str) -> String {
    match s.char_indices().nth(ECHO_LIMIT) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_carry_row_column_and_kind() {
        let e = RequestError::at(Some(3), PredictError::NotANumber { column: "x".into(), value: "a".into() });
        assert_eq!(e.to_string(), "row 3: column `x` expects a number, got \"a\"");
        assert_eq!((e.kind(), e.row(), e.column()), ("not_a_number", Some(3), Some("x")));
        let single = RequestError::at(None, PredictError::MissingValue { column: "y".into() });
        assert!(single.to_string().starts_with("column `y` is missing"));
        assert_eq!(single.row(), None);
    }

    #[test]
    fn echoes_are_bounded() {
        let long = "é".repeat(10_000);
        let cut = truncate_echo(&long);
        assert_eq!(cut.chars().count(), ECHO_LIMIT + 1);
        assert_eq!(truncate_echo("short"), "short");
    }
}
