//! `POST /api/ml/predict` (the documented shape, plus KServe V1 `instances`/`inputs`) and
//! KServe V1 `:predict`, which is the same row forms behind a different envelope.
//!
//! ```text
//! {"data": {"features": [...] | [[...], ...] | "records": [{...}]}, "model_id"?, "explain"?}
//!   (rows may also sit at the top level)                → one prediction | {"predictions": [...]}
//! {"instances": [row, ...]} | {"inputs": [row, ...] | {col: [...]}}   → {"predictions": [...]}
//! ```

use serde::de::DeserializeSeed;
use serde_json::value::RawValue;

use super::bind::{bind_features, Binder, ColumnsSeed, RowForm, RowsSeed};
use super::Span;
use crate::error::RequestError;
use crate::json::{optional, Members};

/// What the body names, with the row part kept as a span of the body (read once the model is known).
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    pub model_id: Option<String>,
    pub rows: RowsPart,
    /// The `explain` value, when given.
    pub explain: Option<Span>,
}

/// Where the rows are and in what form.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RowsPart {
    /// `features`: one row or an array of rows.
    Features(Span),
    /// `records`: an array of objects.
    Records(Span),
    /// `instances`: an array of rows (arrays or objects).
    Instances(Span),
    /// `inputs`: an array of rows, or an object of columns.
    Inputs(Span),
}

/// How the rows part was written: decides the answer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One row given as such: one prediction object.
    Single,
    /// `features` batch or `records`: `{"predictions": [...]}`.
    Batch,
    /// KServe V1 forms: `{"predictions": [...]}`.
    Instances,
}

/// Parse the `/api/ml/predict` envelope of `body` (a str view of the same bytes).
pub(crate) fn parse(body: &str) -> Result<Envelope, RequestError> {
    let top = Members::parse(body)?;
    let span = |raw: &RawValue| Span::of(body, raw.get());
    let data =
        match top.get("data") {
            Some(d) => Some(Members::parse(d.get()).map_err(|_| {
                RequestError::Invalid("`data` must be an object holding `features` or `records`".into())
            })?),
            None => None,
        };
    let (features, records) = match &data {
        Some(d) if d.get("features").is_some() || d.get("records").is_some() => (d.get("features"), d.get("records")),
        _ => (top.get("features"), top.get("records")),
    };
    let given: Vec<RowsPart> = [
        features.map(|r| RowsPart::Features(span(r))),
        records.map(|r| RowsPart::Records(span(r))),
        top.get("instances").map(|r| RowsPart::Instances(span(r))),
        top.get("inputs").map(|r| RowsPart::Inputs(span(r))),
    ]
    .into_iter()
    .flatten()
    .collect();
    let rows = match given.as_slice() {
        [one] => *one,
        [] => {
            return Err(RequestError::Invalid(
                "missing `data.features` (one row or an array of rows), `data.records` or `instances`".into(),
            ))
        }
        _ => {
            return Err(RequestError::Invalid(
                "give exactly one of `features`, `records`, `instances` or `inputs`".into(),
            ))
        }
    };
    Ok(Envelope { model_id: optional(&top, "model_id")?, rows, explain: top.get("explain").map(span) })
}

/// Parse a KServe V1 `:predict` body: exactly one of `instances` or `inputs`.
pub(crate) fn parse_v1(body: &str) -> Result<Envelope, RequestError> {
    let v1 = Members::parse(body)?;
    let span = |raw: &RawValue| Span::of(body, raw.get());
    let rows = match (v1.get("instances"), v1.get("inputs")) {
        (Some(i), None) => RowsPart::Instances(span(i)),
        (None, Some(i)) => RowsPart::Inputs(span(i)),
        _ => return Err(RequestError::Invalid("give exactly one of `instances` or `inputs`".into())),
    };
    Ok(Envelope { model_id: None, rows, explain: v1.get("explain").map(span) })
}

/// Bind the rows part of `body` into `b`; returns the answer's shape.
pub(crate) fn bind(b: &mut Binder<'_>, body: &str, rows: RowsPart) -> Result<Shape, RequestError> {
    match rows {
        RowsPart::Features(s) => {
            let batch = bind_features(b, s.get(body))?;
            Ok(if batch { Shape::Batch } else { Shape::Single })
        }
        RowsPart::Records(s) => {
            b.read(s.get(body), |b, de| RowsSeed { b, form: RowForm::Records, name: "records" }.deserialize(de))?;
            Ok(Shape::Batch)
        }
        RowsPart::Instances(s) => {
            b.read(s.get(body), |b, de| RowsSeed { b, form: RowForm::Any, name: "instances" }.deserialize(de))?;
            Ok(Shape::Instances)
        }
        RowsPart::Inputs(s) => {
            let text = s.get(body);
            if text.trim_start().starts_with('{') {
                b.read(text, |b, de| ColumnsSeed { b }.deserialize(de))?;
            } else {
                b.read(text, |b, de| RowsSeed { b, form: RowForm::Any, name: "inputs" }.deserialize(de))?;
            }
            Ok(Shape::Instances)
        }
    }
}
