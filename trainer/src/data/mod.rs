//! Loading a dataset into typed columns: numeric (f32, NaN = missing) or text.
//!
//! A column is numeric when every non-missing cell parses as a number; the cell conventions
//! (missing tokens, number spellings) are the inference core's, so prediction reads input
//! the way training read data.

mod csv;
mod embedded;
mod json;
pub mod redis;

use std::path::Path;

use inference::value::{is_missing_token, parse_number};

use crate::error::DataLoadError;

pub use self::embedded::{EMBEDDED_SOURCE, EMBEDDED_TARGET};

/// Values of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    /// Numbers; NaN marks a missing cell.
    Numeric(Vec<f32>),
    /// Text; None marks a missing cell.
    Text(Vec<Option<String>>),
}

/// A named column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Header name.
    pub name: String,
    /// Cells.
    pub data: ColumnData,
}

impl Column {
    /// Number of cells.
    pub fn len(&self) -> usize {
        match &self.data {
            ColumnData::Numeric(v) => v.len(),
            ColumnData::Text(v) => v.len(),
        }
    }

    /// Whether the column has no cells.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether cell `row` is missing.
    pub fn is_missing(&self, row: usize) -> bool {
        match &self.data {
            ColumnData::Numeric(v) => v[row].is_nan(),
            ColumnData::Text(v) => v[row].is_none(),
        }
    }

    /// Cell `row` as a raw value for the inference core's preprocessing.
    pub fn value(&self, row: usize) -> inference::ValueRef<'_> {
        use inference::ValueRef;
        match &self.data {
            ColumnData::Numeric(v) if v[row].is_nan() => ValueRef::Missing,
            ColumnData::Numeric(v) => ValueRef::Number(f64::from(v[row])),
            ColumnData::Text(v) => v[row].as_deref().map_or(ValueRef::Missing, ValueRef::Text),
        }
    }

    /// Keep only the rows at `idx`, in that order.
    pub fn take(&self, idx: &[usize]) -> Column {
        let data = match &self.data {
            ColumnData::Numeric(v) => ColumnData::Numeric(idx.iter().map(|&i| v[i]).collect()),
            ColumnData::Text(v) => ColumnData::Text(idx.iter().map(|&i| v[i].clone()).collect()),
        };
        Column { name: self.name.clone(), data }
    }
}

/// A loaded dataset: equal-length named columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Columns in source order.
    pub columns: Vec<Column>,
}

impl Table {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    /// Column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Column names, comma-separated (for messages).
    pub fn names(&self) -> String {
        self.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// One text cell, classified by the shared conventions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell {
    Missing,
    Number(f64),
    Text,
}

pub(crate) fn classify(cell: &str) -> Cell {
    if is_missing_token(cell) {
        Cell::Missing
    } else {
        parse_number(cell).map_or(Cell::Text, Cell::Number)
    }
}

/// Check header names: none blank, none repeated.
pub(crate) fn check_header(names: &[String], source: &str) -> Result<(), DataLoadError> {
    let mut seen = std::collections::HashSet::new();
    for (i, n) in names.iter().enumerate() {
        if n.trim().is_empty() {
            return Err(DataLoadError::BlankColumn(i, source.to_owned()));
        }
        if !seen.insert(n.as_str()) {
            return Err(DataLoadError::DuplicateColumn(n.clone(), source.to_owned()));
        }
    }
    Ok(())
}

/// Per-column summary for `trainer inspect`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColumnSummary {
    /// Name.
    pub name: String,
    /// `numeric` or `categorical`.
    pub kind: &'static str,
    /// Missing cells.
    pub missing: usize,
    /// Distinct values (text columns).
    pub distinct: Option<usize>,
}

/// Table summary for `trainer inspect`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableSummary {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub columns: Vec<ColumnSummary>,
}

/// Describe a table's columns.
pub fn describe(table: &Table) -> TableSummary {
    let columns = table
        .columns
        .iter()
        .map(|c| {
            let missing = (0..c.len()).filter(|&r| c.is_missing(r)).count();
            let (kind, distinct) = match &c.data {
                ColumnData::Numeric(_) => ("numeric", None),
                ColumnData::Text(v) => {
                    ("categorical", Some(v.iter().flatten().collect::<std::collections::HashSet<_>>().len()))
                }
            };
            ColumnSummary { name: c.name.clone(), kind, missing, distinct }
        })
        .collect();
    TableSummary { rows: table.n_rows(), columns }
}

/// Load `path.csv`, `path.json`, `redis:KEY`, or (None) the embedded default dataset.
pub fn load(source: Option<&str>, redis: &redis::RedisOptions) -> Result<Table, DataLoadError> {
    match source {
        None => embedded::load(),
        Some(s) => match s.strip_prefix("redis:") {
            Some(key) => redis::load(key, redis),
            None => load_file(Path::new(s)),
        },
    }
}

/// Load a `.csv` or `.json` file.
pub fn load_file(path: &Path) -> Result<Table, DataLoadError> {
    let io = |source| DataLoadError::Io { path: path.to_owned(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        return Err(DataLoadError::IsDirectory(path.to_owned()));
    }
    let name = path.display().to_string();
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv") | Some("tsv") | Some("txt") => {
            if meta.len() == 0 {
                return Err(DataLoadError::Empty(name));
            }
            csv::read(&name, || std::fs::File::open(path).map_err(io))
        }
        Some("json") => {
            let bytes = std::fs::read(path).map_err(io)?;
            json::read(&name, &bytes)
        }
        _ => Err(DataLoadError::UnsupportedFormat(name)),
    }
}

/// Parse in-memory text as CSV or JSON (detected by its first non-blank byte).
pub fn parse_bytes(name: &str, bytes: &[u8]) -> Result<Table, DataLoadError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(DataLoadError::Empty(name.to_owned())),
        Some(b'[') | Some(b'{') => json::read(name, bytes),
        Some(_) => csv::read(name, || Ok(bytes)),
    }
}

/// Load CSV rows from memory (used by `predict --input` and tests).
pub fn read_csv_bytes(name: &str, bytes: &[u8]) -> Result<Table, DataLoadError> {
    csv::read(name, || Ok(bytes))
}
