//! A loaded model: preprocessing + folded network + output head (softmax or target unscaling).

use std::cell::RefCell;

use serde::Serialize;

use crate::bundle::{load_bytes, load_parts, Verified};
use crate::error::{BundleError, PredictError};
use crate::forward::{softmax, Network};
use crate::metadata::{ModelSpec, TaskType};
use crate::preprocess::Preprocessor;
use crate::value::ValueRef;

/// One prediction, serialised with the HTTP API's field names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Prediction {
    /// Classification result.
    Class {
        /// Class index.
        predicted_class: usize,
        /// The class's original label.
        predicted_label: String,
        /// Probability of the predicted class.
        confidence: f32,
        /// Probability of every class, in class-index order.
        probabilities: Vec<f32>,
    },
    /// Regression result, in the target's units.
    Value {
        /// Predicted value.
        predicted_value: f64,
    },
}

/// A bundle ready to predict.
#[derive(Debug, Clone)]
pub struct Model {
    spec: ModelSpec,
    /// The bundle's metadata JSON as stored, training record included.
    metadata_json: String,
    preprocessor: Preprocessor,
    network: Network,
}

thread_local! {
    // Per-thread scratch so single-row prediction allocates nothing but its output.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl Model {
    /// Build from verified parts (only the bundle readers make a [`Verified`]).
    fn new(verified: Verified, metadata_json: String) -> Self {
        let Verified { spec, tensors } = verified;
        let preprocessor = Preprocessor::new(&spec.preprocessing);
        let network = Network::new(&spec.architecture, &tensors);
        Self { spec, metadata_json, preprocessor, network }
    }

    /// Load a self-contained `model.safetensors`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BundleError> {
        load_bytes(bytes).map(|(verified, json)| Self::new(verified, json))
    }

    /// Load weights plus `metadata.json`.
    pub fn from_parts(weights: &[u8], metadata_json: &str) -> Result<Self, BundleError> {
        load_parts(weights, metadata_json).map(|verified| Self::new(verified, metadata_json.to_owned()))
    }

    /// What prediction uses of the metadata (id, task, architecture, preprocessing, classes).
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The full metadata JSON as stored in the bundle; parse it into [`crate::Metadata`] for
    /// the training record (it is not parsed at load, so loading stays fast).
    pub fn metadata_json(&self) -> &str {
        &self.metadata_json
    }

    /// The compiled preprocessing.
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    /// Feature names in input order.
    pub fn feature_names(&self) -> &[String] {
        self.preprocessor.feature_names()
    }

    /// Number of features a positional row must have.
    pub fn num_features(&self) -> usize {
        self.preprocessor.num_features()
    }

    /// Task type.
    pub fn task_type(&self) -> TaskType {
        self.spec.task_type
    }

    /// Floats per row of [`Model::predict_dense`] output: classes, or 1.
    pub fn output_width(&self) -> usize {
        self.network.output_dim()
    }

    /// Predict one positional row of raw values.
    pub fn predict<'v>(&self, row: impl ExactSizeIterator<Item = ValueRef<'v>>) -> Result<Prediction, PredictError> {
        self.predict_with(|p, x| p.transform_row(row, x))
    }

    /// Predict one row given by column name (absent columns are missing, extra ones ignored).
    pub fn predict_record<'v>(
        &self,
        lookup: impl Fn(&str) -> Option<ValueRef<'v>>,
    ) -> Result<Prediction, PredictError> {
        self.predict_with(|p, x| p.transform_record(lookup, x))
    }

    /// Predict many positional rows; stops at the first bad row, naming its index.
    pub fn predict_batch<'v, R>(
        &self,
        rows: impl IntoIterator<Item = R>,
    ) -> Result<Vec<Prediction>, (usize, PredictError)>
    where
        R: IntoIterator<Item = ValueRef<'v>>,
        R::IntoIter: ExactSizeIterator,
    {
        let n = self.num_features();
        let mut x = Vec::new();
        let mut count = 0;
        for (i, row) in rows.into_iter().enumerate() {
            x.resize((i + 1) * n, 0.0);
            self.preprocessor.transform_row(row.into_iter(), &mut x[i * n..]).map_err(|e| (i, e))?;
            count += 1;
        }
        Ok(self.finish_batch(&x, count))
    }

    /// Numeric-only fast path: `x` holds `rows` raw rows (NaN = missing); writes probabilities
    /// (classification) or values (regression) into a new row-major buffer.
    pub fn predict_dense(&self, mut x: Vec<f32>, rows: usize) -> Result<Vec<f32>, PredictError> {
        let n = self.num_features();
        let len = x.len();
        let shape_error = || PredictError::BatchShape { len, rows, features: n };
        // Checked: on wasm32 a huge `rows` would wrap usize.
        if rows.checked_mul(n) != Some(len) {
            return Err(shape_error());
        }
        if !self.preprocessor.is_numeric_only() {
            return Err(PredictError::BadRequest(
                "predictBatch takes numbers only, and this model has categorical features: use predict or predictRecords".into(),
            ));
        }
        self.preprocessor.transform_numeric_in_place(&mut x)?;
        let width = self.output_width();
        let mut out = vec![0f32; rows.checked_mul(width).ok_or_else(shape_error)?];
        let mut scratch = vec![0f32; self.network.scratch_len(rows)];
        self.network.forward(&x, rows, &mut out, &mut scratch);
        match self.spec.task_type {
            TaskType::Classification => out.chunks_exact_mut(width).for_each(softmax),
            TaskType::Regression => out.iter_mut().for_each(|v| *v = self.unscale(*v) as f32),
        }
        Ok(out)
    }

    fn predict_with(
        &self,
        fill: impl FnOnce(&Preprocessor, &mut [f32]) -> Result<(), PredictError>,
    ) -> Result<Prediction, PredictError> {
        let n = self.num_features();
        let mut logits = vec![0f32; self.output_width()];
        SCRATCH.with_borrow_mut(|scratch| {
            let need = n + self.network.scratch_len(1);
            if scratch.len() < need {
                scratch.resize(need, 0.0);
            }
            let (x, rest) = scratch.split_at_mut(n);
            fill(&self.preprocessor, x)?;
            self.network.forward(x, 1, &mut logits, rest);
            Ok(())
        })?;
        Ok(self.head(logits))
    }

    fn finish_batch(&self, x: &[f32], rows: usize) -> Vec<Prediction> {
        let width = self.output_width();
        let mut out = vec![0f32; rows * width];
        let mut scratch = vec![0f32; self.network.scratch_len(rows)];
        self.network.forward(x, rows, &mut out, &mut scratch);
        out.chunks_exact(width).map(|o| self.head(o.to_vec())).collect()
    }

    fn unscale(&self, v: f32) -> f64 {
        let t = self.spec.preprocessing.target_scaler;
        t.map_or(f64::from(v), |t| f64::from(v) * t.scale + t.mean)
    }

    /// Turn raw network outputs into a prediction.
    fn head(&self, mut out: Vec<f32>) -> Prediction {
        match self.spec.task_type {
            TaskType::Regression => Prediction::Value { predicted_value: self.unscale(out[0]) },
            TaskType::Classification => {
                softmax(&mut out);
                let (best, &confidence) =
                    out.iter().enumerate().fold(
                        (0, &f32::NEG_INFINITY),
                        |acc, (i, p)| {
                            if *p > *acc.1 {
                                (i, p)
                            } else {
                                acc
                            }
                        },
                    );
                let predicted_label = self.spec.classes.as_ref().map_or_else(|| best.to_string(), |c| c[best].clone());
                Prediction::Class { predicted_class: best, predicted_label, confidence, probabilities: out }
            }
        }
    }
}
