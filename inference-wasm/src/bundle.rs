//! Reading and writing bundles: safetensors weights plus the metadata JSON, checked end to end.
//!
//! The tensor names are defined here once ([`expected_tensors`]); the trainer writes with
//! [`Bundle::to_safetensors`] and every reader goes through [`Bundle::from_bytes`] or [`Bundle::from_parts`].

use std::collections::{BTreeMap, HashMap};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};

use crate::error::BundleError;
use crate::metadata::{Architecture, FeatureKind, Metadata, TaskType, FORMAT_VERSION};

/// Key inside the safetensors `__metadata__` map that holds the metadata JSON.
pub const METADATA_KEY: &str = "bundle";

/// A named f32 tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// A verified bundle: metadata and tensors that agree with each other.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The metadata.
    pub metadata: Metadata,
    /// Tensors by name.
    pub tensors: BTreeMap<String, Tensor>,
}

/// Name of a hidden layer's parameter, e.g. `hidden.0.linear.weight`, `hidden.2.bn.running_var`.
pub fn hidden_tensor_name(layer: usize, part: &str) -> String {
    format!("hidden.{layer}.{part}")
}

/// Every tensor the architecture implies, with its shape.
pub fn expected_tensors(arch: &Architecture) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::with_capacity(arch.hidden_dims.len() * 6 + 2);
    let mut fan_in = arch.input_dim;
    for (i, &h) in arch.hidden_dims.iter().enumerate() {
        out.push((hidden_tensor_name(i, "linear.weight"), vec![h, fan_in]));
        out.push((hidden_tensor_name(i, "linear.bias"), vec![h]));
        for part in ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"] {
            out.push((hidden_tensor_name(i, part), vec![h]));
        }
        fan_in = h;
    }
    out.push(("out.weight".to_owned(), vec![arch.output_dim, fan_in]));
    out.push(("out.bias".to_owned(), vec![arch.output_dim]));
    out
}

/// sha256 over the tensors' raw little-endian f32 bytes, in sorted name order (header-independent).
pub fn weights_sha256(tensors: &BTreeMap<String, Tensor>) -> String {
    let mut h = Sha256::new();
    for t in tensors.values() {
        for v in &t.data {
            h.update(v.to_le_bytes());
        }
    }
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Bundle {
    /// Load a single `model.safetensors` whose header carries the metadata.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BundleError> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| BundleError::Safetensors(e.to_string()))?;
        let json = header.metadata().as_ref().and_then(|m| m.get(METADATA_KEY)).ok_or(BundleError::MissingMetadata)?;
        Self::from_parts(bytes, json)
    }

    /// Load the two-file layout: safetensors weights and `metadata.json`.
    pub fn from_parts(weights: &[u8], metadata_json: &str) -> Result<Self, BundleError> {
        let metadata = parse_metadata(metadata_json)?;
        let st = SafeTensors::deserialize(weights).map_err(|e| BundleError::Safetensors(e.to_string()))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(BundleError::Dtype { name, dtype: format!("{:?}", view.dtype()) });
            }
            let data: Vec<f32> =
                view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            if let Some(index) = data.iter().position(|v| !v.is_finite()) {
                return Err(BundleError::NonFinite { name, index });
            }
            tensors.insert(name, Tensor { shape: view.shape().to_vec(), data });
        }
        let bundle = Bundle { metadata, tensors };
        bundle.check()?;
        Ok(bundle)
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

    /// Every cross-check between metadata and tensors.
    fn check(&self) -> Result<(), BundleError> {
        let m = &self.metadata;
        let actual = weights_sha256(&self.tensors);
        if actual != m.weights_sha256 {
            return Err(BundleError::HashMismatch { expected: m.weights_sha256.clone(), actual });
        }
        // Metadata first: it bounds the architecture before any per-layer work.
        check_metadata(m)?;
        let expected = expected_tensors(&m.architecture);
        for (name, shape) in &expected {
            let t = self.tensors.get(name).ok_or_else(|| BundleError::MissingTensor(name.clone()))?;
            if &t.shape != shape {
                return Err(BundleError::ShapeMismatch {
                    name: name.clone(),
                    expected: shape.clone(),
                    actual: t.shape.clone(),
                });
            }
        }
        // Every expected name is present, so any surplus is an unexpected tensor.
        if self.tensors.len() != expected.len() {
            let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
            let extra = self.tensors.keys().find(|k| !known.contains(k.as_str())).cloned().unwrap_or_default();
            return Err(BundleError::UnexpectedTensor(extra));
        }
        // BatchNorm divides by √(running_var + eps).
        let eps = m.architecture.batch_norm_eps;
        for i in 0..m.architecture.hidden_dims.len() {
            let name = hidden_tensor_name(i, "bn.running_var");
            if let Some(index) = self.tensors[&name].data.iter().position(|&v| f64::from(v) + eps <= 0.0) {
                return Err(BundleError::Inconsistent(format!("`{name}`[{index}] is negative: a variance cannot be")));
            }
        }
        Ok(())
    }
}

/// Parse and version-check metadata JSON.
fn parse_metadata(json: &str) -> Result<Metadata, BundleError> {
    // Read the version first so a future format gets a version error, not a schema error.
    #[derive(serde::Deserialize)]
    struct Version {
        format_version: u32,
    }
    let v: Version = serde_json::from_str(json).map_err(|e| BundleError::Metadata(e.to_string()))?;
    if v.format_version != FORMAT_VERSION {
        return Err(BundleError::UnsupportedVersion { found: v.format_version, supported: FORMAT_VERSION });
    }
    serde_json::from_str(json).map_err(|e| BundleError::Metadata(e.to_string()))
}

/// Lengths and dimensions the metadata must agree on among itself.
fn check_metadata(m: &Metadata) -> Result<(), BundleError> {
    let bad = |msg: String| Err(BundleError::Inconsistent(msg));
    let a = &m.architecture;
    let p = &m.preprocessing;
    let n = a.input_dim;
    if n == 0 || a.output_dim == 0 || a.hidden_dims.contains(&0) {
        return bad("architecture has a zero dimension".into());
    }
    if a.hidden_dims.len() > crate::config::MAX_HIDDEN_LAYERS {
        return bad(format!("{} hidden layers (at most {})", a.hidden_dims.len(), crate::config::MAX_HIDDEN_LAYERS));
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
    Ok(())
}
