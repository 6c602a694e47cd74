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

use crate::data::{number_value, text_value, Column, ColumnData, RowBlock, Table};
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

/// Everything fitted and decided from a table before its rows are encoded: the task, the
/// target, the feature columns and their fill values and vocabularies (unscaled), and which
/// rows go to each split. [`encode`] then turns the table into the [`Prepared`] matrices.
#[derive(Debug, Clone)]
pub struct Plan {
    task: TaskType,
    target: target::Target,
    /// Table column of each feature, in `preprocessing.features` order.
    features: Vec<usize>,
    /// Table rows of each split, before encoding drops any.
    train_rows: Vec<usize>,
    val_rows: Vec<usize>,
    test_rows: Vec<usize>,
    /// Fitted preprocessing with an identity scaler (fitted by `encode`).
    preprocessing: Preprocessing,
    table_rows: usize,
    warnings: Vec<String>,
    val_size: f64,
    patience: usize,
    source: String,
    target_name: String,
}

/// Prepare `table` for training on `target_name`: [`plan`], then [`encode`].
pub fn prepare(table: Table, cfg: &TrainConfig, target_name: &str, source: &str) -> Result<Prepared, TrainingError> {
    let plan = plan(&table, cfg, target_name, source, None)?;
    encode(table, plan)
}

/// Decide and fit everything but the scaler from `table`, on the train rows only. With a
/// `fold`, the train and validation rows are re-split into that fold of k ([`split::refold`];
/// the test rows stay as drawn) before anything is fitted.
pub fn plan(
    table: &Table,
    cfg: &TrainConfig,
    target_name: &str,
    source: &str,
    fold: Option<split::Fold>,
) -> Result<Plan, TrainingError> {
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
    let mut features: Vec<(usize, &Column)> = Vec::new();
    for (j, col) in table.columns.iter().enumerate().filter(|(_, c)| c.name != target_name) {
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
                features.push((j, col))
            }
        }
    }

    // Rows: target present; under `drop`, every feature present too.
    let keep: Vec<usize> = (0..target.rows.len())
        .filter(|&i| {
            cfg.missing_strategy != MissingStrategy::Drop || features.iter().all(|(_, c)| !c.is_missing(target.rows[i]))
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
    let mut idx = split::split(keep.len(), strata.as_deref(), cfg.test_size, cfg.val_size, cfg.seed);
    if let Some(fold) = fold {
        split::refold(&mut idx, strata.as_deref(), fold, cfg.seed);
    }
    drop(strata);
    let to_table = |v: Vec<usize>| -> Vec<usize> { v.into_iter().map(|i| target.rows[keep[i]]).collect() };
    let (train_rows, val_rows, test_rows) = (to_table(idx.train), to_table(idx.val), to_table(idx.test));
    drop(keep);

    // Fit fill values and vocabularies on the train rows only.
    let mut specs = Vec::with_capacity(features.len());
    let mut used = Vec::with_capacity(features.len());
    for (j, col) in features {
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
                used.push(j);
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
    let preprocessing = Preprocessing {
        feature_names: specs.iter().map(|s| s.name.clone()).collect(),
        features: specs,
        missing_strategy: cfg.missing_strategy,
        scaler: Scaler { mean: vec![0.0; n], scale: vec![1.0; n] },
        target_scaler: None,
        dropped_columns,
    };
    Ok(Plan {
        task,
        target,
        features: used,
        train_rows,
        val_rows,
        test_rows,
        preprocessing,
        table_rows: table.n_rows(),
        warnings,
        val_size: cfg.val_size,
        patience: cfg.train_config.patience,
        source: source.to_owned(),
        target_name: target_name.to_owned(),
    })
}

impl Plan {
    /// The test split's rows of `table` (the one the plan was made from) as CSV, as the model
    /// was scored on them: rows that encoding leaves out are left out, and a category absent
    /// from the train split is an empty cell (training read it as missing, and prediction
    /// refuses an unknown category).
    pub fn test_rows_csv(&self, table: &Table) -> Result<Vec<u8>, TrainingError> {
        let pre = Preprocessor::new(&self.preprocessing);
        let cols: Vec<&Column> = self.features.iter().map(|&j| &table.columns[j]).collect();
        let mut buf = vec![ValueRef::Missing; cols.len()];
        let mut out = vec![0f32; cols.len()];
        let mut blank = HashSet::new();
        let mut rows = Vec::with_capacity(self.test_rows.len());
        for &r in &self.test_rows {
            for (b, c) in buf.iter_mut().zip(&cols) {
                *b = c.value(r);
            }
            if encode_row(&pre, &mut buf, &mut out, true, r)?.kept {
                rows.push(r);
                for (i, b) in buf.iter().enumerate() {
                    if *b == ValueRef::Missing && !cols[i].is_missing(r) {
                        blank.insert((self.features[i], r));
                    }
                }
            }
        }
        crate::pipeline::rows_csv(table, &rows, &|col, row| blank.contains(&(col, row)))
    }
}

/// Encode `table` (the one `plan` was made from) into the split matrices, in place: its row block is
/// permuted into train, validation, test order and each row is encoded by the core's
/// [`Preprocessor`] over the front of its own place, so no second copy of the data exists (a
/// feature row is never longer than a table row). The scaler is fitted on the encoded train
/// rows, which are then scaled.
pub fn encode(table: Table, plan: Plan) -> Result<Prepared, TrainingError> {
    let Plan { task, target, features, train_rows, val_rows, test_rows, mut preprocessing, .. } = plan;
    let mut warnings = plan.warnings;
    let RowBlock { mut cells, stride, texts } = table.into_rows();
    let n = features.len();
    // The target is a column and not a feature, so a feature row is shorter than a table row.
    debug_assert!(n < stride);
    let lens = [train_rows.len(), val_rows.len(), test_rows.len()];
    let mut order = train_rows;
    order.extend(val_rows);
    order.extend(test_rows);
    permute_rows(&mut cells, stride, &mut order, plan.table_rows);

    let mut buf = vec![ValueRef::Missing; n];
    let mut row = vec![0f32; stride];
    let mut written = 0usize;
    let mut kept = lens.map(Vec::with_capacity);
    let mut unseen = 0usize;
    let mut at = 0usize;
    for (split, &len) in lens.iter().enumerate() {
        // Train rows are encoded unscaled, to fit the scaler; then they are scaled, and the
        // others encoded with it.
        if split == 1 {
            preprocessing.scaler = scaler::fit(&cells[..written * n], n);
        }
        let pre = Preprocessor::new(&preprocessing);
        if split == 1 {
            for x in cells[..written * n].chunks_exact_mut(n) {
                for (i, v) in x.iter_mut().enumerate() {
                    *v = pre.scale_value(i, *v);
                }
            }
        }
        let tolerate = split > 0;
        for k in at..at + len {
            let r = order[k];
            row.copy_from_slice(&cells[k * stride..(k + 1) * stride]);
            for (b, &j) in buf.iter_mut().zip(&features) {
                *b = match &texts[j] {
                    Some(t) => text_value(&t[r]),
                    None => number_value(row[j]),
                };
            }
            // `written ≤ k` and `n < stride`: this overwrites only row k's own, copied cells.
            let out = &mut cells[written * n..(written + 1) * n];
            let encoded = encode_row(&pre, &mut buf, out, tolerate, r)?;
            unseen += encoded.blanked;
            if encoded.kept {
                kept[split].push(r);
                written += 1;
            }
        }
        at += len;
    }
    drop((texts, order));
    if unseen > 0 {
        warnings.push(format!(
            "{unseen} validation/test cells hold categories absent from the train split; {}",
            if preprocessing.missing_strategy == MissingStrategy::Drop {
                "their rows were dropped"
            } else {
                "they were filled like missing values"
            }
        ));
    }
    // Split the block; each tail is copied out and the block shrunk at once, so at most the
    // test split exists twice.
    let [train_kept, val_kept, test_kept] = kept;
    cells.truncate(written * n);
    let test_x = cells.split_off((train_kept.len() + val_kept.len()) * n);
    cells.shrink_to_fit();
    let val_x = cells.split_off(train_kept.len() * n);
    cells.shrink_to_fit();

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
    let train = make(cells, train_kept);
    let val = make(val_x, val_kept);
    let test = make(test_x, test_kept);
    if val.rows == 0 && plan.patience > 0 {
        warnings.push(format!(
            "there are no validation rows (val_size {}): early stopping (patience {}) watches the training loss, \
             which rarely stops it",
            plan.val_size, plan.patience
        ));
    }
    if train.rows < 2 {
        return Err(TrainingError::Unusable(format!("the train split has {} rows; at least 2 are needed", train.rows)));
    }
    if task == TaskType::Regression {
        preprocessing.target_scaler = Some(scaler::fit_target(&train.values));
    }
    let dataset = DatasetInfo {
        source: plan.source,
        target_column: plan.target_name,
        rows: train.rows + val.rows + test.rows,
        dropped_rows: plan.table_rows - (train.rows + val.rows + test.rows),
        train_rows: train.rows,
        val_rows: val.rows,
        test_rows: test.rows,
    };
    Ok(Prepared { task, classes: target.classes, preprocessing, train, val, test, dataset, warnings })
}

/// Reorder the `stride`-cell rows of `cells` in place so that row k holds what row `order[k]`
/// held (`order`: distinct rows of `0..rows`); the other rows end up after them. Follows each
/// cycle of the permutation with one spare row, so it needs no second copy of the cells.
fn permute_rows(cells: &mut [f32], stride: usize, order: &mut Vec<usize>, rows: usize) {
    let selected = order.len();
    let mut taken = vec![false; rows];
    for &r in order.iter() {
        taken[r] = true;
    }
    order.extend((0..rows).filter(|&r| !taken[r]));
    let mut done = taken;
    done.iter_mut().for_each(|d| *d = false);
    let mut spare = vec![0f32; stride];
    for start in 0..rows {
        if done[start] {
            continue;
        }
        spare.copy_from_slice(&cells[start * stride..(start + 1) * stride]);
        let mut k = start;
        loop {
            done[k] = true;
            let from = order[k];
            if from == start {
                cells[k * stride..(k + 1) * stride].copy_from_slice(&spare);
                break;
            }
            cells.copy_within(from * stride..(from + 1) * stride, k * stride);
            k = from;
        }
    }
    order.truncate(selected);
}

/// How one row encoded.
struct Encoded {
    /// Whether it is kept: `false` when a blanked cell has no fill value (`drop`).
    kept: bool,
    /// Cells blanked for holding a category absent from the vocabulary.
    blanked: usize,
}

/// Encode one row through `pre` into `out`. With `tolerate_unseen`, a category absent from
/// the vocabulary is blanked in `buf` (treated as missing) and the row retried. Errors name
/// the table row, column and kind only: never cell contents.
fn encode_row(
    pre: &Preprocessor,
    buf: &mut [ValueRef<'_>],
    out: &mut [f32],
    tolerate_unseen: bool,
    table_row: usize,
) -> Result<Encoded, TrainingError> {
    match pre.transform_row(buf.iter().copied(), out) {
        Ok(()) => Ok(Encoded { kept: true, blanked: 0 }),
        Err(PredictError::UnknownCategory { .. }) if tolerate_unseen => {
            let mut blanked = 0;
            for (i, b) in buf.iter_mut().enumerate() {
                if let Err(PredictError::UnknownCategory { .. }) = pre.encode_value(i, *b) {
                    *b = ValueRef::Missing;
                    blanked += 1;
                }
            }
            Ok(Encoded { kept: pre.transform_row(buf.iter().copied(), out).is_ok(), blanked })
        }
        Err(e) => Err(TrainingError::Unusable(format!(
            "cannot encode table row {table_row}{}: {}",
            e.column().map(|c| format!(", column `{c}`")).unwrap_or_default(),
            e.kind()
        ))),
    }
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
        let p = prepare(t.clone(), &cfg, "y", "t.csv").unwrap();
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
    fn a_fold_resplits_train_and_validation_keeps_the_test_rows_and_fits_on_its_train_rows() {
        let t = table();
        let cfg = TrainConfig::default();
        let held = prepare(t.clone(), &cfg, "y", "t.csv").unwrap();
        let sorted = |mut v: Vec<usize>| {
            v.sort_unstable();
            v
        };
        let pool = sorted([held.train.table_rows.clone(), held.val.table_rows.clone()].concat());
        let mut validated = Vec::new();
        for index in 0..3 {
            let plan = plan(&t, &cfg, "y", "t.csv", Some(split::Fold { k: 3, index })).unwrap();
            let p = encode(t.clone(), plan).unwrap();
            assert_eq!(p.test.table_rows, held.test.table_rows, "fold {index}");
            assert_eq!(sorted([p.train.table_rows.clone(), p.val.table_rows.clone()].concat()), pool);
            // Fitted on the fold's own train rows.
            let ColumnData::Numeric(xs) = &t.columns[0].data else { panic!() };
            let v: Vec<f64> = p.train.table_rows.iter().map(|&r| f64::from(xs[r])).filter(|v| !v.is_nan()).collect();
            let FeatureKind::Numeric { fill_value: Some(fill) } = p.preprocessing.features[0].kind else { panic!() };
            assert!((f64::from(fill) - v.iter().sum::<f64>() / v.len() as f64).abs() < 1e-5, "fold {index}");
            validated.extend(p.val.table_rows);
        }
        assert_eq!(sorted(validated), pool, "each row validates in one fold");
    }

    #[test]
    fn a_guessed_task_with_a_class_per_row_is_refused_with_the_way_out() {
        // A number column with one stray word reads as text: 60 "classes" in 60 rows.
        let mut csv = String::from("x,y\n");
        for i in 0..60 {
            csv.push_str(&format!("{i},{}\n", if i == 7 { "abc".to_owned() } else { format!("{}.5", i * 3) }));
        }
        let t = read_csv_bytes("t.csv", csv.as_bytes()).unwrap();
        let e = prepare(t.clone(), &TrainConfig::default(), "y", "t.csv").unwrap_err().to_string();
        assert!(e.contains("has 60 distinct values in 60 rows"), "{e}");
        assert!(e.contains("(e.g. \"abc\")") && e.contains("the task was guessed as classification"), "{e}");
        // Chosen explicitly, it is taken as given.
        let cfg = TrainConfig { task_type: Some(TaskType::Classification), ..TrainConfig::default() };
        assert!(prepare(t.clone(), &cfg, "y", "t.csv").is_ok());
    }

    #[test]
    fn missing_target_is_listed_and_too_few_rows_rejected() {
        let t = table();
        let e = prepare(t.clone(), &TrainConfig::default(), "nope", "t.csv").unwrap_err();
        assert!(e.to_string().contains("x, color, junk, y"), "{e}");
        let small = read_csv_bytes("s.csv", b"x,y\n1,a\n2,b\n3,a\n").unwrap();
        let e = prepare(small, &TrainConfig::default(), "y", "s.csv").unwrap_err();
        assert!(e.to_string().contains("at least 10"), "{e}");
    }

    #[test]
    fn drop_strategy_drops_rows_and_keeps_no_fill() {
        let t = table();
        let cfg = TrainConfig { missing_strategy: MissingStrategy::Drop, ..TrainConfig::default() };
        let p = prepare(t.clone(), &cfg, "y", "t.csv").unwrap();
        assert!(p.dataset.dropped_rows > 0);
        assert!(matches!(p.preprocessing.features[0].kind, FeatureKind::Numeric { fill_value: None }));
    }

    #[test]
    fn permuting_rows_in_place_gathers_them_and_parks_the_rest() {
        let (rows, stride) = (9, 3);
        let cells: Vec<f32> = (0..rows * stride).map(|v| v as f32).collect();
        for order in [vec![4, 0, 8, 2], vec![0, 1, 2], vec![8, 7, 6, 5, 4, 3, 2, 1, 0], vec![]] {
            let mut got = cells.clone();
            let mut o = order.clone();
            permute_rows(&mut got, stride, &mut o, rows);
            assert_eq!(o, order);
            for (k, &r) in order.iter().enumerate() {
                assert_eq!(got[k * stride..(k + 1) * stride], cells[r * stride..(r + 1) * stride], "{order:?}");
            }
            // Every row is still there exactly once.
            let mut firsts: Vec<f32> = got.chunks(stride).map(|c| c[0]).collect();
            firsts.sort_by(f32::total_cmp);
            assert_eq!(firsts, (0..rows).map(|r| (r * stride) as f32).collect::<Vec<_>>());
        }
    }

    /// The in-place encoding gives each split row exactly the core's transform of its table row.
    #[test]
    fn in_place_encoding_equals_the_core_transform_of_each_row() {
        let t = table();
        let separate = Table {
            columns: t
                .columns
                .iter()
                .map(|c| match &c.data {
                    ColumnData::Numeric(v) => {
                        Column { name: c.name.clone(), data: ColumnData::Numeric(v.to_vec().into()) }
                    }
                    _ => c.clone(),
                })
                .collect(),
            warnings: Vec::new(),
        };
        let cfg = TrainConfig::default();
        let p = prepare(t.clone(), &cfg, "y", "t.csv").unwrap();
        let q = prepare(separate, &cfg, "y", "t.csv").unwrap();
        assert_eq!((&p.train.x, &p.val.x, &p.test.x), (&q.train.x, &q.val.x, &q.test.x));
        let pre = Preprocessor::new(&p.preprocessing);
        let cols: Vec<&Column> = p.preprocessing.feature_names.iter().map(|n| t.column(n).unwrap()).collect();
        let n = cols.len();
        for split in [&p.train, &p.val, &p.test] {
            assert_eq!(split.x.len(), split.rows * n);
            for (k, &r) in split.table_rows.iter().enumerate() {
                let mut want = vec![0f32; n];
                pre.transform_row(cols.iter().map(|c| c.value(r)), &mut want).unwrap();
                assert_eq!(split.x[k * n..(k + 1) * n], want[..], "table row {r}");
            }
        }
    }

    #[test]
    fn test_rows_csv_holds_what_the_model_was_scored_on() {
        // Category "z" is in one row only; with it in the test split, the CSV must blank it
        // (or, under `drop`, leave the row out), as encoding did.
        let mut csv = String::from("x,c,y\n");
        for i in 0..60 {
            let c = if i == 17 { "z" } else { ["p", "q"][i % 2] };
            csv.push_str(&format!("{i},{c},{}\n", i % 2));
        }
        let t = read_csv_bytes("t.csv", csv.as_bytes()).unwrap();
        for strategy in [MissingStrategy::Mean, MissingStrategy::Drop] {
            let plan = (0..)
                .map(|seed| {
                    let cfg = TrainConfig { missing_strategy: strategy, seed, ..TrainConfig::default() };
                    plan(&t, &cfg, "y", "t.csv", None).unwrap()
                })
                .find(|p| p.test_rows.contains(&17))
                .unwrap();
            let out = String::from_utf8(plan.test_rows_csv(&t).unwrap()).unwrap();
            let p = encode(t.clone(), plan).unwrap();
            let lines: Vec<&str> = out.lines().skip(1).collect();
            assert_eq!(lines.len(), p.test.rows, "{strategy:?}: {out}");
            for (line, &r) in lines.iter().zip(&p.test.table_rows) {
                assert!(line.starts_with(&format!("{r},")), "{line} vs row {r}");
            }
            assert!(!out.contains(",z,"), "{strategy:?}: {out}");
            assert_eq!(out.contains("\n17,,1"), strategy == MissingStrategy::Mean, "{strategy:?}: {out}");
            assert_eq!(p.test.table_rows.contains(&17), strategy == MissingStrategy::Mean);
            assert!(
                p.warnings.iter().any(|w| w.starts_with("1 validation/test cells hold categories absent")),
                "{p:?}"
            );
        }
    }
}
