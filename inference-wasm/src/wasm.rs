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
    pub fn from_bundle(bytes: &[u8], options: Option<Object>) -> Result<WasmModel, JsValue> {
        let verify_hash = options
            .and_then(|o| Reflect::get(&o, &JsValue::from_str("verifyHash")).ok())
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        CoreModel::from_bytes_with(bytes, LoadOptions { verify_hash }).map(WasmModel::new).map_err(bundle_err)
    }

    /// Load weights plus the `metadata.json` text.
    #[wasm_bindgen(js_name = fromParts)]
    pub fn from_parts(weights: &[u8], metadata_json: &str) -> Result<WasmModel, JsValue> {
        CoreModel::from_parts(weights, metadata_json).map(WasmModel::new).map_err(bundle_err)
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
    pub fn predict_batch(&self, features: &[f64], n_rows: usize) -> Result<Vec<f32>, JsValue> {
        let x: Vec<f32> = features.iter().map(|&v| v as f32).collect();
        self.inner.predict_dense(x, n_rows).map_err(|e| predict_err(e, None))
    }

    /// Answer a whole request body (a JSON string, bytes, or a plain object) in `protocol`
    /// (`api_ml` by default, or `kserve_v1`, `oip_v2`, `mlflow`): exactly what the HTTP API
    /// answers, as a parsed object. Errors throw, with `kind`, `row`, `column` and `status`.
    #[wasm_bindgen(js_name = predictRequest)]
    pub fn predict_request(&self, body: &JsValue, protocol_name: Option<String>) -> Result<JsValue, JsValue> {
        let protocol = protocol(protocol_name)?;
        let bytes = body_bytes(body);
        let reply = Request::parse(protocol, &bytes, Transport::JSON)
            .and_then(|r| r.answer(&self.inner, &Limits::NONE))
            .map_err(|e| js_error(&e.to_string(), e.kind(), e.row(), e.column(), e.status(protocol)))?;
        let text = String::from_utf8(reply.body).unwrap_or_default();
        js_sys::JSON::parse(&text)
    }

    /// Transport-level answer for edge workers: `{status, contentType, body: Uint8Array,
    /// jsonHeaderLength}`; request errors are answered in the protocol's error shape, never
    /// thrown. `jsonHeaderLength` is the request's `Inference-Header-Content-Length`.
    pub fn handle(
        &self,
        protocol_name: &str,
        body: &[u8],
        content_type: Option<String>,
        max_rows: Option<usize>,
        json_header_length: Option<usize>,
    ) -> Result<Object, JsValue> {
        let protocol = protocol(Some(protocol_name.to_owned()))?;
        let limits = Limits { max_rows: max_rows.unwrap_or(request::DEFAULT_MAX_ROWS), ..Limits::default() };
        let transport = Transport { content_type: content_type.as_deref(), json_header_length };
        let reply = request::handle(&self.inner, protocol, body, transport, &limits);
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
    pub fn predict_csv(&self, text: &str) -> Result<Array, JsValue> {
        let rows =
            Request::csv(text, CsvColumns::Header).rows(&self.inner, &Limits::NONE).map_err(|e| request_err(&e))?;
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
pub fn error_reply(protocol_name: &str, status: u16, kind: &str, message: &str) -> Result<Object, JsValue> {
    let protocol = protocol(Some(protocol_name.to_owned()))?;
    Ok(reply_object(request::error_reply(protocol, status, kind, message, None, None)))
}
