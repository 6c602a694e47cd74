//! wasm-bindgen bindings (wasm32 only): the JS `Model` class over the core [`crate::Model`].
//! Errors become JS `Error`s with the same messages as native.

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::error::PredictError;
use crate::model::{Model as CoreModel, Prediction};
use crate::value::Value;

/// A loaded bundle, ready to predict.
#[wasm_bindgen(js_name = Model)]
pub struct WasmModel {
    inner: CoreModel,
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

fn set(obj: &Object, key: &str, value: &JsValue) {
    // Reflect::set on a fresh plain object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

/// The `{predicted_class, …}` / `{predicted_value}` object, made by one `JSON.parse` of the
/// serialised prediction: one boundary crossing instead of a dozen property sets, and numbers
/// print as the HTTP API prints them (shortest f32 decimals).
fn to_js(p: &Prediction) -> Result<JsValue, JsValue> {
    let json = serde_json::to_string(p).map_err(js_err)?;
    js_sys::JSON::parse(&json)
}

#[wasm_bindgen(js_class = Model)]
impl WasmModel {
    /// Load a self-contained `model.safetensors`.
    #[wasm_bindgen(js_name = fromBundle)]
    pub fn from_bundle(bytes: &[u8]) -> Result<WasmModel, JsValue> {
        CoreModel::from_bytes(bytes).map(|inner| WasmModel { inner }).map_err(js_err)
    }

    /// Load weights plus the `metadata.json` text.
    #[wasm_bindgen(js_name = fromParts)]
    pub fn from_parts(weights: &[u8], metadata_json: &str) -> Result<WasmModel, JsValue> {
        CoreModel::from_parts(weights, metadata_json).map(|inner| WasmModel { inner }).map_err(js_err)
    }

    /// Predict one row: an array of numbers, strings and nulls in `featureNames` order.
    pub fn predict(&self, features: &Array) -> Result<JsValue, JsValue> {
        let names = self.inner.feature_names();
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
        to_js(&p)
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
            out.push(&to_js(&p)?);
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
        let json = serde_json::to_string(self.inner.metadata()).map_err(js_err)?;
        js_sys::JSON::parse(&json).map_err(|_| js_err("metadata is not valid JSON"))
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
