//! The one training configuration: the CLI's `--config` file, the HTTP train body and the
//! bundle's `train_config` are all this struct, validated once by [`TrainConfig::validate`].

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

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

/// Hidden-layer activation.
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
    /// x for x > 0, else 0.01·x (PyTorch's default slope).
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

/// Optimizer choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam; `weight_decay` adds an L2 term to the gradient, as torch.optim.Adam.
    #[default]
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
    /// SGD with momentum 0.9.
    Sgd,
}

/// Where training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// The CPU.
    #[default]
    Cpu,
    /// The first CUDA device (needs the `cuda` build feature).
    Cuda,
    /// CUDA when available, else the CPU.
    Auto,
}

/// Network shape (`model_config` in the documented request body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Width of each hidden layer.
    pub hidden_dims: Vec<usize>,
    /// Dropout probability after each hidden activation, in [0, 1).
    pub dropout_rate: f64,
    /// Hidden-layer activation.
    pub activation: Activation,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self { hidden_dims: vec![128, 64, 32], dropout_rate: 0.2, activation: Activation::Relu }
    }
}

/// Optimisation settings (`train_config` in the documented request body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct TrainOptions {
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Rows per optimisation step (≥ 2: BatchNorm needs two rows).
    pub batch_size: usize,
    /// Step size; `lr` is accepted as an alias.
    #[serde(alias = "lr")]
    pub learning_rate: f64,
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// L2 (adam, sgd) or decoupled (adamw) weight decay.
    pub weight_decay: f64,
    /// Epochs without validation-loss improvement before stopping; 0 disables early stopping.
    pub patience: usize,
    /// Smallest validation-loss decrease that counts as an improvement.
    pub min_delta: f64,
    /// Training device.
    pub device: DeviceChoice,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 32,
            learning_rate: 1e-3,
            optimizer: OptimizerKind::Adam,
            weight_decay: 0.0,
            patience: 10,
            min_delta: 0.0,
            device: DeviceChoice::Cpu,
        }
    }
}

/// The whole training request, as the documented Python service takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// `path.csv`, `path.json` or `redis:KEY`; absent means the embedded default dataset.
    pub dataset_path: Option<String>,
    /// Column to predict; absent means the dataset's default target (embedded dataset only).
    pub target_column: Option<String>,
    /// Absent means guessed from the target column.
    pub task_type: Option<TaskType>,
    /// Fraction of rows held out for the test metrics.
    pub test_size: f64,
    /// Fraction of all rows held out for validation / early stopping.
    pub val_size: f64,
    /// Missing-value handling.
    pub missing_strategy: MissingStrategy,
    /// Text columns with more distinct values than this are dropped (recorded in the metadata).
    pub max_categories: usize,
    /// Seed for the split, weight init, shuffling and dropout.
    pub seed: u64,
    /// Network shape.
    pub model_config: ModelConfig,
    /// Optimisation settings.
    pub train_config: TrainOptions,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            dataset_path: None,
            target_column: None,
            task_type: None,
            test_size: 0.2,
            val_size: 0.1,
            missing_strategy: MissingStrategy::Mean,
            max_categories: 1000,
            seed: 42,
            model_config: ModelConfig::default(),
            train_config: TrainOptions::default(),
        }
    }
}

/// Largest hidden width accepted, to keep a bad request from allocating gigabytes.
pub const MAX_HIDDEN_DIM: usize = 65_536;

/// Most hidden layers a network may have.
pub const MAX_HIDDEN_LAYERS: usize = 64;

/// Most weights a network may have (200 MB of f32); checked against the hidden layers here
/// and against the whole architecture once the input width is known.
pub const MAX_PARAMETERS: usize = 50_000_000;

impl TrainConfig {
    /// Check every range the pipeline relies on; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let frac = |field: &str, v: f64| {
            if v.is_finite() && (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError::new(field, format!("must be in [0, 1), got {v}")))
            }
        };
        frac("test_size", self.test_size)?;
        frac("val_size", self.val_size)?;
        if self.test_size + self.val_size >= 0.9 {
            return Err(ConfigError::new(
                "val_size",
                format!(
                    "test_size + val_size = {} leaves too little for training (must be < 0.9)",
                    self.test_size + self.val_size
                ),
            ));
        }
        if matches!(&self.dataset_path, Some(p) if p.trim().is_empty()) {
            return Err(ConfigError::new("dataset_path", "must not be empty"));
        }
        if matches!(&self.target_column, Some(c) if c.is_empty()) {
            return Err(ConfigError::new("target_column", "must not be empty"));
        }
        if self.max_categories < 2 {
            return Err(ConfigError::new("max_categories", "must be at least 2"));
        }
        let m = &self.model_config;
        if m.hidden_dims.is_empty() {
            return Err(ConfigError::new("model_config.hidden_dims", "must name at least one hidden layer"));
        }
        if m.hidden_dims.len() > MAX_HIDDEN_LAYERS {
            return Err(ConfigError::new(
                "model_config.hidden_dims",
                format!("at most {MAX_HIDDEN_LAYERS} hidden layers, got {}", m.hidden_dims.len()),
            ));
        }
        if let Some(d) = m.hidden_dims.iter().find(|&&d| d == 0 || d > MAX_HIDDEN_DIM) {
            return Err(ConfigError::new(
                "model_config.hidden_dims",
                format!("each width must be in 1..={MAX_HIDDEN_DIM}, got {d}"),
            ));
        }
        let hidden_weights: usize = m.hidden_dims.windows(2).map(|w| w[0] * w[1]).sum();
        if hidden_weights > MAX_PARAMETERS {
            return Err(ConfigError::new(
                "model_config.hidden_dims",
                format!("{hidden_weights} weights between hidden layers exceed the limit of {MAX_PARAMETERS}"),
            ));
        }
        frac("model_config.dropout_rate", m.dropout_rate)?;
        let t = &self.train_config;
        if t.epochs == 0 || t.epochs > 100_000 {
            return Err(ConfigError::new("train_config.epochs", format!("must be in 1..=100000, got {}", t.epochs)));
        }
        if t.batch_size < 2 || t.batch_size > 1 << 20 {
            return Err(ConfigError::new(
                "train_config.batch_size",
                format!("must be in 2..=1048576 (BatchNorm needs two rows), got {}", t.batch_size),
            ));
        }
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0 && t.learning_rate <= 10.0) {
            return Err(ConfigError::new(
                "train_config.learning_rate",
                format!("must be in (0, 10], got {}", t.learning_rate),
            ));
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return Err(ConfigError::new("train_config.weight_decay", format!("must be ≥ 0, got {}", t.weight_decay)));
        }
        if !(t.min_delta.is_finite() && t.min_delta >= 0.0) {
            return Err(ConfigError::new("train_config.min_delta", format!("must be ≥ 0, got {}", t.min_delta)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_body_parses_with_defaults_and_lr_alias() {
        let body = r#"{"dataset_path": "data.csv", "target_column": "y",
            "model_config": {"hidden_dims": [16, 8], "dropout_rate": 0.1, "activation": "gelu"},
            "train_config": {"epochs": 5, "batch_size": 16, "lr": 0.01, "optimizer": "adamw"},
            "test_size": 0.25, "task_type": "regression"}"#;
        let c: TrainConfig = serde_json::from_str(body).unwrap();
        assert_eq!(c.train_config.learning_rate, 0.01);
        assert_eq!(c.train_config.patience, 10);
        assert_eq!(c.val_size, 0.1);
        assert_eq!(c.model_config.activation, Activation::Gelu);
        assert_eq!(c.task_type, Some(TaskType::Regression));
        c.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = serde_json::from_str::<TrainConfig>(r#"{"target": "y"}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `target`"), "{err}");
        let err = serde_json::from_str::<TrainConfig>(r#"{"model_config": {"layers": [3]}}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `layers`"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = TrainConfig::default();
        c.model_config.dropout_rate = 1.0;
        assert_eq!(c.validate().unwrap_err().field, "model_config.dropout_rate");
        let mut c = TrainConfig::default();
        c.train_config.batch_size = 1;
        assert_eq!(c.validate().unwrap_err().field, "train_config.batch_size");
        let mut c = TrainConfig::default();
        c.model_config.hidden_dims.clear();
        assert_eq!(c.validate().unwrap_err().field, "model_config.hidden_dims");
        c.model_config.hidden_dims = vec![60_000, 60_000];
        assert!(c.validate().unwrap_err().message.contains("exceed the limit"));
        let c = TrainConfig { test_size: 0.5, val_size: 0.45, ..TrainConfig::default() };
        assert_eq!(c.validate().unwrap_err().field, "val_size");
        let mut c = TrainConfig::default();
        c.train_config.learning_rate = f64::NAN;
        assert_eq!(c.validate().unwrap_err().field, "train_config.learning_rate");
        assert!(TrainConfig::default().validate().is_ok());
    }
}
