//! The one training configuration: the CLI's `--config` file and flags, the HTTP train body
//! and the bundle's `config` are all [`TrainConfig`]. [`TrainConfig::check`] holds every rule
//! and turns it into a [`CheckedConfig`], the only type the pipeline accepts (linfa-style
//! checked parameters). Feature `train`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use crate::spec::{Activation, MissingStrategy, TaskType};

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
    /// An error about `field`.
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self { field: field.to_owned(), message: message.into() }
    }

    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        "invalid_config"
    }
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

/// Which implementation computes the training steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EngineChoice {
    /// The fused step of the device (CPU or CUDA); the `TRAINER_ENGINE` environment variable may override it.
    #[default]
    Auto,
    /// The fused step: hand-written backward over GEMMs (CPU) or cuBLAS + kernels (CUDA).
    Fused,
    /// candle's autograd on either device (slower; the reference the fused steps are tested against).
    Candle,
}

/// Network shape (`model_config` in the documented request body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Width of each hidden layer; empty gives a linear (or logistic) model.
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
    /// Training engine.
    pub engine: EngineChoice,
    /// Wall-clock limit of the training loop in seconds; absent = none (a server applies its own cap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<f64>,
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
            engine: EngineChoice::Auto,
            max_seconds: None,
        }
    }
}

/// What explanations store at training time (`explain` in the request body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct ExplainConfig {
    /// Background rows sampled (seeded) from the train split into the bundle; 0 stores none.
    pub background_rows: usize,
    /// Test rows the global importance (mean |φ|) is computed over; 0 skips it.
    pub importance_rows: usize,
}

impl Default for ExplainConfig {
    fn default() -> Self {
        Self { background_rows: 100, importance_rows: 200 }
    }
}

/// Redis connection for `redis:KEY` datasets. Never written to a bundle (the URL may carry a
/// password) and never accepted from an HTTP body (a server uses its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`.
    pub url: String,
    /// Connect, read and write timeout, seconds.
    #[serde(default = "default_redis_timeout")]
    pub timeout_seconds: f64,
}

fn default_redis_timeout() -> f64 {
    5.0
}

/// The whole training request, as the documented Python service takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// `path.csv`, `path.json` or `redis:KEY`; absent means the embedded default dataset.
    pub dataset_path: Option<String>,
    /// Column to predict; required with a `dataset_path` (the embedded dataset has a default).
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
    /// A classification target with more classes than this is refused before training.
    pub max_classes: usize,
    /// Seed for the split, weight init, shuffling and dropout.
    pub seed: u64,
    /// Network shape.
    pub model_config: ModelConfig,
    /// Optimisation settings.
    pub train_config: TrainOptions,
    /// Explanation background and global importance.
    pub explain: ExplainConfig,
    /// Redis connection for `redis:KEY` datasets (CLI config files only; environment fallback `REDIS_URL`).
    #[serde(skip_serializing)]
    pub redis: Option<RedisConfig>,
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
            max_classes: 1000,
            seed: 42,
            model_config: ModelConfig::default(),
            train_config: TrainOptions::default(),
            explain: ExplainConfig::default(),
            redis: None,
        }
    }
}

/// Largest hidden width accepted, to keep a bad request from allocating gigabytes.
pub const MAX_HIDDEN_DIM: usize = 65_536;

/// Most hidden layers a network may have.
pub const MAX_HIDDEN_LAYERS: usize = crate::bundle::MAX_HIDDEN_LAYERS;

/// Most weights a network may have (200 MB of f32); checked against the hidden layers here
/// and against the whole architecture once the input width is known.
pub const MAX_PARAMETERS: usize = 50_000_000;

/// Most classes a target may have, whatever the config says (the confusion matrix grows
/// with the square, and the bundle header must stay under the safetensors header cap).
pub const MAX_CLASSES: usize = 10_000;

/// Most background rows a bundle may store.
pub const MAX_BACKGROUND_ROWS: usize = 10_000;

/// Most test rows the global importance is computed over (each costs a full explanation).
pub const MAX_IMPORTANCE_ROWS: usize = 100_000;

/// Limits a server puts on configs from its clients, beyond the intrinsic ranges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Caps {
    /// Most epochs.
    pub max_epochs: usize,
    /// Most patience epochs.
    pub max_patience: usize,
    /// Longest training loop, seconds (also the default limit when the config sets none).
    pub max_seconds: Option<f64>,
    /// Most classes (a ceiling on the config's `max_classes`).
    pub max_classes: usize,
}

impl Default for Caps {
    /// No caps beyond the intrinsic ranges (the CLI's).
    fn default() -> Self {
        Self { max_epochs: 100_000, max_patience: usize::MAX, max_seconds: None, max_classes: MAX_CLASSES }
    }
}

/// Where the training data comes from, as checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// The embedded default dataset.
    Embedded,
    /// A `.csv`/`.json` path (relative to a server's data dir, or as given on the CLI).
    File(String),
    /// `redis:KEY`.
    Redis(String),
}

/// A [`TrainConfig`] that passed every check: what the pipeline runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedConfig {
    config: TrainConfig,
    source: DataSource,
}

impl CheckedConfig {
    /// The config as given (with any server cap on `max_seconds` applied).
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Where the data comes from.
    pub fn source(&self) -> &DataSource {
        &self.source
    }

    /// The target column; `None` means the embedded dataset's default.
    pub fn target_column(&self) -> Option<&str> {
        self.config.target_column.as_deref()
    }

    /// The config back, for callers that edit and re-check it.
    pub fn into_inner(self) -> TrainConfig {
        self.config
    }
}

impl TrainConfig {
    /// Check every rule with no server caps (the CLI's view).
    pub fn check(self) -> Result<CheckedConfig, ConfigError> {
        self.check_with(&Caps::default())
    }

    /// Check every rule the pipeline relies on, within `caps`; the error names the field.
    pub fn check_with(mut self, caps: &Caps) -> Result<CheckedConfig, ConfigError> {
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
        let source = match self.dataset_path.as_deref() {
            None => DataSource::Embedded,
            Some(p) if p.trim().is_empty() => return Err(ConfigError::new("dataset_path", "must not be empty")),
            Some(p) => match p.strip_prefix("redis:") {
                Some("") => return Err(ConfigError::new("dataset_path", "redis: needs a key (redis:KEY)")),
                Some(key) => DataSource::Redis(key.to_owned()),
                None => DataSource::File(p.to_owned()),
            },
        };
        match (&self.target_column, &source) {
            (Some(c), _) if c.is_empty() => return Err(ConfigError::new("target_column", "must not be empty")),
            (None, DataSource::File(_) | DataSource::Redis(_)) => {
                return Err(ConfigError::new("target_column", "is required with a dataset_path"))
            }
            _ => {}
        }
        if self.max_categories < 2 {
            return Err(ConfigError::new("max_categories", "must be at least 2"));
        }
        if !(2..=MAX_CLASSES).contains(&self.max_classes) {
            return Err(ConfigError::new(
                "max_classes",
                format!("must be in 2..={MAX_CLASSES}, got {}", self.max_classes),
            ));
        }
        // A server's class cap is a ceiling on the config's own.
        self.max_classes = self.max_classes.min(caps.max_classes);
        let m = &self.model_config;
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
        let max_epochs = caps.max_epochs.min(100_000);
        if t.epochs == 0 || t.epochs > max_epochs {
            return Err(ConfigError::new(
                "train_config.epochs",
                format!("must be in 1..={max_epochs}, got {}", t.epochs),
            ));
        }
        if t.patience > caps.max_patience {
            return Err(ConfigError::new(
                "train_config.patience",
                format!("must be at most {}, got {}", caps.max_patience, t.patience),
            ));
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
        if let Some(s) = t.max_seconds {
            if !(s.is_finite() && s > 0.0) {
                return Err(ConfigError::new("train_config.max_seconds", format!("must be > 0, got {s}")));
            }
            if let Some(cap) = caps.max_seconds.filter(|&cap| s > cap) {
                return Err(ConfigError::new(
                    "train_config.max_seconds",
                    format!("must be at most {cap} (the server's limit), got {s}"),
                ));
            }
        }
        if self.explain.background_rows > MAX_BACKGROUND_ROWS {
            return Err(ConfigError::new(
                "explain.background_rows",
                format!("must be at most {MAX_BACKGROUND_ROWS}, got {}", self.explain.background_rows),
            ));
        }
        if self.explain.importance_rows > MAX_IMPORTANCE_ROWS {
            return Err(ConfigError::new(
                "explain.importance_rows",
                format!("must be at most {MAX_IMPORTANCE_ROWS}, got {}", self.explain.importance_rows),
            ));
        }
        if let Some(r) = &self.redis {
            if !(r.timeout_seconds.is_finite() && r.timeout_seconds > 0.0) {
                return Err(ConfigError::new("redis.timeout_seconds", "must be > 0"));
            }
        }
        // The server's time limit applies to a config that sets none.
        if self.train_config.max_seconds.is_none() {
            self.train_config.max_seconds = caps.max_seconds;
        }
        Ok(CheckedConfig { config: self, source })
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
        let checked = c.check().unwrap();
        assert_eq!(checked.source(), &DataSource::File("data.csv".into()));
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = serde_json::from_str::<TrainConfig>(r#"{"target": "y"}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `target`"), "{err}");
        let err = serde_json::from_str::<TrainConfig>(r#"{"model_config": {"layers": [3]}}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `layers`"), "{err}");
    }

    #[test]
    fn every_rule_names_its_field() {
        let field = |edit: fn(&mut TrainConfig)| {
            let mut c = TrainConfig::default();
            edit(&mut c);
            c.check().unwrap_err().field
        };
        assert_eq!(field(|c| c.model_config.dropout_rate = 1.0), "model_config.dropout_rate");
        assert_eq!(field(|c| c.train_config.batch_size = 1), "train_config.batch_size");
        assert_eq!(field(|c| c.model_config.hidden_dims = vec![60_000, 60_000]), "model_config.hidden_dims");
        assert_eq!(field(|c| (c.test_size, c.val_size) = (0.5, 0.45)), "val_size");
        assert_eq!(field(|c| c.train_config.learning_rate = f64::NAN), "train_config.learning_rate");
        assert_eq!(field(|c| c.dataset_path = Some("data.csv".into())), "target_column");
        assert_eq!(field(|c| c.dataset_path = Some("redis:".into())), "dataset_path");
        assert_eq!(field(|c| c.max_classes = 1), "max_classes");
        assert_eq!(field(|c| c.train_config.max_seconds = Some(0.0)), "train_config.max_seconds");
        assert!(TrainConfig::default().check().is_ok());
        // No hidden layer: a linear model.
        let mut c = TrainConfig::default();
        c.model_config.hidden_dims.clear();
        assert!(c.check().is_ok());
    }

    #[test]
    fn server_caps_bound_epochs_patience_time_and_classes() {
        let caps = Caps { max_epochs: 50, max_patience: 5, max_seconds: Some(60.0), max_classes: 100 };
        let mut c = TrainConfig::default();
        c.train_config.epochs = 51;
        assert_eq!(c.clone().check_with(&caps).unwrap_err().field, "train_config.epochs");
        c.train_config.epochs = 50;
        c.train_config.patience = 6;
        assert_eq!(c.clone().check_with(&caps).unwrap_err().field, "train_config.patience");
        c.train_config.patience = 5;
        c.train_config.max_seconds = Some(61.0);
        assert_eq!(c.clone().check_with(&caps).unwrap_err().field, "train_config.max_seconds");
        c.train_config.max_seconds = None;
        // Without its own limits, a config gets the server's.
        let checked = c.check_with(&caps).unwrap();
        assert_eq!(checked.config().train_config.max_seconds, Some(60.0));
        assert_eq!(checked.config().max_classes, 100);
    }
}
