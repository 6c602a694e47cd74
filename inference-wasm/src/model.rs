//! A loaded model: preprocessing + folded network + output head (softmax or target unscaling).

use std::cell::RefCell;

use serde::Serialize;

use crate::bundle::{load_bytes, load_parts, LoadOptions, Verified, BACKGROUND_TENSOR};
use crate::error::{BundleError, PredictError};
use crate::forward::{softmax, Network};
use crate::preprocess::Preprocessor;
use crate::spec::{ModelSpec, TaskType};
use crate::value::ValueRef;

/// One prediction, serialised with the HTTP API's field names. Every number is an f32, and
/// every surface prints it as the shortest decimal that reads back as the same f32.
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
        predicted_value: f32,
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
    /// Explanation background, `rows × input_dim` preprocessed values (format 2).
    background: Option<Vec<f32>>,
}

thread_local! {
    // Per-thread scratch so single-row prediction allocates nothing but its output.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl Model {
    /// Build from verified parts (only the bundle readers make a [`Verified`]).
    fn new(verified: Verified, metadata_json: String) -> Self {
        let Verified { spec, mut tensors } = verified;
        let background = tensors.remove(BACKGROUND_TENSOR).map(|t| t.data);
        let preprocessor = Preprocessor::new(&spec.preprocessing);
        let network = Network::new(&spec.architecture, &tensors);
        Self { spec, metadata_json, preprocessor, network, background }
    }

    /// Load a self-contained `model.safetensors`, verifying everything.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BundleError> {
        Self::from_bytes_with(bytes, LoadOptions::default())
    }

    /// Load a self-contained `model.safetensors` with the given checks.
    pub fn from_bytes_with(bytes: &[u8], opts: LoadOptions) -> Result<Self, BundleError> {
        load_bytes(bytes, opts).map(|(verified, json)| Self::new(verified, json))
    }

    /// Load weights plus `metadata.json`.
    pub fn from_parts(weights: &[u8], metadata_json: &str) -> Result<Self, BundleError> {
        load_parts(weights, metadata_json, LoadOptions::default())
            .map(|verified| Self::new(verified, metadata_json.to_owned()))
    }

    /// What prediction uses of the metadata (id, task, architecture, preprocessing, classes).
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The model id stored in the bundle.
    pub fn id(&self) -> &str {
        &self.spec.model_id
    }

    /// The full metadata JSON as stored in the bundle; with feature `train`, parse it into
    /// `Metadata` for the training record (it is not parsed at load, so loading stays fast).
    pub fn metadata_json(&self) -> &str {
        &self.metadata_json
    }

    /// The folded network.
    pub fn network(&self) -> &Network {
        &self.network
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

    /// Class labels (classification).
    pub fn classes(&self) -> Option<&[String]> {
        self.spec.classes.as_deref()
    }

    /// Floats per row of [`Model::outputs`]: classes, or 1.
    pub fn output_width(&self) -> usize {
        self.network.output_dim()
    }

    /// The stored explanation background (`rows × num_features`, preprocessed), if any.
    pub fn background(&self) -> Option<&[f32]> {
        self.background.as_deref()
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
        Ok(self.predictions(&x, count))
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
            return Err(PredictError::Unsupported(
                "predictBatch takes numbers only, and this model has categorical features: use predict or predictRecords".into(),
            ));
        }
        self.preprocessor.transform_numeric_in_place(&mut x)?;
        Ok(self.outputs(&x, rows))
    }

    /// The model's outputs for `rows` preprocessed rows: class probabilities (softmax) or
    /// values in the target's units, `rows × output_width`, row-major.
    pub fn outputs(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let width = self.output_width();
        let mut out = vec![0f32; rows * width];
        let mut scratch = vec![0f32; self.network.scratch_len(rows)];
        self.network.forward(x, rows, &mut out, &mut scratch);
        self.finish_outputs(&mut out);
        out
    }

    /// Predictions for `rows` preprocessed rows (`rows × num_features`).
    pub fn predictions(&self, x: &[f32], rows: usize) -> Vec<Prediction> {
        let width = self.output_width();
        self.outputs(x, rows).chunks_exact(width).map(|o| self.prediction(o)).collect()
    }

    /// Softmax (classification) or target unscaling (regression), in place on raw network outputs.
    fn finish_outputs(&self, out: &mut [f32]) {
        match self.spec.task_type {
            TaskType::Classification => out.chunks_exact_mut(self.output_width()).for_each(softmax),
            TaskType::Regression => out.iter_mut().for_each(|v| *v = self.unscale(*v)),
        }
    }

    fn predict_with(
        &self,
        fill: impl FnOnce(&Preprocessor, &mut [f32]) -> Result<(), PredictError>,
    ) -> Result<Prediction, PredictError> {
        let n = self.num_features();
        let mut out = vec![0f32; self.output_width()];
        SCRATCH.with_borrow_mut(|scratch| {
            let need = n + self.network.scratch_len(1);
            if scratch.len() < need {
                scratch.resize(need, 0.0);
            }
            let (x, rest) = scratch.split_at_mut(n);
            fill(&self.preprocessor, x)?;
            self.network.forward(x, 1, &mut out, rest);
            Ok(())
        })?;
        self.finish_outputs(&mut out);
        Ok(self.prediction(&out))
    }

    fn unscale(&self, v: f32) -> f32 {
        let t = self.spec.preprocessing.target_scaler;
        t.map_or(v, |t| (f64::from(v) * t.scale + t.mean) as f32)
    }

    /// A prediction from one row of finished outputs (probabilities or a value).
    pub fn prediction(&self, out: &[f32]) -> Prediction {
        match self.spec.task_type {
            TaskType::Regression => Prediction::Value { predicted_value: out[0] },
            TaskType::Classification => {
                let best = argmax(out);
                let predicted_label = self.spec.classes.as_ref().map_or_else(|| best.to_string(), |c| c[best].clone());
                Prediction::Class {
                    predicted_class: best,
                    predicted_label,
                    confidence: out[best],
                    probabilities: out.to_vec(),
                }
            }
        }
    }
}

/// Index of the largest value (the first on ties; NaN never wins; 0 if none is a number).
pub fn argmax(v: &[f32]) -> usize {
    let (mut best, mut max) = (0, f32::NEG_INFINITY);
    for (i, &x) in v.iter().enumerate() {
        if x > max {
            (best, max) = (i, x);
        }
    }
    best
}
