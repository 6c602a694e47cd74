//! The CLI's prediction input: `--model ID|DIR`, and rows from `--features "v1,v2,…"` or
//! `--input rows.csv`, read through the core's request layer (the same CSV reader as MLflow's
//! `text/csv` and the page), so the CLI predicts exactly what every other surface does.

use std::path::Path;

use inference::request::{CsvColumns, Limits, Request, Rows};
use inference::{Model, Prediction};

use crate::error::{DataLoadError, ModelNotFoundError, PredictionError, StoreError};
use crate::store::fs::{load_dir, BUNDLE_FILE, DEFAULT_MAX_BUNDLE_BYTES};
use crate::store::{Loaded, ModelId};

/// Load the model named by a directory holding a bundle, or an id under `models_dir`.
pub fn load_model(models_dir: &Path, model: &str) -> Result<Loaded, PredictionError> {
    let as_dir = Path::new(model);
    if as_dir.join(BUNDLE_FILE).exists() {
        return Ok(load_dir(as_dir, DEFAULT_MAX_BUNDLE_BYTES)?);
    }
    let id = ModelId::parse(model)?;
    match load_dir(&models_dir.join(id.as_str()), DEFAULT_MAX_BUNDLE_BYTES) {
        Err(StoreError::NotFound(_)) => Err(StoreError::NotFound(ModelNotFoundError {
            model: model.to_owned(),
            hint: format!(" in {}{}", models_dir.display(), available(models_dir)),
        })
        .into()),
        Err(StoreError::Corrupt { source, .. }) => Err(StoreError::Corrupt { id: id.to_string(), source }.into()),
        other => Ok(other?),
    }
}

/// ` (available: …)` listing up to ten model directories, newest first.
fn available(models_dir: &Path) -> String {
    let mut ids: Vec<ModelId> = std::fs::read_dir(models_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| ModelId::parse(e.file_name().to_str()?).ok())
                .filter(|id| models_dir.join(id.as_str()).join(BUNDLE_FILE).exists())
                .collect()
        })
        .unwrap_or_default();
    ids.sort_by(|a, b| b.order_key().cmp(&a.order_key()));
    if ids.is_empty() {
        return " (it holds no models)".into();
    }
    let shown: Vec<&str> = ids.iter().take(10).map(ModelId::as_str).collect();
    format!(" (available: {})", shown.join(", "))
}

const NO_LIMIT: Limits = Limits::NONE;

/// Rows of one CSV-style line of values in feature order (quotes allowed; empty = missing).
pub fn feature_line_rows(model: &Model, line: &str) -> Result<Rows, PredictionError> {
    // An empty line is one empty (missing) field, where a CSV reader would skip it as blank.
    let n = model.num_features();
    if line.is_empty() && n > 1 {
        let wrong = inference::error::PredictError::WrongFeatureCount { expected: n, got: 1 };
        return Err(inference::error::RequestError::Value { row: None, source: wrong }.into());
    }
    let text = if line.is_empty() { "\"\"\n".to_owned() } else { format!("{line}\n") };
    Ok(Request::csv(&text, CsvColumns::Positional).rows(model, &NO_LIMIT)?)
}

/// Rows of a CSV file whose header names the columns (matched by name; others ignored).
pub fn csv_file_rows(model: &Model, path: &Path) -> Result<Rows, PredictionError> {
    let (file, len) = crate::data::open_regular(path, path, crate::data::DEFAULT_MAX_DATA_BYTES)?;
    let mut bytes = Vec::with_capacity(len as usize);
    std::io::Read::read_to_end(&mut { file }, &mut bytes)
        .map_err(|source| DataLoadError::Io { path: path.to_owned(), source })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| DataLoadError::Csv {
        source_name: path.display().to_string(),
        line: 0,
        message: format!("not UTF-8: {e}"),
    })?;
    Ok(Request::csv(text, CsvColumns::Header).rows(model, &NO_LIMIT)?)
}

/// Explanations of bound rows.
pub fn explain(
    model: &Model,
    rows: &Rows,
    options: &inference::explain::Options,
) -> Vec<inference::explain::Explanation> {
    let n = model.num_features();
    (0..rows.rows).map(|r| model.explain(&rows.x[r * n..(r + 1) * n], options)).collect()
}

/// Predictions for bound rows.
pub fn predict(model: &Model, rows: &Rows) -> Vec<Prediction> {
    model.predictions(&rows.x, rows.rows)
}
