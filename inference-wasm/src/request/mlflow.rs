//! MLflow's scoring-server body (`POST /invocations`, JSON): exactly one of `dataframe_split`,
//! `dataframe_records`, `instances` or `inputs` (plus an optional `params`, which this model
//! takes none of). `text/csv` bodies are read by [`super::csv`]. Answers are
//! `{"predictions": [...]}`.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::bind::{Binder, Cell, ColumnsSeed, RowForm, RowsSeed};
use super::Span;
use crate::error::{PredictError, RequestError};
use crate::json::{JsonError, Members};

/// The formats MLflow accepts, in its message's order.
const FORMATS: &str = "dataframe_split, dataframe_records, instances, inputs";

/// Where the rows are.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rows {
    /// `{"columns"?, "data", "index"?}` (pandas `orient="split"`).
    Split { columns: Option<Span>, data: Span },
    /// An array of records (pandas `orient="records"`).
    Records(Span),
    /// TF-Serving row format.
    Instances(Span),
    /// TF-Serving columnar (`{col: [...]}`) or row format.
    Inputs(Span),
}

/// Parse an `/invocations` JSON body.
pub(crate) fn parse(text: &str) -> Result<Rows, RequestError> {
    let top = Members::parse(text).map_err(|e| match e {
        JsonError::Invalid(_) => RequestError::Invalid(format!(
            "The input must be a JSON dictionary with exactly one of the input fields {{{FORMATS}}}"
        )),
        e => e.into(),
    })?;
    let span = |r: &RawValue| Span::of(text, r.get());
    let [split, records, instances, inputs] =
        ["dataframe_split", "dataframe_records", "instances", "inputs"].map(|k| top.get(k));
    let given = [split, records, instances, inputs].iter().flatten().count();
    if given != 1 {
        return Err(RequestError::Invalid(format!(
            "The input must be a JSON dictionary with exactly one of the input fields {{{FORMATS}}}; it has {given}"
        )));
    }
    // MLflow's server refuses `params` other than a dictionary (this model takes none).
    if top.get("params").is_some_and(|p| !p.get().starts_with('{')) {
        return Err(RequestError::Invalid("`params` must be a dictionary of parameter name → value".into()));
    }
    if let Some(s) = split {
        let bad = |m: String| {
            RequestError::Invalid(format!(
                "Dataframe split format must have 'data' field and optionally 'columns' and 'index' fields: {m}"
            ))
        };
        let split = Members::parse(s.get()).map_err(|e| bad(e.to_string()))?;
        // pandas sends `index` too; rows keep their order.
        split.only(&["columns", "data", "index"], "dataframe_split").map_err(|e| bad(e.to_string()))?;
        let data = split.get("data").ok_or_else(|| bad("missing field `data`".into()))?;
        return Ok(Rows::Split { columns: split.get("columns").map(span), data: span(data) });
    }
    Ok(match (records, instances, inputs) {
        (Some(r), _, _) => Rows::Records(span(r)),
        (_, Some(r), _) => Rows::Instances(span(r)),
        (_, _, Some(r)) => Rows::Inputs(span(r)),
        _ => unreachable!("exactly one format is given"),
    })
}

/// A `dataframe_split` row: cells in the order of `columns`, each to its feature (or dropped).
struct SplitRow<'b, 'm, 'c> {
    b: &'b mut Binder<'m>,
    map: &'c [Option<usize>],
}

impl<'de> DeserializeSeed<'de> for SplitRow<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SplitRow<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row of `data` (an array of values)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let row = self.b.push_row()?;
        let n = self.b.pre.num_features();
        let mut given = vec![false; n];
        let mut got = 0;
        while let Some(cell) = seq.next_element::<Cell>()? {
            if let Some(Some(j)) = self.map.get(got) {
                given[*j] = true;
                self.b.set_cell(row, *j, &cell)?;
            }
            got += 1;
        }
        if got != self.map.len() {
            return Err(self.b.row_error(row, PredictError::WrongFeatureCount { expected: self.map.len(), got }));
        }
        self.b.fill_missing(row, &given)
    }
}

struct SplitData<'b, 'm, 'c> {
    b: &'b mut Binder<'m>,
    map: &'c [Option<usize>],
}

impl<'de> DeserializeSeed<'de> for SplitData<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SplitData<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("`data` to be an array of rows")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(SplitRow { b: self.b, map: self.map })?.is_some() {}
        Ok(())
    }
}

/// Bind the rows into `b`.
pub(crate) fn bind(b: &mut Binder<'_>, text: &str, rows: Rows) -> Result<(), RequestError> {
    match rows {
        Rows::Split { columns, data } => {
            let map: Vec<Option<usize>> = match columns {
                Some(c) => {
                    let names: Vec<std::borrow::Cow<'_, str>> = serde_json::from_str(c.get(text)).map_err(|_| {
                        RequestError::Invalid("dataframe_split `columns` must be an array of names".into())
                    })?;
                    b.column_map(&names.iter().map(|n| n.as_ref()).collect::<Vec<_>>())?
                }
                None => (0..b.pre.num_features()).map(Some).collect(),
            };
            b.read(data.get(text), |b, de| SplitData { b, map: &map }.deserialize(de))
        }
        Rows::Records(s) => b.read(s.get(text), |b, de| {
            RowsSeed { b, form: RowForm::Records, name: "dataframe_records" }.deserialize(de)
        }),
        Rows::Instances(s) => {
            b.read(s.get(text), |b, de| RowsSeed { b, form: RowForm::Any, name: "instances" }.deserialize(de))
        }
        Rows::Inputs(s) => {
            let t = s.get(text);
            if t.trim_start().starts_with('{') {
                b.read(t, |b, de| ColumnsSeed { b }.deserialize(de))
            } else {
                b.read(t, |b, de| RowsSeed { b, form: RowForm::Any, name: "inputs" }.deserialize(de))
            }
        }
    }
}
