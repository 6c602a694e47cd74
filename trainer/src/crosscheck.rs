//! Cross-checking a bundle: the training engine's own eval-mode forward pass on a device
//! (the fused CPU step, the CUDA step, or candle) against the inference core, row by row.
//! This is how a bundle written on a GPU is shown to predict the same through the CPU/wasm core.

use candle_core::Device;
use serde::Serialize;

use inference::config::{TaskType, TrainOptions};
use inference::record::Metadata;
use inference::request::{CsvColumns, Limits, Protocol, Request};
use inference::spec::TargetScaler;
use inference::{Bundle, Model, Prediction};

use crate::error::{PredictionError, StoreError, TrainingError};

/// Largest |Δ| accepted between the engine's and the core's probabilities (or relative |Δ| of values).
pub const TOLERANCE: f64 = 1e-5;

/// What a cross-check found.
#[derive(Debug, Clone, Serialize)]
pub struct CrossCheck {
    /// The bundle's model id.
    pub model_id: String,
    /// The engine that computed the reference outputs (`fused`, `cuda-fused`, `candle`).
    pub engine: String,
    /// Rows compared.
    pub rows: usize,
    /// Largest |Δprobability| (classification) or relative |Δvalue| (regression).
    pub max_abs_diff: f64,
    /// Rows whose predicted class (or, for regression, nothing) differs.
    pub class_disagreements: usize,
    /// The tolerance applied.
    pub tolerance: f64,
    /// `max_abs_diff ≤ tolerance` and no class disagrees.
    pub ok: bool,
}

/// Raw network outputs (`rows × output_dim`, logits or standardised values) in the API's
/// terms: class probabilities (softmax in f64) or values in the target's units.
pub fn api_outputs(meta: &Metadata, raw: &[f32]) -> Vec<Vec<f64>> {
    raw.chunks_exact(meta.architecture.output_dim)
        .map(|o| match meta.task_type {
            TaskType::Classification => {
                let max = o.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f64> = o.iter().map(|v| f64::from(v - max).exp()).collect();
                let s: f64 = e.iter().sum();
                e.iter().map(|v| v / s).collect()
            }
            TaskType::Regression => {
                let t = meta.preprocessing.target_scaler.unwrap_or(TargetScaler { mean: 0.0, scale: 1.0 });
                vec![f64::from(o[0]) * t.scale + t.mean]
            }
        })
        .collect()
}

/// The training engine's eval-mode outputs on `device` for preprocessed rows `x`
/// (`rows × input_dim`), as [`api_outputs`], and the engine's name.
pub fn engine_outputs(
    bundle: &Bundle,
    x: &[f32],
    rows: usize,
    device: &Device,
) -> Result<(Vec<Vec<f64>>, String), TrainingError> {
    let meta = &bundle.metadata;
    let engine = crate::engine::build(&meta.architecture, &TrainOptions::default(), device, &bundle.tensors)?;
    Ok((api_outputs(meta, &engine.predict_raw(x, rows)?), engine.engine().to_owned()))
}

/// The larger difference, a NaN (from a non-finite output) counting as infinite.
fn worse(max: f64, d: f64) -> f64 {
    if d.is_nan() {
        f64::INFINITY
    } else {
        max.max(d)
    }
}

/// Largest difference and the number of class disagreements between reference outputs (in
/// [`engine_outputs`]' terms) and the core's predictions.
fn compare(reference: &[Vec<f64>], core: &[Prediction]) -> (f64, usize) {
    let (mut max_abs_diff, mut class_disagreements) = (0f64, 0usize);
    for (want, got) in reference.iter().zip(core) {
        match got {
            Prediction::Class { predicted_class, probabilities, .. } => {
                for (a, b) in want.iter().zip(probabilities) {
                    max_abs_diff = worse(max_abs_diff, (a - f64::from(*b)).abs());
                }
                let argmax = want.iter().enumerate().fold(0, |best, (i, v)| if *v > want[best] { i } else { best });
                let finite = want.iter().all(|v| v.is_finite());
                class_disagreements += usize::from(!finite || argmax != *predicted_class);
            }
            Prediction::Value { predicted_value } => {
                let got = f64::from(*predicted_value);
                max_abs_diff = worse(max_abs_diff, (want[0] - got).abs() / want[0].abs().max(1.0));
            }
        }
    }
    (max_abs_diff, class_disagreements)
}

/// The rows of `input` (CSV with a header, or a JSON array of records; columns matched by
/// name, absent ones missing) bound to `model`, through the core's request layer.
pub fn input_rows(model: &Model, input: &[u8]) -> Result<inference::request::Rows, PredictionError> {
    let limits = Limits::NONE;
    let json = input.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let rows = if json {
        let body = [&b"{\"records\": "[..], input, b"}"].concat();
        Request::parse(Protocol::ApiMl, &body, inference::request::Transport::JSON)?.rows(model, &limits)?
    } else {
        let text = std::str::from_utf8(input)
            .map_err(|_| PredictionError::Usage("the input is neither UTF-8 CSV nor JSON".into()))?;
        Request::csv(text, CsvColumns::Header).rows(model, &limits)?
    };
    if rows.rows == 0 {
        return Err(PredictionError::Usage("no rows to compare".into()));
    }
    Ok(rows)
}

/// Compare the engine on `device` with the inference core over every row of `input`.
pub fn run(bundle_bytes: &[u8], input: &[u8], device: &Device) -> Result<CrossCheck, PredictionError> {
    let corrupt = |source| PredictionError::Store(StoreError::Corrupt { id: "<bundle>".into(), source });
    let bundle = Bundle::from_bytes(bundle_bytes).map_err(corrupt)?;
    let model = Model::from_bytes(bundle_bytes).map_err(corrupt)?;
    let rows = input_rows(&model, input)?;
    let core = model.predictions(&rows.x, rows.rows);
    let (reference, engine) = engine_outputs(&bundle, &rows.x, rows.rows, device).map_err(|e| match e {
        TrainingError::Device(d) => PredictionError::Device(d),
        e => PredictionError::Engine(e.to_string()),
    })?;
    let (max_abs_diff, class_disagreements) = compare(&reference, &core);
    Ok(CrossCheck {
        model_id: bundle.metadata.model_id.clone(),
        engine,
        rows: rows.rows,
        max_abs_diff,
        class_disagreements,
        tolerance: TOLERANCE,
        ok: max_abs_diff <= TOLERANCE && class_disagreements == 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(predicted_class: usize, probabilities: Vec<f32>) -> Prediction {
        Prediction::Class { predicted_class, predicted_label: String::new(), confidence: 0.0, probabilities }
    }

    #[test]
    fn compare_finds_the_largest_difference_and_disagreeing_classes() {
        let core = [class(1, vec![0.25, 0.75]), class(0, vec![0.5, 0.5])];
        let same = [vec![0.25, 0.75], vec![0.5, 0.5]];
        assert_eq!(compare(&same, &core), (0.0, 0));
        let (d, n) = compare(&[vec![0.25, 0.75], vec![0.4, 0.6]], &core);
        assert!((d - 0.1).abs() < 1e-7, "{d}");
        assert_eq!(n, 1);
        // Regression: relative to the value's size (absolute below 1).
        let v = |x: f32| Prediction::Value { predicted_value: x };
        let (d, n) = compare(&[vec![200.0], vec![0.5]], &[v(200.002), v(0.5000001)]);
        assert!((d - 1e-5).abs() < 1e-7 && n == 0, "{d}");
        // A non-finite engine output never passes.
        assert_eq!(compare(&[vec![f64::NAN]], &[v(1.0)]).0, f64::INFINITY);
        let (d, n) = compare(&[vec![f64::NAN, f64::NAN]], &[class(0, vec![0.5, 0.5])]);
        assert_eq!((d, n), (f64::INFINITY, 1));
    }
}
