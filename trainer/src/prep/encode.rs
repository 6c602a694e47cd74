//! Label-encoding vocabularies, fitted on the train split (sorted, so codes are stable).

/// Sorted distinct values; a value's code is its index.
pub fn vocabulary<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<&str> = values.collect();
    v.sort_unstable();
    v.dedup();
    v.into_iter().map(str::to_owned).collect()
}

/// Classification labels sorted by their original values: numerically for numeric targets.
pub fn sorted_labels(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_unstable_by(f64::total_cmp);
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_is_sorted_and_unique() {
        assert_eq!(vocabulary(["red", "blue", "red", "Green"].into_iter()), vec!["Green", "blue", "red"]);
    }

    #[test]
    fn numeric_labels_sort_numerically() {
        assert_eq!(sorted_labels([10.0, 2.0, 10.0, -1.0].into_iter()), vec![-1.0, 2.0, 10.0]);
    }
}
