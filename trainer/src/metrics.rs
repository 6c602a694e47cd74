//! Test metrics: accuracy, weighted and macro precision/recall/F1, confusion matrix;
//! MAE, RMSE, R². Definitions follow scikit-learn (zero_division = 0).

use inference::record::{ClassificationMetrics, RegressionMetrics};

/// Fraction of equal entries.
pub fn accuracy(y_true: &[u32], y_pred: &[u32]) -> f64 {
    if y_true.is_empty() {
        return 0.0;
    }
    y_true.iter().zip(y_pred).filter(|(a, b)| a == b).count() as f64 / y_true.len() as f64
}

/// Classification metrics over `k` classes.
pub fn classification(y_true: &[u32], y_pred: &[u32], k: usize) -> ClassificationMetrics {
    let mut cm = vec![vec![0u64; k]; k];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        cm[t as usize][p as usize] += 1;
    }
    let div = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let (mut pw, mut rw, mut fw) = (0.0, 0.0, 0.0);
    let (mut pm, mut rm, mut fm, mut present) = (0.0, 0.0, 0.0, 0usize);
    let n = y_true.len() as f64;
    for c in 0..k {
        let tp = cm[c][c] as f64;
        let support: f64 = cm[c].iter().sum::<u64>() as f64;
        let predicted: f64 = cm.iter().map(|row| row[c]).sum::<u64>() as f64;
        let precision = div(tp, predicted);
        let recall = div(tp, support);
        let f1 = div(2.0 * precision * recall, precision + recall);
        pw += precision * support;
        rw += recall * support;
        fw += f1 * support;
        // sklearn's macro average runs over labels seen in y_true or y_pred.
        if support > 0.0 || predicted > 0.0 {
            pm += precision;
            rm += recall;
            fm += f1;
            present += 1;
        }
    }
    let p = present.max(1) as f64;
    ClassificationMetrics {
        accuracy: accuracy(y_true, y_pred),
        precision: div(pw, n),
        recall: div(rw, n),
        f1_score: div(fw, n),
        precision_macro: pm / p,
        recall_macro: rm / p,
        f1_macro: fm / p,
        confusion_matrix: cm,
    }
}

/// Regression metrics.
pub fn regression(y_true: &[f64], y_pred: &[f64]) -> RegressionMetrics {
    let n = y_true.len().max(1) as f64;
    let mae = y_true.iter().zip(y_pred).map(|(t, p)| (t - p).abs()).sum::<f64>() / n;
    let ss_res = y_true.iter().zip(y_pred).map(|(t, p)| (t - p).powi(2)).sum::<f64>();
    let mean = y_true.iter().sum::<f64>() / n;
    let ss_tot = y_true.iter().map(|t| (t - mean).powi(2)).sum::<f64>();
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    };
    RegressionMetrics { mae, rmse: (ss_res / n).sqrt(), r2 }
}

/// Index of the largest value of each `k`-wide row.
pub fn argmax_rows(x: &[f32], k: usize) -> Vec<u32> {
    x.chunks_exact(k)
        .map(|r| {
            r.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0 as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_matches_hand_computed_values() {
        // y_true = [0,0,1,1,2,2], y_pred = [0,1,1,1,2,0]
        // class 0: tp1 pred2 sup2 → p .5 r .5 f .5
        // class 1: tp2 pred3 sup2 → p 2/3 r 1 f .8
        // class 2: tp1 pred1 sup2 → p 1 r .5 f 2/3
        let m = classification(&[0, 0, 1, 1, 2, 2], &[0, 1, 1, 1, 2, 0], 3);
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        close(m.accuracy, 4.0 / 6.0);
        close(m.precision, (0.5 + 2.0 / 3.0 + 1.0) / 3.0);
        close(m.recall, (0.5 + 1.0 + 0.5) / 3.0);
        close(m.f1_score, (0.5 + 0.8 + 2.0 / 3.0) / 3.0);
        close(m.f1_macro, (0.5 + 0.8 + 2.0 / 3.0) / 3.0);
        assert_eq!(m.confusion_matrix, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 1]]);
    }

    #[test]
    fn weighted_differs_from_macro_with_imbalance_and_zero_division_is_zero() {
        // class 1 never predicted: precision 0 by zero_division.
        let m = classification(&[0, 0, 0, 1], &[0, 0, 0, 0], 2);
        assert!((m.precision - 0.75 * 0.75).abs() < 1e-12);
        assert!((m.precision_macro - 0.375).abs() < 1e-12);
        assert_eq!(m.recall_macro, 0.5);
    }

    #[test]
    fn regression_matches_hand_computed_values() {
        let m = regression(&[1.0, 2.0, 3.0, 4.0], &[1.5, 2.0, 2.0, 5.0]);
        assert!((m.mae - 0.625).abs() < 1e-12);
        assert!((m.rmse - (2.25f64 / 4.0).sqrt()).abs() < 1e-12);
        assert!((m.r2 - (1.0 - 2.25 / 5.0)).abs() < 1e-12);
    }

    #[test]
    fn argmax_per_row() {
        assert_eq!(argmax_rows(&[0.1, 0.9, 0.7, 0.3], 2), vec![1, 0]);
    }
}
