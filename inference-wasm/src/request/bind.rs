//! Binding request rows to a model: JSON cells are decoded (borrowed, no intermediate tree)
//! and preprocessed straight into the network's input matrix, so a request costs
//! `rows × features × 4` bytes whatever its shape, and the row limit applies while reading.
//!
//! serde visitors can only return serde errors, so a typed [`RequestError`] raised inside
//! one is parked in [`Binder::error`] and the visitor aborts with a placeholder; the caller
//! reports the parked error (see [`Binder::read`]).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{truncate_echo, PredictError, RequestError};
use crate::preprocess::Preprocessor;
use crate::value::ValueRef;

/// One JSON feature value, borrowed from the body where it can be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell<'de> {
    Missing,
    Number(f64),
    Text(Cow<'de, str>),
    Bool(bool),
    /// An array or object: no feature value (the text says which).
    Nested(&'static str),
}

impl<'de> Cell<'de> {
    /// As a raw value of feature `column`, or the error naming it.
    pub(crate) fn value(&self, column: &str) -> Result<ValueRef<'_>, PredictError> {
        Ok(match self {
            Cell::Missing => ValueRef::Missing,
            Cell::Number(x) => ValueRef::Number(*x),
            Cell::Text(s) => ValueRef::Text(s),
            // As the loader reads a JSON bool: its text.
            Cell::Bool(b) => ValueRef::Text(if *b { "true" } else { "false" }),
            Cell::Nested(what) => {
                return Err(PredictError::InvalidValue { column: column.to_owned(), value: (*what).to_owned() })
            }
        })
    }
}

struct CellVisitor;

impl<'de> Visitor<'de> for CellVisitor {
    type Value = Cell<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, a string, a bool or null")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Cell<'de>, E> {
        Ok(Cell::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Cell<'de>, E> {
        Ok(Cell::Number(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Cell<'de>, E> {
        Ok(Cell::Number(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Cell<'de>, E> {
        Ok(Cell::Number(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cell<'de>, E> {
        Ok(Cell::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cell<'de>, E> {
        Ok(Cell::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Cell<'de>, E> {
        Ok(Cell::Text(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Cell<'de>, E> {
        Ok(Cell::Missing)
    }
    fn visit_none<E>(self) -> Result<Cell<'de>, E> {
        Ok(Cell::Missing)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Cell::Nested("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Cell::Nested("an object"))
    }
}

impl<'de> Deserialize<'de> for Cell<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CellVisitor)
    }
}

/// Preprocessed rows: `rows × n` values, row-major, ready for the network.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// The values.
    pub x: Vec<f32>,
    /// Number of rows.
    pub rows: usize,
}

/// Fills a [`Rows`] matrix for one model, cell by cell.
pub(crate) struct Binder<'m> {
    pub(crate) pre: &'m Preprocessor,
    n: usize,
    max_rows: usize,
    out: Rows,
    /// Which features of the current record row were given.
    given: Vec<bool>,
    /// The typed error behind a serde abort.
    error: Option<RequestError>,
    /// Rows are numbered in errors (batches) or not (a single-row request).
    numbered: bool,
    /// Every feature must be named (MLflow's schema enforcement); else absent ones are missing.
    all_required: bool,
}

/// The text of the placeholder error a visitor returns after parking the real one.
const PARKED: &str = "\u{0}parked request error";

impl<'m> Binder<'m> {
    pub(crate) fn new(pre: &'m Preprocessor, max_rows: usize) -> Self {
        let n = pre.num_features();
        Self {
            pre,
            n,
            max_rows,
            out: Rows::default(),
            given: vec![false; n],
            error: None,
            numbered: true,
            all_required: false,
        }
    }

    /// Require every feature by name in records, tables and headers.
    pub(crate) fn require_all(&mut self) {
        self.all_required = true;
    }

    /// Which features named columns (a record's keys, a table's or a header's columns) gave,
    /// checked: at least one, and every one for a `table` (a CSV header, a table's columns:
    /// an absent column there is a mistake, not a missing value) or when
    /// [`Binder::require_all`] was asked. `names` are the names given (for the message when
    /// none is a feature).
    pub(crate) fn named(&self, given: &[bool], names: &[&str], table: bool) -> Result<(), PredictError> {
        let features = || truncate_echo(&self.pre.feature_names().join(", "));
        if !given.iter().any(|g| *g) {
            let shown = if names.is_empty() { "none".to_owned() } else { quoted(names.iter().copied()) };
            return Err(PredictError::NoKnownColumn { given: shown, features: features() });
        }
        if table || self.all_required {
            let absent = self.absent(given);
            if !absent.is_empty() {
                return Err(PredictError::MissingColumns {
                    columns: quoted(absent.iter().copied()),
                    count: absent.len(),
                });
            }
        }
        Ok(())
    }

    /// The features `given` leaves out, in feature order.
    pub(crate) fn absent(&self, given: &[bool]) -> Vec<&str> {
        self.pre.feature_names().iter().zip(given).filter(|(_, g)| !**g).map(|(n, _)| n.as_str()).collect()
    }

    /// [`Binder::named`] for row `row`, as a visitor error.
    fn named_row<E: de::Error>(&mut self, row: usize, given: &[bool], names: &[&str]) -> Result<(), E> {
        match self.named(given, names, false) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.row_error(row, e)),
        }
    }

    /// Map column names (a header, a table's `columns`) to features: a feature named twice,
    /// an absent feature and a set naming none are errors.
    pub(crate) fn column_map(&self, names: &[&str]) -> Result<Vec<Option<usize>>, RequestError> {
        let mut given = vec![false; self.n];
        let mut map = Vec::with_capacity(names.len());
        for name in names {
            let j = self.pre.index_of(name.trim());
            if let Some(j) = j {
                if std::mem::replace(&mut given[j], true) {
                    let column = self.pre.feature_names()[j].clone();
                    return Err(RequestError::at(None, PredictError::DuplicateColumn { column }));
                }
            }
            map.push(j);
        }
        self.named(&given, names, true).map_err(|e| RequestError::at(None, e))?;
        Ok(map)
    }

    /// Rows bound so far.
    pub(crate) fn rows(&self) -> usize {
        self.out.rows
    }

    /// The finished matrix.
    pub(crate) fn finish(self) -> Rows {
        self.out
    }

    /// Errors name no row (a request of exactly one row given as such).
    pub(crate) fn single(&mut self) {
        self.numbered = false;
    }

    fn label(&self, row: usize) -> Option<usize> {
        self.numbered.then_some(row)
    }

    /// Park `e` and return the serde error that aborts the visitor.
    fn park<E: de::Error>(&mut self, e: RequestError) -> E {
        self.error.get_or_insert(e);
        E::custom(PARKED)
    }

    /// Turn a serde result into the request's error: the parked one if a visitor parked one,
    /// else the parser's (syntax: malformed; shape: invalid).
    pub(crate) fn outcome<T>(&mut self, r: Result<T, serde_json::Error>) -> Result<T, RequestError> {
        match r {
            Ok(v) => Ok(v),
            Err(e) => Err(self.error.take().unwrap_or_else(|| json_error(&e))),
        }
    }

    /// Read `json` (a part of the body) with `f`, which runs a seed over the deserializer;
    /// reports the typed error a visitor parked, and requires the text to end there.
    pub(crate) fn read<'de, T>(
        &mut self,
        json: &'de str,
        f: impl FnOnce(
            &mut Self,
            &mut serde_json::Deserializer<serde_json::de::StrRead<'de>>,
        ) -> Result<T, serde_json::Error>,
    ) -> Result<T, RequestError> {
        let mut de = serde_json::Deserializer::from_str(json);
        let r = f(self, &mut de).and_then(|v| de.end().map(|()| v));
        self.outcome(r)
    }

    /// Start a new row (its cells are placeholders until set); returns its index.
    pub(crate) fn push_row<E: de::Error>(&mut self) -> Result<usize, E> {
        if self.out.rows >= self.max_rows {
            let limit = self.max_rows;
            return Err(self.park(RequestError::TooManyRows { limit }));
        }
        self.out.x.resize((self.out.rows + 1) * self.n, f32::NAN);
        self.out.rows += 1;
        Ok(self.out.rows - 1)
    }

    /// Make sure `rows` rows exist (columnar input grows rows as a column is read).
    pub(crate) fn ensure_rows<E: de::Error>(&mut self, rows: usize) -> Result<(), E> {
        while self.out.rows < rows {
            self.push_row::<E>()?;
        }
        Ok(())
    }

    /// Set feature `j` of row `row` from a raw value.
    pub(crate) fn set<E: de::Error>(&mut self, row: usize, j: usize, v: ValueRef<'_>) -> Result<(), E> {
        match self.pre.transform_value(j, v) {
            Ok(x) => {
                self.out.x[row * self.n + j] = x;
                Ok(())
            }
            Err(e) => {
                let label = self.label(row);
                Err(self.park(RequestError::at(label, e)))
            }
        }
    }

    /// Set feature `j` of row `row` from a JSON cell.
    pub(crate) fn set_cell<E: de::Error>(&mut self, row: usize, j: usize, cell: &Cell<'_>) -> Result<(), E> {
        match cell.value(&self.pre.feature_names()[j]) {
            Ok(v) => self.set(row, j, v),
            Err(e) => {
                let label = self.label(row);
                Err(self.park(RequestError::at(label, e)))
            }
        }
    }

    /// A row-level error (wrong length, not a row) in row `row`.
    pub(crate) fn row_error<E: de::Error>(&mut self, row: usize, e: PredictError) -> E {
        let label = self.label(row);
        self.park(RequestError::at(label, e))
    }

    /// A shape error in the request (not tied to a value).
    pub(crate) fn invalid<E: de::Error>(&mut self, message: String) -> E {
        self.park(RequestError::Invalid(message))
    }

    /// Fill the features of `row` that were not given with their missing-value fill.
    pub(crate) fn fill_missing<E: de::Error>(&mut self, row: usize, given: &[bool]) -> Result<(), E> {
        for (j, _) in given.iter().enumerate().filter(|(_, g)| !**g) {
            self.set(row, j, ValueRef::Missing)?;
        }
        Ok(())
    }

    /// A positional row of already-split text cells (CSV), with the column → feature map.
    pub(crate) fn text_row(&mut self, cells: &[&str], columns: &[Option<usize>]) -> Result<(), RequestError> {
        let r = (|| -> Result<(), serde_json::Error> {
            let row = self.push_row()?;
            let mut given = std::mem::take(&mut self.given);
            given.fill(false);
            let mut res = Ok(());
            for (cell, col) in cells.iter().zip(columns) {
                if let Some(j) = *col {
                    if !given[j] {
                        given[j] = true;
                        res = self.set(row, j, ValueRef::Text(cell));
                        if res.is_err() {
                            break;
                        }
                    }
                }
            }
            let res = res.and_then(|()| self.fill_missing(row, &given));
            self.given = given;
            res
        })();
        self.outcome(r)
    }
}

/// A serde_json error as the request's: syntax → malformed JSON, shape → invalid.
pub(crate) fn json_error(e: &serde_json::Error) -> RequestError {
    match e.classify() {
        serde_json::error::Category::Data => RequestError::Invalid(truncate_echo(&e.to_string())),
        _ => RequestError::Malformed { format: "JSON", message: e.to_string() },
    }
}

/// A row given positionally: an array of cells in feature order.
pub(crate) struct PositionalRow<'b, 'm> {
    pub(crate) b: &'b mut Binder<'m>,
}

impl<'de> Visitor<'de> for PositionalRow<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of feature values")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let row = self.b.push_row()?;
        let n = self.b.n;
        let mut got = 0;
        while let Some(cell) = seq.next_element::<Cell>()? {
            if got < n {
                self.b.set_cell(row, got, &cell)?;
            }
            got += 1;
        }
        if got != n {
            return Err(self.b.row_error(row, PredictError::WrongFeatureCount { expected: n, got }));
        }
        Ok(())
    }
}

/// How many of a record's unknown keys an error message shows.
const UNKNOWN_SHOWN: usize = 5;

/// Reads a record's body (object) into row `row`.
fn record_entries<'de, A: MapAccess<'de>>(b: &mut Binder<'_>, row: usize, mut map: A) -> Result<(), A::Error> {
    let mut given = std::mem::take(&mut b.given);
    given.fill(false);
    let res = (|| {
        let mut unknown: Vec<Cow<'de, str>> = Vec::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match b.pre.index_of(&key) {
                Some(j) => {
                    if std::mem::replace(&mut given[j], true) {
                        let column = b.pre.feature_names()[j].clone();
                        return Err(b.row_error(row, PredictError::DuplicateColumn { column }));
                    }
                    let cell = map.next_value::<Cell>()?;
                    b.set_cell(row, j, &cell)?;
                }
                None => {
                    if unknown.len() < UNKNOWN_SHOWN {
                        unknown.push(key);
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let names: Vec<&str> = unknown.iter().map(|k| k.as_ref()).collect();
        b.named_row(row, &given, &names)?;
        b.fill_missing(row, &given)
    })();
    b.given = given;
    res
}

/// A row given as an object keyed by column name (absent columns are missing, extra ones ignored).
pub(crate) struct RecordRow<'b, 'm> {
    pub(crate) b: &'b mut Binder<'m>,
}

impl<'de> Visitor<'de> for RecordRow<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object keyed by column name")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let row = self.b.push_row()?;
        record_entries(self.b, row, map)
    }
}

/// Which row forms an array of rows may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowForm {
    /// Arrays in feature order.
    Positional,
    /// Objects keyed by column name.
    Records,
    /// Either, per row; a lone value is a row of a one-feature model (KServe V1 / TF-Serving).
    Any,
}

/// One row of a batch, in the given form.
struct RowSeed<'b, 'm> {
    b: &'b mut Binder<'m>,
    form: RowForm,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // `any` for every form, so a wrong kind of row gets our message, not serde's.
        d.deserialize_any(NotARow { b: self.b, form: self.form })
    }
}

/// Dispatches a row to its reader, and names what is not a row.
struct NotARow<'b, 'm> {
    b: &'b mut Binder<'m>,
    form: RowForm,
}

impl NotARow<'_, '_> {
    fn wrong<E: de::Error>(self, what: &str) -> E {
        let row = self.b.rows();
        let expected = match self.form {
            RowForm::Positional => "an array of feature values",
            RowForm::Records => "an object keyed by column name",
            RowForm::Any => "an array of feature values or an object keyed by column name",
        };
        let label = self.b.label(row);
        let message =
            format!("{}expected {expected}, got {what}", label.map(|r| format!("row {r}: ")).unwrap_or_default());
        self.b.invalid(message)
    }

    /// A bare value as a one-feature row (form `Any` only).
    fn scalar<E: de::Error>(self, cell: Cell<'_>, what: &str) -> Result<(), E> {
        if self.form == RowForm::Any && self.b.n == 1 {
            let row = self.b.push_row()?;
            return self.b.set_cell(row, 0, &cell);
        }
        Err(self.wrong(what))
    }
}

impl<'de> Visitor<'de> for NotARow<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        if self.form == RowForm::Records {
            return Err(self.wrong("an array"));
        }
        PositionalRow { b: self.b }.visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        if self.form == RowForm::Positional {
            return Err(self.wrong("an object"));
        }
        RecordRow { b: self.b }.visit_map(map)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Cell::Bool(v), "a bool")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(Cell::Number(v as f64), "a number")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(Cell::Number(v as f64), "a number")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(Cell::Number(v), "a number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(Cell::Text(Cow::Borrowed(v)), "a string")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(Cell::Missing, "null")
    }
}

/// An array of rows in one form.
pub(crate) struct RowsSeed<'b, 'm> {
    pub(crate) b: &'b mut Binder<'m>,
    pub(crate) form: RowForm,
    /// What the array is called in messages (`records`, `instances`, …).
    pub(crate) name: &'static str,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "`{}` to be an array of rows", self.name)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(RowSeed { b: self.b, form: self.form })?.is_some() {}
        Ok(())
    }
}

/// A map of column name → array of values (TF-Serving's columnar `inputs`).
pub(crate) struct ColumnsSeed<'b, 'm> {
    pub(crate) b: &'b mut Binder<'m>,
}

impl<'de> DeserializeSeed<'de> for ColumnsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ColumnsSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of column name → array of values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let n = self.b.n;
        let mut given = vec![false; n];
        let mut length: Option<(String, usize)> = None;
        let mut unknown: Vec<Cow<'de, str>> = Vec::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let Some(j) = self.b.pre.index_of(&key) else {
                if unknown.len() < UNKNOWN_SHOWN {
                    unknown.push(key);
                }
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if std::mem::replace(&mut given[j], true) {
                let column = self.b.pre.feature_names()[j].clone();
                return Err(self.b.park(RequestError::at(None, PredictError::DuplicateColumn { column })));
            }
            let len = map.next_value_seed(ColumnSeed { b: self.b, j })?;
            match &length {
                Some((first, l)) if *l != len => {
                    return Err(self.b.invalid(format!(
                        "column `{key}` has {len} values, but column `{first}` has {l}: columns must be equally long"
                    )))
                }
                Some(_) => {}
                None => length = Some((key.into_owned(), len)),
            }
        }
        let names: Vec<&str> = unknown.iter().map(|k| k.as_ref()).collect();
        if let Err(e) = self.b.named(&given, &names, true) {
            return Err(self.b.park(RequestError::at(None, e)));
        }
        for row in 0..self.b.rows() {
            self.b.fill_missing(row, &given)?;
        }
        Ok(())
    }
}

/// Names in backquotes, comma-separated, truncated.
fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    truncate_echo(&names.map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
}

/// One column's values, written into rows 0..len of feature `j`; returns len.
struct ColumnSeed<'b, 'm> {
    b: &'b mut Binder<'m>,
    j: usize,
}

impl<'de> DeserializeSeed<'de> for ColumnSeed<'_, '_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ColumnSeed<'_, '_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of values")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut r = 0;
        while let Some(cell) = seq.next_element::<Cell>()? {
            self.b.ensure_rows(r + 1)?;
            self.b.set_cell(r, self.j, &cell)?;
            r += 1;
        }
        Ok(r)
    }
}

/// `features`: one row (an array of values) or many (an array of arrays): a batch exactly
/// when every element is an array. Returns whether it was a batch.
pub(crate) fn bind_features(b: &mut Binder<'_>, json: &str) -> Result<bool, RequestError> {
    let elems = elements(json)?;
    let batch = !elems.is_empty() && elems.iter().all(|e| e.get().starts_with('['));
    if batch {
        if elems.len() > b.max_rows {
            return Err(RequestError::TooManyRows { limit: b.max_rows });
        }
        for e in elems {
            b.read(e.get(), |b, de| de.deserialize_seq(PositionalRow { b }))?;
        }
        return Ok(true);
    }
    bind_single(b, &elems)?;
    Ok(false)
}

/// One positional row (an array of values), reported without a row number.
pub(crate) fn bind_row(b: &mut Binder<'_>, json: &str) -> Result<(), RequestError> {
    bind_single(b, &elements(json)?)
}

fn elements(json: &str) -> Result<Vec<&RawValue>, RequestError> {
    serde_json::from_str(json).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            RequestError::Invalid("`features` must be an array of values or an array of rows".into())
        }
        _ => json_error(&e),
    })
}

fn bind_single(b: &mut Binder<'_>, elems: &[&RawValue]) -> Result<(), RequestError> {
    b.single();
    let r = (|| -> Result<(), serde_json::Error> {
        let row = b.push_row()?;
        if elems.len() != b.n {
            return Err(b.row_error(row, PredictError::WrongFeatureCount { expected: b.n, got: elems.len() }));
        }
        for (j, e) in elems.iter().enumerate() {
            let cell: Cell<'_> = serde_json::from_str(e.get())?;
            b.set_cell(row, j, &cell)?;
        }
        Ok(())
    })();
    b.outcome(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{FeatureKind, FeatureSpec, MissingStrategy, Preprocessing, Scaler};

    fn pre() -> Preprocessor {
        Preprocessor::new(&Preprocessing {
            feature_names: vec!["x".into(), "color".into()],
            features: vec![
                FeatureSpec { name: "x".into(), kind: FeatureKind::Numeric { fill_value: Some(2.0) } },
                FeatureSpec {
                    name: "color".into(),
                    kind: FeatureKind::Categorical {
                        categories: vec!["blue".into(), "red".into()],
                        fill_value: Some("red".into()),
                    },
                },
            ],
            missing_strategy: MissingStrategy::Mean,
            scaler: Scaler { mean: vec![0.0, 0.0], scale: vec![1.0, 1.0] },
            target_scaler: None,
            dropped_columns: vec![],
        })
    }

    fn features(json: &str, max_rows: usize) -> Result<(bool, Rows), RequestError> {
        let p = pre();
        let mut b = Binder::new(&p, max_rows);
        let batch = bind_features(&mut b, json)?;
        Ok((batch, b.finish()))
    }

    #[test]
    fn features_are_one_row_or_many() {
        assert_eq!(features(r#"[1, "blue"]"#, 10).unwrap(), (false, Rows { x: vec![1.0, 0.0], rows: 1 }));
        let (batch, rows) = features(r#"[[1, "blue"], [null, null], [3, "red"]]"#, 10).unwrap();
        assert!(batch);
        assert_eq!(rows, Rows { x: vec![1.0, 0.0, 2.0, 1.0, 3.0, 1.0], rows: 3 });
    }

    #[test]
    fn errors_name_row_and_column() {
        let e = features(r#"[[1, "blue"], [1, "green"]]"#, 10).unwrap_err();
        assert_eq!((e.kind(), e.row(), e.column()), ("unknown_category", Some(1), Some("color")));
        let e = features(r#"[1, "green"]"#, 10).unwrap_err();
        assert_eq!((e.kind(), e.row()), ("unknown_category", None));
        let e = features(r#"[1]"#, 10).unwrap_err();
        assert_eq!(e, RequestError::at(None, PredictError::WrongFeatureCount { expected: 2, got: 1 }));
        let e = features(r#"[]"#, 10).unwrap_err();
        assert_eq!(e.kind(), "wrong_feature_count");
        let e = features(r#"[[1, "blue"], [1]]"#, 10).unwrap_err();
        assert_eq!(e, RequestError::at(Some(1), PredictError::WrongFeatureCount { expected: 2, got: 1 }));
        let e = features(r#"[1, [2]]"#, 10).unwrap_err();
        assert_eq!((e.kind(), e.column()), ("invalid_value", Some("color")));
        // Not all rows: one row whose first cell is an array.
        let e = features(r#"[[1], "blue"]"#, 10).unwrap_err();
        assert_eq!((e.kind(), e.row(), e.column()), ("invalid_value", None, Some("x")));
        let e = features(r#"5"#, 10).unwrap_err();
        assert_eq!(e.kind(), "validation_error");
        assert!(matches!(features(r#"[1, "blue""#, 10).unwrap_err(), RequestError::Malformed { .. }));
    }

    #[test]
    fn the_row_limit_stops_reading() {
        let e = features(r#"[[1, "blue"], [2, "blue"], [3, "blue"]]"#, 2).unwrap_err();
        assert_eq!(e, RequestError::TooManyRows { limit: 2 });
    }

    #[test]
    fn records_and_columns_bind_by_name() {
        let p = pre();
        let mut b = Binder::new(&p, 10);
        b.read(r#"[{"color": "blue", "extra": [1, {}]}, {"x": 5}]"#, |b, de| {
            RowsSeed { b, form: RowForm::Records, name: "records" }.deserialize(de)
        })
        .unwrap();
        assert_eq!(b.finish(), Rows { x: vec![2.0, 0.0, 5.0, 1.0], rows: 2 });

        let mut b = Binder::new(&p, 10);
        b.read(r#"{"color": ["blue", null], "x": [1, 2], "y": "ignored"}"#, |b, de| ColumnsSeed { b }.deserialize(de))
            .unwrap();
        assert_eq!(b.finish(), Rows { x: vec![1.0, 0.0, 2.0, 1.0], rows: 2 });

        let mut b = Binder::new(&p, 10);
        let e = b.read(r#"{"color": ["blue"], "x": [1, 2]}"#, |b, de| ColumnsSeed { b }.deserialize(de)).unwrap_err();
        assert!(e.to_string().contains("equally long"), "{e}");
    }
}
