//! Where models live: the [`ModelStore`] trait and what it hands out. A model exists complete
//! and verified, or not at all: stores write atomically, list only what loads (or report it
//! as unloadable), and serve bundles only after verifying them.
//!
//! - [`fs`]: a models directory (the default; also the shared-filesystem deployment);
//! - `redis` (scale-out): bundles in Redis with a verified local cache.

pub mod cache;
pub mod fs;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use inference::error::truncate_echo;
use inference::Model;

use crate::error::{ModelNotFoundError, StoreError};

/// A model id that is safe everywhere: 1–128 of `[A-Za-z0-9._-]`, not starting with `.`
/// (ids like `model_2026_11_26_001`). Every store and route takes ids only through this.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(String);

/// Longest model id accepted.
pub const MAX_ID_LEN: usize = 128;

impl ModelId {
    /// Check `s`; an invalid id is reported as not found (it cannot name a model).
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_ID_LEN
            && !s.starts_with('.')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(StoreError::NotFound(ModelNotFoundError { model: truncate_echo(s), hint: String::new() }))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Sort key: by date, then sequence as a number (`…_1000` after `…_999`); other ids last.
    pub fn order_key(&self) -> (bool, &str, u64, &str) {
        let parsed = self.0.strip_prefix("model_").and_then(|rest| {
            let (date, seq) = rest.rsplit_once('_')?;
            Some((date, seq.parse::<u64>().ok()?))
        });
        match parsed {
            Some((date, seq)) => (true, date, seq, &self.0),
            None => (false, "", 0, &self.0),
        }
    }
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id for sequence number `seq` on `date` (`YYYY_MM_DD`): `model_2026_11_26_001`.
pub fn id_for(date: &str, seq: u64) -> ModelId {
    ModelId(format!("model_{date}_{seq:03}"))
}

/// What a store knows about a model without loading it: the list's entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelSummary {
    /// Model id.
    pub model_id: String,
    /// RFC 3339 time of export.
    pub saved_at: String,
    /// `classification` or `regression`.
    pub task_type: String,
    /// Test metrics.
    #[schema(value_type = Object)]
    pub test_metrics: serde_json::Value,
    /// The training data's source (`iris.csv`, `redis:KEY`, `embedded:esg_ratings`), so a
    /// list can tell models of different data apart (absent for bundles saved before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// The column it predicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_column: Option<String>,
    /// sha256 of the `model.safetensors` file, hex.
    pub bundle_sha256: String,
    /// Size of the `model.safetensors` file.
    pub bundle_bytes: u64,
    /// `ok`, or `unloadable` (the bundle failed verification; `error` says why).
    #[serde(default = "ok")]
    pub status: String,
    /// Why the model cannot be loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn ok() -> String {
    "ok".into()
}

impl ModelSummary {
    /// Whether the model is believed to load.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// A page of the model list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Most entries.
    pub limit: usize,
    /// Continue after this id (the previous page's last).
    pub after: Option<ModelId>,
}

/// One page of models, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    /// The entries.
    pub models: Vec<ModelSummary>,
    /// The cursor of the next page, when there is one.
    pub next: Option<ModelId>,
}

/// A verified model and its bundle bytes, as stores hand them out.
#[derive(Debug)]
pub struct Loaded {
    /// The model, ready to predict.
    pub model: Arc<Model>,
    /// The `model.safetensors` bytes it was loaded from.
    pub bytes: Bytes,
    /// Their sha256, hex.
    pub sha256: String,
}

/// A bundle ready to save: what [`crate::export::finish`] makes.
#[derive(Debug, Clone)]
pub struct NewModel {
    /// Its reserved id.
    pub id: ModelId,
    /// The verified `model.safetensors` bytes.
    pub bundle: Vec<u8>,
    /// Its summary (written beside it, so listing never reads bundles).
    pub summary: ModelSummary,
    /// `metadata.json`, pretty-printed.
    pub metadata_json: Vec<u8>,
    /// Other files (`training_curves.svg`, `test_rows.csv`).
    pub extra: Vec<(String, Vec<u8>)>,
}

/// Where models live. Async and location-agnostic: a directory, or a Redis shared by servers.
#[async_trait]
pub trait ModelStore: Send + Sync {
    /// Hand out a fresh id for `date` (`YYYY_MM_DD`); an id is never handed out twice.
    async fn reserve_id(&self, date: &str) -> Result<ModelId, StoreError>;
    /// Save a complete model under its reserved id, atomically.
    async fn save(&self, model: NewModel) -> Result<(), StoreError>;
    /// A page of models, newest first, each marked loadable or not.
    async fn list(&self, page: &Page) -> Result<Listing, StoreError>;
    /// The model, verified (from a cache when loaded before).
    async fn open(&self, id: &ModelId) -> Result<Arc<Loaded>, StoreError>;
    /// Delete a model everywhere this store is seen.
    async fn delete(&self, id: &ModelId) -> Result<(), StoreError>;
    /// The newest model that loads (corrupt newer ones are skipped, and reported by `list`).
    async fn newest(&self) -> Result<Option<ModelId>, StoreError>;
    /// How many models the store holds.
    async fn count(&self) -> Result<usize, StoreError>;
}

/// sha256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_ordered() {
        for bad in ["", ".hidden", "../x", "a/b", "a\\b", "a\0b", "sp ace", &"x".repeat(129)] {
            assert!(ModelId::parse(bad).is_err(), "{bad:?}");
        }
        let long = "y".repeat(10_000);
        let e = ModelId::parse(&long).unwrap_err();
        assert!(e.to_string().len() < 400, "echo is bounded");
        let ids = ["model_2026_01_01_999", "model_2026_01_01_1000", "custom", "model_2026_01_02_001"];
        let mut v: Vec<ModelId> = ids.iter().map(|s| ModelId::parse(s).unwrap()).collect();
        v.sort_by(|a, b| b.order_key().cmp(&a.order_key()));
        let got: Vec<&str> = v.iter().map(ModelId::as_str).collect();
        assert_eq!(got, ["model_2026_01_02_001", "model_2026_01_01_1000", "model_2026_01_01_999", "custom"]);
        assert_eq!(id_for("2026_11_26", 7).as_str(), "model_2026_11_26_007");
    }
}
