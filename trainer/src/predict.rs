//! CLI-side prediction input: `--features "v1,v2,…"` and `--input rows.csv`, passed to the
//! inference core as raw text (the core parses numbers and missing tokens as training did).

use std::path::Path;

use inference::{Model, Prediction, ValueRef};

use crate::error::{DataLoadError, PredictionError};
use crate::registry::{resolve, BUNDLE_FILE};

/// Load the model named by an id or a directory.
pub fn load_model(models_dir: &Path, model: &str) -> Result<Model, PredictionError> {
    let dir = resolve(models_dir, model)?;
    let path = dir.join(BUNDLE_FILE);
    let bytes = std::fs::read(&path)
        .map_err(|source| PredictionError::Input(DataLoadError::Io { path: path.clone(), source }))?;
    Model::from_bytes(&bytes).map_err(|source| PredictionError::Bundle { path, source })
}

/// Split one CSV-style line of feature values (quotes allowed for values holding commas).
pub fn parse_feature_line(line: &str) -> Result<Vec<String>, PredictionError> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).from_reader(line.as_bytes());
    match rdr.records().next() {
        Some(Ok(r)) => Ok(r.iter().map(str::to_owned).collect()),
        Some(Err(e)) => Err(PredictionError::Usage(format!("cannot parse --features: {e}"))),
        None => Ok(vec![String::new()]),
    }
}

/// Predict one positional row of text values.
pub fn predict_features(model: &Model, values: &[String]) -> Result<Prediction, PredictionError> {
    model.predict(values.iter().map(|v| ValueRef::Text(v))).map_err(|source| PredictionError::Row { row: 1, source })
}

/// Predict every row of a CSV file, matching columns by name (extra columns are ignored,
/// absent ones are missing).
pub fn predict_csv(model: &Model, path: &Path) -> Result<Vec<Prediction>, PredictionError> {
    let io = |source| PredictionError::Input(DataLoadError::Io { path: path.to_owned(), source });
    let bytes = std::fs::read(path).map_err(io)?;
    let name = path.display().to_string();
    let mut rdr = csv::ReaderBuilder::new().flexible(false).from_reader(&bytes[..]);
    let csv_err = |e: csv::Error| {
        PredictionError::Input(DataLoadError::Csv {
            source_name: name.clone(),
            line: e.position().map_or(0, csv::Position::line),
            message: e.to_string(),
        })
    };
    let header: Vec<String> =
        rdr.headers().map_err(csv_err)?.iter().map(|h| h.trim_start_matches('\u{feff}').trim().to_owned()).collect();
    let positions: Vec<Option<usize>> =
        model.feature_names().iter().map(|f| header.iter().position(|h| h == f)).collect();
    if positions.iter().all(Option::is_none) {
        return Err(PredictionError::Usage(format!(
            "{name}: no column matches the model's features ({})",
            model.feature_names().join(", ")
        )));
    }
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(csv_err)?;
        let row = positions.iter().map(|p| p.and_then(|p| rec.get(p)).map_or(ValueRef::Missing, ValueRef::Text));
        out.push(model.predict(row).map_err(|source| PredictionError::Row { row: i + 1, source })?);
    }
    Ok(out)
}
