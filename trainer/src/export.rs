//! Writing a model directory atomically: everything goes into a hidden temp directory that
//! is renamed into place, so a model directory exists complete or not at all.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use inference::bundle::weights_sha256;
use inference::{Bundle, Metadata, Tensor};

use crate::error::TrainingError;
use crate::registry::{allocate_id, BUNDLE_FILE, METADATA_FILE};

/// File name of the loss-curve plot.
pub const CURVES_FILE: &str = "training_curves.svg";

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Save a bundle (plus `extra` files) under a fresh model id. Fills in `model_id`, `saved_at`
/// and `weights_sha256`; returns the completed metadata and the model directory.
pub fn save(
    models_dir: &Path,
    mut metadata: Metadata,
    tensors: BTreeMap<String, Tensor>,
    extra: &[(&str, Vec<u8>)],
) -> Result<(Metadata, PathBuf), TrainingError> {
    let fail = |path: &Path, message: String| TrainingError::Export { path: path.to_owned(), message };
    let now = chrono::Utc::now();
    let id =
        allocate_id(models_dir, &now.format("%Y_%m_%d").to_string()).map_err(|e| fail(models_dir, e.to_string()))?;
    metadata.model_id = id.clone();
    metadata.saved_at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    metadata.weights_sha256 = weights_sha256(&tensors);
    let bundle = Bundle { metadata, tensors };
    let bytes = bundle.to_safetensors().map_err(|e| fail(models_dir, e.to_string()))?;
    // Never publish a bundle the inference core would refuse.
    Bundle::from_bytes(&bytes).map_err(|e| fail(models_dir, format!("bundle failed verification: {e}")))?;
    let pretty = serde_json::to_vec_pretty(&bundle.metadata).map_err(|e| fail(models_dir, e.to_string()))?;

    let final_dir = models_dir.join(&id);
    let tmp = models_dir.join(format!(".tmp-{id}-{}", std::process::id()));
    let write_all = || -> std::io::Result<()> {
        fs::create_dir(&tmp)?;
        write_synced(&tmp.join(BUNDLE_FILE), &bytes)?;
        write_synced(&tmp.join(METADATA_FILE), &pretty)?;
        for (name, content) in extra {
            write_synced(&tmp.join(name), content)?;
        }
        if final_dir.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} already exists", final_dir.display()),
            ));
        }
        fs::rename(&tmp, &final_dir)?;
        // Make the rename itself durable.
        fs::File::open(models_dir)?.sync_all()
    };
    if let Err(e) = write_all() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(fail(&final_dir, e.to_string()));
    }
    Ok((bundle.metadata, final_dir))
}

/// Remove temp directories left by exports whose process is gone (a running `trainer train`
/// on the same directory keeps its own), and leftovers of interrupted deletions.
pub fn clean_stale_temp_dirs(models_dir: &Path) {
    let Ok(rd) = fs::read_dir(models_dir) else { return };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = if let Some(rest) = name.strip_prefix(".tmp-") {
            // `.tmp-<model_id>-<pid>`
            let pid = rest.rsplit_once('-').and_then(|(_, pid)| pid.parse::<u32>().ok());
            pid.is_none_or(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists())
        } else {
            name.starts_with(".deleted-")
        };
        if stale {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dead_processes_temp_dirs_are_cleaned() {
        let d = tempfile::tempdir().unwrap();
        let live = format!(".tmp-model_x_001-{}", std::process::id());
        for n in [live.as_str(), ".tmp-model_x_002-999999999", ".deleted-model_x_003-u", "model_x_004"] {
            fs::create_dir(d.path().join(n)).unwrap();
        }
        clean_stale_temp_dirs(d.path());
        let mut left: Vec<String> =
            fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, vec![live, "model_x_004".to_owned()]);
    }
}
