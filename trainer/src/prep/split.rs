//! Seeded train/validation/test split, stratified by class for classification, and k-fold
//! re-splits of its train and validation rows.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Row indices of each split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitIndices {
    /// Rows to fit on.
    pub train: Vec<usize>,
    /// Rows for early stopping.
    pub val: Vec<usize>,
    /// Rows for the final metrics.
    pub test: Vec<usize>,
}

/// Split `0..n`: `ceil(test_size·n)` test rows, `ceil(val_size·n)` validation rows, the rest train.
/// With `strata`, each class is split in proportion (largest-remainder rounding keeps totals exact).
pub fn split(n: usize, strata: Option<&[u32]>, test_size: f64, val_size: f64, seed: u64) -> SplitIndices {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n_test = (test_size * n as f64).ceil() as usize;
    let n_val = (val_size * n as f64).ceil() as usize;
    let groups: Vec<Vec<usize>> = match strata {
        None => vec![(0..n).collect()],
        Some(labels) => {
            let k = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
            let mut g = vec![Vec::new(); k];
            for (i, &c) in labels.iter().enumerate() {
                g[c as usize].push(i);
            }
            g
        }
    };
    let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
    let test_quota = allocate(&sizes, n_test);
    let remaining: Vec<usize> = sizes.iter().zip(&test_quota).map(|(s, t)| s - t).collect();
    let val_quota = allocate(&remaining, n_val.min(remaining.iter().sum()));
    let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for ((mut g, t), v) in groups.into_iter().zip(test_quota).zip(val_quota) {
        g.shuffle(&mut rng);
        test.extend_from_slice(&g[..t]);
        val.extend_from_slice(&g[t..t + v]);
        train.extend_from_slice(&g[t + v..]);
    }
    // Interleave classes; training reshuffles every epoch anyway.
    train.shuffle(&mut rng);
    val.shuffle(&mut rng);
    test.shuffle(&mut rng);
    SplitIndices { train, val, test }
}

/// One fold of a k-fold partition of the rows a search may see (train and validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fold {
    /// Folds in all (≥ 2).
    pub k: usize,
    /// The validating fold, `0..k`.
    pub index: usize,
}

/// Re-split the train and validation rows of `idx` into `fold.k` folds (stratified with
/// `strata`): fold `fold.index` validates and the others train. The test rows are untouched,
/// so no fold ever sees them. The partition depends only on the rows and the seed, so the k
/// calls of one partition cover every row once.
pub fn refold(idx: &mut SplitIndices, strata: Option<&[u32]>, fold: Fold, seed: u64) {
    let mut pool: Vec<usize> = idx.train.iter().chain(&idx.val).copied().collect();
    pool.sort_unstable();
    // Its own stream: the folds should not echo the train/validation draw.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6b66_6f6c_6473);
    pool.shuffle(&mut rng);
    if let Some(s) = strata {
        pool.sort_by_key(|&i| s[i]); // stable: still shuffled within each class
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (j, &i) in pool.iter().enumerate() {
        if j % fold.k == fold.index {
            val.push(i);
        } else {
            train.push(i);
        }
    }
    train.shuffle(&mut rng);
    val.shuffle(&mut rng);
    (idx.train, idx.val) = (train, val);
}

/// Distribute `total` over groups in proportion to `sizes` (largest remainder), never above a size.
fn allocate(sizes: &[usize], total: usize) -> Vec<usize> {
    let n: usize = sizes.iter().sum();
    if n == 0 {
        return vec![0; sizes.len()];
    }
    let exact: Vec<f64> = sizes.iter().map(|&s| s as f64 * total as f64 / n as f64).collect();
    let mut quota: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    // Largest fractional part first; ties to the larger group, then the lower index (deterministic).
    order.sort_by(|&a, &b| {
        let fa = exact[a] - exact[a].floor();
        let fb = exact[b] - exact[b].floor();
        fb.total_cmp(&fa).then(sizes[b].cmp(&sizes[a])).then(a.cmp(&b))
    });
    let mut left = total.saturating_sub(quota.iter().sum());
    for &i in order.iter().cycle().take(sizes.len() * 2) {
        if left == 0 {
            break;
        }
        if quota[i] < sizes[i] {
            quota[i] += 1;
            left -= 1;
        }
    }
    quota
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_fractions_and_cover_every_row_once() {
        let s = split(1000, None, 0.2, 0.1, 42);
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (700, 100, 200));
        let mut all: Vec<usize> = s.train.iter().chain(&s.val).chain(&s.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn stratification_keeps_class_proportions() {
        // 80% class 0, 20% class 1.
        let labels: Vec<u32> = (0..500).map(|i| u32::from(i % 5 == 0)).collect();
        let s = split(500, Some(&labels), 0.2, 0.1, 7);
        assert_eq!(s.test.len(), 100);
        assert_eq!(s.val.len(), 50);
        let ones = |idx: &[usize]| idx.iter().filter(|&&i| labels[i] == 1).count();
        assert_eq!(ones(&s.test), 20);
        assert_eq!(ones(&s.val), 10);
        assert_eq!(ones(&s.train), 70);
    }

    #[test]
    fn seeded_and_reproducible() {
        assert_eq!(split(100, None, 0.2, 0.1, 1), split(100, None, 0.2, 0.1, 1));
        assert_ne!(split(100, None, 0.2, 0.1, 1).test, split(100, None, 0.2, 0.1, 2).test);
    }

    #[test]
    fn allocation_is_exact() {
        assert_eq!(allocate(&[3, 3, 3], 2).iter().sum::<usize>(), 2);
        assert_eq!(allocate(&[1, 0, 5], 6), vec![1, 0, 5]);
        assert_eq!(allocate(&[10, 10], 0), vec![0, 0]);
    }

    #[test]
    fn folds_partition_the_train_and_validation_rows_by_class_and_leave_the_test_rows() {
        let labels: Vec<u32> = (0..103).map(|i| u32::from(i % 4 == 0)).collect();
        let base = split(103, Some(&labels), 0.2, 0.1, 7);
        let mut seen = Vec::new();
        for index in 0..3 {
            let mut f = base.clone();
            refold(&mut f, Some(&labels), Fold { k: 3, index }, 7);
            assert_eq!(f.test, base.test);
            let ones = f.val.iter().filter(|&&i| labels[i] == 1).count();
            let share = ones as f64 / f.val.len() as f64;
            assert!((share - 0.25).abs() < 0.06, "fold {index}: {ones} of {} in class 1", f.val.len());
            let mut all: Vec<usize> = f.train.iter().chain(&f.val).copied().collect();
            all.sort_unstable();
            let mut want: Vec<usize> = base.train.iter().chain(&base.val).copied().collect();
            want.sort_unstable();
            assert_eq!(all, want, "fold {index} keeps the same rows");
            seen.extend(f.val);
        }
        seen.sort_unstable();
        let mut want: Vec<usize> = base.train.iter().chain(&base.val).copied().collect();
        want.sort_unstable();
        assert_eq!(seen, want, "every row validates in exactly one fold");
    }
}
