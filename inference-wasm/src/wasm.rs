//! wasm-bindgen bindings (wasm32 only): the JS `Model` class over the core [`crate::Model`]
//! and its request layer. Errors become JS `Error`s with the native message and the fields
//! `kind`, `row`, `column` and `status`.

use std::cell::RefCell;

use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::bundle::LoadOptions;
use crate::error::{BundleError, PredictError, RequestError};
use crate::model::{Model as CoreModel, Prediction};
use crate::request::{self, CsvColumns, JsonRows, Limits, Protocol, Request, Transport};
use crate::value::{f32_as_json_f64, ValueRef};

/// A loaded bundle, ready to predict.
#[wasm_bindgen(js_name = Model)]
pub struct WasmModel {
    inner: CoreModel,
    /// Class labels as JS strings, made once (empty for regression).
    labels: Vec<JsValue>,
    /// The row buffer `predict` hands to JS, reused across calls.
    row: RefCell<Vec<f64>>,
}

impl WasmModel {
    fn new(inner: CoreModel) -> Self {
        let labels = inner.spec().classes.iter().flatten().map(|c| JsValue::from_str(c)).collect();
        let row = RefCell::new(vec![0.0; inner.num_features()]);
        Self { inner, labels, row }
    }
}

fn set(obj: &Object, key: &str, value: &JsValue) {
    // Reflect::set on a fresh plain object or Error cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// A JS `Error` with `message` and the given fields.
fn js_error(message: &str, kind: &str, row: Option<usize>, column: Option<&str>, status: u16) -> JsValue {
    let err = js_sys::Error::new(message);
    set(&err, "kind", &JsValue::from_str(kind));
    set(&err, "row", &row.map_or(JsValue::NULL, |r| JsValue::from_f64(r as f64)));
    set(&err, "column", &column.map_or(JsValue::NULL, JsValue::from_str));
    set(&err, "status", &JsValue::from_f64(f64::from(status)));
    err.into()
}

fn bundle_err(e: BundleError) -> JsValue {
    js_error(&e.to_string(), e.kind(), None, None, 500)
}

fn request_err(e: &RequestError) -> JsValue {
    js_error(&e.to_string(), e.kind(), e.row(), e.column(), e.status(Protocol::ApiMl))
}

fn predict_err(e: PredictError, row: Option<usize>) -> JsValue {
    request_err(&RequestError::Value { row, source: e })
}

#[wasm_bindgen(module = "/js/boundary.js")]
extern "C" {
    /// -1 when `out` now holds the row (NaN = missing); otherwise read cell by cell.
    #[wasm_bindgen(js_name = readNumericRow)]
    fn read_numeric_row(features: &Array, out: &mut [f64]) -> i32;
    #[wasm_bindgen(js_name = classPrediction)]
    fn class_prediction(predicted_class: usize, label: &JsValue, probabilities: &[f64]) -> JsValue;
    #[wasm_bindgen(js_name = valuePrediction)]
    fn value_prediction(value: f64) -> JsValue;
    /// Bytes of a request body given as a string, bytes or a plain object (JSON-stringified).
    #[wasm_bindgen(js_name = bodyBytes)]
    fn body_bytes(body: &JsValue) -> Vec<u8>;
    /// `predictBatch`'s cells as a Float64Array, or the index of the first non-number (-1: no array).
    #[wasm_bindgen(js_name = batchValues)]
    fn batch_values(features: &JsValue) -> JsValue;
}

/// A caller's argument of the wrong JS type: a typed error where wasm-bindgen's glue would
/// trap or silently read garbage.
fn arg_error(what: &str, expected: &str) -> JsValue {
    js_error(&format!("{what} must be {expected}"), "invalid_argument", None, None, 400)
}

/// Bytes given as a Uint8Array (a Node Buffer too), another ArrayBuffer view or an ArrayBuffer.
fn bytes_arg(v: &JsValue, what: &str) -> Result<Vec<u8>, JsValue> {
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        return Ok(a.to_vec());
    }
    if v.is_instance_of::<js_sys::ArrayBuffer>() || v.is_instance_of::<js_sys::SharedArrayBuffer>() {
        return Ok(Uint8Array::new(v).to_vec());
    }
    if js_sys::ArrayBuffer::is_view(v) {
        let field = |k: &str| Reflect::get(v, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
        let (offset, len) = (field("byteOffset").as_f64().unwrap_or(0.0), field("byteLength").as_f64().unwrap_or(0.0));
        return Ok(Uint8Array::new_with_byte_offset_and_length(&field("buffer"), offset as u32, len as u32).to_vec());
    }
    Err(arg_error(what, "a Uint8Array, an ArrayBuffer or an ArrayBuffer view"))
}

/// A string argument.
fn string_arg(v: &JsValue, what: &str) -> Result<String, JsValue> {
    v.as_string().ok_or_else(|| arg_error(what, "a string"))
}

/// A count argument: a non-negative integer (`Infinity`: no limit); `None` when absent.
fn count_arg(v: Option<f64>, what: &str) -> Result<Option<usize>, JsValue> {
    match v {
        None => Ok(None),
        Some(x) if x == f64::INFINITY => Ok(Some(usize::MAX)),
        Some(x) if x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64 => Ok(Some(x as usize)),
        Some(_) => Err(arg_error(what, "a non-negative integer (or Infinity)")),
    }
}

/// The `{predicted_class, …}` / `{predicted_value}` object with the HTTP API's field names and
/// numbers (each as the API's JSON prints it; see [`f32_as_json_f64`]).
fn to_js(p: &Prediction, labels: &[JsValue]) -> JsValue {
    match p {
        Prediction::Class { predicted_class, probabilities, .. } => {
            let probabilities: Vec<f64> = probabilities.iter().map(|&v| f32_as_json_f64(v)).collect();
            class_prediction(*predicted_class, &labels[*predicted_class], &probabilities)
        }
        Prediction::Value { predicted_value } => value_prediction(f32_as_json_f64(*predicted_value)),
    }
}

fn protocol(name: Option<String>) -> Result<Protocol, JsValue> {
    match name {
        None => Ok(Protocol::ApiMl),
        Some(n) => Protocol::from_name(&n).ok_or_else(|| {
            js_error(
                &format!("unknown protocol {n:?} (api_ml, kserve_v1, oip_v2, mlflow)"),
                "bad_request",
                None,
                None,
                400,
            )
        }),
    }
}

#[wasm_bindgen(js_class = Model)]
impl WasmModel {
    /// Load a self-contained `model.safetensors`. `options.verifyHash: false` skips the
    /// weights hash, for bytes already verified (e.g. fetched with Subresource Integrity).
    #[wasm_bindgen(js_name = fromBundle)]
    pub fn from_bundle(bytes: &JsValue, options: Option<Object>) -> Result<WasmModel, JsValue> {
        let bytes = bytes_arg(bytes, "fromBundle's bytes")?;
        let verify_hash = options
            .and_then(|o| Reflect::get(&o, &JsValue::from_str("verifyHash")).ok())
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        CoreModel::from_bytes_with(&bytes, LoadOptions { verify_hash }).map(WasmModel::new).map_err(bundle_err)
    }

    /// Load weights plus the `metadata.json` text.
    #[wasm_bindgen(js_name = fromParts)]
    pub fn from_parts(weights: &JsValue, metadata_json: &JsValue) -> Result<WasmModel, JsValue> {
        let weights = bytes_arg(weights, "fromParts' weights")?;
        let metadata = string_arg(metadata_json, "fromParts' metadata (the metadata.json text, not a parsed object)")?;
        CoreModel::from_parts(&weights, &metadata).map(WasmModel::new).map_err(bundle_err)
    }

    /// Predict one row: an array of numbers, strings and nulls in `featureNames` order.
    pub fn predict(&self, features: &Array) -> Result<JsValue, JsValue> {
        // Busy only if a getter on `features` re-entered `predict`: then take the JSON path.
        let numeric = self.row.try_borrow_mut().ok().and_then(|mut numbers| {
            (read_numeric_row(features, &mut numbers) == -1)
                .then(|| self.inner.predict(numbers.iter().map(|&x| ValueRef::Number(x))))
        });
        if let Some(p) = numeric {
            return Ok(to_js(&p.map_err(|e| predict_err(e, None))?, &self.labels));
        }
        // Mixed rows go through the request layer, as JSON text (one boundary crossing).
        let preds = self.json_rows(features, JsonRows::Row)?;
        Ok(preds.into_iter().next().map_or(JsValue::UNDEFINED, |p| to_js(&p, &self.labels)))
    }

    /// Predict rows given as objects keyed by column name; returns an array of predictions.
    #[wasm_bindgen(js_name = predictRecords)]
    pub fn predict_records(&self, records: &Array) -> Result<Array, JsValue> {
        let out = Array::new();
        for p in self.json_rows(records, JsonRows::Records)? {
            out.push(&to_js(&p, &self.labels));
        }
        Ok(out)
    }

    /// Fast path for numeric-only models: `nRows` rows, row-major, NaN = missing.
    /// Returns probabilities (row-major) or predicted values.
    #[wasm_bindgen(js_name = predictBatch)]
    pub fn predict_batch(&self, features: &JsValue, n_rows: f64) -> Result<Vec<f32>, JsValue> {
        let n_rows = count_arg(Some(n_rows), "predictBatch's nRows")?.unwrap_or(0);
        let values = batch_values(features);
        let values = match values.dyn_into::<js_sys::Float64Array>() {
            Ok(a) => a.to_vec(),
            Err(v) => {
                let i = v.as_f64().unwrap_or(-1.0);
                if i < 0.0 {
                    return Err(arg_error("predictBatch's features", "a Float64Array or an array of numbers"));
                }
                let (n, i) = (self.inner.num_features().max(1), i as usize);
                let column = self.inner.feature_names().get(i % n).cloned().unwrap_or_default();
                let e = PredictError::NotANumber { column, value: "a value that is not a number or null".into() };
                return Err(predict_err(e, Some(i / n)));
            }
        };
        let x: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        self.inner.predict_dense(x, n_rows).map_err(|e| predict_err(e, None))
    }

    /// Answer a whole request body (a JSON string, bytes, or a plain object) in `protocol`
    /// (`api_ml` by default, or `kserve_v1`, `oip_v2`, `mlflow`): exactly what the HTTP API
    /// answers, as a parsed object. Errors throw, with `kind`, `row`, `column` and `status`.
    #[wasm_bindgen(js_name = predictRequest)]
    pub fn predict_request(&self, body: &JsValue, protocol_name: &JsValue) -> Result<JsValue, JsValue> {
        let name = match protocol_name.is_undefined() || protocol_name.is_null() {
            true => None,
            false => Some(string_arg(protocol_name, "predictRequest's protocol")?),
        };
        let protocol = protocol(name)?;
        let bytes = body_bytes(body);
        let reply = Request::parse(protocol, &bytes, Transport::JSON)
            .and_then(|r| r.answer(&self.inner, &Limits::NONE))
            .map_err(|e| js_error(&e.to_string(), e.kind(), e.row(), e.column(), e.status(protocol)))?;
        if reply.json_header_length.is_some() {
            return Err(js_error(
                "binary outputs (binary_data_output) are bytes, not an object: use handle(), which returns them",
                "not_implemented",
                None,
                None,
                501,
            ));
        }
        let text = String::from_utf8(reply.body).unwrap_or_default();
        js_sys::JSON::parse(&text)
    }

    /// Transport-level answer for edge workers: `{status, contentType, body: Uint8Array,
    /// jsonHeaderLength}`; request errors are answered in the protocol's error shape, never
    /// thrown. `jsonHeaderLength` is the request's `Inference-Header-Content-Length`.
    pub fn handle(
        &self,
        protocol_name: &JsValue,
        body: &JsValue,
        content_type: &JsValue,
        max_rows: Option<f64>,
        json_header_length: Option<f64>,
    ) -> Result<Object, JsValue> {
        let protocol = protocol(Some(string_arg(protocol_name, "handle's protocol")?))?;
        let body = match body.as_string() {
            Some(text) => text.into_bytes(),
            None => bytes_arg(body, "handle's body")?,
        };
        let content_type = match content_type.is_undefined() || content_type.is_null() {
            true => None,
            false => Some(string_arg(content_type, "handle's contentType")?),
        };
        let max_rows = count_arg(max_rows, "handle's maxRows")?.unwrap_or(request::DEFAULT_MAX_ROWS);
        let limits = Limits { max_rows, ..Limits::default() };
        let json_header_length = count_arg(json_header_length, "handle's jsonHeaderLength")?;
        let transport = Transport { content_type: content_type.as_deref(), json_header_length };
        let reply = request::handle(&self.inner, protocol, &body, transport, &limits);
        Ok(reply_object(reply))
    }

    /// The Open Inference Protocol's model metadata (`GET /v2/models/{m}`), as JSON bytes.
    #[wasm_bindgen(js_name = oipMetadata)]
    pub fn oip_metadata(&self) -> Vec<u8> {
        request::oip_model_metadata(&self.inner)
    }

    /// The model a `/api/ml/predict` body names (`model_id`), or `undefined`; throws on a
    /// malformed body.
    #[wasm_bindgen(js_name = modelIdOf)]
    pub fn model_id_of(body: &[u8], content_type: Option<String>) -> Result<Option<String>, JsValue> {
        let content_type = Some(content_type.as_deref().unwrap_or(request::JSON));
        Request::parse(Protocol::ApiMl, body, Transport::content_type(content_type))
            .map(|r| r.model_id().map(str::to_owned))
            .map_err(|e| request_err(&e))
    }

    /// Predict every row of CSV text whose header names the columns (matched by name); rows
    /// count from 0 in errors.
    #[wasm_bindgen(js_name = predictCsv)]
    pub fn predict_csv(&self, text: &JsValue) -> Result<Array, JsValue> {
        let text = string_arg(text, "predictCsv's text")?;
        let rows =
            Request::csv(&text, CsvColumns::Header).rows(&self.inner, &Limits::NONE).map_err(|e| request_err(&e))?;
        let out = Array::new();
        for p in self.inner.predictions(&rows.x, rows.rows) {
            out.push(&to_js(&p, &self.labels));
        }
        Ok(out)
    }

    /// Predictions for JS rows, read as the request layer reads JSON.
    fn json_rows(&self, rows: &JsValue, form: JsonRows) -> Result<Vec<Prediction>, JsValue> {
        let text = String::from_utf8(body_bytes(rows)).unwrap_or_default();
        let bound = Request::json_rows(&text, form).rows(&self.inner, &Limits::NONE).map_err(|e| request_err(&e))?;
        Ok(self.inner.predictions(&bound.x, bound.rows))
    }

    /// Explain one row (an array of values in `featureNames` order): Shapley values of the
    /// predicted class's probability (or the value), against the bundle's background set.
    /// `options`: `{classIndex, class: "all" | index | label, method: "auto" | "exact" |
    /// "permutation", permutations, seed}`. Returns the API's explanation object.
    pub fn explain(&self, row: &JsValue, options: Option<Object>) -> Result<JsValue, JsValue> {
        let get = |key: &str| {
            options.as_ref().and_then(|o| Reflect::get(o, &JsValue::from_str(key)).ok()).filter(|v| !v.is_undefined())
        };
        // The options as the request layer reads `explain` (one parser for every surface).
        let ask = Object::new();
        if let Some(c) = get("classIndex").or_else(|| get("class")) {
            set(&ask, "class", &c);
        }
        for key in ["method", "permutations", "seed"] {
            if let Some(v) = get(key) {
                set(&ask, key, &v);
            }
        }
        let body = Object::new();
        let data = Object::new();
        set(&data, "features", row);
        set(&body, "data", &data);
        set(&body, "explain", &ask);
        let bytes = body_bytes(&body);
        let reply = Request::parse(Protocol::ApiMl, &bytes, Transport::JSON)
            .and_then(|r| r.answer(&self.inner, &Limits::NONE))
            .map_err(|e| request_err(&e))?;
        let answer = js_sys::JSON::parse(&String::from_utf8(reply.body).unwrap_or_default())?;
        Reflect::get(&answer, &JsValue::from_str("explanation"))
    }

    /// The bundle metadata as a plain object.
    pub fn metadata(&self) -> Result<JsValue, JsValue> {
        // The stored text, verified at load: nothing to re-serialise.
        js_sys::JSON::parse(self.inner.metadata_json())
    }

    /// Feature names in input order.
    #[wasm_bindgen(getter, js_name = featureNames)]
    pub fn feature_names(&self) -> Vec<String> {
        self.inner.feature_names().to_vec()
    }

    /// Number of features a row must have.
    #[wasm_bindgen(getter, js_name = numFeatures)]
    pub fn num_features(&self) -> usize {
        self.inner.num_features()
    }

    /// `"classification"` or `"regression"`.
    #[wasm_bindgen(getter, js_name = taskType)]
    pub fn task_type(&self) -> String {
        self.inner.task_type().as_str().to_owned()
    }

    /// The model id stored in the bundle.
    #[wasm_bindgen(getter, js_name = modelId)]
    pub fn model_id(&self) -> String {
        self.inner.id().to_owned()
    }
}

/// A reply as `{status, contentType, body, jsonHeaderLength}`.
fn reply_object(reply: request::Reply) -> Object {
    let obj = Object::new();
    set(&obj, "status", &JsValue::from_f64(f64::from(reply.status)));
    set(&obj, "contentType", &JsValue::from_str(reply.content_type));
    set(&obj, "body", &Uint8Array::from(reply.body.as_slice()).into());
    set(&obj, "jsonHeaderLength", &reply.json_header_length.map_or(JsValue::NULL, |n| JsValue::from_f64(n as f64)));
    obj
}

/// A protocol's error answer for errors the host raises itself (unknown model, body too
/// large): `{status, contentType, body}` in that protocol's error shape.
#[wasm_bindgen(js_name = errorReply)]
pub fn error_reply(protocol_name: &JsValue, status: f64, kind: &JsValue, message: &JsValue) -> Result<Object, JsValue> {
    let protocol = protocol(Some(string_arg(protocol_name, "errorReply's protocol")?))?;
    if !(100.0..=599.0).contains(&status) || status.fract() != 0.0 {
        return Err(arg_error("errorReply's status", "an HTTP status code (100–599)"));
    }
    let (kind, message) = (string_arg(kind, "errorReply's kind")?, string_arg(message, "errorReply's message")?);
    Ok(reply_object(request::error_reply(protocol, status as u16, &kind, &message, None, None)))
}
