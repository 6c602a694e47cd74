//! The target column: task guess, class labels in sorted order, or regression values.

use inference::config::TaskType;
use inference::value::number_as_category;

use super::encode::{sorted_labels, vocabulary};
use crate::data::{Column, ColumnData};
use crate::error::TrainingError;

/// At most this many distinct integer values make a numeric target look like classes.
const MAX_GUESSED_CLASSES: usize = 20;

/// Encoded target over the rows that have one.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Classification or regression.
    pub task: TaskType,
    /// Rows (of the table) whose target is present, in table order.
    pub rows: Vec<usize>,
    /// Class labels by index (classification).
    pub classes: Option<Vec<String>>,
    /// Class index per kept row (classification).
    pub class_ids: Vec<u32>,
    /// Value per kept row (regression).
    pub values: Vec<f64>,
}

/// Guess the task: a text target, or a numeric one with ≤ 20 distinct integer values, is classification.
pub fn guess_task(col: &Column) -> TaskType {
    match &col.data {
        ColumnData::Text(_) => TaskType::Classification,
        ColumnData::Numeric(v) => {
            let present = v.iter().filter(|x| !x.is_nan());
            let all_int = present.clone().all(|x| x.fract() == 0.0);
            if all_int && sorted_labels(present.map(f64::from)).len() <= MAX_GUESSED_CLASSES {
                TaskType::Classification
            } else {
                TaskType::Regression
            }
        }
    }
}

/// Whether `classes` distinct labels over `rows` rows are too many for a guessed
/// classification: more than 20, and more than half the rows (a number column read as text,
/// e.g. with decimal commas or one stray word). An explicit task is taken as given.
pub fn too_many_guessed_classes(classes: usize, rows: usize) -> bool {
    classes > MAX_GUESSED_CLASSES && 2 * classes > rows
}

/// The largest magnitude up to which every integer is an f32 (2^24).
const F32_EXACT_INTEGERS: f64 = 16_777_216.0;

/// Encode the target column for `task`, dropping rows where it is missing.
pub fn encode(col: &Column, task: TaskType) -> Result<Target, TrainingError> {
    let rows: Vec<usize> = (0..col.len()).filter(|&r| !col.is_missing(r)).collect();
    if rows.is_empty() {
        return Err(TrainingError::Unusable(format!("target column `{}` has no values (all missing)", col.name)));
    }
    let mut t = Target { task, rows, classes: None, class_ids: Vec::new(), values: Vec::new() };
    match (task, &col.data) {
        (TaskType::Regression, ColumnData::Numeric(v)) => {
            t.values = t.rows.iter().map(|&r| f64::from(v[r])).collect();
        }
        (TaskType::Regression, ColumnData::Text(_)) => {
            return Err(TrainingError::Unusable(format!(
                "regression needs a numeric target, but `{}` holds text",
                col.name
            )));
        }
        (TaskType::Classification, ColumnData::Numeric(v)) => {
            let labels = sorted_labels(t.rows.iter().map(|&r| f64::from(v[r])));
            // Cells are f32: past 2^24 distinct integers can share one f32, which would merge
            // classes and name labels the data never held.
            if let Some(big) = labels.iter().find(|l| l.abs() > F32_EXACT_INTEGERS) {
                return Err(TrainingError::Unusable(format!(
                    "target column `{}` holds a class label ({}) beyond ±16,777,216, where numbers read as f32 \
                     can no longer be told apart: give such labels as text (e.g. prefixed with a letter) or \
                     as smaller codes",
                    col.name,
                    number_as_category(*big)
                )));
            }
            t.class_ids = t.rows.iter().map(|&r| labels.partition_point(|&l| l < f64::from(v[r])) as u32).collect();
            t.classes = Some(labels.into_iter().map(number_as_category).collect());
        }
        (TaskType::Classification, ColumnData::Text(v)) => {
            let vocab = vocabulary(t.rows.iter().filter_map(|&r| v[r].as_deref()));
            t.class_ids = t
                .rows
                .iter()
                .filter_map(|&r| v[r].as_deref())
                .map(|s| vocab.binary_search_by(|c| c.as_str().cmp(s)).unwrap_or(0) as u32)
                .collect();
            t.classes = Some(vocab);
        }
    }
    if let Some(c) = &t.classes {
        if c.len() < 2 {
            return Err(TrainingError::Unusable(format!(
                "target column `{}` has a single class: classification needs at least two",
                col.name
            )));
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(v: &[f32]) -> Column {
        Column { name: "y".into(), data: ColumnData::Numeric(v.to_vec().into()) }
    }

    #[test]
    fn guesses() {
        assert_eq!(guess_task(&num(&[0.0, 1.0, 2.0, 1.0])), TaskType::Classification);
        assert_eq!(guess_task(&num(&[0.5, 1.0])), TaskType::Regression);
        let many: Vec<f32> = (0..30).map(|i| i as f32).collect();
        assert_eq!(guess_task(&num(&many)), TaskType::Regression);
        let text = Column { name: "y".into(), data: ColumnData::Text(vec![Some("a".into())]) };
        assert_eq!(guess_task(&text), TaskType::Classification);
    }

    #[test]
    fn classes_sorted_by_original_value_and_missing_dropped() {
        let t = encode(&num(&[10.0, 2.0, f32::NAN, 10.0, 9.0]), TaskType::Classification).unwrap();
        assert_eq!(t.classes, Some(vec!["2".into(), "9".into(), "10".into()]));
        assert_eq!(t.rows, vec![0, 1, 3, 4]);
        assert_eq!(t.class_ids, vec![2, 0, 2, 1]);
        let text = Column { name: "y".into(), data: ColumnData::Text(vec![Some("b".into()), None, Some("a".into())]) };
        let t = encode(&text, TaskType::Classification).unwrap();
        assert_eq!(t.classes, Some(vec!["a".into(), "b".into()]));
        assert_eq!(t.class_ids, vec![1, 0]);
    }

    #[test]
    fn one_class_and_all_missing_are_errors() {
        let e = encode(&num(&[1.0, 1.0]), TaskType::Classification).unwrap_err();
        assert!(e.to_string().contains("single class"), "{e}");
        let e = encode(&num(&[f32::NAN]), TaskType::Regression).unwrap_err();
        assert!(e.to_string().contains("all missing"), "{e}");
    }
}
