//! wasm-bindgen bindings (wasm32 only): the JS `Model` class over the core [`crate::Model`].
//! Errors become JS `Error`s with the same messages as native.

use std::cell::RefCell;

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::error::PredictError;
use crate::model::{Model as CoreModel, Prediction};
use crate::value::{f32_as_json_f64, Value, ValueRef};

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

fn js_err(e: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

/// A JS `Error` with the native message and the API's error kind in `error.kind`.
fn predict_err(e: &PredictError, row: Option<usize>) -> JsValue {
    let msg = match row {
        Some(i) => format!("row {i}: {e}"),
        None => e.to_string(),
    };
    let err = js_sys::Error::new(&msg);
    set(&err, "kind", &JsValue::from_str(e.kind()));
    err.into()
}

/// Read one JS feature value as the HTTP API reads JSON: number, string, bool (as text),
/// null/undefined (missing).
fn read_value(v: &JsValue, column: &str) -> Result<Value, PredictError> {
    if let Some(x) = v.as_f64() {
        Ok(Value::Number(x))
    } else if let Some(s) = v.as_string() {
        Ok(Value::Text(s))
    } else if let Some(b) = v.as_bool() {
        Ok(Value::Text(b.to_string()))
    } else if v.is_null() || v.is_undefined() {
        Ok(Value::Missing)
    } else {
        let shown = js_sys::JSON::stringify(v).ok().and_then(|s| s.as_string()).unwrap_or_else(|| "an object".into());
        Err(PredictError::InvalidValue { column: column.to_owned(), value: shown })
    }
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
}

fn set(obj: &Object, key: &str, value: &JsValue) {
    // Reflect::set on a fresh plain object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// The `{predicted_class, …}` / `{predicted_value}` object with the HTTP API's field names and
/// numbers (each probability as the API's JSON prints it; see [`f32_as_json_f64`]).
fn to_js(p: &Prediction, labels: &[JsValue]) -> JsValue {
    match p {
        Prediction::Class { predicted_class, probabilities, .. } => {
            let probabilities: Vec<f64> = probabilities.iter().map(|&v| f32_as_json_f64(v)).collect();
            class_prediction(*predicted_class, &labels[*predicted_class], &probabilities)
        }
        Prediction::Value { predicted_value } => value_prediction(*predicted_value),
    }
}

#[wasm_bindgen(js_class = Model)]
impl WasmModel {
    /// Load a self-contained `model.safetensors`.
    #[wasm_bindgen(js_name = fromBundle)]
    pub fn from_bundle(bytes: &[u8]) -> Result<WasmModel, JsValue> {
        CoreModel::from_bytes(bytes).map(WasmModel::new).map_err(js_err)
    }

    /// Load weights plus the `metadata.json` text.
    #[wasm_bindgen(js_name = fromParts)]
    pub fn from_parts(weights: &[u8], metadata_json: &str) -> Result<WasmModel, JsValue> {
        CoreModel::from_parts(weights, metadata_json).map(WasmModel::new).map_err(js_err)
    }

    /// Predict one row: an array of numbers, strings and nulls in `featureNames` order.
    pub fn predict(&self, features: &Array) -> Result<JsValue, JsValue> {
        let names = self.inner.feature_names();
        // Busy only if a getter on `features` re-entered `predict`: then read cell by cell.
        let numeric = self.row.try_borrow_mut().ok().and_then(|mut numbers| {
            (read_numeric_row(features, &mut numbers) == -1)
                .then(|| self.inner.predict(numbers.iter().map(|&x| ValueRef::Number(x))))
        });
        if let Some(p) = numeric {
            return Ok(to_js(&p.map_err(|e| predict_err(&e, None))?, &self.labels));
        }
        let len = features.length() as usize;
        if len != names.len() {
            return Err(predict_err(&PredictError::WrongFeatureCount { expected: names.len(), got: len }, None));
        }
        let row = names
            .iter()
            .enumerate()
            .map(|(i, name)| read_value(&features.get(i as u32), name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| predict_err(&e, None))?;
        let p = self.inner.predict(row.iter().map(Value::as_ref)).map_err(|e| predict_err(&e, None))?;
        Ok(to_js(&p, &self.labels))
    }

    /// Predict rows given as objects keyed by column name; returns an array of predictions.
    #[wasm_bindgen(js_name = predictRecords)]
    pub fn predict_records(&self, records: &Array) -> Result<Array, JsValue> {
        let names = self.inner.feature_names();
        let out = Array::new();
        for (i, rec) in records.iter().enumerate() {
            if !rec.is_object() {
                return Err(predict_err(
                    &PredictError::BadRequest("expected an object keyed by column name".into()),
                    Some(i),
                ));
            }
            let row = names
                .iter()
                .map(|name| {
                    let v = Reflect::get(&rec, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED);
                    read_value(&v, name)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| predict_err(&e, Some(i)))?;
            let p = self.inner.predict(row.iter().map(Value::as_ref)).map_err(|e| predict_err(&e, Some(i)))?;
            out.push(&to_js(&p, &self.labels));
        }
        Ok(out)
    }

    /// Fast path for numeric-only models: `nRows` rows, row-major, NaN = missing.
    /// Returns probabilities (row-major) or predicted values.
    #[wasm_bindgen(js_name = predictBatch)]
    pub fn predict_batch(&self, features: &[f64], n_rows: usize) -> Result<Vec<f32>, JsValue> {
        let x: Vec<f32> = features.iter().map(|&v| v as f32).collect();
        self.inner.predict_dense(x, n_rows).map_err(|e| predict_err(&e, None))
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
}
