//! Per-prediction Shapley values, computed where the prediction runs.
//!
//! The game is interventional: for a row x and a background set B (rows sampled from the train
//! split and stored in the bundle), `v(S) = mean_b f(x_S, b_S̄)`, where `f` is a class's
//! probability (classification) or the predicted value in target units (regression). The
//! values φ are the Shapley values of `v`, the base value is `v(∅) = mean_b f(b)`, and
//! `base + Σ φ_i = f(x)` holds exactly. One feature per input column: a categorical column is one
//! feature, and a missing cell is explained at its imputed value (rows are preprocessed first).
//!
//! - *Exact*, for at most [`EXACT_MAX_FEATURES`] features: every coalition, in Gray-code order
//!   (each row differs from the last in one cell), through batched forward passes.
//! - *Permutation* otherwise: for every background row, antithetic pairs of seeded random
//!   permutations (a permutation and its reverse); each chain telescopes from `f(b)` to `f(x)`,
//!   so additivity holds exactly, and the spread of the chains gives each value's standard error.

use crate::model::{argmax, Model};
use crate::spec::TaskType;

/// Exact enumeration up to this many features (2ⁿ coalitions per background row).
pub const EXACT_MAX_FEATURES: usize = 10;

/// The most features exact values are ever computed for, whoever asks: 2^20 coalitions per
/// background row, and 2^n × outputs × 8 bytes of memory (40 MiB at 5 classes). Servers refuse
/// `exact` past [`crate::request::Limits::max_exact_features`] (default
/// [`EXACT_MAX_FEATURES`]), long before.
pub const EXACT_LIMIT: usize = 20;

/// Permutations per background row unless asked otherwise (one antithetic pair).
pub const DEFAULT_PERMUTATIONS: usize = 2;

/// Most permutations per background row a request may ask for.
pub const MAX_PERMUTATIONS: usize = 64;

/// How the values are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Exact up to [`EXACT_MAX_FEATURES`] features, else permutation sampling.
    Auto,
    /// Every coalition.
    Exact,
    /// Antithetic permutation sampling.
    Permutation,
}

/// Refuse `method` for a model of `n` features where it may not run: exact Shapley values cost
/// 2^n forward passes per background row, so `exact` needs `n ≤ max` (capped at [`EXACT_LIMIT`]).
pub fn check_method(method: Method, n: usize, max: usize) -> Result<(), String> {
    let max = max.min(EXACT_LIMIT);
    if method == Method::Exact && n > max {
        return Err(format!(
            "exact explanations need at most {max} features here (2^n coalitions); this model has {n}: use \
             \"auto\" or \"permutation\""
        ));
    }
    Ok(())
}

impl Method {
    /// The name answers report.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Exact => "exact",
            Method::Permutation => "permutation",
        }
    }
}

/// Which outputs to explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The predicted class (classification) or the value (regression).
    Predicted,
    /// One class, by index.
    Class(usize),
    /// Every class.
    All,
}

/// What to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Which outputs.
    pub target: Target,
    /// Which method.
    pub method: Method,
    /// Permutations per background row (rounded up to even), for the permutation method.
    pub permutations: usize,
    /// Seed of the permutations.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self { target: Target::Predicted, method: Method::Auto, permutations: DEFAULT_PERMUTATIONS, seed: 0 }
    }
}

/// What the values are relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    /// The bundle's background set, of this many rows.
    Stored(usize),
    /// The bundle has none (format 1, or trained without): one row of fill values (the train
    /// mean where a feature has no fill value).
    FillRow,
}

/// The values of one explained output.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputValues {
    /// The class explained (`None` for regression).
    pub class: Option<usize>,
    /// `v(∅)`: the mean output over the background.
    pub base_value: f64,
    /// `f(x)`: the output for the row (= base + Σ values).
    pub output: f64,
    /// φ per feature, in feature order.
    pub values: Vec<f64>,
    /// Standard error of each value (permutation sampling; zero for exact).
    pub standard_errors: Vec<f64>,
}

/// An explanation of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The method that ran (exact or permutation).
    pub method: Method,
    /// The background used.
    pub background: Background,
    /// Permutations per background row (permutation method).
    pub permutations: usize,
    /// One entry per explained output.
    pub outputs: Vec<OutputValues>,
}

/// splitmix64: the seeded generator of the permutations (no RNG crate in the core; the
/// sequence only needs to be fixed for a seed, not cryptographic).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (n ≤ 2³², bias below 2⁻³²).
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

/// Rows evaluated per forward pass (bounds memory whatever the coalition count).
const CHUNK_ROWS: usize = 4096;

impl Model {
    /// The background rows to explain against, as preprocessed values, and what they are.
    fn background_rows(&self) -> (Vec<f32>, Background) {
        match self.background() {
            Some(b) => (b.to_vec(), Background::Stored(b.len() / self.num_features().max(1))),
            None => {
                let pre = self.preprocessor();
                let row = (0..self.num_features())
                    .map(|j| pre.transform_value(j, crate::ValueRef::Missing).unwrap_or(0.0))
                    .collect();
                (row, Background::FillRow)
            }
        }
    }

    /// Model outputs (probabilities or target-unit values) of many rows, in bounded chunks.
    fn outputs_chunked(&self, x: &[f32]) -> Vec<f32> {
        let n = self.num_features();
        let mut out = Vec::with_capacity(x.len() / n.max(1) * self.output_width());
        for chunk in x.chunks(CHUNK_ROWS * n.max(1)) {
            out.extend(self.outputs(chunk, chunk.len() / n.max(1)));
        }
        out
    }

    /// Explain one preprocessed row `x` (`num_features` values).
    pub fn explain(&self, x: &[f32], opts: &Options) -> Explanation {
        let n = self.num_features();
        let (bg, background) = self.background_rows();
        let k = self.output_width();
        let fx = self.outputs(x, 1);
        let targets: Vec<usize> = match (self.task_type(), opts.target) {
            (TaskType::Regression, _) => vec![0],
            (_, Target::Predicted) => vec![argmax(&fx)],
            (_, Target::Class(c)) => vec![c.min(k - 1)],
            (_, Target::All) => (0..k).collect(),
        };
        let exact = runs_exact(opts.method, n);
        let (phi, se, base, permutations) = if exact {
            let (phi, base) = exact_values(self, x, &bg);
            (phi, vec![0.0; n * k], base, 0)
        } else {
            let p = permutations_of(opts);
            let (phi, se, base) = permutation_values(self, x, &bg, p, opts.seed);
            (phi, se, base, p)
        };
        let classification = self.task_type() == TaskType::Classification;
        let outputs = targets
            .into_iter()
            .map(|c| OutputValues {
                class: classification.then_some(c),
                base_value: base[c],
                output: f64::from(fx[c]),
                values: (0..n).map(|i| phi[i * k + c]).collect(),
                standard_errors: (0..n).map(|i| se[i * k + c]).collect(),
            })
            .collect();
        Explanation {
            method: if exact { Method::Exact } else { Method::Permutation },
            background,
            permutations,
            outputs,
        }
    }
}

/// Whether `method` computes every coalition for a model of `n` features. Entry points refuse
/// `exact` past the limit (`check_method`); the guard here means no caller can ever ask for
/// 2^n coalitions.
fn runs_exact(method: Method, n: usize) -> bool {
    match method {
        Method::Exact => n <= EXACT_LIMIT,
        Method::Permutation => false,
        Method::Auto => n <= EXACT_MAX_FEATURES,
    }
}

/// The permutations per background row that `opts` runs: even (antithetic pairs), in 2..=64.
fn permutations_of(opts: &Options) -> usize {
    opts.permutations.clamp(2, MAX_PERMUTATIONS).next_multiple_of(2)
}

impl Model {
    /// The rows the network evaluates to explain one row with `opts`: 2^n coalitions over the
    /// background rows for exact values, (n + 1) per permutation and background row for
    /// sampled ones. What a server bounds a request's explanations by.
    pub fn explain_cost(&self, opts: &Options) -> u64 {
        let n = self.num_features() as u64;
        let bg = self.background().map_or(1, |b| b.len() / self.num_features().max(1)).max(1) as u64;
        if runs_exact(opts.method, self.num_features()) {
            (1u64 << n).saturating_mul(bg)
        } else {
            (permutations_of(opts) as u64).saturating_mul(bg).saturating_mul(n + 1).saturating_add(bg + 1)
        }
    }
}

/// Mean output over the background, per output dimension.
fn mean_rows(out: &[f32], k: usize) -> Vec<f64> {
    let rows = out.len() / k;
    let mut m = vec![0f64; k];
    for row in out.chunks_exact(k) {
        for (a, &v) in m.iter_mut().zip(row) {
            *a += f64::from(v);
        }
    }
    m.iter_mut().for_each(|a| *a /= rows.max(1) as f64);
    m
}

/// Exact values: `phi[i*k + c]` and the base per output.
fn exact_values(model: &Model, x: &[f32], bg: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let n = x.len();
    let k = model.output_width();
    let nb = bg.len() / n.max(1);
    let masks = 1usize << n;
    // v(S) for every mask, averaged over the background; built in Gray-code order.
    let mut v = vec![0f64; masks * k];
    let mut rows: Vec<f32> = Vec::with_capacity(CHUNK_ROWS * n);
    let mut owners: Vec<usize> = Vec::with_capacity(CHUNK_ROWS);
    let mut current: Vec<f32> = bg.to_vec();
    let flush = |rows: &mut Vec<f32>, owners: &mut Vec<usize>, v: &mut Vec<f64>| {
        let out = model.outputs(rows, owners.len());
        for (o, mask) in out.chunks_exact(k).zip(owners.iter()) {
            for c in 0..k {
                v[mask * k + c] += f64::from(o[c]);
            }
        }
        rows.clear();
        owners.clear();
    };
    for g in 0..masks {
        let mask = g ^ (g >> 1);
        if g > 0 {
            // The one feature that changed from the previous coalition.
            let flipped = g.trailing_zeros() as usize;
            let from_x = mask & (1 << flipped) != 0;
            for b in 0..nb {
                current[b * n + flipped] = if from_x { x[flipped] } else { bg[b * n + flipped] };
            }
        }
        for b in 0..nb {
            rows.extend_from_slice(&current[b * n..(b + 1) * n]);
            owners.push(mask);
        }
        if owners.len() >= CHUNK_ROWS {
            flush(&mut rows, &mut owners, &mut v);
        }
    }
    if !owners.is_empty() {
        flush(&mut rows, &mut owners, &mut v);
    }
    v.iter_mut().for_each(|a| *a /= nb.max(1) as f64);
    // φ_i = Σ_{S ∌ i} |S|!(n−|S|−1)!/n! · (v(S ∪ i) − v(S)).
    let mut weight = vec![0f64; n];
    for (s, w) in weight.iter_mut().enumerate() {
        // 1 / (n · C(n−1, s)).
        let mut c = 1f64;
        for j in 0..s {
            c = c * (n - 1 - j) as f64 / (j + 1) as f64;
        }
        *w = 1.0 / (n as f64 * c);
    }
    let mut phi = vec![0f64; n * k];
    for mask in 0..masks {
        let w = weight.get(mask.count_ones() as usize).copied().unwrap_or(0.0);
        for i in (0..n).filter(|i| mask & (1 << i) == 0) {
            let with = mask | (1 << i);
            for c in 0..k {
                phi[i * k + c] += w * (v[with * k + c] - v[mask * k + c]);
            }
        }
    }
    (phi, v[..k].to_vec())
}

/// Permutation values, their standard errors and the base.
fn permutation_values(model: &Model, x: &[f32], bg: &[f32], p: usize, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = x.len();
    let k = model.output_width();
    let nb = bg.len() / n.max(1);
    let fb = model.outputs_chunked(bg);
    let base = mean_rows(&fb, k);
    let fx = model.outputs(x, 1);
    let mut rng = SplitMix(seed ^ 0x5DEE_CE66_D1CE_4E5B);
    // Each antithetic pair's contributions, averaged: one sample per pair (pairs are independent).
    let pairs = nb * p / 2;
    let mut sum = vec![0f64; n * k];
    let mut sum_sq = vec![0f64; n * k];
    let mut pair = vec![0f64; n * k];
    let mut order: Vec<usize> = (0..n).collect();
    let mut chain: Vec<f32> = Vec::with_capacity(2 * (n - 1).max(1) * n);
    for b in 0..nb {
        let start = &bg[b * n..(b + 1) * n];
        for _ in 0..p / 2 {
            // Fisher–Yates.
            for i in (1..n).rev() {
                order.swap(i, rng.below(i + 1));
            }
            // The intermediate rows of both chains (the ends are f(b) and f(x)).
            chain.clear();
            for rev in [false, true] {
                let mut row = start.to_vec();
                for t in 0..n.saturating_sub(1) {
                    let j = if rev { order[n - 1 - t] } else { order[t] };
                    row[j] = x[j];
                    chain.extend_from_slice(&row);
                }
            }
            let out = model.outputs(&chain, chain.len() / n.max(1));
            pair.iter_mut().for_each(|a| *a = 0.0);
            for rev in [false, true] {
                let steps = n.saturating_sub(1);
                let mid =
                    |t: usize| &out[((usize::from(rev) * steps) + t) * k..((usize::from(rev) * steps) + t + 1) * k];
                for t in 0..n {
                    let j = if rev { order[n - 1 - t] } else { order[t] };
                    let before: &[f32] = if t == 0 { &fb[b * k..(b + 1) * k] } else { mid(t - 1) };
                    let after: &[f32] = if t + 1 == n { &fx } else { mid(t) };
                    for c in 0..k {
                        pair[j * k + c] += 0.5 * (f64::from(after[c]) - f64::from(before[c]));
                    }
                }
            }
            for ((s, q), v) in sum.iter_mut().zip(sum_sq.iter_mut()).zip(&pair) {
                *s += v;
                *q += v * v;
            }
        }
    }
    let m = pairs.max(1) as f64;
    let phi: Vec<f64> = sum.iter().map(|s| s / m).collect();
    let se = sum_sq
        .iter()
        .zip(&phi)
        .map(|(q, mean)| if pairs > 1 { ((q / m - mean * mean).max(0.0) * m / (m - 1.0) / m).sqrt() } else { 0.0 })
        .collect();
    (phi, se, base)
}

#[cfg(all(test, feature = "train"))]
mod tests {
    use super::*;
    use crate::bundle::{expected_tensors, weights_sha256, Bundle, BACKGROUND_TENSOR};
    use crate::config::TrainConfig;
    use crate::record::{DatasetInfo, ExplainRecord, Metadata, RegressionMetrics, TestMetrics};
    use crate::spec::{
        Activation, Architecture, FeatureKind, FeatureSpec, MissingStrategy, Preprocessing, Scaler, TargetScaler,
        FORMAT_VERSION,
    };
    use crate::Tensor;

    /// A linear regression y = (w·x + b)·2 + 10 over 4 features, with a stored background.
    fn linear(w: [f32; 4], background: &[[f32; 4]]) -> Model {
        let arch = Architecture {
            input_dim: 4,
            hidden_dims: vec![],
            output_dim: 1,
            dropout_rate: 0.0,
            activation: Activation::Relu,
            batch_norm_eps: 1e-5,
        };
        let mut tensors: std::collections::BTreeMap<String, Tensor> = expected_tensors(&arch)
            .into_iter()
            .map(|(name, shape)| {
                let data = if name == "out.weight" { w.to_vec() } else { vec![0.5] };
                (name, Tensor { shape, data })
            })
            .collect();
        let bg: Vec<f32> = background.iter().flatten().copied().collect();
        tensors.insert(BACKGROUND_TENSOR.into(), Tensor { shape: vec![background.len(), 4], data: bg });
        let names: Vec<String> = (0..4).map(|i| format!("x{i}")).collect();
        let metadata = Metadata {
            format_version: FORMAT_VERSION,
            model_id: "m".into(),
            saved_at: String::new(),
            task_type: TaskType::Regression,
            architecture: arch,
            config: TrainConfig::default(),
            test_metrics: Some(TestMetrics::Regression(RegressionMetrics { mae: 0.0, rmse: 0.0, r2: 1.0 })),
            preprocessing: Preprocessing {
                feature_names: names.clone(),
                features: names
                    .iter()
                    .map(|n| FeatureSpec { name: n.clone(), kind: FeatureKind::Numeric { fill_value: Some(0.0) } })
                    .collect(),
                missing_strategy: MissingStrategy::Mean,
                scaler: Scaler { mean: vec![0.0; 4], scale: vec![1.0; 4] },
                target_scaler: Some(TargetScaler { mean: 10.0, scale: 2.0 }),
                dropped_columns: vec![],
            },
            classes: None,
            explain: Some(ExplainRecord {
                background_rows: background.len(),
                importance_rows: 0,
                method: String::new(),
                global_importance: vec![],
            }),
            history: vec![],
            epochs_run: 1,
            best_epoch: 1,
            dataset: DatasetInfo {
                source: "t".into(),
                target_column: "y".into(),
                rows: 1,
                dropped_rows: 0,
                train_rows: 1,
                val_rows: 0,
                test_rows: 0,
            },
            train_seconds: 0.0,
            device: String::new(),
            engine: String::new(),
            warnings: vec![],
            tuning: None,
            weights_sha256: weights_sha256(&tensors),
        };
        Model::from_bytes(&Bundle { metadata, tensors }.to_safetensors().unwrap()).unwrap()
    }

    const BG: [[f32; 4]; 3] = [[0.0, 1.0, -1.0, 2.0], [1.0, 0.5, 0.0, -2.0], [-1.0, 2.0, 3.0, 0.0]];

    #[test]
    fn a_linear_model_gets_w_times_x_minus_the_background_mean() {
        let w = [0.5, -1.5, 2.0, 0.0]; // the last feature is ignored
        let m = linear(w, &BG);
        let x = [0.3f32, -0.7, 1.1, 5.0];
        for method in [Method::Exact, Method::Permutation] {
            let e = m.explain(&x, &Options { method, ..Options::default() });
            assert_eq!(e.method, method);
            assert_eq!(e.background, Background::Stored(3));
            let o = &e.outputs[0];
            for i in 0..4 {
                let mean_b = BG.iter().map(|b| f64::from(b[i])).sum::<f64>() / 3.0;
                let want = 2.0 * f64::from(w[i]) * (f64::from(x[i]) - mean_b);
                assert!((o.values[i] - want).abs() < 1e-5, "{method:?} φ{i} = {} vs {want}", o.values[i]);
            }
            assert_eq!(o.values[3], 0.0, "an ignored feature gets exactly 0");
            let additive = o.base_value + o.values.iter().sum::<f64>();
            assert!((additive - o.output).abs() < 1e-5, "{method:?}: {additive} vs {}", o.output);
        }
    }

    #[test]
    fn identical_rows_get_identical_values_and_seeds_fix_the_samples() {
        let m = linear([1.0, 2.0, 3.0, 4.0], &BG);
        let x = [0.1f32, 0.2, 0.3, 0.4];
        let opts = Options { method: Method::Permutation, seed: 7, ..Options::default() };
        assert_eq!(m.explain(&x, &opts), m.explain(&x, &opts));
    }

    /// The ESG fixture (15 features, format 1: explained against its fill row): permutation
    /// sampling is additive, and converges to the exact values.
    #[test]
    fn permutation_sampling_is_additive_and_near_exact() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/parity/esg_relu/model.safetensors");
        let m = Model::from_bytes(&std::fs::read(path).unwrap()).unwrap();
        let pre = m.preprocessor();
        let raw = [
            "38.9", "", "1.83", "59.8", "16.6", "31.3", "82.4", "3.8", "58.0", "Consumer", "Europe", "Small", "794.4",
            "3689", "9",
        ];
        let mut x = vec![0f32; 15];
        pre.transform_row(raw.iter().map(|v| crate::ValueRef::Text(v)), &mut x).unwrap();
        // With this fixture's one fill-row background 2^15 coalitions are cheap.
        let (bg, background) = m.background_rows();
        assert_eq!(background, Background::FillRow);
        assert_eq!(m.explain(&x, &Options { method: Method::Exact, ..Options::default() }).method, Method::Exact);
        assert!(check_method(Method::Exact, 15, EXACT_MAX_FEATURES).is_err());
        assert!(check_method(Method::Exact, 21, usize::MAX).is_err(), "the hard limit holds for every caller");
        let (phi, _) = exact_values(&m, &x, &bg);
        let k = m.output_width();
        let sampled =
            m.explain(&x, &Options { method: Method::Permutation, target: Target::All, permutations: 64, seed: 1 });
        for (c, s) in sampled.outputs.iter().enumerate() {
            let additive = s.base_value + s.values.iter().sum::<f64>();
            assert!((additive - s.output).abs() < 1e-5, "{additive} vs {}", s.output);
            let exact: Vec<f64> = (0..15).map(|i| phi[i * k + c]).collect();
            let exact_sum: f64 = exact.iter().sum();
            assert!((exact_sum - (s.output - s.base_value)).abs() < 1e-5, "exact values are additive too");
            let err = exact.iter().zip(&s.values).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
            let se = s.standard_errors.iter().fold(0f64, |m, v| m.max(*v));
            assert!(err <= 4.0 * se + 1e-9, "max |φ − exact| {err} vs max standard error {se}");
        }
    }
}
