//! The Open Inference Protocol (KServe V2) REST binding: `POST /v2/models/{m}/infer` requests
//! and answers, with Triton's binary tensor data extension, and model metadata.
//!
//! Inputs are either one tensor `[n, n_features]` (any numeric type, or BYTES holding text
//! cells; nested or flat row-major data), or one input per feature named by `feature_names`,
//! each `[n]` or `[n, 1]` (BYTES for categorical columns), so mixed rows fit. Outputs:
//! `probabilities` FP32 `[n, k]`, `predicted_class` INT64 `[n]`, `predicted_label` BYTES `[n]`;
//! for regression `predicted_value` FP32 `[n, 1]`. The request's `id` is echoed and an
//! `outputs` selection honoured; `binary_data` outputs come after the JSON header.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::bind::{Binder, Cell};
use super::encode::{array, float, string, uint, Obj};
use super::Span;
use crate::error::{truncate_echo, RequestError};
use crate::json::{optional, value, Members};
use crate::model::{Model, Prediction};
use crate::spec::{FeatureKind, TaskType};

/// A tensor element type of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Datatype {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    Bf16,
    F32,
    F64,
    Bytes,
}

/// Every datatype with its protocol name.
const DATATYPES: [(&str, Datatype); 14] = [
    ("BOOL", Datatype::Bool),
    ("UINT8", Datatype::U8),
    ("UINT16", Datatype::U16),
    ("UINT32", Datatype::U32),
    ("UINT64", Datatype::U64),
    ("INT8", Datatype::I8),
    ("INT16", Datatype::I16),
    ("INT32", Datatype::I32),
    ("INT64", Datatype::I64),
    ("FP16", Datatype::F16),
    ("BF16", Datatype::Bf16),
    ("FP32", Datatype::F32),
    ("FP64", Datatype::F64),
    ("BYTES", Datatype::Bytes),
];

impl Datatype {
    fn parse(s: &str) -> Result<Self, RequestError> {
        DATATYPES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|&(_, d)| d)
            .ok_or_else(|| RequestError::Invalid(format!("unknown datatype {:?}", truncate_echo(s))))
    }

    /// The protocol's name of the datatype.
    fn name(self) -> &'static str {
        DATATYPES.iter().find(|(_, d)| *d == self).map_or("", |&(name, _)| name)
    }

    /// Bytes per element in binary data (BYTES elements are length-prefixed).
    fn width(self) -> Option<usize> {
        Some(match self {
            Self::Bool | Self::U8 | Self::I8 => 1,
            Self::U16 | Self::I16 | Self::F16 | Self::Bf16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 => 8,
            Self::Bytes => return None,
        })
    }
}

/// The `parameters` of a request, input or output that this server reads.
#[derive(Default)]
struct Params {
    binary_data_size: Option<u64>,
    binary_data: Option<bool>,
    binary_data_output: Option<bool>,
    shared_memory: bool,
    /// Triton's classification extension (`classification: k`), which this server does not offer.
    classification: bool,
}

impl Params {
    /// Read the `parameters` member of `m`, if any.
    fn of(m: &Members<'_>) -> Result<Self, RequestError> {
        let Some(raw) = m.get("parameters") else {
            return Ok(Self::default());
        };
        let p = Members::parse(raw.get())?;
        Ok(Self {
            binary_data_size: optional(&p, "binary_data_size")?,
            binary_data: optional(&p, "binary_data")?,
            binary_data_output: optional(&p, "binary_data_output")?,
            shared_memory: p.get("shared_memory_region").is_some(),
            classification: p.get("classification").is_some(),
        })
    }
}

/// Where an input's elements are.
#[derive(Debug, Clone, Copy)]
enum Data {
    /// JSON `data`, nested or flat.
    Json(Span),
    /// A byte range of the body after the JSON header.
    Binary(usize, usize),
}

#[derive(Debug, Clone)]
struct Input {
    name: String,
    shape: Vec<usize>,
    datatype: Datatype,
    data: Data,
}

#[derive(Debug, Clone)]
struct Output {
    name: String,
    binary: bool,
}

/// A parsed infer request.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    id: Option<String>,
    inputs: Vec<Input>,
    outputs: Option<Vec<Output>>,
    binary_default: bool,
}

fn invalid(m: String) -> RequestError {
    RequestError::Invalid(m)
}

/// Parse the JSON header `text` of an infer request whose binary part is `tail`.
pub(crate) fn parse(text: &str, tail: &[u8]) -> Result<Envelope, RequestError> {
    let top = Members::parse(text)?;
    let raw_inputs: Vec<&RawValue> = value(top.required("inputs", "the request")?, "inputs")?;
    if raw_inputs.is_empty() {
        return Err(invalid("the request has no inputs".into()));
    }
    let binary_default = Params::of(&top)?.binary_data_output.unwrap_or(false);
    let mut cursor = 0usize;
    let mut inputs = Vec::with_capacity(raw_inputs.len());
    for raw in raw_inputs {
        let i = Members::parse(raw.get())?;
        let full_name: String = value(i.required("name", "an input")?, "name")?;
        let name = truncate_echo(&full_name);
        let what = format!("input `{name}`");
        let datatype: String = value(i.required("datatype", &what)?, "datatype")?;
        let datatype = Datatype::parse(&datatype)?;
        let shape: Vec<i64> = value(i.required("shape", &what)?, "shape")?;
        let shape = shape
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| invalid(format!("{what} has a negative dimension {d}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let p = Params::of(&i)?;
        if p.shared_memory {
            return Err(RequestError::NotImplemented("shared-memory inputs are not supported".into()));
        }
        let data = match (p.binary_data_size, i.get("data")) {
            (Some(size), None) => {
                let size = usize::try_from(size).map_err(|_| invalid(format!("{what}: binary_data_size too large")))?;
                let end = cursor.checked_add(size).filter(|&e| e <= tail.len()).ok_or_else(|| {
                    invalid(format!(
                        "{what} claims {size} binary bytes, but only {} follow the JSON header",
                        tail.len() - cursor
                    ))
                })?;
                let d = Data::Binary(cursor, end);
                cursor = end;
                d
            }
            (None, Some(data)) => Data::Json(Span::of(text, data.get())),
            (Some(_), Some(_)) => return Err(invalid(format!("{what} has both data and binary_data_size"))),
            (None, None) => return Err(invalid(format!("{what} has no data"))),
        };
        inputs.push(Input { name: full_name, shape, datatype, data });
    }
    if cursor != tail.len() {
        return Err(invalid(format!("{} bytes follow the inputs' binary data", tail.len() - cursor)));
    }
    let outputs = match top.get("outputs") {
        Some(raw) => {
            let raw: Vec<&RawValue> = value(raw, "outputs")?;
            let mut outputs: Vec<Output> = Vec::with_capacity(raw.len());
            for o in raw {
                let o = Members::parse(o.get())?;
                let p = Params::of(&o)?;
                if p.classification {
                    return Err(RequestError::NotImplemented(
                        "the classification extension is not supported: request `predicted_label` and `probabilities`"
                            .into(),
                    ));
                }
                let name: String = value(o.required("name", "an output")?, "name")?;
                outputs.push(Output { name, binary: p.binary_data.unwrap_or(binary_default) });
            }
            // One pass with a set: a scan per output was quadratic in a hostile list.
            let mut seen = HashSet::with_capacity(outputs.len());
            if let Some(o) = outputs.iter().find(|o| !seen.insert(o.name.as_str())) {
                return Err(invalid(format!("output `{}` is requested twice", truncate_echo(&o.name))));
            }
            // As Triton: no output named means every output.
            (!outputs.is_empty()).then_some(outputs)
        }
        None => None,
    };
    Ok(Envelope { id: optional(&top, "id")?, inputs, outputs, binary_default })
}

/// Where the element at flat index `i` of an input goes.
#[derive(Clone, Copy)]
enum Place {
    /// A `[rows, n_features]` tensor: row `i / n`, feature `i % n`.
    Tensor { n: usize },
    /// One feature's column: row `i`, feature `j`.
    Column { j: usize },
}

impl Place {
    fn at(self, i: usize) -> (usize, usize) {
        match self {
            Place::Tensor { n } => (i / n, i % n),
            Place::Column { j } => (i, j),
        }
    }
}

/// Flattens nested JSON data, writing each element where [`Place`] says.
struct Flat<'b, 'm> {
    b: &'b mut Binder<'m>,
    place: Place,
    datatype: Datatype,
    count: &'b mut usize,
    expected: usize,
}

/// What kind of JSON element a datatype takes (`null`, a missing value, fits every type).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Element {
    Bool,
    Integer { min: i128, max: i128 },
    Number,
    Text,
}

impl Datatype {
    fn element(self) -> Element {
        let int = |min: i128, max: i128| Element::Integer { min, max };
        match self {
            Self::Bool => Element::Bool,
            Self::U8 => int(0, u8::MAX.into()),
            Self::U16 => int(0, u16::MAX.into()),
            Self::U32 => int(0, u32::MAX.into()),
            Self::U64 => int(0, u64::MAX.into()),
            Self::I8 => int(i8::MIN.into(), i8::MAX.into()),
            Self::I16 => int(i16::MIN.into(), i16::MAX.into()),
            Self::I32 => int(i32::MIN.into(), i32::MAX.into()),
            Self::I64 => int(i64::MIN.into(), i64::MAX.into()),
            Self::F16 | Self::Bf16 | Self::F32 | Self::F64 => Element::Number,
            Self::Bytes => Element::Text,
        }
    }
}

impl Flat<'_, '_> {
    /// An integer element, checked against the datatype's range.
    fn int<E: de::Error>(&mut self, v: i128) -> Result<(), E> {
        match self.datatype.element() {
            Element::Integer { min, max } if v < min || v > max => {
                Err(self.mismatch(&format!("{v}, out of its range")))
            }
            Element::Integer { .. } | Element::Number => self.put(Cell::Number(v as f64)),
            _ => Err(self.mismatch("a number")),
        }
    }

    /// The element at the current index does not fit the declared datatype (OIP REST: JSON
    /// tensor elements must match `datatype`).
    fn mismatch<E: de::Error>(&mut self, got: &str) -> E {
        let (i, dt) = (*self.count, self.datatype);
        let want = match dt.element() {
            Element::Bool => "true or false",
            Element::Integer { .. } => "an integer",
            Element::Number => "a number",
            Element::Text => "a string",
        };
        self.b.invalid(format!("element {i} of a {} input is {got}, expected {want}", dt.name()))
    }

    fn put<E: de::Error>(&mut self, cell: Cell<'_>) -> Result<(), E> {
        let i = *self.count;
        *self.count += 1;
        if i >= self.expected {
            return Err(self.b.invalid(format!("data has more than the shape's {} elements", self.expected)));
        }
        let (row, j) = self.place.at(i);
        self.b.ensure_rows(row + 1)?;
        // BOOL elements are numbers 1 and 0; other types take their JSON value as is.
        let cell = match (self.datatype, cell) {
            (Datatype::Bool, Cell::Bool(v)) => Cell::Number(f64::from(u8::from(v))),
            (_, c) => c,
        };
        self.b.set_cell(row, j, &cell)
    }
}

impl<'de> DeserializeSeed<'de> for Flat<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flat<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("tensor data (nested or flat arrays)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let next = Flat {
                b: &mut *self.b,
                place: self.place,
                datatype: self.datatype,
                count: &mut *self.count,
                expected: self.expected,
            };
            if seq.next_element_seed(next)?.is_none() {
                return Ok(());
            }
        }
    }
    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        if self.datatype.element() != Element::Bool {
            return Err(self.mismatch(if v { "true" } else { "false" }));
        }
        self.put(Cell::Bool(v))
    }
    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.int(v.into())
    }
    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.int(v.into())
    }
    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        match self.datatype.element() {
            Element::Number => self.put(Cell::Number(v)),
            Element::Integer { .. } if v.fract() == 0.0 && v.abs() < 2f64.powi(63) => self.int(v as i128),
            Element::Integer { .. } => Err(self.mismatch(&format!("{v}"))),
            _ => Err(self.mismatch("a number")),
        }
    }
    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        match (self.datatype.element(), v) {
            (Element::Text, _) => self.put(Cell::Text(Cow::Borrowed(v))),
            // Python's NaN / ±Infinity tokens, as `json_compat` rewrites them: missing, and
            // non-finite numbers the value layer refuses by column.
            (Element::Number, "NaN") => self.put(Cell::Missing),
            (Element::Number, "inf") => self.put(Cell::Number(f64::INFINITY)),
            (Element::Number, "-inf") => self.put(Cell::Number(f64::NEG_INFINITY)),
            _ => Err(self.mismatch("a string")),
        }
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.put(Cell::Missing)
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let (sign, exp, frac) = ((h >> 15) as u32, ((h >> 10) & 0x1f) as u32, (h & 0x3ff) as u32);
    let bits = match (exp, frac) {
        (0, 0) => sign << 31,
        (0, _) => {
            // Subnormal: renormalise.
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            (sign << 31) | (e << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, _) => (sign << 31) | (0xff << 23) | (frac << 13),
        _ => (sign << 31) | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// Write the binary elements of `bytes` (of `datatype`) where `place` says; returns the count.
fn bind_binary(
    b: &mut Binder<'_>,
    bytes: &[u8],
    datatype: Datatype,
    place: Place,
    expected: usize,
) -> Result<usize, RequestError> {
    let r = (|| -> Result<usize, serde_json::Error> {
        let put = |b: &mut Binder<'_>, i: usize, cell: Cell<'_>| -> Result<(), serde_json::Error> {
            let (row, j) = place.at(i);
            b.ensure_rows(row + 1)?;
            b.set_cell(row, j, &cell)
        };
        match datatype.width() {
            Some(w) => {
                if !bytes.len().is_multiple_of(w) || bytes.len() / w != expected {
                    return Err(
                        b.invalid(format!("{} binary bytes are not {expected} elements of {w} bytes", bytes.len()))
                    );
                }
                for (i, c) in bytes.chunks_exact(w).enumerate() {
                    let le = |n: usize| -> [u8; 8] {
                        let mut a = [0u8; 8];
                        a[..n].copy_from_slice(&c[..n]);
                        a
                    };
                    let x = match datatype {
                        Datatype::Bool => f64::from(u8::from(c[0] != 0)),
                        Datatype::U8 => f64::from(c[0]),
                        Datatype::I8 => f64::from(c[0] as i8),
                        Datatype::U16 => f64::from(u16::from_le_bytes([c[0], c[1]])),
                        Datatype::I16 => f64::from(i16::from_le_bytes([c[0], c[1]])),
                        Datatype::F16 => f64::from(f16_to_f32(u16::from_le_bytes([c[0], c[1]]))),
                        Datatype::Bf16 => f64::from(f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)),
                        Datatype::U32 => f64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                        Datatype::I32 => f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                        Datatype::F32 => f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                        Datatype::U64 => u64::from_le_bytes(le(8)) as f64,
                        Datatype::I64 => i64::from_le_bytes(le(8)) as f64,
                        Datatype::F64 => f64::from_le_bytes(le(8)),
                        Datatype::Bytes => unreachable!("BYTES has no fixed width"),
                    };
                    // NaN is missing, as everywhere in the core.
                    let cell = if x.is_nan() { Cell::Missing } else { Cell::Number(x) };
                    put(b, i, cell)?;
                }
                Ok(expected)
            }
            None => {
                let (mut at, mut i) = (0usize, 0usize);
                while at < bytes.len() {
                    let len = bytes
                        .get(at..at + 4)
                        .map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
                        .ok_or_else(|| b.invalid::<serde_json::Error>("a BYTES element's length is cut off".into()))?;
                    let text =
                        bytes.get(at + 4..at + 4 + len).and_then(|t| std::str::from_utf8(t).ok()).ok_or_else(|| {
                            b.invalid::<serde_json::Error>(format!("BYTES element {i} is cut off or not UTF-8"))
                        })?;
                    if i >= expected {
                        return Err(b.invalid(format!("data has more than the shape's {expected} elements")));
                    }
                    put(b, i, Cell::Text(Cow::Borrowed(text)))?;
                    at += 4 + len;
                    i += 1;
                }
                Ok(i)
            }
        }
    })();
    b.outcome(r)
}

/// Bind the inputs to the model's features.
fn bind(b: &mut Binder<'_>, env: &Envelope, text: &str, tail: &[u8]) -> Result<(), RequestError> {
    let n = b.pre.num_features();
    let names = b.pre.feature_names().join(", ");
    let one_tensor = env.inputs.len() == 1 && b.pre.index_of(&env.inputs[0].name).is_none();
    let mut given = vec![false; n];
    let mut rows: Option<usize> = None;
    for input in &env.inputs {
        let shown = truncate_echo(&input.name);
        let (place, r) = if one_tensor {
            match input.shape.as_slice() {
                [r, f] if *f == n => (Place::Tensor { n }, *r),
                [f] if *f == n => (Place::Tensor { n }, 1),
                _ => {
                    return Err(invalid(format!(
                        "input `{shown}` has shape {:?}: a single input must be [rows, {n}] (or give one input per feature: {})",
                        input.shape,
                        truncate_echo(&names)
                    )))
                }
            }
        } else {
            let j = b.pre.index_of(&input.name).ok_or_else(|| {
                invalid(format!("input `{shown}` is no feature of the model (its inputs: {})", truncate_echo(&names)))
            })?;
            if std::mem::replace(&mut given[j], true) {
                return Err(invalid(format!("input `{shown}` is given twice")));
            }
            match input.shape.as_slice() {
                [r] | [r, 1] => (Place::Column { j }, *r),
                _ => {
                    return Err(invalid(format!(
                        "input `{shown}` has shape {:?}: a feature input is [rows] or [rows, 1]",
                        input.shape
                    )))
                }
            }
        };
        match rows {
            Some(prev) if prev != r => {
                return Err(invalid(format!("input `{shown}` has {r} rows, another input has {prev}")));
            }
            _ => rows = Some(r),
        }
        // Checked: on wasm32 a claimed [2^30, 4] wraps to 0 elements, which empty data "matches".
        let expected = input
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| invalid(format!("input `{shown}` has shape {:?}: too many elements", input.shape)))?;
        // Each element takes at least a byte of data (four for BYTES): refuse a shape the data
        // cannot fill before any row is allocated for it.
        let room = match input.data {
            Data::Json(span) => span.get(text).len(),
            Data::Binary(s, e) => (e - s) / input.datatype.width().unwrap_or(4),
        };
        if expected > room {
            return Err(invalid(format!(
                "input `{shown}` has shape {:?} ({expected} elements), more than its data can hold",
                input.shape
            )));
        }
        let count = match input.data {
            Data::Json(span) => {
                let mut count = 0usize;
                b.read(span.get(text), |b, de| {
                    Flat { b, place, datatype: input.datatype, count: &mut count, expected }.deserialize(de)
                })?;
                count
            }
            Data::Binary(s, e) => bind_binary(b, &tail[s..e], input.datatype, place, expected)?,
        };
        if count != expected {
            return Err(invalid(format!("input `{shown}` has {count} elements for shape {:?}", input.shape)));
        }
    }
    let rows = rows.unwrap_or(0);
    if !one_tensor {
        // As Triton: every declared input is required (a missing value is NaN or null, not an
        // absent input), so a misspelt name cannot silently become an imputed column.
        let absent = b.absent(&given);
        if !absent.is_empty() {
            return Err(invalid(format!(
                "missing input{} {}: give one input per feature ({}), or one [rows, {n}] tensor",
                if absent.len() == 1 { "" } else { "s" },
                truncate_echo(&absent.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")),
                truncate_echo(&names)
            )));
        }
    }
    let r = b.ensure_rows(rows);
    b.outcome(r)
}

/// The output names a model answers with, in default order.
fn output_names(model: &Model) -> &'static [&'static str] {
    match model.task_type() {
        TaskType::Classification => &["predicted_class", "predicted_label", "probabilities"],
        TaskType::Regression => &["predicted_value"],
    }
}

/// Answer an infer request: the JSON body, and the length of its JSON header when binary
/// outputs follow it.
pub(crate) fn answer(
    env: &Envelope,
    text: &str,
    tail: &[u8],
    model: &Model,
    max_rows: usize,
) -> Result<(Vec<u8>, Option<usize>, usize), RequestError> {
    let mut b = Binder::new(model.preprocessor(), max_rows);
    bind(&mut b, env, text, tail)?;
    let rows = b.finish();
    let preds = model.predictions(&rows.x, rows.rows);
    let known = output_names(model);
    let outputs: Vec<Output> = match &env.outputs {
        Some(os) => {
            for o in os {
                if !known.contains(&o.name.as_str()) {
                    return Err(invalid(format!(
                        "unknown output `{}` (this model's outputs: {})",
                        truncate_echo(&o.name),
                        known.join(", ")
                    )));
                }
            }
            os.clone()
        }
        None => known.iter().map(|n| Output { name: (*n).to_owned(), binary: env.binary_default }).collect(),
    };
    let n = preds.len();
    let k = model.output_width();
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    let mut out = Vec::with_capacity(128 + n * k * 12);
    let mut o = Obj::new(&mut out);
    o.str("model_name", model.id());
    if let Some(id) = &env.id {
        o.str("id", id);
    }
    let arr = o.key("outputs");
    arr.push(b'[');
    for (i, spec) in outputs.iter().enumerate() {
        if i > 0 {
            arr.push(b',');
        }
        let (datatype, shape): (&str, Vec<usize>) = match spec.name.as_str() {
            "probabilities" => ("FP32", vec![n, k]),
            "predicted_class" => ("INT64", vec![n]),
            "predicted_label" => ("BYTES", vec![n]),
            _ => ("FP32", vec![n, 1]),
        };
        let mut t = Obj::new(arr);
        t.str("name", &spec.name).str("datatype", datatype);
        array(t.key("shape"), &shape, |s, &dim| uint(s, dim));
        if spec.binary {
            let blob = binary_output(&spec.name, &preds);
            let p = t.key("parameters");
            let mut params = Obj::new(p);
            params.uint("binary_data_size", blob.len());
            params.end();
            blobs.push(blob);
        } else {
            json_output(t.key("data"), &spec.name, &preds);
        }
        t.end();
    }
    arr.push(b']');
    o.end();
    if blobs.is_empty() {
        return Ok((out, None, n));
    }
    let header = out.len();
    for blob in blobs {
        out.extend_from_slice(&blob);
    }
    Ok((out, Some(header), n))
}

/// An output's elements as flat JSON data.
fn json_output(out: &mut Vec<u8>, name: &str, preds: &[Prediction]) {
    out.push(b'[');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::replace(&mut first, false) {
            out.push(b',');
        }
    };
    for p in preds {
        match (name, p) {
            ("probabilities", Prediction::Class { probabilities, .. }) => {
                for &v in probabilities {
                    sep(out);
                    float(out, v);
                }
            }
            ("predicted_class", Prediction::Class { predicted_class, .. }) => {
                sep(out);
                uint(out, *predicted_class);
            }
            ("predicted_label", Prediction::Class { predicted_label, .. }) => {
                sep(out);
                string(out, predicted_label);
            }
            (_, Prediction::Value { predicted_value }) => {
                sep(out);
                float(out, *predicted_value);
            }
            _ => {}
        }
    }
    out.push(b']');
}

/// An output's elements as little-endian binary (BYTES: u32 length + bytes each).
fn binary_output(name: &str, preds: &[Prediction]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in preds {
        match (name, p) {
            ("probabilities", Prediction::Class { probabilities, .. }) => {
                probabilities.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            }
            ("predicted_class", Prediction::Class { predicted_class, .. }) => {
                out.extend_from_slice(&(*predicted_class as i64).to_le_bytes());
            }
            ("predicted_label", Prediction::Class { predicted_label, .. }) => {
                out.extend_from_slice(&(predicted_label.len() as u32).to_le_bytes());
                out.extend_from_slice(predicted_label.as_bytes());
            }
            (_, Prediction::Value { predicted_value }) => out.extend_from_slice(&predicted_value.to_le_bytes()),
            _ => {}
        }
    }
    out
}

/// `GET /v2/models/{m}`: name, platform, inputs and outputs with datatypes and shapes (-1 =
/// any number of rows). An all-numeric model takes one FP32 `input` tensor; a model with
/// categories one input per feature (BYTES for categorical columns). Both forms are accepted.
pub fn model_metadata(model: &Model) -> Vec<u8> {
    let n = model.num_features();
    let mut out = Vec::with_capacity(256 + n * 48);
    let mut o = Obj::new(&mut out);
    o.str("name", model.id());
    let v = o.key("versions");
    v.extend_from_slice(b"[\"1\"]");
    o.str("platform", "trainer_mlp");
    let tensor = |arr: &mut Vec<u8>, name: &str, datatype: &str, dims: &[i64]| {
        let mut t = Obj::new(arr);
        t.str("name", name).str("datatype", datatype);
        array(t.key("shape"), dims, |s, d| s.extend_from_slice(d.to_string().as_bytes()));
        t.end();
    };
    let inputs = o.key("inputs");
    if model.preprocessor().is_numeric_only() {
        array(inputs, [()], |arr, ()| tensor(arr, "input", "FP32", &[-1, n as i64]));
    } else {
        array(inputs, &model.spec().preprocessing.features, |arr, f| {
            let dt = if matches!(f.kind, FeatureKind::Categorical { .. }) { "BYTES" } else { "FP32" };
            tensor(arr, &f.name, dt, &[-1]);
        });
    }
    let k = model.output_width() as i64;
    let outputs = o.key("outputs");
    outputs.push(b'[');
    match model.task_type() {
        TaskType::Classification => {
            tensor(outputs, "predicted_class", "INT64", &[-1]);
            outputs.push(b',');
            tensor(outputs, "predicted_label", "BYTES", &[-1]);
            outputs.push(b',');
            tensor(outputs, "probabilities", "FP32", &[-1, k]);
        }
        TaskType::Regression => tensor(outputs, "predicted_value", "FP32", &[-1, 1]),
    }
    outputs.push(b']');
    o.end();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_decode() {
        for (h, want) in
            [(0x3c00u16, 1.0f32), (0xc000, -2.0), (0x3555, 0.333_251_95), (0x0001, 5.960_464_5e-8), (0, 0.0)]
        {
            assert_eq!(f16_to_f32(h), want, "{h:#x}");
        }
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    }

    #[test]
    fn binary_sizes_must_fit_the_tail() {
        let text = r#"{"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}"#;
        assert!(parse(text, &[0u8; 8]).is_ok());
        assert!(parse(text, &[0u8; 4]).unwrap_err().to_string().contains("only 4 follow"));
        assert!(parse(text, &[0u8; 12]).unwrap_err().to_string().contains("4 bytes follow"));
        assert!(parse(r#"{"inputs": []}"#, &[]).is_err());
        assert!(parse(r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP8", "data": [1]}]}"#, &[]).is_err());
    }

    #[test]
    fn an_output_requested_twice_is_refused_wherever_it_repeats() {
        let input = r#"{"name": "input", "shape": [1], "datatype": "FP32", "data": [1]}"#;
        let with = |names: &[String]| {
            let outputs: Vec<String> = names.iter().map(|n| format!(r#"{{"name": "{n}"}}"#)).collect();
            format!(r#"{{"inputs": [{input}], "outputs": [{}]}}"#, outputs.join(","))
        };
        let mut names: Vec<String> = (0..1000).map(|i| format!("o{i}")).collect();
        let env = parse(&with(&names), &[]).unwrap();
        assert_eq!(env.outputs.map(|o| o.len()), Some(1000));
        names.push("o999".into());
        let e = parse(&with(&names), &[]).unwrap_err().to_string();
        assert!(e.contains("output `o999` is requested twice"), "{e}");
        let e = parse(&with(&["probabilities".into(), "probabilities".into()]), &[]).unwrap_err().to_string();
        assert!(e.contains("output `probabilities` is requested twice"), "{e}");
    }
}
