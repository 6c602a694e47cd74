//! From a trained model to a saved bundle: reserve an id, fill in the metadata's id, time and
//! weights hash, serialise, verify the bytes as a reader would, and hand them to the store.

use inference::bundle::weights_sha256;
use inference::{Bundle, Model};

use crate::error::{StoreError, TrainingError};
use crate::pipeline::Trained;
use crate::store::{ModelId, ModelStore, NewModel};

/// File name of the loss-curve plot.
pub const CURVES_FILE: &str = "training_curves.svg";

/// The bundle of `trained` under `id`, saved at `now`, verified.
pub fn finish(trained: Trained, id: &ModelId, now: chrono::DateTime<chrono::Utc>) -> Result<NewModel, TrainingError> {
    let fail = |m: String| TrainingError::Store(StoreError::Backend(m));
    let Trained { mut metadata, tensors, extra, .. } = trained;
    metadata.model_id = id.to_string();
    metadata.saved_at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    metadata.weights_sha256 = weights_sha256(&tensors);
    let bundle = Bundle { metadata, tensors };
    let bytes = bundle.to_safetensors().map_err(|e| fail(format!("cannot serialise the bundle: {e}")))?;
    // Never publish a bundle the inference core would refuse.
    let model = Model::from_bytes(&bytes).map_err(|e| fail(format!("the bundle failed verification: {e}")))?;
    let metadata_json =
        serde_json::to_vec_pretty(&bundle.metadata).map_err(|e| fail(format!("cannot write metadata.json: {e}")))?;
    let summary = crate::store::fs::summarize(&model, &bytes);
    Ok(NewModel { id: id.clone(), bundle: bytes, summary, metadata_json, extra })
}

/// Save `trained` in `store` under a fresh id; returns the saved bundle's metadata.
pub async fn publish(store: &dyn ModelStore, trained: Trained) -> Result<inference::Metadata, TrainingError> {
    let now = chrono::Utc::now();
    let id = store.reserve_id(&now.format("%Y_%m_%d").to_string()).await?;
    let model = finish(trained, &id, now)?;
    let metadata = std::str::from_utf8(&model.metadata_json)
        .map_err(|e| e.to_string())
        .and_then(inference::Metadata::from_json)
        .map_err(StoreError::Backend)?;
    store.save(model).await?;
    Ok(metadata)
}
