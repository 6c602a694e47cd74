//! Loading a dataset into typed columns: numeric (f32, NaN = missing) or text.
//!
//! A column is numeric when every non-missing cell parses as a number; the cell conventions
//! (missing tokens, number spellings) are the inference core's, so prediction reads input
//! the way training read data.

mod csv;
mod embedded;
mod json;
pub mod redis;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use inference::config::DataSource;
use inference::error::truncate_echo;
use inference::value::{is_missing_token, parse_number};

use crate::error::DataLoadError;

pub use self::embedded::{EMBEDDED_SOURCE, EMBEDDED_TARGET};

/// The numbers of one column: a strided view into a row-major block of f32 cells
/// (`stride` per row, this column's at `slot`). The CSV loader puts every column of a table
/// in one block, so preparation can reorder and encode the rows in place ([`Table::into_rows`]):
/// a Vec per column would need a second full copy to become the row-major matrix training
/// reads, doubling peak memory.
#[derive(Clone)]
pub struct Numbers {
    block: Arc<Vec<f32>>,
    slot: usize,
    stride: usize,
}

impl Numbers {
    /// A column of its own (a block of stride 1).
    pub fn from_vec(values: Vec<f32>) -> Self {
        Self { block: Arc::new(values), slot: 0, stride: 1 }
    }

    /// Column `slot` of a row-major `block` with `stride` cells per row.
    pub(crate) fn in_block(block: Arc<Vec<f32>>, slot: usize, stride: usize) -> Self {
        debug_assert!(slot < stride && block.len().is_multiple_of(stride));
        Self { block, slot, stride }
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.block.len() / self.stride
    }

    /// Whether the column has no cells.
    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
    }

    /// The cells in row order.
    pub fn iter(&self) -> impl Iterator<Item = f32> + Clone + '_ {
        self.block.get(self.slot..).unwrap_or_default().iter().step_by(self.stride).copied()
    }

    /// The cells as a Vec of their own.
    pub fn to_vec(&self) -> Vec<f32> {
        self.iter().collect()
    }
}

impl std::ops::Index<usize> for Numbers {
    type Output = f32;
    fn index(&self, row: usize) -> &f32 {
        &self.block[row * self.stride + self.slot]
    }
}

impl From<Vec<f32>> for Numbers {
    fn from(values: Vec<f32>) -> Self {
        Self::from_vec(values)
    }
}

/// Cell by cell, as a `Vec<f32>` compares (NaN is unequal to itself).
impl PartialEq for Numbers {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl std::fmt::Debug for Numbers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A numeric cell as a raw value for the inference core (NaN: missing).
pub(crate) fn number_value(x: f32) -> inference::ValueRef<'static> {
    if x.is_nan() {
        inference::ValueRef::Missing
    } else {
        inference::ValueRef::Number(f64::from(x))
    }
}

/// A text cell as a raw value for the inference core (None: missing).
pub(crate) fn text_value(cell: &Option<String>) -> inference::ValueRef<'_> {
    cell.as_deref().map_or(inference::ValueRef::Missing, inference::ValueRef::Text)
}

/// Values of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    /// Numbers; NaN marks a missing cell.
    Numeric(Numbers),
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
        match &self.data {
            ColumnData::Numeric(v) => number_value(v[row]),
            ColumnData::Text(v) => text_value(&v[row]),
        }
    }

    /// Keep only the rows at `idx`, in that order.
    pub fn take(&self, idx: &[usize]) -> Column {
        let data = match &self.data {
            ColumnData::Numeric(v) => ColumnData::Numeric(Numbers::from_vec(idx.iter().map(|&i| v[i]).collect())),
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
    /// What the loader saw that the user should know (training reports them).
    pub warnings: Vec<String>,
}

/// The range of a numeric column's parsed (f64) values. The table stores numbers as f32, as
/// the network computes; a column whose values vary little around a large magnitude (a
/// timestamp-like offset, a target near 1e8) spans few f32 steps and is blurred, so this says
/// so rather than let training silently merge distinct values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spread {
    lo: f64,
    hi: f64,
}

impl Default for Spread {
    fn default() -> Self {
        Self { lo: f64::INFINITY, hi: f64::NEG_INFINITY }
    }
}

/// Fewer f32 steps across a column's range than this is reported (2^10: a thousandth of the
/// range; at 1e9 a step is 64 or 128).
const MIN_F32_STEPS: f64 = 1024.0;

impl Spread {
    /// Count one value (missing ones do not count).
    pub(crate) fn add(&mut self, x: f64) {
        if x.is_finite() {
            self.lo = self.lo.min(x);
            self.hi = self.hi.max(x);
        }
    }

    /// The warning for column `name`, if f32 storage blurs it.
    pub(crate) fn warning(&self, name: &str) -> Option<String> {
        let range = self.hi - self.lo;
        if !range.is_finite() || range <= 0.0 {
            return None;
        }
        let top = self.lo.abs().max(self.hi.abs()) as f32;
        let step = f64::from(top.next_up() - top);
        (range / step < MIN_F32_STEPS).then(|| {
            format!(
                "column `{}` varies by only {range:.4e} around {lo:.4e}, where 32-bit floats (what training computes \
                 in) step by {step}: its values are blurred and rows that differ may read as equal; subtract an \
                 offset (e.g. {lo}) before training",
                truncate_echo(name),
                lo = self.lo
            )
        })
    }
}

/// A table's cells for in-place encoding: every numeric cell in one row-major block, one
/// slot per column (a text column's slot is never read), and the text columns beside it.
pub struct RowBlock {
    /// `rows × columns` cells, row-major.
    pub cells: Vec<f32>,
    /// Cells per row: the table's column count.
    pub stride: usize,
    /// Each column's text cells, for text columns.
    pub texts: Vec<Option<Vec<Option<String>>>>,
}

impl Table {
    /// The cells as one row block, without a copy when the numeric columns already share one
    /// (as the CSV loader makes them) and nothing else holds it; otherwise packed into a new one.
    pub fn into_rows(self) -> RowBlock {
        let (rows, stride) = (self.n_rows(), self.columns.len());
        let mut numbers = Vec::new();
        let mut texts = Vec::with_capacity(stride);
        for (j, c) in self.columns.into_iter().enumerate() {
            match c.data {
                ColumnData::Numeric(v) => {
                    numbers.push((j, v));
                    texts.push(None);
                }
                ColumnData::Text(t) => texts.push(Some(t)),
            }
        }
        let shared = numbers.first().map(|(_, v)| Arc::clone(&v.block));
        let in_place = shared.as_ref().is_some_and(|b| {
            numbers.iter().all(|(j, v)| v.stride == stride && v.slot == *j && Arc::ptr_eq(&v.block, b))
        });
        if in_place {
            let block = shared.unwrap_or_default();
            drop(numbers);
            let cells = Arc::try_unwrap(block).unwrap_or_else(|shared| shared.as_ref().clone());
            return RowBlock { cells, stride, texts };
        }
        let mut cells = vec![f32::NAN; rows * stride];
        for (j, v) in &numbers {
            for (r, x) in v.iter().enumerate() {
                cells[r * stride + j] = x;
            }
        }
        RowBlock { cells, stride, texts }
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    /// Column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Column names, comma-separated.
    pub fn names(&self) -> String {
        self.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// `; the columns are: …` for messages, but only for a table of several columns: a lone
    /// "column" is as likely a secret's first line read as a header, and is never echoed.
    pub fn names_hint(&self) -> String {
        if self.columns.len() < 2 {
            return format!(" (the data has {} column)", self.columns.len());
        }
        format!("; the columns are: {}", inference::error::truncate_echo(&self.names()))
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

/// Where and how datasets are read.
#[derive(Debug, Clone)]
pub struct DataContext {
    /// Relative file paths resolve inside this directory and may not leave it (a server's
    /// `--data-dir`); `None` reads paths as given (the CLI).
    pub data_dir: Option<PathBuf>,
    /// Redis connection for `redis:KEY`.
    pub redis: redis::RedisOptions,
    /// Redis keys that may be read (`None`: any, as on the CLI).
    pub redis_keys: Option<redis::KeyPattern>,
    /// Largest dataset read, in bytes.
    pub max_bytes: u64,
}

/// Datasets larger than this are refused unless configured otherwise (4 GiB).
pub const DEFAULT_MAX_DATA_BYTES: u64 = 4 << 30;

impl Default for DataContext {
    /// The CLI's: paths as given, any Redis key, Redis from the environment.
    fn default() -> Self {
        Self {
            data_dir: None,
            redis: redis::RedisOptions::default(),
            redis_keys: None,
            max_bytes: DEFAULT_MAX_DATA_BYTES,
        }
    }
}

impl DataContext {
    /// Check that `source` may be read here, without reading it: a file must exist inside the
    /// data dir, a Redis key must be allowed. Returns the path to open for a file.
    pub fn admit(&self, source: &DataSource) -> Result<Option<PathBuf>, DataLoadError> {
        match source {
            DataSource::Embedded => Ok(None),
            DataSource::Redis(key) => {
                if let Some(p) = &self.redis_keys {
                    if !p.matches(key) {
                        return Err(DataLoadError::KeyNotAllowed { key: truncate_echo(key), allowed: p.to_string() });
                    }
                }
                Ok(None)
            }
            DataSource::File(p) => match &self.data_dir {
                None => Ok(Some(PathBuf::from(p))),
                Some(dir) => resolve_in(dir, p).map(Some),
            },
        }
    }
}

/// `rel` inside `dir`: relative, without `..`, and still inside after resolving symlinks.
fn resolve_in(dir: &Path, rel: &str) -> Result<PathBuf, DataLoadError> {
    let shown = truncate_echo(rel);
    let bad = |why: &str| DataLoadError::OutsideDataDir(format!("dataset_path {shown:?} {why}"));
    let p = Path::new(rel);
    if p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(bad("must be redis:KEY or a relative path without `..` inside the server's data dir"));
    }
    let base = dir.canonicalize().map_err(|source| DataLoadError::Io { path: "<data dir>".into(), source })?;
    let full = base.join(p).canonicalize().map_err(|_| bad("does not exist in the data dir"))?;
    if !full.starts_with(&base) {
        return Err(bad("resolves outside the data dir"));
    }
    // Checked at submit too, so a request naming a directory or a FIFO is refused at once.
    match std::fs::metadata(&full) {
        Ok(m) if m.is_dir() => Err(DataLoadError::IsDirectory(PathBuf::from(shown))),
        Ok(m) if !m.is_file() => Err(DataLoadError::NotAFile(PathBuf::from(shown))),
        _ => Ok(full),
    }
}

/// Load the dataset `source` names.
pub fn load(source: &DataSource, ctx: &DataContext) -> Result<Table, DataLoadError> {
    let path = ctx.admit(source)?;
    match (source, path) {
        (DataSource::Embedded, _) => embedded::load(),
        (DataSource::Redis(key), _) => redis::load(key, &ctx.redis, ctx.max_bytes),
        // Messages name the path as given (relative to the data dir), never the server's own paths.
        (DataSource::File(given), Some(path)) => load_file_as(&path, Path::new(given), ctx.max_bytes),
        (DataSource::File(given), None) => load_file_as(Path::new(given), Path::new(given), ctx.max_bytes),
    }
}

/// Load a `.csv` or `.json` file as given on the command line.
pub fn load_file(path: &Path) -> Result<Table, DataLoadError> {
    load_file_as(path, path, DEFAULT_MAX_DATA_BYTES)
}

/// Open `path` for reading only if it is a regular file of at most `max` bytes: a FIFO or
/// device could block the reader forever, and size bounds memory. Errors name `shown`.
pub fn open_regular(path: &Path, shown: &Path, max: u64) -> Result<(std::fs::File, u64), DataLoadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| DataLoadError::Io { path: shown.to_owned(), source };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(DataLoadError::IsDirectory(shown.to_owned()));
    }
    if !meta.is_file() {
        return Err(DataLoadError::NotAFile(shown.to_owned()));
    }
    if meta.len() > max {
        return Err(DataLoadError::TooLarge { name: shown.display().to_string(), size: meta.len(), limit: max });
    }
    Ok((file, meta.len()))
}

fn load_file_as(path: &Path, shown: &Path, max: u64) -> Result<Table, DataLoadError> {
    let (file, len) = open_regular(path, shown, max)?;
    let name = shown.display().to_string();
    let ext = shown.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv") | Some("tsv") | Some("txt") => {
            if len == 0 {
                return Err(DataLoadError::Empty(name));
            }
            csv::read(&name, || open_regular(path, shown, max).map(|(f, _)| f))
        }
        Some("json") => json::read_from(&name, file),
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
