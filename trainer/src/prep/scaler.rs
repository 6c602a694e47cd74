//! StandardScaler fitting (population standard deviation; constant columns get scale 1).

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
    Scaler {
        mean: mean.iter().map(|&m| m as f32).collect(),
        scale: var.iter().map(|&s| scale_of((s / rows.max(1) as f64).sqrt()) as f32).collect(),
    }
}

/// Standardisation of a regression target.
pub fn fit_target(y: &[f64]) -> TargetScaler {
    let n = y.len().max(1) as f64;
    let mean = y.iter().sum::<f64>() / n;
    let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    TargetScaler { mean, scale: scale_of(var.sqrt()) }
}

/// sklearn treats (near-)zero variance as constant: scale 1.
fn scale_of(std: f64) -> f64 {
    if std.is_finite() && std > 1e-12 {
        std
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
    }

    #[test]
    fn target_scaler() {
        let t = fit_target(&[2.0, 4.0, 6.0]);
        assert_eq!(t.mean, 4.0);
        assert!((t.scale - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(fit_target(&[3.0, 3.0]).scale, 1.0);
    }
}
