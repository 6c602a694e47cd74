//! Fill values for missing cells, fitted on the train split.

use std::collections::HashMap;

use inference::config::MissingStrategy;

/// Fill value of a numeric column from its train values (NaN = missing); None if there are
/// no observed values or the strategy is `drop`.
pub fn numeric_fill(values: impl Iterator<Item = f32>, strategy: MissingStrategy) -> Option<f32> {
    let mut v: Vec<f32> = values.filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    match strategy {
        MissingStrategy::Drop => None,
        MissingStrategy::Mean => Some((v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64) as f32),
        MissingStrategy::Median => {
            v.sort_unstable_by(f32::total_cmp);
            let m = v.len() / 2;
            Some(if v.len() % 2 == 1 { v[m] } else { ((f64::from(v[m - 1]) + f64::from(v[m])) / 2.0) as f32 })
        }
        MissingStrategy::Mode => {
            let mut counts: HashMap<u32, usize> = HashMap::new();
            for x in &v {
                // -0 and +0 count as one value.
                *counts.entry((x + 0.0).to_bits()).or_default() += 1;
            }
            // Most frequent; ties to the smallest value (as pandas' mode()[0]).
            counts
                .into_iter()
                .map(|(bits, c)| (c, f32::from_bits(bits)))
                .max_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
                .map(|(_, x)| x)
        }
    }
}

/// Most frequent text value; ties to the lexicographically smallest. None if there is none.
pub fn text_mode<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for s in values {
        *counts.entry(s).or_default() += 1;
    }
    counts.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0))).map(|(s, _)| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: [f32; 6] = [1.0, f32::NAN, 3.0, 3.0, 10.0, 2.0];

    #[test]
    fn mean_median_mode_ignore_missing() {
        assert_eq!(numeric_fill(V.into_iter(), MissingStrategy::Mean), Some(3.8));
        assert_eq!(numeric_fill(V.into_iter(), MissingStrategy::Median), Some(3.0));
        assert_eq!(numeric_fill([4.0, 1.0, 2.0, 3.0].into_iter(), MissingStrategy::Median), Some(2.5));
        assert_eq!(numeric_fill(V.into_iter(), MissingStrategy::Mode), Some(3.0));
        assert_eq!(numeric_fill([2.0, 1.0].into_iter(), MissingStrategy::Mode), Some(1.0));
        assert_eq!(numeric_fill(V.into_iter(), MissingStrategy::Drop), None);
        assert_eq!(numeric_fill([f32::NAN].into_iter(), MissingStrategy::Mean), None);
    }

    #[test]
    fn text_mode_breaks_ties_alphabetically() {
        assert_eq!(text_mode(["b", "a", "b", "a", "c"].into_iter()), Some("a".into()));
        assert_eq!(text_mode(["z", "y", "z"].into_iter()), Some("z".into()));
        assert_eq!(text_mode(std::iter::empty()), None);
    }
}
