//! The complete bundle metadata ([`Metadata`]): the prediction spec's fields plus the training
//! record (config, metrics, history, provenance). Feature `train`: only the trainer reads or
//! writes it; prediction parses [`crate::ModelSpec`] alone.

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::spec::{Architecture, ModelSpec, Preprocessing, TaskType};

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
    /// Path (relative to the server's data dir), `redis:KEY` or `embedded:esg_ratings`.
    pub source: String,
    /// Target column.
    pub target_column: String,
    /// Rows used (after dropping).
    pub rows: usize,
    /// Rows dropped (missing target, or missing features under `drop`).
    pub dropped_rows: usize,
    /// Train rows.
    pub train_rows: usize,
    /// Validation rows.
    pub val_rows: usize,
    /// Test rows.
    pub test_rows: usize,
}

/// One feature's global importance: mean |φ| over test rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureImportance {
    /// Feature name.
    pub feature: String,
    /// Mean absolute Shapley value (of the explained output) over the rows.
    pub mean_abs_shap: f64,
}

/// The explanation section: the background set's size (read by prediction, see
/// [`crate::spec::ExplainSpec`]) and the global importance computed at training time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainRecord {
    /// Rows of the stored background set.
    pub background_rows: usize,
    /// Test rows the global importance was computed over.
    #[serde(default)]
    pub importance_rows: usize,
    /// How the importance was computed (`exact` or `permutation`).
    #[serde(default)]
    pub method: String,
    /// Mean |φ| per feature, largest first.
    #[serde(default)]
    pub global_importance: Vec<FeatureImportance>,
}

/// The complete bundle metadata. Read with [`Metadata::from_json`]: the spec part by the
/// core's one spec reader, the training record derived.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metadata {
    /// Bundle format version ([`crate::spec::FORMAT_VERSION`] when written by this build).
    pub format_version: u32,
    /// e.g. `model_2026_11_26_001`.
    pub model_id: String,
    /// RFC 3339 UTC time of export.
    pub saved_at: String,
    /// Task.
    pub task_type: TaskType,
    /// Network shape.
    pub architecture: Architecture,
    /// The configuration that produced this model (`train_config` in format 1).
    pub config: TrainConfig,
    /// Scores on the test split; `null` when the run had no test rows (`test_size` 0).
    pub test_metrics: Option<TestMetrics>,
    /// Prediction-time preprocessing.
    pub preprocessing: Preprocessing,
    /// Class labels in class-index order (classification only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// Explanation background and global importance (format 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<ExplainRecord>,
    /// Per-epoch losses and validation metric.
    pub history: Vec<EpochRecord>,
    /// Epochs actually run.
    pub epochs_run: usize,
    /// 1-based epoch whose weights were kept.
    pub best_epoch: usize,
    /// Data provenance.
    pub dataset: DatasetInfo,
    /// Wall-clock seconds of the training loop.
    pub train_seconds: f64,
    /// Device training ran on (`cpu`, `cuda:0`).
    pub device: String,
    /// Training engine (`fused`, `cuda-fused` or `candle`); weights are reproducible per engine and machine.
    pub engine: String,
    /// Things the user should know (dropped columns, unseen categories in val/test, …).
    pub warnings: Vec<String>,
    /// The hyperparameter search that chose this model's config, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuning: Option<serde_json::Value>,
    /// sha256 over the tensors' raw little-endian bytes, in sorted name order.
    pub weights_sha256: String,
}

/// The training-record members of the metadata, as read (the spec members are ignored here).
#[derive(Deserialize)]
struct Record {
    saved_at: String,
    #[serde(alias = "train_config")]
    config: TrainConfig,
    #[serde(default)]
    test_metrics: Option<TestMetrics>,
    #[serde(default)]
    explain: Option<ExplainRecord>,
    history: Vec<EpochRecord>,
    epochs_run: usize,
    best_epoch: usize,
    dataset: DatasetInfo,
    #[serde(default)]
    train_seconds: f64,
    #[serde(default)]
    device: String,
    #[serde(default)]
    engine: String,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    tuning: Option<serde_json::Value>,
}

impl Metadata {
    /// Read metadata JSON (format 1 or 2): the spec part with [`ModelSpec::from_json`], the
    /// training record derived.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let spec = ModelSpec::from_json(json)?;
        let r: Record = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Ok(Metadata {
            format_version: spec.format_version,
            model_id: spec.model_id,
            saved_at: r.saved_at,
            task_type: spec.task_type,
            architecture: spec.architecture,
            config: r.config,
            test_metrics: r.test_metrics,
            preprocessing: spec.preprocessing,
            classes: spec.classes,
            explain: r.explain,
            history: r.history,
            epochs_run: r.epochs_run,
            best_epoch: r.best_epoch,
            dataset: r.dataset,
            train_seconds: r.train_seconds,
            device: r.device,
            engine: r.engine,
            warnings: r.warnings,
            tuning: r.tuning,
            weights_sha256: spec.weights_sha256,
        })
    }
}
