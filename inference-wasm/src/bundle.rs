//! Reading and writing bundles: safetensors weights plus the metadata JSON, checked end to end.
//!
//! The tensor names are defined here once ([`expected_tensors`], [`spec_tensors`]); the trainer
//! writes with [`Bundle::to_safetensors`] (feature `train`). Every reader ([`crate::Model`]'s
//! constructors and, with `train`, [`Bundle::from_bytes`]) goes through one verification, `verify`.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::error::BundleError;
use crate::name_map::NameMap;
use crate::spec::{Architecture, FeatureKind, ModelSpec, TaskType, READABLE_VERSIONS};
use crate::weights::{self, Container};

/// Key inside the safetensors `__metadata__` map that holds the metadata JSON.
pub const METADATA_KEY: &str = "bundle";

/// Name of the explanation background tensor (`background_rows × input_dim`, preprocessed rows).
pub const BACKGROUND_TENSOR: &str = "explain.background";

/// A named f32 tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// Name of a hidden layer's parameter, e.g. `hidden.0.linear.weight`, `hidden.2.bn.running_var`.
pub fn hidden_tensor_name(layer: usize, part: &str) -> String {
    format!("hidden.{layer}.{part}")
}

/// The parts of one hidden layer, in the order [`expected_tensors`] lists them.
pub const HIDDEN_PARTS: [&str; 6] =
    ["linear.weight", "linear.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"];

/// Whether a tensor holds BatchNorm running statistics (state, not a trainable parameter).
pub fn is_running_statistic(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// Every network tensor the architecture implies, with its shape: for each hidden layer the
/// six [`HIDDEN_PARTS`], then `out.weight` and `out.bias`.
pub fn expected_tensors(arch: &Architecture) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::with_capacity(arch.hidden_dims.len() * HIDDEN_PARTS.len() + 2);
    let mut fan_in = arch.input_dim;
    for (i, &h) in arch.hidden_dims.iter().enumerate() {
        for part in HIDDEN_PARTS {
            let shape = if part == "linear.weight" { vec![h, fan_in] } else { vec![h] };
            out.push((hidden_tensor_name(i, part), shape));
        }
        fan_in = h;
    }
    out.push(("out.weight".to_owned(), vec![arch.output_dim, fan_in]));
    out.push(("out.bias".to_owned(), vec![arch.output_dim]));
    out
}

/// Every tensor a bundle with this spec holds: the network's and, when the spec has one, the
/// explanation background.
pub fn spec_tensors(spec: &ModelSpec) -> Vec<(String, Vec<usize>)> {
    let mut out = expected_tensors(&spec.architecture);
    if let Some(e) = spec.explain {
        out.push((BACKGROUND_TENSOR.to_owned(), vec![e.background_rows, spec.architecture.input_dim]));
    }
    out
}

/// sha256 over the tensors' raw little-endian f32 bytes, in sorted name order (header-independent).
pub fn weights_sha256(tensors: &BTreeMap<String, Tensor>) -> String {
    let bytes: Vec<Vec<u8>> = tensors.values().map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    sha256_hex(bytes.iter().map(Vec::as_slice))
}

/// Bytes per `update` call. Why not whole tensors: V8 runs a bundle's one-off hash in its
/// baseline tier and only switches a function to optimised code at its next call, so short calls
/// let the rest of a large tensor run optimised (bench/wasm/floor: 2.9 → 2.1 ms for 75 KB of
/// weights; 1–4 KiB measure the same, 8 KiB is slower).
const HASH_CHUNK: usize = 4096;

/// The one hash both writer and reader use: sha256 over the byte runs in order, as hex.
fn sha256_hex<'a>(runs: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = Sha256::new();
    for chunk in runs.into_iter().flat_map(|run| run.chunks(HASH_CHUNK)) {
        h.update(chunk);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// How much of a bundle to verify at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Recompute `weights_sha256`. Turn off only for bytes already verified another way (e.g.
    /// fetched with Subresource Integrity): every other check still runs.
    pub verify_hash: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { verify_hash: true }
    }
}

/// What prediction needs from a bundle, with every check passed: the spec part of the
/// metadata and the tensors. Both [`crate::Model`] and (with `train`) `Bundle` are built from this.
#[derive(Debug)]
pub(crate) struct Verified {
    pub spec: ModelSpec,
    pub tensors: NameMap<Tensor>,
}

/// Read a self-contained `model.safetensors`: the verified parts and the embedded metadata JSON.
pub(crate) fn load_bytes(bytes: &[u8], opts: LoadOptions) -> Result<(Verified, String), BundleError> {
    let mut container = weights::read(bytes)?;
    let json = container.bundle_json.take().ok_or(BundleError::MissingMetadata)?;
    Ok((verify(container, &json, opts)?, json))
}

/// Read the two-file layout.
pub(crate) fn load_parts(weights: &[u8], metadata_json: &str, opts: LoadOptions) -> Result<Verified, BundleError> {
    verify(weights::read(weights)?, metadata_json, opts)
}

/// Every check between metadata and tensors, in the order that gives the most telling error.
fn verify(container: Container<'_>, metadata_json: &str, opts: LoadOptions) -> Result<Verified, BundleError> {
    let spec = parse_spec(metadata_json)?;
    if opts.verify_hash {
        // NameMap order is the hash's sorted-name order; the stored bytes are already little-endian.
        let actual = sha256_hex(container.tensors.iter().map(|(_, raw)| raw.bytes));
        if actual != spec.weights_sha256 {
            return Err(BundleError::HashMismatch { expected: spec.weights_sha256.clone(), actual });
        }
    }
    let mut tensors = NameMap::default();
    for (name, raw) in container.tensors {
        if raw.dtype != "F32" {
            return Err(BundleError::Dtype { name, dtype: raw.dtype });
        }
        let data: Vec<f32> = raw.bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if let Some(index) = data.iter().position(|v| !v.is_finite()) {
            return Err(BundleError::NonFinite { name, index });
        }
        // The container's names are unique already.
        let _ = tensors.insert(name, Tensor { shape: raw.shape, data });
    }
    // Metadata first: it bounds the architecture before any per-layer work.
    check_metadata(&spec)?;
    let expected = spec_tensors(&spec);
    for (name, shape) in &expected {
        let t = tensors.get(name).ok_or_else(|| BundleError::MissingTensor(name.clone()))?;
        if &t.shape != shape {
            return Err(BundleError::ShapeMismatch {
                name: name.clone(),
                expected: shape.clone(),
                actual: t.shape.clone(),
            });
        }
    }
    // Every expected name is present, so any surplus is an unexpected tensor.
    if tensors.len() != expected.len() {
        // A linear scan: at most MAX_HIDDEN_LAYERS × 6 + 2 expected names.
        let extra = tensors.iter().map(|(name, _)| name).find(|k| !expected.iter().any(|(n, _)| n == k));
        return Err(BundleError::UnexpectedTensor(extra.unwrap_or_default().to_owned()));
    }
    // BatchNorm divides by √(running_var + eps).
    let eps = spec.architecture.batch_norm_eps;
    for i in 0..spec.architecture.hidden_dims.len() {
        let name = hidden_tensor_name(i, "bn.running_var");
        if let Some(index) = tensors[name.as_str()].data.iter().position(|&v| f64::from(v) + eps <= 0.0) {
            return Err(BundleError::Inconsistent(format!("`{name}`[{index}] is negative: a variance cannot be")));
        }
    }
    Ok(Verified { spec, tensors })
}

/// The format versions this build reads, for messages.
fn supported_versions() -> String {
    READABLE_VERSIONS.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

/// Version-check metadata JSON and parse its spec part. The version comes first: a future
/// format may change any other field, and its version is the telling error.
fn parse_spec(json: &str) -> Result<ModelSpec, BundleError> {
    let version = crate::spec::format_version(json).map_err(|e| BundleError::Metadata(e.to_string()))?;
    if !READABLE_VERSIONS.contains(&version) {
        return Err(BundleError::UnsupportedVersion { found: version, supported: supported_versions() });
    }
    let spec = ModelSpec::from_json(json).map_err(BundleError::Metadata)?;
    if spec.format_version == 1 && spec.explain.is_some() {
        return Err(BundleError::Inconsistent("format_version 1 has no `explain` section".into()));
    }
    Ok(spec)
}

/// Lengths and dimensions the metadata must agree on among itself.
fn check_metadata(m: &ModelSpec) -> Result<(), BundleError> {
    let bad = |msg: String| Err(BundleError::Inconsistent(msg));
    let a = &m.architecture;
    let p = &m.preprocessing;
    let n = a.input_dim;
    if n == 0 || a.output_dim == 0 || a.hidden_dims.contains(&0) {
        return bad("architecture has a zero dimension".into());
    }
    if a.hidden_dims.len() > MAX_HIDDEN_LAYERS {
        return bad(format!("{} hidden layers (at most {MAX_HIDDEN_LAYERS})", a.hidden_dims.len()));
    }
    if !(a.batch_norm_eps.is_finite() && a.batch_norm_eps > 0.0) {
        return bad(format!("batch_norm_eps must be positive, got {}", a.batch_norm_eps));
    }
    if p.feature_names.len() != n || p.features.len() != n {
        return bad(format!(
            "architecture.input_dim is {n} but preprocessing names {} features and describes {}",
            p.feature_names.len(),
            p.features.len()
        ));
    }
    if let Some((name, spec)) = p.feature_names.iter().zip(&p.features).find(|(name, spec)| *name != &spec.name) {
        return bad(format!("feature_names has `{name}` where features has `{}`", spec.name));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = p.feature_names.iter().find(|n| !seen.insert(n.as_str())) {
        return bad(format!("feature `{dup}` is named twice"));
    }
    if p.scaler.mean.len() != n || p.scaler.scale.len() != n {
        return bad(format!(
            "scaler has {} means and {} scales for {n} features",
            p.scaler.mean.len(),
            p.scaler.scale.len()
        ));
    }
    if p.scaler.mean.iter().any(|v| !v.is_finite()) || p.scaler.scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return bad("scaler means must be finite and scales finite and positive".into());
    }
    for f in &p.features {
        match &f.kind {
            FeatureKind::Numeric { fill_value: Some(v) } if !v.is_finite() => {
                return bad(format!("feature `{}` has a non-finite fill value", f.name));
            }
            FeatureKind::Categorical { categories, fill_value } => {
                if categories.is_empty() {
                    return bad(format!("categorical feature `{}` has no categories", f.name));
                }
                if let Some(fill) = fill_value {
                    if !categories.contains(fill) {
                        return bad(format!("feature `{}` fills with `{fill}`, which is not a category", f.name));
                    }
                }
            }
            FeatureKind::Numeric { .. } => {}
        }
    }
    match (m.task_type, &m.classes) {
        (TaskType::Classification, Some(classes)) if classes.len() == a.output_dim && classes.len() >= 2 => {}
        (TaskType::Classification, classes) => {
            return bad(format!(
                "classification with output_dim {} needs that many (≥ 2) class labels, metadata has {}",
                a.output_dim,
                classes.as_ref().map_or(0, Vec::len)
            ));
        }
        (TaskType::Regression, _) if a.output_dim != 1 => {
            return bad(format!("regression needs output_dim 1, got {}", a.output_dim));
        }
        (TaskType::Regression, _) => match p.target_scaler {
            Some(t) if !(t.mean.is_finite() && t.scale.is_finite() && t.scale > 0.0) => {
                return bad("target_scaler must be finite with a positive scale".into());
            }
            _ => {}
        },
    }
    if m.explain.is_some_and(|e| e.background_rows == 0) {
        return bad("explain.background_rows must be at least 1".into());
    }
    Ok(())
}

/// Most hidden layers a bundle may have (also the training config's limit).
pub const MAX_HIDDEN_LAYERS: usize = 64;

#[cfg(feature = "train")]
pub use writer::Bundle;

/// The full bundle (training record included) and its writer: only the trainer needs these.
#[cfg(feature = "train")]
mod writer {
    use std::collections::{BTreeMap, HashMap};

    use safetensors::tensor::{Dtype, TensorView};

    use super::{load_bytes, load_parts, LoadOptions, Tensor, METADATA_KEY};
    use crate::error::BundleError;
    use crate::record::Metadata;

    /// A verified bundle: metadata and tensors that agree with each other.
    #[derive(Debug, Clone)]
    pub struct Bundle {
        /// The metadata.
        pub metadata: Metadata,
        /// Tensors by name.
        pub tensors: BTreeMap<String, Tensor>,
    }

    impl Bundle {
        /// Load a single `model.safetensors` whose header carries the metadata.
        pub fn from_bytes(bytes: &[u8]) -> Result<Self, BundleError> {
            let (verified, json) = load_bytes(bytes, LoadOptions::default())?;
            Ok(Bundle { metadata: parse_full(&json)?, tensors: verified.tensors.into_iter().collect() })
        }

        /// Load the two-file layout: safetensors weights and `metadata.json`.
        pub fn from_parts(weights: &[u8], metadata_json: &str) -> Result<Self, BundleError> {
            let verified = load_parts(weights, metadata_json, LoadOptions::default())?;
            Ok(Bundle { metadata: parse_full(metadata_json)?, tensors: verified.tensors.into_iter().collect() })
        }

        /// Serialise as one self-contained `model.safetensors` (metadata embedded in the header).
        pub fn to_safetensors(&self) -> Result<Vec<u8>, BundleError> {
            let json = serde_json::to_string(&self.metadata).map_err(|e| BundleError::Metadata(e.to_string()))?;
            let bytes: Vec<(&String, Vec<u8>)> = self
                .tensors
                .iter()
                .map(|(name, t)| (name, t.data.iter().flat_map(|v| v.to_le_bytes()).collect()))
                .collect();
            let views = bytes
                .iter()
                .zip(self.tensors.values())
                .map(|((name, raw), t)| {
                    TensorView::new(Dtype::F32, t.shape.clone(), raw)
                        .map(|v| (name.as_str(), v))
                        .map_err(|e| BundleError::Safetensors(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let info = HashMap::from([(METADATA_KEY.to_owned(), json)]);
            safetensors::serialize(views, Some(info)).map_err(|e| BundleError::Safetensors(e.to_string()))
        }
    }

    /// The full metadata (training record included), once the spec part has been verified.
    fn parse_full(json: &str) -> Result<Metadata, BundleError> {
        Metadata::from_json(json).map_err(BundleError::Metadata)
    }
}

#[cfg(all(test, feature = "train"))]
mod tests {
    use super::*;
    use crate::config::TrainConfig;
    use crate::record::{ClassificationMetrics, DatasetInfo, Metadata, TestMetrics};
    use crate::spec::{Activation, FeatureSpec, MissingStrategy, Preprocessing, Scaler, FORMAT_VERSION};
    use crate::{Model, ValueRef};
    use safetensors::tensor::TensorView;

    /// A small valid classification bundle: 2 features → [3] → 2 classes.
    fn bundle() -> Bundle {
        let arch = Architecture {
            input_dim: 2,
            hidden_dims: vec![3],
            output_dim: 2,
            dropout_rate: 0.0,
            activation: Activation::Relu,
            batch_norm_eps: 1e-5,
        };
        let tensors: BTreeMap<String, Tensor> = expected_tensors(&arch)
            .into_iter()
            .enumerate()
            .map(|(i, (name, shape))| {
                let n = shape.iter().product::<usize>();
                let data = (0..n)
                    .map(|j| if name.ends_with("running_var") { 1.5 } else { (i + j) as f32 * 0.1 - 0.3 })
                    .collect();
                (name, Tensor { shape, data })
            })
            .collect();
        let metadata = Metadata {
            format_version: FORMAT_VERSION,
            model_id: "model_2026_11_26_001".into(),
            saved_at: "2026-11-26T00:00:00Z".into(),
            task_type: TaskType::Classification,
            architecture: arch,
            config: TrainConfig::default(),
            test_metrics: Some(TestMetrics::Classification(ClassificationMetrics {
                accuracy: 1.0,
                precision: 1.0,
                recall: 1.0,
                f1_score: 1.0,
                precision_macro: 1.0,
                recall_macro: 1.0,
                f1_macro: 1.0,
                confusion_matrix: vec![vec![1, 0], vec![0, 1]],
            })),
            preprocessing: Preprocessing {
                feature_names: vec!["x".into(), "c".into()],
                features: vec![
                    FeatureSpec { name: "x".into(), kind: FeatureKind::Numeric { fill_value: Some(0.5) } },
                    FeatureSpec {
                        name: "c".into(),
                        kind: FeatureKind::Categorical { categories: vec!["a".into(), "b".into()], fill_value: None },
                    },
                ],
                missing_strategy: MissingStrategy::Mean,
                scaler: Scaler { mean: vec![0.0, 0.5], scale: vec![1.0, 0.5] },
                target_scaler: None,
                dropped_columns: vec![],
            },
            classes: Some(vec!["no".into(), "yes".into()]),
            explain: None,
            history: vec![],
            epochs_run: 1,
            best_epoch: 1,
            dataset: DatasetInfo {
                source: "test".into(),
                target_column: "y".into(),
                rows: 2,
                dropped_rows: 0,
                train_rows: 2,
                val_rows: 0,
                test_rows: 0,
            },
            train_seconds: 0.0,
            device: "cpu".into(),
            engine: "fused".into(),
            warnings: vec![],
            tuning: None,
            weights_sha256: weights_sha256(&tensors),
        };
        Bundle { metadata, tensors }
    }

    /// `edit` the bundle, refresh its hash unless told not to, and load the result.
    fn load_edited(edit: impl FnOnce(&mut Bundle), rehash: bool) -> Result<Bundle, BundleError> {
        let mut b = bundle();
        edit(&mut b);
        if rehash {
            b.metadata.weights_sha256 = weights_sha256(&b.tensors);
        }
        Bundle::from_bytes(&b.to_safetensors().unwrap())
    }

    #[test]
    fn round_trips_and_loads_both_layouts() {
        let b = bundle();
        let bytes = b.to_safetensors().unwrap();
        let back = Bundle::from_bytes(&bytes).unwrap();
        assert_eq!((&back.metadata, &back.tensors), (&b.metadata, &b.tensors));

        let json = serde_json::to_string_pretty(&b.metadata).unwrap();
        let weights_only = Bundle { metadata: b.metadata.clone(), tensors: b.tensors.clone() };
        // The two-file layout: any safetensors weights (the embedded copy is ignored) + metadata.json.
        let from_parts = Model::from_parts(&weights_only.to_safetensors().unwrap(), &json).unwrap();
        let from_bytes = Model::from_bytes(&bytes).unwrap();
        assert_eq!(from_parts.spec(), from_bytes.spec());
        assert_eq!(from_parts.metadata_json(), json);
        let row = [ValueRef::Number(1.0), ValueRef::Text("b")];
        assert_eq!(from_parts.predict(row.into_iter()).unwrap(), from_bytes.predict(row.into_iter()).unwrap());
        // The stored JSON is the full metadata, training record included.
        assert_eq!(Metadata::from_json(from_bytes.metadata_json()).unwrap(), b.metadata);
    }

    #[test]
    fn every_inconsistency_is_a_typed_error() {
        let err = |edit: fn(&mut Bundle), rehash: bool| load_edited(edit, rehash).unwrap_err();
        assert!(matches!(
            err(|b| b.tensors.get_mut("out.bias").unwrap().data[0] = 9.0, false),
            BundleError::HashMismatch { .. }
        ));
        assert_eq!(err(|b| drop(b.tensors.remove("out.bias")), true), BundleError::MissingTensor("out.bias".into()));
        assert_eq!(
            err(|b| drop(b.tensors.insert("extra".into(), Tensor { shape: vec![1], data: vec![0.0] })), true),
            BundleError::UnexpectedTensor("extra".into())
        );
        assert!(matches!(
            err(|b| *b.tensors.get_mut("out.bias").unwrap() = Tensor { shape: vec![1, 2], data: vec![0.0; 2] }, true),
            BundleError::ShapeMismatch { .. }
        ));
        assert_eq!(
            err(|b| b.tensors.get_mut("out.weight").unwrap().data[3] = f32::NAN, true),
            BundleError::NonFinite { name: "out.weight".into(), index: 3 }
        );
        assert!(matches!(
            err(|b| b.tensors.get_mut("hidden.0.bn.running_var").unwrap().data[1] = -1.0, true),
            BundleError::Inconsistent(m) if m.contains("hidden.0.bn.running_var`[1] is negative")
        ));
        assert!(matches!(
            err(|b| b.metadata.classes = Some(vec!["only".into()]), true),
            BundleError::Inconsistent(m) if m.contains("needs that many (≥ 2) class labels, metadata has 1")
        ));
        assert!(matches!(
            err(|b| b.metadata.preprocessing.scaler.scale[0] = 0.0, true),
            BundleError::Inconsistent(m) if m.contains("scales finite and positive")
        ));
        assert!(matches!(
            err(|b| b.metadata.architecture.hidden_dims = vec![3; 65], true),
            BundleError::Inconsistent(m) if m.contains("65 hidden layers (at most 64)")
        ));
    }

    #[test]
    fn metadata_problems_are_named() {
        let b = bundle();
        let weights = b.to_safetensors().unwrap();
        let mut json: serde_json::Value = serde_json::to_value(&b.metadata).unwrap();
        json["format_version"] = 3.into();
        let future = BundleError::UnsupportedVersion { found: 3, supported: "1, 2".into() };
        assert_eq!(Bundle::from_parts(&weights, &json.to_string()).unwrap_err(), future);
        // A future version whose schema differs still reports the version, not the schema.
        json["preprocessing"] = serde_json::json!("moved");
        assert_eq!(Bundle::from_parts(&weights, &json.to_string()).unwrap_err(), future);
        json["format_version"] = 2.into();
        assert!(matches!(Bundle::from_parts(&weights, &json.to_string()), Err(BundleError::Metadata(_))));
        // The spec parses but the training record does not: Bundle refuses, Model (which never
        // reads the record) loads.
        let mut json = serde_json::to_value(&b.metadata).unwrap();
        json["config"] = serde_json::json!({"epochs": "many"});
        assert!(
            matches!(Bundle::from_parts(&weights, &json.to_string()), Err(BundleError::Metadata(m)) if m.contains("epochs"))
        );
        assert!(Model::from_parts(&weights, &json.to_string()).is_ok());

        let no_metadata = safetensors::serialize(Vec::<(&str, TensorView)>::new(), None).unwrap();
        assert_eq!(Bundle::from_bytes(&no_metadata).unwrap_err(), BundleError::MissingMetadata);
    }
}
