//! StandardScaler fitting (population standard deviation; constant columns get scale 1, by
//! scikit-learn's rule).

use inference::spec::{Scaler, TargetScaler};

/// Mean and population standard deviation of each column of a row-major `rows × cols` matrix.
pub fn fit(x: &[f32], cols: usize) -> Scaler {
    let rows = x.len().checked_div(cols).unwrap_or(0);
    let mut mean = vec![0f64; cols];
    for row in x.chunks_exact(cols) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);
    let mut var = vec![0f64; cols];
    for row in x.chunks_exact(cols) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (f64::from(v) - m).powi(2);
        }
    }
    let n = rows.max(1) as f64;
    Scaler {
        mean: mean.iter().map(|&m| m as f32).collect(),
        scale: var.iter().zip(&mean).map(|(&s, &m)| scale_of(s / n, m, n) as f32).collect(),
    }
}

/// Standardisation of a regression target.
pub fn fit_target(y: &[f64]) -> TargetScaler {
    let n = y.len().max(1) as f64;
    let mean = y.iter().sum::<f64>() / n;
    let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    TargetScaler { mean, scale: scale_of(var, mean, n) }
}

/// The standard deviation, or 1 for a constant column: scikit-learn's `_is_constant_feature`,
/// a variance within rounding error of the mean's magnitude (var ≤ n·ε·var + (n·mean·ε)²). The
/// bound is relative: a column of tiny values (1e-15) is scaled like any other, not taken for
/// constant as an absolute threshold would.
fn scale_of(var: f64, mean: f64, n: f64) -> f64 {
    let eps = f64::EPSILON;
    let constant = var <= n * eps * var + (n * mean * eps).powi(2);
    if var.is_finite() && !constant {
        var.sqrt()
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_std_and_constant_columns() {
        // columns: [1, 2, 3, 4] and constant 5
        let x = [1.0, 5.0, 2.0, 5.0, 3.0, 5.0, 4.0, 5.0];
        let s = fit(&x, 2);
        assert_eq!(s.mean, vec![2.5, 5.0]);
        assert!((s.scale[0] - 1.118_034).abs() < 1e-6, "{}", s.scale[0]);
        assert_eq!(s.scale[1], 1.0);
        // Tiny values are a column like any other; a large constant stays constant.
        let tiny: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|v| [v * 1e-15, 1e9]).collect();
        let s = fit(&tiny, 2);
        assert!((s.scale[0] / 1.118_034e-15 - 1.0).abs() < 1e-5, "{}", s.scale[0]);
        assert_eq!(s.scale[1], 1.0);
    }

    #[test]
    fn target_scaler() {
        let t = fit_target(&[2.0, 4.0, 6.0]);
        assert_eq!(t.mean, 4.0);
        assert!((t.scale - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(fit_target(&[3.0, 3.0]).scale, 1.0);
    }
}
