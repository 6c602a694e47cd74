//! From a loaded table to model-ready matrices: target, column selection, split, and the
//! parameters fitted on the train split (fill values, vocabularies, scaler). The splits are
//! encoded with the inference core's [`Preprocessor`], so training sees exactly what
//! prediction will compute.

pub mod encode;
pub mod impute;
pub mod scaler;
pub mod split;
pub mod target;

use std::collections::HashSet;

use inference::config::{MissingStrategy, TaskType, TrainConfig};
use inference::error::truncate_echo;
use inference::record::DatasetInfo;
use inference::spec::{DroppedColumn, FeatureKind, FeatureSpec, Preprocessing, Scaler, TargetScaler};
use inference::{PredictError, Preprocessor, ValueRef};

use crate::data::{Column, ColumnData, Table};
use crate::error::{DataLoadError, TrainingError};

/// Fewer usable rows than this is an error.
pub const MIN_ROWS: usize = 10;

/// One split, preprocessed.
#[derive(Debug, Clone, Default)]
pub struct Split {
    /// `rows × n_features`, row-major, scaled.
    pub x: Vec<f32>,
    /// Number of rows.
    pub rows: usize,
    /// Class index per row (classification).
    pub class_ids: Vec<u32>,
    /// Target per row in original units (regression).
    pub values: Vec<f64>,
    /// Index of each row in the source table.
    pub table_rows: Vec<usize>,
}

/// Everything training needs.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Task.
    pub task: TaskType,
    /// Class labels (classification).
    pub classes: Option<Vec<String>>,
    /// Fitted preprocessing (goes into the bundle).
    pub preprocessing: Preprocessing,
    /// Train split.
    pub train: Split,
    /// Validation split (may be empty).
    pub val: Split,
    /// Test split (may be empty).
    pub test: Split,
    /// Provenance and sizes.
    pub dataset: DatasetInfo,
    /// Things the user should know.
    pub warnings: Vec<String>,
}

impl Prepared {
    /// Number of model inputs.
    pub fn n_features(&self) -> usize {
        self.preprocessing.feature_names.len()
    }

    /// Number of outputs: classes, or 1.
    pub fn output_dim(&self) -> usize {
        self.classes.as_ref().map_or(1, Vec::len)
    }
}

/// Prepare `table` for training on `target_name`.
pub fn prepare(table: &Table, cfg: &TrainConfig, target_name: &str, source: &str) -> Result<Prepared, TrainingError> {
    let target_col = table.column(target_name).ok_or_else(|| DataLoadError::TargetNotFound {
        target: truncate_echo(target_name),
        columns: table.names_hint(),
    })?;
    let guessed = cfg.task_type.is_none();
    let task = cfg.task_type.unwrap_or_else(|| target::guess_task(target_col));
    // A guess is only a guess: say so in any error it led to, and how to overrule it.
    let overrule = |e: TrainingError| match e {
        TrainingError::Unusable(m) if guessed => TrainingError::Unusable(format!(
            "{m} (the task was guessed as {} from the target's values; set task_type / --task to choose it)",
            task.as_str()
        )),
        e => e,
    };
    let target = target::encode(target_col, task).map_err(overrule)?;
    if let Some(classes) =
        target.classes.as_ref().filter(|c| guessed && target::too_many_guessed_classes(c.len(), target.rows.len()))
    {
        let why = mostly_numbers(target_col).map(|w| format!("; {w}")).unwrap_or_default();
        return Err(overrule(TrainingError::Unusable(format!(
            "target column `{}` has {} distinct values in {} rows: nearly every class would have one row, \
             nothing a classifier can learn{why}",
            truncate_echo(target_name),
            classes.len(),
            target.rows.len()
        ))));
    }
    // Checked before anything else is fitted, so a run that starts can be saved.
    if let Some(classes) = target.classes.as_ref().filter(|c| c.len() > cfg.max_classes) {
        return Err(TrainingError::Unusable(format!(
            "target column `{}` has {} classes, over max_classes = {}",
            truncate_echo(target_name),
            classes.len(),
            cfg.max_classes
        )));
    }
    let mut warnings = table.warnings.clone();
    let mut dropped_columns = Vec::new();

    // Columns: drop all-missing and too-many-category ones (with reasons).
    let mut features: Vec<&Column> = Vec::new();
    for col in table.columns.iter().filter(|c| c.name != target_name) {
        let reason = if target.rows.iter().all(|&r| col.is_missing(r)) {
            Some("every value is missing".to_owned())
        } else if let ColumnData::Text(v) = &col.data {
            let distinct: HashSet<&str> = target.rows.iter().filter_map(|&r| v[r].as_deref()).collect();
            (distinct.len() > cfg.max_categories).then(|| {
                format!("{} distinct text values exceed max_categories = {}", distinct.len(), cfg.max_categories)
            })
        } else {
            None
        };
        match reason {
            Some(reason) => {
                warnings.push(format!("dropped column `{}`: {reason}", col.name));
                dropped_columns.push(DroppedColumn { name: col.name.clone(), reason });
            }
            None => {
                if let Some(w) = mostly_numbers(col) {
                    warnings.push(w);
                }
                features.push(col)
            }
        }
    }

    // Rows: target present; under `drop`, every feature present too.
    let keep: Vec<usize> = (0..target.rows.len())
        .filter(|&i| {
            cfg.missing_strategy != MissingStrategy::Drop || features.iter().all(|c| !c.is_missing(target.rows[i]))
        })
        .collect();
    let dropped_rows = table.n_rows() - keep.len();
    if target.rows.len() < table.n_rows() {
        warnings.push(format!("dropped {} rows whose target is missing", table.n_rows() - target.rows.len()));
    }
    if keep.len() < target.rows.len() {
        warnings.push(format!(
            "dropped {} rows with missing features (missing_strategy drop)",
            target.rows.len() - keep.len()
        ));
    }
    if keep.len() < MIN_ROWS {
        return Err(TrainingError::Unusable(format!(
            "only {} usable rows (after dropping {dropped_rows}); at least {MIN_ROWS} are needed",
            keep.len()
        )));
    }
    let strata: Option<Vec<u32>> =
        (task == TaskType::Classification).then(|| keep.iter().map(|&i| target.class_ids[i]).collect());
    if let Some(s) = &strata {
        if s.iter().collect::<HashSet<_>>().len() < 2 {
            return Err(TrainingError::Unusable("after dropping rows only one class is left".into()));
        }
    }
    let idx = split::split(keep.len(), strata.as_deref(), cfg.test_size, cfg.val_size, cfg.seed);
    let to_table = |v: &[usize]| -> Vec<usize> { v.iter().map(|&i| target.rows[keep[i]]).collect() };
    let (train_rows, val_rows, test_rows) = (to_table(&idx.train), to_table(&idx.val), to_table(&idx.test));

    // Fit fill values and vocabularies on the train rows only.
    let mut specs = Vec::with_capacity(features.len());
    let mut used: Vec<&Column> = Vec::with_capacity(features.len());
    for col in features {
        let fill_strategy = cfg.missing_strategy;
        let kind = match &col.data {
            ColumnData::Numeric(v) => {
                let fill = impute::numeric_fill(train_rows.iter().map(|&r| v[r]), fill_strategy);
                let observed = train_rows.iter().any(|&r| !v[r].is_nan());
                observed.then_some(FeatureKind::Numeric { fill_value: fill })
            }
            ColumnData::Text(v) => {
                let present = || train_rows.iter().filter_map(|&r| v[r].as_deref());
                let categories = encode::vocabulary(present());
                let fill = (fill_strategy != MissingStrategy::Drop).then(|| impute::text_mode(present())).flatten();
                (!categories.is_empty()).then_some(FeatureKind::Categorical { categories, fill_value: fill })
            }
        };
        match kind {
            Some(kind) => {
                specs.push(FeatureSpec { name: col.name.clone(), kind });
                used.push(col);
            }
            None => {
                let reason = "no values in the train split".to_owned();
                warnings.push(format!("dropped column `{}`: {reason}", col.name));
                dropped_columns.push(DroppedColumn { name: col.name.clone(), reason });
            }
        }
    }
    if used.is_empty() {
        return Err(TrainingError::Unusable(format!(
            "no usable feature columns besides the target `{}`{}",
            truncate_echo(target_name),
            table.names_hint()
        )));
    }
    let n = used.len();
    let mut preprocessing = Preprocessing {
        feature_names: specs.iter().map(|s| s.name.clone()).collect(),
        features: specs,
        missing_strategy: cfg.missing_strategy,
        scaler: Scaler { mean: vec![0.0; n], scale: vec![1.0; n] },
        target_scaler: None,
        dropped_columns,
    };

    // Encode train (unscaled) to fit the scaler, then scale everything with the core.
    let unscaled = Preprocessor::new(&preprocessing);
    let (mut train_x, train_rows, unseen) = encode_rows(&unscaled, &used, &train_rows, false)?;
    debug_assert_eq!(unseen, 0, "the vocabulary comes from the train rows");
    preprocessing.scaler = scaler::fit(&train_x, n);
    let pre = Preprocessor::new(&preprocessing);
    for row in train_x.chunks_exact_mut(n) {
        for (i, v) in row.iter_mut().enumerate() {
            *v = pre.scale_value(i, *v);
        }
    }
    let (val_x, val_rows, unseen_val) = encode_rows(&pre, &used, &val_rows, true)?;
    let (test_x, test_rows, unseen_test) = encode_rows(&pre, &used, &test_rows, true)?;
    if unseen_val + unseen_test > 0 {
        warnings.push(format!(
            "{} validation/test cells hold categories absent from the train split; {}",
            unseen_val + unseen_test,
            if cfg.missing_strategy == MissingStrategy::Drop {
                "their rows were dropped"
            } else {
                "they were filled like missing values"
            }
        ));
    }

    let make = |x: Vec<f32>, rows: Vec<usize>| -> Split {
        let pos = |r: usize| target.rows.binary_search(&r).unwrap_or(0);
        Split {
            rows: rows.len(),
            class_ids: if task == TaskType::Classification {
                rows.iter().map(|&r| target.class_ids[pos(r)]).collect()
            } else {
                Vec::new()
            },
            values: if task == TaskType::Regression {
                rows.iter().map(|&r| target.values[pos(r)]).collect()
            } else {
                Vec::new()
            },
            x,
            table_rows: rows,
        }
    };
    let train = make(train_x, train_rows);
    let val = make(val_x, val_rows);
    let test = make(test_x, test_rows);
    if val.rows == 0 && cfg.train_config.patience > 0 {
        warnings.push(format!(
            "there are no validation rows (val_size {}): early stopping (patience {}) watches the training loss, \
             which rarely stops it",
            cfg.val_size, cfg.train_config.patience
        ));
    }
    if train.rows < 2 {
        return Err(TrainingError::Unusable(format!("the train split has {} rows; at least 2 are needed", train.rows)));
    }
    if task == TaskType::Regression {
        preprocessing.target_scaler = Some(scaler::fit_target(&train.values));
    }
    let dataset = DatasetInfo {
        source: source.to_owned(),
        target_column: target_name.to_owned(),
        rows: train.rows + val.rows + test.rows,
        dropped_rows: table.n_rows() - (train.rows + val.rows + test.rows),
        train_rows: train.rows,
        val_rows: val.rows,
        test_rows: test.rows,
    };
    Ok(Prepared { task, classes: target.classes.clone(), preprocessing, train, val, test, dataset, warnings })
}

/// Encode table rows through `pre`. With `tolerate_unseen`, a category absent from the
/// vocabulary is treated as missing (or its row dropped when there is no fill value).
/// Returns the matrix, the rows kept, and how many unseen cells were met.
fn encode_rows(
    pre: &Preprocessor,
    cols: &[&Column],
    rows: &[usize],
    tolerate_unseen: bool,
) -> Result<(Vec<f32>, Vec<usize>, usize), TrainingError> {
    let n = cols.len();
    let mut x = vec![0f32; rows.len() * n];
    let mut kept = Vec::with_capacity(rows.len());
    let mut unseen = 0;
    let mut buf = vec![ValueRef::Missing; n];
    'rows: for &r in rows {
        for (b, c) in buf.iter_mut().zip(cols) {
            *b = c.value(r);
        }
        let out = &mut x[kept.len() * n..(kept.len() + 1) * n];
        match pre.transform_row(buf.iter().copied(), out) {
            Ok(()) => {}
            Err(PredictError::UnknownCategory { .. }) if tolerate_unseen => {
                for (i, b) in buf.iter_mut().enumerate() {
                    if let Err(PredictError::UnknownCategory { .. }) = pre.encode_value(i, *b) {
                        *b = ValueRef::Missing;
                        unseen += 1;
                    }
                }
                if pre.transform_row(buf.iter().copied(), out).is_err() {
                    continue 'rows; // no fill value under `drop`: leave the row out
                }
            }
            // Name the row, column and kind only: the message must not echo cell contents.
            Err(e) => {
                return Err(TrainingError::Unusable(format!(
                    "cannot encode table row {r}{}: {}",
                    e.column().map(|c| format!(", column `{c}`")).unwrap_or_default(),
                    e.kind()
                )))
            }
        }
        kept.push(r);
    }
    x.truncate(kept.len() * n);
    Ok((x, kept, unseen))
}

/// Standardise regression targets for training with the fitted target scaler.
pub fn scaled_targets(values: &[f64], t: Option<TargetScaler>) -> Vec<f32> {
    match t {
        Some(t) => values.iter().map(|v| ((v - t.mean) / t.scale) as f32).collect(),
        None => values.iter().map(|&v| v as f32).collect(),
    }
}

/// A warning for a text column whose cells are mostly numbers: one stray token (`?`, `-`,
/// `1,234`) makes a numeric column categorical, one category per distinct number.
fn mostly_numbers(col: &Column) -> Option<String> {
    let ColumnData::Text(v) = &col.data else {
        return None;
    };
    let (mut numbers, mut texts, mut example) = (0usize, 0usize, None);
    for cell in v.iter().flatten() {
        if matches!(crate::data::classify(cell), crate::data::Cell::Number(_)) {
            numbers += 1;
        } else {
            texts += 1;
            example.get_or_insert(cell.as_str());
        }
    }
    (numbers > 0 && numbers >= 4 * texts).then(|| {
        format!(
            "column `{}` is categorical because {texts} of its {} values are not numbers (e.g. {:?}): \
             if those mean \"missing\", clean them to empty cells to keep the column numeric",
            col.name,
            numbers + texts,
            truncate_echo(example.unwrap_or_default())
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::read_csv_bytes;

    fn table() -> Table {
        let mut csv = String::from("x,color,junk,y\n");
        for i in 0..40 {
            let color = ["red", "blue", ""][i % 3];
            let x = if i % 7 == 3 { String::new() } else { format!("{}", i as f32 * 0.5) };
            csv.push_str(&format!("{x},{color},,{}\n", if i % 2 == 0 { "a" } else { "b" }));
        }
        read_csv_bytes("t.csv", csv.as_bytes()).unwrap()
    }

    #[test]
    fn fits_on_train_only_and_drops_empty_columns() {
        let t = table();
        let cfg = TrainConfig::default();
        let p = prepare(&t, &cfg, "y", "t.csv").unwrap();
        assert_eq!(p.task, TaskType::Classification);
        assert_eq!(p.classes, Some(vec!["a".into(), "b".into()]));
        assert_eq!(p.preprocessing.feature_names, vec!["x", "color"]);
        assert_eq!(p.preprocessing.dropped_columns[0].name, "junk");
        assert_eq!((p.train.rows, p.val.rows, p.test.rows), (28, 4, 8));
        // The fill value is the mean of the train rows' x, not of all rows.
        let ColumnData::Numeric(xs) = &t.columns[0].data else { panic!() };
        let train_mean = {
            let v: Vec<f64> = p.train.table_rows.iter().map(|&r| f64::from(xs[r])).filter(|v| !v.is_nan()).collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let FeatureKind::Numeric { fill_value: Some(fill) } = p.preprocessing.features[0].kind else { panic!() };
        assert!((f64::from(fill) - train_mean).abs() < 1e-5);
        // Train columns are standardised.
        let col0: Vec<f32> = p.train.x.chunks_exact(2).map(|r| r[0]).collect();
        let mean = col0.iter().sum::<f32>() / col0.len() as f32;
        assert!(mean.abs() < 1e-5, "{mean}");
    }

    #[test]
    fn a_guessed_task_with_a_class_per_row_is_refused_with_the_way_out() {
        // A number column with one stray word reads as text: 60 "classes" in 60 rows.
        let mut csv = String::from("x,y\n");
        for i in 0..60 {
            csv.push_str(&format!("{i},{}\n", if i == 7 { "abc".to_owned() } else { format!("{}.5", i * 3) }));
        }
        let t = read_csv_bytes("t.csv", csv.as_bytes()).unwrap();
        let e = prepare(&t, &TrainConfig::default(), "y", "t.csv").unwrap_err().to_string();
        assert!(e.contains("has 60 distinct values in 60 rows"), "{e}");
        assert!(e.contains("(e.g. \"abc\")") && e.contains("the task was guessed as classification"), "{e}");
        // Chosen explicitly, it is taken as given.
        let cfg = TrainConfig { task_type: Some(TaskType::Classification), ..TrainConfig::default() };
        assert!(prepare(&t, &cfg, "y", "t.csv").is_ok());
    }

    #[test]
    fn missing_target_is_listed_and_too_few_rows_rejected() {
        let t = table();
        let e = prepare(&t, &TrainConfig::default(), "nope", "t.csv").unwrap_err();
        assert!(e.to_string().contains("x, color, junk, y"), "{e}");
        let small = read_csv_bytes("s.csv", b"x,y\n1,a\n2,b\n3,a\n").unwrap();
        let e = prepare(&small, &TrainConfig::default(), "y", "s.csv").unwrap_err();
        assert!(e.to_string().contains("at least 10"), "{e}");
    }

    #[test]
    fn drop_strategy_drops_rows_and_keeps_no_fill() {
        let t = table();
        let cfg = TrainConfig { missing_strategy: MissingStrategy::Drop, ..TrainConfig::default() };
        let p = prepare(&t, &cfg, "y", "t.csv").unwrap();
        assert!(p.dataset.dropped_rows > 0);
        assert!(matches!(p.preprocessing.features[0].kind, FeatureKind::Numeric { fill_value: None }));
    }
}
