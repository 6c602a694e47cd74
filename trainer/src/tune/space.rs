//! The search space of `trainer tune`: the training config's own shape (`model_config`,
//! `train_config`), each tunable field a distribution. A space file overlays the default
//! space: a field given replaces that field's distribution, a field set to `null` is not
//! tuned (the base config's value is used), and the optional fields (`epochs`, `patience`,
//! `min_delta`) extend it.
//!
//! ```json
//! {"model_config": {"hidden_dims": {"depth": {"low": 1, "high": 4},
//!                                   "width": {"low": 16, "high": 512, "log": true}},
//!                   "dropout_rate": {"low": 0.0, "high": 0.5},
//!                   "activation": {"choices": ["relu", "gelu"]}},
//!  "train_config": {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": true},
//!                   "weight_decay": {"low": 1e-6, "high": 1e-3, "log": true, "or_zero": true},
//!                   "batch_size": {"choices": [32, 64, 128, 256]},
//!                   "optimizer": {"choices": ["adam", "adamw"]}}}
//! ```
//! Every hidden layer of a trial gets the same width.

use serde::{Deserialize, Serialize};

use inference::config::{Activation, ConfigError, OptimizerKind, TrainConfig, MAX_HIDDEN_DIM, MAX_HIDDEN_LAYERS};

/// A real interval, uniform or log-uniform; `or_zero` adds the value 0 as an alternative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FloatRange {
    /// Smallest value.
    pub low: f64,
    /// Largest value.
    pub high: f64,
    /// Sample the logarithm uniformly.
    #[serde(default)]
    pub log: bool,
    /// 0 is also a candidate (chosen as its own category).
    #[serde(default)]
    pub or_zero: bool,
}

/// An integer interval (both ends included), uniform or log-uniform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntRange {
    /// Smallest value.
    pub low: usize,
    /// Largest value.
    pub high: usize,
    /// Sample the logarithm uniformly.
    #[serde(default)]
    pub log: bool,
}

/// One of a list of values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Choices<T> {
    /// The candidates.
    pub choices: Vec<T>,
}

/// Hidden layers: how many, and how wide (the same width for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HiddenSpace {
    /// Number of hidden layers.
    pub depth: IntRange,
    /// Width of every hidden layer.
    pub width: IntRange,
}

/// `model_config` fields to tune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSpace {
    /// Depth and width.
    pub hidden_dims: Option<HiddenSpace>,
    /// Dropout rate.
    pub dropout_rate: Option<FloatRange>,
    /// Activation.
    #[schema(value_type = Option<Object>)]
    pub activation: Option<Choices<Activation>>,
}

impl Default for ModelSpace {
    fn default() -> Self {
        Self {
            hidden_dims: Some(HiddenSpace {
                depth: IntRange { low: 1, high: 4, log: false },
                width: IntRange { low: 16, high: 512, log: true },
            }),
            dropout_rate: Some(FloatRange { low: 0.0, high: 0.5, log: false, or_zero: false }),
            activation: Some(Choices { choices: Activation::ALL.to_vec() }),
        }
    }
}

/// `train_config` fields to tune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSpace {
    /// Learning rate.
    pub learning_rate: Option<FloatRange>,
    /// Weight decay.
    pub weight_decay: Option<FloatRange>,
    /// Batch size.
    #[schema(value_type = Option<Object>)]
    pub batch_size: Option<Choices<usize>>,
    /// Optimizer.
    #[schema(value_type = Option<Object>)]
    pub optimizer: Option<Choices<OptimizerKind>>,
    /// Epochs (not tuned by default).
    pub epochs: Option<IntRange>,
    /// Early-stopping patience (not tuned by default).
    pub patience: Option<IntRange>,
    /// Early-stopping minimum improvement (not tuned by default).
    pub min_delta: Option<FloatRange>,
}

impl Default for TrainSpace {
    fn default() -> Self {
        Self {
            learning_rate: Some(FloatRange { low: 1e-4, high: 1e-2, log: true, or_zero: false }),
            weight_decay: Some(FloatRange { low: 1e-6, high: 1e-3, log: true, or_zero: true }),
            batch_size: Some(Choices { choices: vec![32, 64, 128, 256] }),
            optimizer: Some(Choices { choices: vec![OptimizerKind::Adam, OptimizerKind::Adamw] }),
            epochs: None,
            patience: None,
            min_delta: None,
        }
    }
}

/// The whole space.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSpace {
    /// Network shape.
    pub model_config: ModelSpace,
    /// Optimisation.
    pub train_config: TrainSpace,
}

/// How a sampler sees one dimension: its internal range and kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dim {
    /// A real value in `[low, high)` (the logarithm's range for log dimensions).
    Real {
        /// Start.
        low: f64,
        /// End.
        high: f64,
    },
    /// One of `n` categories (0..n).
    Category {
        /// How many.
        n: usize,
    },
}

/// A named dimension.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Named {
    /// `model_config.dropout_rate`, …
    pub name: &'static str,
    /// Its kind.
    pub dim: Dim,
}

fn real(r: &FloatRange) -> Dim {
    if r.log {
        Dim::Real { low: r.low.ln(), high: r.high.ln() }
    } else {
        Dim::Real { low: r.low, high: r.high }
    }
}

fn int(r: &IntRange) -> Dim {
    // [low, high + 1): the sampled real is floored.
    if r.log {
        Dim::Real { low: (r.low as f64).ln(), high: ((r.high + 1) as f64).ln() }
    } else {
        Dim::Real { low: r.low as f64, high: (r.high + 1) as f64 }
    }
}

fn from_real(r: &FloatRange, x: f64) -> f64 {
    (if r.log { x.exp() } else { x }).clamp(r.low, r.high)
}

fn from_int(r: &IntRange, x: f64) -> usize {
    let v = if r.log { x.exp() } else { x };
    (v.floor().max(0.0) as usize).clamp(r.low, r.high)
}

fn pick<T: Copy>(c: &Choices<T>, x: f64) -> T {
    c.choices[(x.max(0.0) as usize).min(c.choices.len() - 1)]
}

impl SearchSpace {
    /// Check every range; `field` paths name the bad one.
    pub fn check(&self) -> Result<(), ConfigError> {
        let float = |field: &str, r: &Option<FloatRange>, lo: f64, hi: f64| -> Result<(), ConfigError> {
            let Some(r) = r else { return Ok(()) };
            let ok = r.low.is_finite() && r.high.is_finite() && r.low <= r.high && r.low >= lo && r.high <= hi;
            if !ok {
                return Err(ConfigError::new(
                    field,
                    format!("needs {lo} ≤ low ≤ high ≤ {hi}, got {}..{}", r.low, r.high),
                ));
            }
            if r.log && r.low <= 0.0 {
                return Err(ConfigError::new(field, "a log range needs low > 0"));
            }
            Ok(())
        };
        let int = |field: &str, r: &Option<IntRange>, lo: usize, hi: usize| -> Result<(), ConfigError> {
            let Some(r) = r else { return Ok(()) };
            if !(r.low <= r.high && r.low >= lo && r.high <= hi) || (r.log && r.low == 0) {
                return Err(ConfigError::new(
                    field,
                    format!("needs {lo} ≤ low ≤ high ≤ {hi} (low > 0 for log), got {}..{}", r.low, r.high),
                ));
            }
            Ok(())
        };
        fn nonempty<T>(field: &str, c: &Option<Choices<T>>) -> Result<(), ConfigError> {
            match c {
                Some(c) if c.choices.is_empty() => Err(ConfigError::new(field, "needs at least one choice")),
                _ => Ok(()),
            }
        }
        let m = &self.model_config;
        if let Some(h) = &m.hidden_dims {
            int("space.model_config.hidden_dims.depth", &Some(h.depth), 1, MAX_HIDDEN_LAYERS)?;
            int("space.model_config.hidden_dims.width", &Some(h.width), 1, MAX_HIDDEN_DIM)?;
        }
        float("space.model_config.dropout_rate", &m.dropout_rate, 0.0, 0.95)?;
        nonempty("space.model_config.activation", &m.activation)?;
        let t = &self.train_config;
        float("space.train_config.learning_rate", &t.learning_rate, 1e-12, 10.0)?;
        float("space.train_config.weight_decay", &t.weight_decay, 0.0, 10.0)?;
        nonempty("space.train_config.batch_size", &t.batch_size)?;
        if t.batch_size.as_ref().is_some_and(|b| b.choices.iter().any(|&b| b < 2)) {
            return Err(ConfigError::new("space.train_config.batch_size", "every batch size must be ≥ 2"));
        }
        nonempty("space.train_config.optimizer", &t.optimizer)?;
        int("space.train_config.epochs", &t.epochs, 1, 1_000_000)?;
        int("space.train_config.patience", &t.patience, 0, 1_000_000)?;
        float("space.train_config.min_delta", &t.min_delta, 0.0, f64::MAX)?;
        Ok(())
    }

    /// Every trial it can draw around `base` passes the config's own check within `caps`
    /// (after [`SearchSpace::check`]): a range reaching past a limit (a server's epochs, the
    /// parameter count of the deepest, widest network, a batch size) would otherwise only fail
    /// trials once the search runs. The config's rules stay in `TrainConfig::check_with`; this
    /// probes the space's corners with it: every dimension at its low end, every one at its
    /// high end, and each choice of each categorical dimension with the rest high (each rule
    /// bounds one field, or grows with depth and width together).
    pub fn check_against(&self, base: &TrainConfig, caps: &inference::config::Caps) -> Result<(), ConfigError> {
        let dims = self.dims();
        let end = |d: &Dim, high: bool| match *d {
            Dim::Real { low, high: h } => {
                if high {
                    h
                } else {
                    low
                }
            }
            Dim::Category { n } => {
                if high {
                    n as f64 - 1.0
                } else {
                    0.0
                }
            }
        };
        let high: Vec<f64> = dims.iter().map(|d| end(&d.dim, true)).collect();
        let mut probes = vec![dims.iter().map(|d| end(&d.dim, false)).collect::<Vec<_>>(), high.clone()];
        for (i, d) in dims.iter().enumerate() {
            if let Dim::Category { n } = d.dim {
                probes.extend((0..n.saturating_sub(1)).map(|k| {
                    let mut p = high.clone();
                    p[i] = k as f64;
                    p
                }));
            }
        }
        for point in probes {
            let (cfg, _) = self.apply(base, &point);
            if let Err(e) = cfg.check_with(caps) {
                return Err(ConfigError::new(
                    &format!("space.{}", e.field),
                    format!("a trial the space can draw fails the config's check: {}", e.message),
                ));
            }
        }
        Ok(())
    }

    /// The dimensions a sampler draws, in a fixed order.
    pub fn dims(&self) -> Vec<Named> {
        let (m, t) = (&self.model_config, &self.train_config);
        let mut d = Vec::new();
        let mut push = |name: &'static str, dim: Option<Dim>| {
            if let Some(dim) = dim {
                d.push(Named { name, dim });
            }
        };
        push("model_config.hidden_dims.depth", m.hidden_dims.as_ref().map(|h| int(&h.depth)));
        push("model_config.hidden_dims.width", m.hidden_dims.as_ref().map(|h| int(&h.width)));
        push("model_config.dropout_rate", m.dropout_rate.as_ref().map(real));
        push("model_config.activation", m.activation.as_ref().map(|c| Dim::Category { n: c.choices.len() }));
        push("train_config.learning_rate", t.learning_rate.as_ref().map(real));
        push(
            "train_config.weight_decay.is_zero",
            t.weight_decay.as_ref().filter(|w| w.or_zero).map(|_| Dim::Category { n: 2 }),
        );
        push("train_config.weight_decay", t.weight_decay.as_ref().map(real));
        push("train_config.batch_size", t.batch_size.as_ref().map(|c| Dim::Category { n: c.choices.len() }));
        push("train_config.optimizer", t.optimizer.as_ref().map(|c| Dim::Category { n: c.choices.len() }));
        push("train_config.epochs", t.epochs.as_ref().map(int));
        push("train_config.patience", t.patience.as_ref().map(int));
        push("train_config.min_delta", t.min_delta.as_ref().map(real));
        d
    }

    /// `base` with the point's values (one per [`SearchSpace::dims`], in order); values a
    /// point leaves unused (weight decay when it is zero) are NaN in `used`.
    pub fn apply(&self, base: &TrainConfig, point: &[f64]) -> (TrainConfig, Vec<f64>) {
        let mut cfg = base.clone();
        let mut used = point.to_vec();
        let (m, t) = (&self.model_config, &self.train_config);
        let mut it = point.iter().copied().enumerate();
        let mut next = || it.next();
        if let Some(h) = &m.hidden_dims {
            let depth = next().map_or(h.depth.low, |(_, x)| from_int(&h.depth, x));
            let width = next().map_or(h.width.low, |(_, x)| from_int(&h.width, x));
            cfg.model_config.hidden_dims = vec![width; depth];
        }
        if let (Some(r), Some((_, x))) = (&m.dropout_rate, m.dropout_rate.as_ref().and_then(|_| next())) {
            cfg.model_config.dropout_rate = from_real(r, x);
        }
        if let (Some(c), Some((_, x))) = (&m.activation, m.activation.as_ref().and_then(|_| next())) {
            cfg.model_config.activation = pick(c, x);
        }
        if let (Some(r), Some((_, x))) = (&t.learning_rate, t.learning_rate.as_ref().and_then(|_| next())) {
            cfg.train_config.learning_rate = from_real(r, x);
        }
        if let Some(r) = &t.weight_decay {
            let zero = if r.or_zero { next().is_some_and(|(_, x)| x < 1.0) } else { false };
            if let Some((i, x)) = next() {
                if zero {
                    cfg.train_config.weight_decay = 0.0;
                    used[i] = f64::NAN;
                } else {
                    cfg.train_config.weight_decay = from_real(r, x);
                }
            }
        }
        if let (Some(c), Some((_, x))) = (&t.batch_size, t.batch_size.as_ref().and_then(|_| next())) {
            cfg.train_config.batch_size = pick(c, x);
        }
        if let (Some(c), Some((_, x))) = (&t.optimizer, t.optimizer.as_ref().and_then(|_| next())) {
            cfg.train_config.optimizer = pick(c, x);
        }
        if let (Some(r), Some((_, x))) = (&t.epochs, t.epochs.as_ref().and_then(|_| next())) {
            cfg.train_config.epochs = from_int(r, x);
        }
        if let (Some(r), Some((_, x))) = (&t.patience, t.patience.as_ref().and_then(|_| next())) {
            cfg.train_config.patience = from_int(r, x);
        }
        if let (Some(r), Some((_, x))) = (&t.min_delta, t.min_delta.as_ref().and_then(|_| next())) {
            cfg.train_config.min_delta = from_real(r, x);
        }
        (cfg, used)
    }
}

/// The tuned fields of a trial's config, as the record shows them.
pub fn params_of(space: &SearchSpace, cfg: &TrainConfig) -> serde_json::Value {
    let (m, t) = (&cfg.model_config, &cfg.train_config);
    let mut p = serde_json::Map::new();
    let mut put = |k: &str, on: bool, v: serde_json::Value| {
        if on {
            p.insert(k.to_owned(), v);
        }
    };
    let (ms, ts) = (&space.model_config, &space.train_config);
    put("hidden_dims", ms.hidden_dims.is_some(), serde_json::json!(m.hidden_dims));
    put("dropout_rate", ms.dropout_rate.is_some(), serde_json::json!(m.dropout_rate));
    put("activation", ms.activation.is_some(), serde_json::json!(m.activation));
    put("learning_rate", ts.learning_rate.is_some(), serde_json::json!(t.learning_rate));
    put("weight_decay", ts.weight_decay.is_some(), serde_json::json!(t.weight_decay));
    put("batch_size", ts.batch_size.is_some(), serde_json::json!(t.batch_size));
    put("optimizer", ts.optimizer.is_some(), serde_json::json!(t.optimizer));
    put("epochs", ts.epochs.is_some(), serde_json::json!(t.epochs));
    put("patience", ts.patience.is_some(), serde_json::json!(t.patience));
    put("min_delta", ts.min_delta.is_some(), serde_json::json!(t.min_delta));
    serde_json::Value::Object(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_space_maps_points_into_its_ranges() {
        let s = SearchSpace::default();
        s.check().unwrap();
        let dims = s.dims();
        assert_eq!(dims.len(), 9, "{dims:?}");
        // The corners of every dimension give valid configs.
        for corner in [0.0, 1.0 - 1e-12] {
            let point: Vec<f64> = dims
                .iter()
                .map(|d| match d.dim {
                    Dim::Real { low, high } => low + corner * (high - low),
                    Dim::Category { n } => corner * (n as f64 - 1.0) + 0.5 * corner,
                })
                .collect();
            let (cfg, used) = s.apply(&TrainConfig::default(), &point);
            let h = &cfg.model_config.hidden_dims;
            assert!((1..=4).contains(&h.len()) && h.iter().all(|w| (16..=512).contains(w)), "{h:?}");
            assert!((0.0..=0.5).contains(&cfg.model_config.dropout_rate));
            assert!((1e-4..=1e-2).contains(&cfg.train_config.learning_rate));
            let wd = cfg.train_config.weight_decay;
            assert!(wd == 0.0 || (1e-6..=1e-3).contains(&wd), "{wd}");
            assert_eq!(wd == 0.0, used[6].is_nan());
            assert!([32, 64, 128, 256].contains(&cfg.train_config.batch_size));
            cfg.check().unwrap();
        }
    }

    #[test]
    fn a_space_is_checked_against_the_config_at_its_corners() {
        let caps = inference::config::Caps { max_epochs: 200, ..Default::default() };
        let base = TrainConfig::default();
        SearchSpace::default().check_against(&base, &caps).unwrap();
        let space = |v: serde_json::Value| serde_json::from_value::<SearchSpace>(v).unwrap();
        // Only the high end is past the cap; only the deepest and widest network together.
        let e = space(serde_json::json!({"train_config": {"epochs": {"low": 1, "high": 201}}}))
            .check_against(&base, &caps)
            .unwrap_err();
        assert_eq!(e.field, "space.train_config.epochs");
        let wide = serde_json::json!({"model_config": {"hidden_dims":
            {"depth": {"low": 1, "high": 3}, "width": {"low": 8, "high": 6000, "log": true}}}});
        assert_eq!(space(wide).check_against(&base, &caps).unwrap_err().field, "space.model_config.hidden_dims");
        // A bad choice anywhere in the list, not only at its ends.
        let e = space(serde_json::json!({"train_config": {"batch_size": {"choices": [32, 1 << 21, 64]}}}))
            .check_against(&base, &caps)
            .unwrap_err();
        assert_eq!(e.field, "space.train_config.batch_size");
        // The base's own fields count: its epochs are what an untuned space trains for.
        let mut long = base.clone();
        long.train_config.epochs = 250;
        assert!(SearchSpace::default().check_against(&long, &caps).is_err());
    }

    #[test]
    fn a_space_file_overlays_the_defaults() {
        let s: SearchSpace = serde_json::from_value(serde_json::json!({
            "model_config": {"activation": null, "dropout_rate": {"low": 0.1, "high": 0.1}},
            "train_config": {"patience": {"low": 5, "high": 20}}
        }))
        .unwrap();
        assert!(s.model_config.activation.is_none() && s.model_config.hidden_dims.is_some());
        assert_eq!(s.train_config.patience, Some(IntRange { low: 5, high: 20, log: false }));
        s.check().unwrap();
        let bad: SearchSpace = serde_json::from_value(
            serde_json::json!({"train_config": {"learning_rate": {"low": 0.0, "high": 1.0, "log": true}}}),
        )
        .unwrap();
        assert!(bad.check().unwrap_err().to_string().contains("learning_rate"));
        assert!(serde_json::from_value::<SearchSpace>(serde_json::json!({"model_config": {"layers": 3}})).is_err());
    }
}
