//! Loaded bundles, cached by id and bundle modification time, so steady-state prediction
//! reads nothing from disk; the "newest model" is re-listed only when the directory changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use inference::Model;

use super::error::ApiError;
use crate::registry::{self, BUNDLE_FILE};

struct Entry {
    modified: SystemTime,
    model: Arc<Model>,
}

#[derive(Default)]
struct Newest {
    dir_modified: Option<SystemTime>,
    id: Option<String>,
}

/// The cache.
pub struct ModelCache {
    dir: PathBuf,
    entries: RwLock<HashMap<String, Entry>>,
    newest: Mutex<Newest>,
}

/// Whether `id` can name a model directory (no paths, no hidden entries).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 200 && !id.starts_with('.') && !id.contains(['/', '\\', '\0'])
}

impl ModelCache {
    /// A cache over `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned(), entries: RwLock::default(), newest: Mutex::default() }
    }

    /// The models directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model `id`, loading (or reloading, when its file changed) as needed.
    pub fn get(&self, id: &str) -> Result<Arc<Model>, ApiError> {
        let not_found = || ApiError::not_found("model_not_found", format!("model `{id}` not found"));
        if !valid_id(id) {
            return Err(not_found());
        }
        let path = self.dir.join(id).join(BUNDLE_FILE);
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).map_err(|_| not_found())?;
        if let Some(e) = self.entries.read().unwrap_or_else(|p| p.into_inner()).get(id) {
            if e.modified == modified {
                return Ok(e.model.clone());
            }
        }
        let bytes = std::fs::read(&path).map_err(|_| not_found())?;
        let model = Model::from_bytes(&bytes)
            .map_err(|e| ApiError::internal("corrupt_model", format!("model `{id}` cannot be loaded: {e}")))?;
        let model = Arc::new(model);
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), Entry { modified, model: model.clone() });
        Ok(model)
    }

    /// Id of the newest model, if any.
    pub fn newest_id(&self) -> Option<String> {
        let dir_modified = std::fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        let mut n = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        if n.dir_modified != dir_modified || dir_modified.is_none() {
            n.id = registry::list(&self.dir).into_iter().next().map(|e| e.id);
            n.dir_modified = dir_modified;
        }
        n.id.clone()
    }

    /// Forget a model (after deletion) and force the next newest-lookup to re-list.
    pub fn evict(&self, id: &str) {
        self.entries.write().unwrap_or_else(|p| p.into_inner()).remove(id);
        self.newest.lock().unwrap_or_else(|p| p.into_inner()).dir_modified = None;
    }
}
