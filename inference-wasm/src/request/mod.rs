//! The predict contract, defined once for every surface (HTTP server, wasm, edge worker, CLI):
//! decode each request shape into preprocessed rows, answer in one number format, and encode
//! errors with their kind, row and column.
//!
//! A request is read in two steps, because `/api/ml/predict` names its model inside the body:
//! [`Request::parse`] reads the envelope (and [`Request::model_id`] tells which model to use),
//! then [`Request::answer`] binds the rows to that model's preprocessing, straight from the
//! JSON text into the network's input matrix, and runs the network once for all rows.
//!
//! The protocols are REST bindings, so each error's status is part of the protocol
//! ([`RequestError::status`]); transports only move bytes and these statuses.

mod api_ml;
mod bind;
mod csv;
mod encode;
mod explain;
mod json_compat;
mod mlflow;
mod oip;

use std::borrow::Cow;

pub use bind::Rows;
pub use csv::{sniff_delimiter, CsvColumns, QuoteScan};
pub use encode::prediction as prediction_json;
pub use explain::explanation_json;
pub use oip::model_metadata as oip_model_metadata;

use crate::error::{truncate_echo, RequestError};
use crate::model::Model;

/// The wire protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /api/ml/predict`: the documented `data.features` / `data.records` shapes (and
    /// KServe V1 `instances`), errors `{"error": kind, "message", "row"?, "column"?}`.
    ApiMl,
    /// KServe V1 / TF-Serving `POST /v1/models/{m}:predict`: `instances` or `inputs` →
    /// `{"predictions": [...]}`, errors `{"error": message}`.
    KServeV1,
    /// Open Inference Protocol (KServe V2) `POST /v2/models/{m}/infer`.
    OipV2,
    /// MLflow scoring server `POST /invocations`.
    Mlflow,
}

impl Protocol {
    /// The protocol named `name` (`api_ml`, `kserve_v1`, `oip_v2`, `mlflow`), as JS passes it.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "api_ml" => Self::ApiMl,
            "kserve_v1" => Self::KServeV1,
            "oip_v2" => Self::OipV2,
            "mlflow" => Self::Mlflow,
            _ => return None,
        })
    }
}

/// Limits on one request's work (body size is the transport's to bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most rows in one request.
    pub max_rows: usize,
    /// Most rows one request may ask explanations for (each costs thousands of forward rows).
    pub max_explain_rows: usize,
    /// Most features `explain.method: "exact"` may be asked for (2^n coalitions each).
    pub max_exact_features: usize,
    /// Most network rows one request's explanations may evaluate ([`crate::Model::explain_cost`]
    /// × explained rows): what bounds the CPU a small request can buy.
    pub max_explain_evals: u64,
}

/// Rows per request a server allows unless configured otherwise.
pub const DEFAULT_MAX_ROWS: usize = 10_000;
/// Explained rows per request a server allows unless configured otherwise.
pub const DEFAULT_MAX_EXPLAIN_ROWS: usize = 100;
/// Network rows one request's explanations may evaluate unless configured otherwise: about
/// 3 s of one core for the default 128,64,32 network (100 rows × 64 permutations of a
/// 15-feature model, 10.2 M rows, took 8.5 s), or 40 rows of exact values of a 10-feature
/// model over 100 background rows.
pub const DEFAULT_MAX_EXPLAIN_EVALS: u64 = 4_000_000;

impl Limits {
    /// No limits (the CLI and the JS API, where the caller pays for its own work).
    pub const NONE: Limits = Limits {
        max_rows: usize::MAX,
        max_explain_rows: usize::MAX,
        max_exact_features: crate::explain::EXACT_LIMIT,
        max_explain_evals: u64::MAX,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_rows: DEFAULT_MAX_ROWS,
            max_explain_rows: DEFAULT_MAX_EXPLAIN_ROWS,
            max_exact_features: crate::explain::EXACT_MAX_FEATURES,
            max_explain_evals: DEFAULT_MAX_EXPLAIN_EVALS,
        }
    }
}

/// A protocol answer: status, content type and body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status of the protocol's REST binding.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// Open Inference Protocol binary extension: the JSON header's length (`Inference-Header-Content-Length`).
    pub json_header_length: Option<usize>,
    /// Rows predicted (0 for errors).
    pub rows: usize,
}

/// The content type of every JSON answer and error (exactly this: the kserve client compares it).
pub const JSON: &str = "application/json";

/// A part of the body, by byte range (so the body may be owned or borrowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: usize,
    end: usize,
}

impl Span {
    /// The span of `part`, a slice of `body` (as serde_json's `RawValue::get` returns).
    pub(crate) fn of(body: &str, part: &str) -> Span {
        let start = (part.as_ptr() as usize).saturating_sub(body.as_ptr() as usize).min(body.len());
        Span { start, end: (start + part.len()).min(body.len()) }
    }

    pub(crate) fn get<'a>(&self, body: &'a str) -> &'a str {
        body.get(self.start..self.end).unwrap_or_default()
    }
}

/// What the transport knows about a body besides its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transport<'t> {
    /// The `Content-Type` header.
    pub content_type: Option<&'t str>,
    /// The `Inference-Header-Content-Length` header (Open Inference Protocol binary data).
    pub json_header_length: Option<usize>,
}

impl<'t> Transport<'t> {
    /// A JSON body (`application/json`).
    pub const JSON: Transport<'static> = Transport { content_type: Some(JSON), json_header_length: None };

    /// A body with this content type.
    pub fn content_type(content_type: Option<&'t str>) -> Self {
        Self { content_type, json_header_length: None }
    }
}

#[derive(Debug, Clone)]
enum Parsed {
    /// `/api/ml/predict` and KServe V1.
    Rows(api_ml::Envelope),
    /// An Open Inference Protocol infer request.
    Oip(oip::Envelope),
    /// An MLflow JSON body.
    Mlflow(mlflow::Rows),
    /// CSV text.
    Csv(CsvColumns),
    /// Bare JSON rows (the JS API's `predict` and `predictRecords`).
    Json(JsonRows),
}

/// The form of bare JSON rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonRows {
    /// One row: an array of values in feature order.
    Row,
    /// An array of objects keyed by column name.
    Records,
}

/// A parsed request whose rows are not yet bound to a model.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    protocol: Protocol,
    text: Cow<'a, str>,
    /// Binary data after the JSON header (Open Inference Protocol).
    tail: &'a [u8],
    parsed: Parsed,
    /// Explanations asked for (`explain` in the body, or KServe V1's `:explain`).
    explain: Option<explain::Ask>,
    /// KServe V1's `:explain` answer shape (`predictions` and `explanations` side by side).
    explain_route: bool,
}

/// The mime type of a `Content-Type` value, lowercased, and its parameters.
fn media_type(content_type: &str) -> (String, Vec<(String, String)>) {
    let mut parts = content_type.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = parts
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_ascii_lowercase())
        })
        .collect();
    (mime, params)
}

fn is_json(mime: &str) -> bool {
    mime == "application/json" || mime.ends_with("+json")
}

fn unsupported(content_type: Option<&str>, wanted: &str) -> RequestError {
    RequestError::UnsupportedMediaType(format!(
        "expected Content-Type: {wanted}, got {:?}",
        truncate_echo(content_type.unwrap_or(""))
    ))
}

impl<'a> Request<'a> {
    /// Read the envelope of `body` as `protocol` says, checking its content type as it requires.
    pub fn parse(protocol: Protocol, body: &'a [u8], transport: Transport<'_>) -> Result<Self, RequestError> {
        let content_type = transport.content_type;
        let (mime, params) = media_type(content_type.unwrap_or(""));
        let csv = match protocol {
            Protocol::ApiMl if !is_json(&mime) => return Err(unsupported(content_type, "application/json")),
            Protocol::Mlflow => {
                // MLflow's rules: UTF-8 only, no parameter but charset, JSON or CSV.
                if let Some((_, charset)) = params.iter().find(|(k, _)| k == "charset") {
                    if charset != "utf-8" {
                        return Err(RequestError::UnsupportedMediaType(
                            "The scoring server only supports UTF-8".into(),
                        ));
                    }
                }
                if let Some((k, _)) = params.iter().find(|(k, _)| k != "charset") {
                    return Err(RequestError::UnsupportedMediaType(format!(
                        "Unrecognized content type parameters: {}",
                        truncate_echo(k)
                    )));
                }
                match mime.as_str() {
                    "text/csv" => true,
                    m if is_json(m) => false,
                    _ => return Err(unsupported(content_type, "application/json or text/csv")),
                }
            }
            _ => false,
        };
        // The Open Inference Protocol's binary extension: a JSON header, then tensor bytes.
        let (json, tail) = match (protocol, transport.json_header_length) {
            (Protocol::OipV2, Some(n)) if n <= body.len() => body.split_at(n),
            (Protocol::OipV2, Some(n)) => {
                return Err(RequestError::Invalid(format!(
                    "Inference-Header-Content-Length {n} exceeds the body's {} bytes",
                    body.len()
                )))
            }
            _ => (body, &body[body.len()..]),
        };
        let text = std::str::from_utf8(json).map_err(|e| RequestError::Malformed {
            format: if csv { "CSV" } else { "JSON" },
            message: e.to_string(),
        })?;
        if csv {
            return Ok(Self::new(protocol, Cow::Borrowed(text), tail, Parsed::Csv(CsvColumns::Header)));
        }
        let envelope = |text: &str| -> Result<Parsed, RequestError> {
            Ok(match protocol {
                Protocol::ApiMl => Parsed::Rows(api_ml::parse(text)?),
                Protocol::KServeV1 => Parsed::Rows(api_ml::parse_v1(text)?),
                Protocol::OipV2 => Parsed::Oip(oip::parse(text, tail)?),
                Protocol::Mlflow => Parsed::Mlflow(mlflow::parse(text)?),
            })
        };
        let request = match envelope(text) {
            Ok(parsed) => Self::new(protocol, Cow::Borrowed(text), tail, parsed),
            // Python clients write NaN / Infinity: read them as missing / non-finite.
            Err(e @ RequestError::Malformed { .. }) => match json_compat::strict_json(json) {
                Some(strict) => {
                    let text = String::from_utf8(strict).map_err(|_| e.clone())?;
                    let parsed = envelope(&text)?;
                    Self::new(protocol, Cow::Owned(text), tail, parsed)
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        };
        request.with_explain()
    }

    fn new(protocol: Protocol, text: Cow<'a, str>, tail: &'a [u8], parsed: Parsed) -> Self {
        Self { protocol, text, tail, parsed, explain: None, explain_route: false }
    }

    /// Read the body's `explain` option.
    fn with_explain(mut self) -> Result<Self, RequestError> {
        if let Parsed::Rows(env) = &self.parsed {
            if let Some(span) = env.explain {
                self.explain = explain::Ask::parse(span.get(&self.text))?;
            }
        }
        Ok(self)
    }

    /// Explain every row (KServe V1's `:explain`): `{"predictions", "explanations"}`.
    pub fn explain_route(mut self) -> Self {
        self.explain.get_or_insert_with(explain::Ask::default_options);
        self.explain_route = true;
        self
    }

    /// CSV text as a request (the CLI's `--input` and `--features`, the page's pasted CSV).
    pub fn csv(text: &'a str, columns: CsvColumns) -> Self {
        Self::new(Protocol::ApiMl, Cow::Borrowed(text), &[], Parsed::Csv(columns))
    }

    /// Bare JSON rows as a request (the JS API hands rows over as JSON text).
    pub fn json_rows(text: &'a str, form: JsonRows) -> Self {
        Self::new(Protocol::ApiMl, Cow::Borrowed(text), &[], Parsed::Json(form))
    }

    /// The protocol the request speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The model the body names (`/api/ml/predict`'s `model_id`), if any.
    pub fn model_id(&self) -> Option<&str> {
        match &self.parsed {
            Parsed::Rows(env) => env.model_id.as_deref(),
            Parsed::Csv(_) | Parsed::Json(_) | Parsed::Oip(_) | Parsed::Mlflow(_) => None,
        }
    }

    /// Bind the request's rows to `model`'s preprocessing.
    pub fn rows(&self, model: &Model, limits: &Limits) -> Result<Rows, RequestError> {
        let mut b = bind::Binder::new(model.preprocessor(), limits.max_rows);
        self.bind(&mut b)?;
        Ok(b.finish())
    }

    /// Bind into `b`; returns the answer's shape.
    fn bind(&self, b: &mut bind::Binder<'_>) -> Result<api_ml::Shape, RequestError> {
        if self.protocol == Protocol::Mlflow {
            // As MLflow's schema enforcement: a model's inputs are all required.
            b.require_all();
        }
        match &self.parsed {
            Parsed::Rows(env) => api_ml::bind(b, &self.text, env.rows),
            Parsed::Mlflow(rows) => {
                mlflow::bind(b, &self.text, *rows)?;
                Ok(api_ml::Shape::Instances)
            }
            Parsed::Oip(_) => {
                Err(RequestError::NotImplemented("Open Inference Protocol rows are bound by `answer`".into()))
            }
            Parsed::Csv(columns) => {
                csv::bind_csv(b, self.text.as_bytes(), *columns)?;
                Ok(api_ml::Shape::Instances)
            }
            Parsed::Json(JsonRows::Row) => {
                bind::bind_row(b, &self.text)?;
                Ok(api_ml::Shape::Single)
            }
            Parsed::Json(JsonRows::Records) => {
                b.read(&self.text, |b, de| {
                    serde::de::DeserializeSeed::deserialize(
                        bind::RowsSeed { b, form: bind::RowForm::Records, name: "records" },
                        de,
                    )
                })?;
                Ok(api_ml::Shape::Batch)
            }
        }
    }

    /// Predict every row with `model` and encode the protocol's answer.
    pub fn answer(&self, model: &Model, limits: &Limits) -> Result<Reply, RequestError> {
        self.answer_unless(model, limits, || false)
    }

    /// As [`Request::answer`], but explanations stop before their next row once `cancelled()`
    /// says so ([`RequestError::Cancelled`]): a server's client that has gone, so a disconnect
    /// does not leave seconds of work running for nobody. (Generic, so `answer`'s `|| false`
    /// compiles the check away in wasm.)
    pub fn answer_unless(
        &self,
        model: &Model,
        limits: &Limits,
        cancelled: impl Fn() -> bool,
    ) -> Result<Reply, RequestError> {
        if let Parsed::Oip(env) = &self.parsed {
            let (body, header, rows) = oip::answer(env, &self.text, self.tail, model, limits.max_rows)?;
            let content_type = if header.is_some() { "application/octet-stream" } else { JSON };
            return Ok(Reply { status: 200, content_type, body, json_header_length: header, rows });
        }
        let mut b = bind::Binder::new(model.preprocessor(), limits.max_rows);
        let shape = self.bind(&mut b)?;
        let rows = b.finish();
        let preds = model.predictions(&rows.x, rows.rows);
        let explanations = match &self.explain {
            Some(ask) => {
                if rows.rows > limits.max_explain_rows {
                    return Err(RequestError::TooManyRows { limit: limits.max_explain_rows });
                }
                let opts = ask.options(model, limits.max_exact_features)?;
                let cost = model.explain_cost(&opts).saturating_mul(rows.rows as u64);
                if cost > limits.max_explain_evals {
                    return Err(RequestError::TooCostly { cost, limit: limits.max_explain_evals });
                }
                let n = model.num_features();
                let mut explained = Vec::with_capacity(rows.rows);
                for r in 0..rows.rows {
                    if cancelled() {
                        return Err(RequestError::Cancelled);
                    }
                    explained.push(model.explain(&rows.x[r * n..(r + 1) * n], &opts));
                }
                explained
            }
            None => Vec::new(),
        };
        let json: Vec<explain::Json<'_>> =
            explanations.iter().map(|explanation| explain::Json { explanation, model }).collect();
        let dyns: Vec<&dyn encode::WriteJson> = json.iter().map(|j| j as &dyn encode::WriteJson).collect();
        let each = (!dyns.is_empty() && !self.explain_route).then_some(dyns.as_slice());
        let body = match (self.protocol, shape) {
            _ if self.explain_route => encode::predictions_and_explanations(&preds, &dyns),
            (Protocol::ApiMl, api_ml::Shape::Single) => {
                let mut out = Vec::with_capacity(160);
                encode::prediction_into(&mut out, Some(model.id()), &preds[0], each.and_then(|e| e.first().copied()));
                out
            }
            (Protocol::ApiMl, _) => encode::batch(Some(model.id()), &preds, each),
            _ => encode::batch(None, &preds, each),
        };
        Ok(Reply { status: 200, content_type: JSON, body, json_header_length: None, rows: rows.rows })
    }

    /// Explanations of every row, without answering (the CLI's `--explain`, the JS API's `explain`).
    pub fn explain(
        &self,
        model: &Model,
        options: &crate::explain::Options,
    ) -> Result<Vec<crate::explain::Explanation>, RequestError> {
        let rows = self.rows(model, &Limits::NONE)?;
        let n = model.num_features();
        Ok((0..rows.rows).map(|r| model.explain(&rows.x[r * n..(r + 1) * n], options)).collect())
    }
}

impl RequestError {
    /// The HTTP status of this error in `protocol`'s REST binding.
    pub fn status(&self, protocol: Protocol) -> u16 {
        match (protocol, self) {
            (_, Self::UnsupportedMediaType(_)) => 415,
            (Protocol::ApiMl, Self::Invalid(_)) => 422,
            // Every protocol: the server's documented answer to a request past its size limits.
            (_, Self::TooManyRows { .. } | Self::TooCostly { .. }) => 413,
            (Protocol::ApiMl, Self::NotImplemented(_)) => 501,
            (_, Self::Cancelled) => 503,
            _ => 400,
        }
    }

    /// The protocol's error answer.
    pub fn reply(&self, protocol: Protocol) -> Reply {
        let status = self.status(protocol);
        error_reply(protocol, status, self.kind(), &self.to_string(), self.row(), self.column())
    }
}

/// An error answer in `protocol`'s shape, for errors the transport raises itself (unknown
/// model, bad key, body too large) as well as the core's.
pub fn error_reply(
    protocol: Protocol,
    status: u16,
    kind: &str,
    message: &str,
    row: Option<usize>,
    column: Option<&str>,
) -> Reply {
    // MLflow answers media-type errors in plain text.
    if protocol == Protocol::Mlflow && status == 415 {
        let body = message.as_bytes().to_vec();
        return Reply { status, content_type: "text/plain", body, json_header_length: None, rows: 0 };
    }
    let body = encode::error(protocol, status, kind, message, row, column);
    Reply { status, content_type: JSON, body, json_header_length: None, rows: 0 }
}

/// Parse, answer, and turn any error into the protocol's error answer.
pub fn handle(model: &Model, protocol: Protocol, body: &[u8], transport: Transport<'_>, limits: &Limits) -> Reply {
    Request::parse(protocol, body, transport)
        .and_then(|r| r.answer(model, limits))
        .unwrap_or_else(|e| e.reply(protocol))
}
