//! The bundle's metadata schema (`metadata.json`, also embedded in the safetensors header):
//! everything prediction needs besides the weights, plus the training record.

use serde::{Deserialize, Serialize};

pub use crate::config::{Activation, MissingStrategy, TaskType, TrainConfig};

/// The bundle format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

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

fn default_bn_eps() -> f64 {
    1e-5
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
pub struct FeatureSpec {
    /// Column name in the training data.
    pub name: String,
    /// Encoding.
    #[serde(flatten)]
    pub kind: FeatureKind,
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

/// Weighted and macro classification scores on the test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    /// Fraction correct.
    pub accuracy: f64,
    /// Support-weighted precision.
    pub precision: f64,
    /// Support-weighted recall.
    pub recall: f64,
    /// Support-weighted F1.
    pub f1_score: f64,
    /// Unweighted mean precision over classes.
    pub precision_macro: f64,
    /// Unweighted mean recall over classes.
    pub recall_macro: f64,
    /// Unweighted mean F1 over classes.
    pub f1_macro: f64,
    /// `confusion_matrix[true][predicted]` counts.
    pub confusion_matrix: Vec<Vec<u64>>,
}

/// Regression scores on the test split, in the target's own units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    /// Mean absolute error.
    pub mae: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Coefficient of determination.
    pub r2: f64,
}

/// Test metrics of either task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TestMetrics {
    /// Classification.
    Classification(ClassificationMetrics),
    /// Regression.
    Regression(RegressionMetrics),
}

/// One epoch of the training record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Validation loss (absent without a validation split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Validation accuracy (classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Validation R² (regression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_r2: Option<f64>,
}

/// Where the training data came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Path, `redis:KEY` or `embedded:esg_ratings`.
    pub source: String,
    /// Target column.
    pub target_column: String,
    /// Rows used (after dropping).
    pub rows: usize,
    /// Rows dropped (missing target, or missing features under `drop`).
    pub dropped_rows: usize,
    /// Train / validation / test sizes.
    pub train_rows: usize,
    /// Validation rows.
    pub val_rows: usize,
    /// Test rows.
    pub test_rows: usize,
}

/// The complete bundle metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Bundle format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// e.g. `model_2026_11_26_001`.
    pub model_id: String,
    /// RFC 3339 UTC time of export.
    pub saved_at: String,
    /// Task.
    pub task_type: TaskType,
    /// Network shape.
    pub architecture: Architecture,
    /// The configuration that produced this model.
    pub train_config: TrainConfig,
    /// Scores on the test split.
    pub test_metrics: TestMetrics,
    /// Prediction-time preprocessing.
    pub preprocessing: Preprocessing,
    /// Class labels in class-index order (classification only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// Per-epoch losses and validation metric.
    pub history: Vec<EpochRecord>,
    /// Epochs actually run.
    pub epochs_run: usize,
    /// 1-based epoch whose weights were kept.
    pub best_epoch: usize,
    /// Data provenance.
    pub dataset: DatasetInfo,
    /// Wall-clock seconds of the training loop.
    #[serde(default)]
    pub train_seconds: f64,
    /// Device training ran on (`cpu`, `cuda:0`).
    #[serde(default)]
    pub device: String,
    /// Training engine (`fused` CPU step or `candle` autograd); weights are reproducible per engine and machine.
    #[serde(default)]
    pub engine: String,
    /// Things the user should know (dropped columns, unseen categories in val/test, …).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// sha256 over the tensors' raw little-endian bytes, in sorted name order.
    pub weights_sha256: String,
}
