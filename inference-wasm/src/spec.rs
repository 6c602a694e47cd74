//! The prediction part of a bundle's metadata ([`ModelSpec`]): task, network shape, fitted
//! preprocessing and class labels. Everything here is read on every load, natively and in wasm;
//! the training record lives in [`crate::record`] (feature `train`) and is never parsed on the
//! predict path.

use serde::{Deserialize, Serialize};

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

/// Network shape as stored; tensor names and shapes follow from it (see [`crate::bundle::expected_tensors`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// BatchNorm epsilon.
    #[serde(default = "default_bn_eps")]
    pub batch_norm_eps: f64,
}

/// PyTorch's BatchNorm1d epsilon, the default of every bundle.
pub const DEFAULT_BATCH_NORM_EPS: f64 = 1e-5;

fn default_bn_eps() -> f64 {
    DEFAULT_BATCH_NORM_EPS
}

/// How one feature is turned into a number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawFeatureSpec")]
pub struct FeatureSpec {
    /// Column name in the training data.
    pub name: String,
    /// Encoding.
    #[serde(flatten)]
    pub kind: FeatureKind,
}

/// [`FeatureSpec`]'s JSON as read. A derived reader for the flattened, tagged [`FeatureKind`]
/// would buffer every field through serde's `Content` (slower loads, ~10 KB more wasm).
#[derive(Deserialize)]
struct RawFeatureSpec {
    name: String,
    kind: KindTag,
    #[serde(default)]
    categories: Option<Vec<String>>,
    #[serde(default)]
    fill_value: Option<FillValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindTag {
    Numeric,
    Categorical,
}

/// A fill value as JSON gives it: a number (numeric features) or a string (categorical).
enum FillValue {
    Number(f32),
    Text(String),
}

impl<'de> Deserialize<'de> for FillValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FillVisitor;
        impl serde::de::Visitor<'_> for FillVisitor {
            type Value = FillValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_f64<E>(self, v: f64) -> Result<FillValue, E> {
                Ok(FillValue::Number(v as f32))
            }
            fn visit_i64<E>(self, v: i64) -> Result<FillValue, E> {
                Ok(FillValue::Number(v as f32))
            }
            fn visit_u64<E>(self, v: u64) -> Result<FillValue, E> {
                Ok(FillValue::Number(v as f32))
            }
            fn visit_str<E>(self, v: &str) -> Result<FillValue, E> {
                Ok(FillValue::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(FillVisitor)
    }
}

impl TryFrom<RawFeatureSpec> for FeatureSpec {
    type Error = String;
    fn try_from(raw: RawFeatureSpec) -> Result<Self, String> {
        let kind = match (raw.kind, raw.categories, raw.fill_value) {
            (KindTag::Numeric, None, None) => FeatureKind::Numeric { fill_value: None },
            (KindTag::Numeric, None, Some(FillValue::Number(v))) => FeatureKind::Numeric { fill_value: Some(v) },
            (KindTag::Categorical, Some(categories), None) => FeatureKind::Categorical { categories, fill_value: None },
            (KindTag::Categorical, Some(categories), Some(FillValue::Text(fill))) => {
                FeatureKind::Categorical { categories, fill_value: Some(fill) }
            }
            (KindTag::Numeric, Some(_), _) => return Err(format!("numeric feature `{}` has categories", raw.name)),
            (KindTag::Numeric, _, Some(FillValue::Text(_))) => {
                return Err(format!("numeric feature `{}` has a text fill_value", raw.name))
            }
            (KindTag::Categorical, None, _) => {
                return Err(format!("categorical feature `{}` lacks its categories", raw.name))
            }
            (KindTag::Categorical, _, Some(FillValue::Number(_))) => {
                return Err(format!("categorical feature `{}` has a numeric fill_value", raw.name))
            }
        };
        Ok(FeatureSpec { name: raw.name, kind })
    }
}

/// StandardScaler parameters: x' = (x − mean) / scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    /// Per-feature train mean.
    pub mean: Vec<f32>,
    /// Per-feature train population standard deviation (1 for constant columns).
    pub scale: Vec<f32>,
}

/// Regression target standardisation: y = y' · scale + mean.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetScaler {
    /// Train target mean.
    pub mean: f64,
    /// Train target population standard deviation (1 if constant).
    pub scale: f64,
}

/// A column the trainer left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroppedColumn {
    /// Column name.
    pub name: String,
    /// Why it was dropped.
    pub reason: String,
}

/// Everything fitted on the train split that prediction applies to a raw row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_scaler: Option<TargetScaler>,
    /// Columns of the data that are not model inputs (besides the target).
    #[serde(default)]
    pub dropped_columns: Vec<DroppedColumn>,
}

/// What explanations need from the bundle (format 2): the background set's size. Its rows
/// are the `explain.background` tensor (`background_rows × input_dim`, preprocessed values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainSpec {
    /// Rows of the background set, sampled (seeded) from the train split.
    pub background_rows: usize,
}

/// The part of the metadata that prediction reads, parsed on its own (serde skips the other
/// fields): loading a model never deserialises the training record, which keeps wasm cold
/// start short and the wasm file small.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// The explanation background (absent in format 1 and when none was stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<ExplainSpec>,
    /// sha256 over the tensors' raw little-endian bytes, in sorted name order.
    pub weights_sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(serde_json::from_value::<Vec<FeatureSpec>>(json).unwrap(), specs);
        // Integers read as numbers; an absent fill_value is none.
        let x: FeatureSpec = serde_json::from_str(r#"{"name": "x", "kind": "numeric", "fill_value": 2}"#).unwrap();
        assert_eq!(x.kind, FeatureKind::Numeric { fill_value: Some(2.0) });
        let y: FeatureSpec = serde_json::from_str(r#"{"kind": "numeric", "name": "y"}"#).unwrap();
        assert_eq!(y.kind, FeatureKind::Numeric { fill_value: None });
    }

    #[test]
    fn malformed_feature_specs_are_named() {
        for (json, needle) in [
            (r#"{"name": "x", "kind": "numeric", "fill_value": "a"}"#, "numeric feature `x` has a text fill_value"),
            (r#"{"name": "x", "kind": "numeric", "categories": []}"#, "numeric feature `x` has categories"),
            (r#"{"name": "c", "kind": "categorical"}"#, "categorical feature `c` lacks its categories"),
            (r#"{"name": "c", "kind": "categorical", "categories": ["a"], "fill_value": 1}"#, "numeric fill_value"),
            (r#"{"name": "c", "kind": "text"}"#, "unknown variant `text`"),
            (r#"{"name": "c", "kind": "numeric", "fill_value": [1]}"#, "expected a number or a string"),
            (r#"{"kind": "numeric"}"#, "missing field `name`"),
        ] {
            let err = serde_json::from_str::<FeatureSpec>(json).unwrap_err().to_string();
            assert!(err.contains(needle), "expected `{needle}` in: {err}");
        }
    }
}
