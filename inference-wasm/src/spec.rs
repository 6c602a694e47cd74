//! The prediction part of a bundle's metadata ([`ModelSpec`]): task, network shape, fitted
//! preprocessing and class labels. Everything here is read on every load, natively and in wasm,
//! by [`ModelSpec::from_json`] (written over [`crate::json`] rather than derived: see there);
//! the training record lives in [`crate::record`] (feature `train`) and is never parsed on the
//! predict path. The unit enums also derive `Deserialize`, for the training config.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::json::{optional, value, variant, JsonError, Members};

/// The bundle format this build writes.
pub const FORMAT_VERSION: u32 = 2;

/// Every format version this build reads. Version 1 nests the training config as
/// `train_config` and has no explanation background; prediction reads both the same way.
pub const READABLE_VERSIONS: [u32; 2] = [1, 2];

/// Classification or regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    /// Predict one of a fixed set of labels.
    Classification,
    /// Predict a real number.
    Regression,
}

impl TaskType {
    /// Every task, in the order of [`TaskType::NAMES`].
    pub const ALL: [TaskType; 2] = [TaskType::Classification, TaskType::Regression];
    /// The JSON names.
    pub const NAMES: [&str; 2] = ["classification", "regression"];

    /// The lowercase name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Classification => "classification",
            TaskType::Regression => "regression",
        }
    }
}

/// Hidden-layer activation; the function and its derivative are in [`crate::activation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, x)
    #[default]
    Relu,
    /// x·Φ(x), the exact (erf) form, as PyTorch's default.
    Gelu,
    /// tanh(x)
    Tanh,
    /// x for x > 0, else [`crate::activation::LEAKY_RELU_SLOPE`]·x (PyTorch's default slope).
    LeakyRelu,
    /// 1 / (1 + e^−x)
    Sigmoid,
}

/// How missing feature values are handled; fill values are fitted on the train split only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MissingStrategy {
    /// Numeric: train mean; categorical: train mode.
    #[default]
    Mean,
    /// Numeric: train median; categorical: train mode.
    Median,
    /// Every column: the most frequent train value.
    Mode,
    /// Rows with any missing feature are dropped; prediction then requires every value.
    Drop,
}

impl MissingStrategy {
    /// Every strategy, in the order of [`MissingStrategy::NAMES`].
    pub const ALL: [MissingStrategy; 4] =
        [MissingStrategy::Mean, MissingStrategy::Median, MissingStrategy::Mode, MissingStrategy::Drop];
    /// The JSON names.
    pub const NAMES: [&str; 4] = ["mean", "median", "mode", "drop"];
}

/// Network shape as stored; tensor names and shapes follow from it (see [`crate::bundle::expected_tensors`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Architecture {
    /// Number of model inputs (= number of features).
    pub input_dim: usize,
    /// Hidden layer widths.
    pub hidden_dims: Vec<usize>,
    /// Number of classes, or 1 for regression.
    pub output_dim: usize,
    /// Dropout used in training (inactive at prediction).
    pub dropout_rate: f64,
    /// Hidden activation.
    pub activation: Activation,
    /// BatchNorm epsilon ([`DEFAULT_BATCH_NORM_EPS`] when absent).
    pub batch_norm_eps: f64,
}

/// PyTorch's BatchNorm1d epsilon, the default of every bundle.
pub const DEFAULT_BATCH_NORM_EPS: f64 = 1e-5;

/// How one feature is turned into a number.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureKind {
    /// A number; missing values become `fill_value`.
    Numeric {
        /// Fill for missing values (None under the `drop` strategy).
        fill_value: Option<f32>,
    },
    /// Text, label-encoded as its index in `categories` (sorted, from the train split).
    Categorical {
        /// The vocabulary; a value's code is its index.
        categories: Vec<String>,
        /// Fill for missing values (the train mode; None under `drop`).
        fill_value: Option<String>,
    },
}

/// One model input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureSpec {
    /// Column name in the training data.
    pub name: String,
    /// Encoding.
    #[serde(flatten)]
    pub kind: FeatureKind,
}

/// StandardScaler parameters: x' = (x − mean) / scale.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scaler {
    /// Per-feature train mean.
    pub mean: Vec<f32>,
    /// Per-feature train population standard deviation (1 for constant columns).
    pub scale: Vec<f32>,
}

/// Regression target standardisation: y = y' · scale + mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TargetScaler {
    /// Train target mean.
    pub mean: f64,
    /// Train target population standard deviation (1 if constant).
    pub scale: f64,
}

/// A column the trainer left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DroppedColumn {
    /// Column name.
    pub name: String,
    /// Why it was dropped.
    pub reason: String,
}

/// Everything fitted on the train split that prediction applies to a raw row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preprocessing {
    /// Model inputs, in order.
    pub feature_names: Vec<String>,
    /// Per-feature encoding, same order as `feature_names`.
    pub features: Vec<FeatureSpec>,
    /// Strategy the fill values came from.
    pub missing_strategy: MissingStrategy,
    /// Feature scaler.
    pub scaler: Scaler,
    /// Regression only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_scaler: Option<TargetScaler>,
    /// Columns of the data that are not model inputs (besides the target).
    pub dropped_columns: Vec<DroppedColumn>,
}

/// What explanations need from the bundle (format 2): the background set's size. Its rows
/// are the `explain.background` tensor (`background_rows × input_dim`, preprocessed values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExplainSpec {
    /// Rows of the background set, sampled (seeded) from the train split.
    pub background_rows: usize,
}

/// The part of the metadata that prediction reads, parsed on its own (the reader skips the
/// other fields): loading a model never deserialises the training record, which keeps wasm
/// cold start short and the wasm file small.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSpec {
    /// Bundle format version (one of [`READABLE_VERSIONS`]).
    pub format_version: u32,
    /// e.g. `model_2026_11_26_001`.
    pub model_id: String,
    /// Task.
    pub task_type: TaskType,
    /// Network shape.
    pub architecture: Architecture,
    /// Prediction-time preprocessing.
    pub preprocessing: Preprocessing,
    /// Class labels in class-index order (classification only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// The explanation background (absent in format 1 and when none was stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<ExplainSpec>,
    /// sha256 over the tensors' raw little-endian bytes, in sorted name order.
    pub weights_sha256: String,
}

/// The metadata's `format_version`, read before anything else (a future format may change
/// every other field).
pub(crate) fn format_version(json: &str) -> Result<u32, JsonError> {
    value(Members::parse(json)?.required("format_version", "metadata")?, "format_version")
}

impl ModelSpec {
    /// Read the prediction part of metadata JSON (other members are ignored). Shapes only:
    /// the checks between fields and against the tensors are [`crate::bundle`]'s.
    pub fn from_json(json: &str) -> Result<Self, String> {
        read_spec(json).map_err(|e| e.to_string())
    }
}

fn read_spec(json: &str) -> Result<ModelSpec, JsonError> {
    let m = Members::parse(json)?;
    let task = TaskType::ALL[variant(m.required("task_type", "metadata")?, "task_type", &TaskType::NAMES)?];
    let explain = match m.get("explain") {
        Some(e) => {
            let e = Members::parse(e.get())?;
            Some(ExplainSpec { background_rows: value(e.required("background_rows", "explain")?, "background_rows")? })
        }
        None => None,
    };
    Ok(ModelSpec {
        format_version: value(m.required("format_version", "metadata")?, "format_version")?,
        model_id: value(m.required("model_id", "metadata")?, "model_id")?,
        task_type: task,
        architecture: read_architecture(m.required("architecture", "metadata")?)?,
        preprocessing: read_preprocessing(m.required("preprocessing", "metadata")?)?,
        classes: optional(&m, "classes")?,
        explain,
        weights_sha256: value(m.required("weights_sha256", "metadata")?, "weights_sha256")?,
    })
}

fn read_architecture(raw: &RawValue) -> Result<Architecture, JsonError> {
    let a = Members::parse(raw.get())?;
    let what = "architecture";
    Ok(Architecture {
        input_dim: value(a.required("input_dim", what)?, "input_dim")?,
        hidden_dims: value(a.required("hidden_dims", what)?, "hidden_dims")?,
        output_dim: value(a.required("output_dim", what)?, "output_dim")?,
        dropout_rate: value(a.required("dropout_rate", what)?, "dropout_rate")?,
        activation: Activation::ALL[variant(a.required("activation", what)?, "activation", &Activation::NAMES)?],
        batch_norm_eps: optional(&a, "batch_norm_eps")?.unwrap_or(DEFAULT_BATCH_NORM_EPS),
    })
}

fn read_preprocessing(raw: &RawValue) -> Result<Preprocessing, JsonError> {
    let p = Members::parse(raw.get())?;
    let what = "preprocessing";
    let features: Vec<&RawValue> = value(p.required("features", what)?, "features")?;
    let scaler = Members::parse(p.required("scaler", what)?.get())?;
    let target_scaler = match p.get("target_scaler") {
        Some(t) => {
            let t = Members::parse(t.get())?;
            Some(TargetScaler {
                mean: value(t.required("mean", "target_scaler")?, "mean")?,
                scale: value(t.required("scale", "target_scaler")?, "scale")?,
            })
        }
        None => None,
    };
    let dropped: Vec<&RawValue> = optional(&p, "dropped_columns")?.unwrap_or_default();
    Ok(Preprocessing {
        feature_names: value(p.required("feature_names", what)?, "feature_names")?,
        features: features.into_iter().map(read_feature).collect::<Result<_, _>>()?,
        missing_strategy: MissingStrategy::ALL
            [variant(p.required("missing_strategy", what)?, "missing_strategy", &MissingStrategy::NAMES)?],
        scaler: Scaler {
            mean: value(scaler.required("mean", "scaler")?, "mean")?,
            scale: value(scaler.required("scale", "scaler")?, "scale")?,
        },
        target_scaler,
        dropped_columns: dropped
            .into_iter()
            .map(|d| {
                let d = Members::parse(d.get())?;
                Ok(DroppedColumn {
                    name: value(d.required("name", "dropped column")?, "name")?,
                    reason: value(d.required("reason", "dropped column")?, "reason")?,
                })
            })
            .collect::<Result<_, JsonError>>()?,
    })
}

/// One feature: `{"name", "kind": "numeric", "fill_value"?: number}` or
/// `{"name", "kind": "categorical", "categories": [...], "fill_value"?: string}`.
fn read_feature(raw: &RawValue) -> Result<FeatureSpec, JsonError> {
    let f = Members::parse(raw.get())?;
    let name: String = value(f.required("name", "feature")?, "name")?;
    let bad = |m: String| Err(JsonError::Invalid(m));
    let categorical = variant(f.required("kind", "feature")?, "kind", &["numeric", "categorical"])? == 1;
    let categories: Option<Vec<String>> = optional(&f, "categories")?;
    let fill = f.get("fill_value");
    let text_fill = fill.is_some_and(|v| v.get().starts_with('"'));
    let kind = match (categorical, categories) {
        (false, Some(_)) => return bad(format!("numeric feature `{name}` has categories")),
        (false, None) if text_fill => return bad(format!("numeric feature `{name}` has a text fill_value")),
        (false, None) => FeatureKind::Numeric { fill_value: fill.map(|v| value(v, "fill_value")).transpose()? },
        (true, None) => return bad(format!("categorical feature `{name}` lacks its categories")),
        (true, Some(_)) if fill.is_some() && !text_fill => {
            return bad(format!("categorical feature `{name}` has a numeric fill_value"))
        }
        (true, Some(categories)) => {
            FeatureKind::Categorical { categories, fill_value: fill.map(|v| value(v, "fill_value")).transpose()? }
        }
    };
    Ok(FeatureSpec { name, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature(json: &str) -> Result<FeatureSpec, JsonError> {
        read_feature(&serde_json::from_str::<Box<RawValue>>(json).unwrap())
    }

    #[test]
    fn feature_specs_round_trip_in_the_documented_shape() {
        let specs = vec![
            FeatureSpec { name: "x".into(), kind: FeatureKind::Numeric { fill_value: Some(1.5) } },
            FeatureSpec { name: "n".into(), kind: FeatureKind::Numeric { fill_value: None } },
            FeatureSpec {
                name: "c".into(),
                kind: FeatureKind::Categorical {
                    categories: vec!["a".into(), "b".into()],
                    fill_value: Some("b".into()),
                },
            },
        ];
        let json = serde_json::to_value(&specs).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"name": "x", "kind": "numeric", "fill_value": 1.5},
                {"name": "n", "kind": "numeric", "fill_value": null},
                {"name": "c", "kind": "categorical", "categories": ["a", "b"], "fill_value": "b"},
            ])
        );
        let read: Vec<FeatureSpec> =
            json.as_array().unwrap().iter().map(|v| feature(&v.to_string())).collect::<Result<_, _>>().unwrap();
        assert_eq!(read, specs);
        // Integers read as numbers; an absent fill_value is none.
        let x = feature(r#"{"name": "x", "kind": "numeric", "fill_value": 2}"#).unwrap();
        assert_eq!(x.kind, FeatureKind::Numeric { fill_value: Some(2.0) });
        let y = feature(r#"{"kind": "numeric", "name": "y"}"#).unwrap();
        assert_eq!(y.kind, FeatureKind::Numeric { fill_value: None });
    }

    #[test]
    fn enum_names_are_the_serde_names() {
        let name = |v: serde_json::Value| v.as_str().unwrap().to_owned();
        for (a, n) in Activation::ALL.iter().zip(Activation::NAMES) {
            assert_eq!(name(serde_json::to_value(a).unwrap()), n);
            assert_eq!(a.as_str(), n);
        }
        for (t, n) in TaskType::ALL.iter().zip(TaskType::NAMES) {
            assert_eq!(name(serde_json::to_value(t).unwrap()), n);
        }
        for (m, n) in MissingStrategy::ALL.iter().zip(MissingStrategy::NAMES) {
            assert_eq!(name(serde_json::to_value(m).unwrap()), n);
        }
    }

    #[test]
    fn malformed_feature_specs_are_named() {
        for (json, needle) in [
            (r#"{"name": "x", "kind": "numeric", "fill_value": "a"}"#, "numeric feature `x` has a text fill_value"),
            (r#"{"name": "x", "kind": "numeric", "categories": []}"#, "numeric feature `x` has categories"),
            (r#"{"name": "c", "kind": "categorical"}"#, "categorical feature `c` lacks its categories"),
            (r#"{"name": "c", "kind": "categorical", "categories": ["a"], "fill_value": 1}"#, "numeric fill_value"),
            (r#"{"name": "c", "kind": "text"}"#, "unknown variant `text`"),
            (r#"{"name": "c", "kind": "numeric", "fill_value": [1]}"#, "`fill_value`: invalid type: sequence"),
            (r#"{"kind": "numeric"}"#, "missing field `name`"),
        ] {
            let err = feature(json).unwrap_err().to_string();
            assert!(err.contains(needle), "expected `{needle}` in: {err}");
        }
    }
}
