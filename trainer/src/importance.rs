//! What training stores for explanations: a background set sampled (seeded) from the train
//! split, and the global importance of each feature (mean |φ| over test rows), computed by
//! the inference core's own explainer on the finished bundle.

use std::collections::BTreeMap;

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use inference::bundle::BACKGROUND_TENSOR;
use inference::explain::{self, Target};
use inference::record::{ExplainRecord, FeatureImportance, Metadata};
use inference::{Bundle, Model, Tensor};

use crate::error::{StoreError, TrainingError};
use crate::prep::Split;

/// Seed offset of the background draw, so it is independent of the training stream.
const BACKGROUND_STREAM: u64 = 0x6261_636b_6772_6e64;

/// `rows` train rows (preprocessed), drawn without replacement from `seed`; `None` for 0 rows.
pub fn background(train: &Split, rows: usize, seed: u64) -> Option<Tensor> {
    let k = rows.min(train.rows);
    if k == 0 {
        return None;
    }
    let n = train.x.len() / train.rows.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ BACKGROUND_STREAM);
    let mut picked = sample(&mut rng, train.rows, k).into_vec();
    picked.sort_unstable();
    let data = picked.iter().flat_map(|&r| train.x[r * n..(r + 1) * n].iter().copied()).collect();
    Some(Tensor { shape: vec![k, n], data })
}

/// Add the background to `tensors` and the explain section to `metadata`, with the global
/// importance over up to `importance_rows` rows of `test` (within [`IMPORTANCE_BUDGET_MACS`]).
pub fn attach(
    metadata: &mut Metadata,
    tensors: &mut BTreeMap<String, Tensor>,
    train: &Split,
    test: &Split,
) -> Result<(), TrainingError> {
    let cfg = &metadata.config.explain;
    let Some(bg) = background(train, cfg.background_rows, metadata.config.seed) else {
        return Ok(());
    };
    let k = bg.shape[0];
    // Multiply-adds of one forward row: the matrices' sizes (read before the background joins them).
    let macs: usize = tensors.values().filter(|t| t.shape.len() == 2).map(|t| t.data.len()).sum();
    tensors.insert(BACKGROUND_TENSOR.to_owned(), bg);
    metadata.explain = Some(ExplainRecord {
        background_rows: k,
        importance_rows: 0,
        method: String::new(),
        global_importance: vec![],
    });
    let n_features = test.x.len() / test.rows.max(1);
    let (planned, rows) = plan(cfg.importance_rows.min(test.rows), n_features, k, macs);
    if rows == 0 {
        return Ok(());
    }
    // The core's explainer on the bundle as it will be saved (weights hash filled for the check).
    let mut probe = Bundle { metadata: metadata.clone(), tensors: tensors.clone() };
    probe.metadata.weights_sha256 = inference::bundle::weights_sha256(&probe.tensors);
    let fail = |e: inference::BundleError| TrainingError::Store(StoreError::Backend(format!("explain: {e}")));
    let model = Model::from_bytes(&probe.to_safetensors().map_err(fail)?).map_err(fail)?;
    let n = model.num_features();
    let opts = explain::Options {
        target: Target::Predicted,
        method: planned,
        seed: metadata.config.seed,
        ..explain::Options::default()
    };
    let mut sum = vec![0f64; n];
    let mut method = "";
    for r in 0..rows {
        let e = model.explain(&test.x[r * n..(r + 1) * n], &opts);
        method = e.method.as_str();
        for (s, v) in sum.iter_mut().zip(&e.outputs[0].values) {
            *s += v.abs();
        }
    }
    let mut importance: Vec<FeatureImportance> = model
        .feature_names()
        .iter()
        .zip(&sum)
        .map(|(f, s)| FeatureImportance { feature: f.clone(), mean_abs_shap: s / rows as f64 })
        .collect();
    importance.sort_by(|a, b| b.mean_abs_shap.total_cmp(&a.mean_abs_shap));
    metadata.explain = Some(ExplainRecord {
        background_rows: k,
        importance_rows: rows,
        method: method.to_owned(),
        global_importance: importance,
    });
    Ok(())
}

/// Multiply-adds the global importance may cost (about a second natively: the batched forward
/// pass ran at 18–60 G multiply-adds/s on the 2-core dev VM, loaded and idle): exact
/// enumeration when it fits, else permutation sampling, over fewer test rows if even that does
/// not fit. Without it, exact values over 10 features cost 2¹⁰ × 100 forward rows per test
/// row, and a 512-wide network made the pass 8 s.
pub const IMPORTANCE_BUDGET_MACS: usize = 20_000_000_000;

/// The method and number of test rows for `rows` wanted, `n` features, `k` background rows
/// and `macs` multiply-adds per forward row.
pub fn plan(rows: usize, n: usize, k: usize, macs: usize) -> (explain::Method, usize) {
    let (k, budget) = (k.max(1), IMPORTANCE_BUDGET_MACS / macs.max(1));
    let exact_fits = n <= explain::EXACT_MAX_FEATURES && ((1usize << n) * k).saturating_mul(rows) <= budget;
    if exact_fits {
        return (explain::Method::Exact, rows);
    }
    // An antithetic pair of permutations walks n + 1 coalitions twice.
    let per_row = 2 * explain::DEFAULT_PERMUTATIONS * (n + 1) * k;
    (explain::Method::Permutation, rows.min(budget / per_row).max(rows.min(10)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_importance_pass_stays_within_its_budget() {
        // The default network on 10 features: about 11.5 k multiply-adds per row.
        let small = 11_500;
        // Few features: exact over every wanted row.
        assert_eq!(plan(200, 4, 100, small), (explain::Method::Exact, 200));
        // Ten features over 200 rows would be 20 M forward rows: sampled instead.
        assert_eq!(plan(200, 10, 100, small), (explain::Method::Permutation, 200));
        // A 512-wide network costs 46 times more per row: fewer rows, never fewer than 10.
        let (m, rows) = plan(200, 10, 100, 530_000);
        assert_eq!(m, explain::Method::Permutation);
        assert!((10..200).contains(&rows), "{rows}");
        // Many features and a large background: the floor of 10 rows.
        assert_eq!(plan(200, 500, 1000, small), (explain::Method::Permutation, 10));
        assert_eq!(plan(0, 10, 100, small).1, 0);
    }
}
