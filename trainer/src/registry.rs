//! The models directory: model ids (date + sequence, never reused), listing, and resolving
//! `--model ID|DIR` to a bundle directory.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::ModelNotFoundError;

/// File name of the self-contained bundle.
pub const BUNDLE_FILE: &str = "model.safetensors";
/// File name of the human-readable metadata.
pub const METADATA_FILE: &str = "metadata.json";
/// Holds the last id handed out, so deleted ids are never reused.
const LAST_ID_FILE: &str = ".last_model_id";

/// One saved model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// Directory name (the model id).
    pub id: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Modification time of its bundle file.
    pub modified: SystemTime,
}

/// Sequence number of `id` if it is of the form `{prefix}NNN`.
fn sequence(id: &str, prefix: &str) -> Option<u32> {
    id.strip_prefix(prefix).and_then(|s| s.parse().ok())
}

/// Hand out the next id for `date` (`YYYY_MM_DD`), e.g. `model_2026_11_26_001`. A lock file
/// serialises concurrent trainers, across processes too.
pub fn allocate_id(models_dir: &Path, date: &str) -> std::io::Result<String> {
    fs::create_dir_all(models_dir)?;
    let mut f: File =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(models_dir.join(LAST_ID_FILE))?;
    f.lock()?;
    let mut last = String::new();
    f.read_to_string(&mut last)?;
    let prefix = format!("model_{date}_");
    let mut next = sequence(last.trim(), &prefix).unwrap_or(0);
    for e in list(models_dir) {
        next = next.max(sequence(&e.id, &prefix).unwrap_or(0));
    }
    let id = format!("{prefix}{:03}", next + 1);
    f.set_len(0)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(id.as_bytes())?;
    f.sync_all()?;
    Ok(id)
}

/// Complete models (directories holding a bundle file), newest first by id then time.
/// Hidden directories (in-progress exports) are skipped.
pub fn list(models_dir: &Path) -> Vec<ModelEntry> {
    let Ok(rd) = fs::read_dir(models_dir) else {
        return Vec::new();
    };
    let mut v: Vec<ModelEntry> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let id = e.file_name().to_str()?.to_owned();
            if id.starts_with('.') {
                return None;
            }
            let modified = fs::metadata(e.path().join(BUNDLE_FILE)).ok()?.modified().ok()?;
            Some(ModelEntry { id, dir: e.path(), modified })
        })
        .collect();
    v.sort_by(|a, b| order_key(&b.id).cmp(&order_key(&a.id)).then(b.modified.cmp(&a.modified)));
    v
}

/// Ids sort by date, then sequence as a number (`…_1000` after `…_999`); other names last.
fn order_key(id: &str) -> (bool, &str, u64, &str) {
    let parsed = id.strip_prefix("model_").and_then(|rest| {
        let (date, seq) = rest.rsplit_once('_')?;
        Some((date, seq.parse::<u64>().ok()?))
    });
    match parsed {
        Some((date, seq)) => (true, date, seq, id),
        None => (false, "", 0, id),
    }
}

/// Resolve a model id (under `models_dir`) or a directory path holding a bundle.
pub fn resolve(models_dir: &Path, model: &str) -> Result<PathBuf, ModelNotFoundError> {
    let as_path = Path::new(model);
    if as_path.join(BUNDLE_FILE).is_file() {
        return Ok(as_path.to_owned());
    }
    let valid_id = !model.is_empty() && !model.starts_with('.') && !model.contains(['/', '\\']);
    if valid_id && models_dir.join(model).join(BUNDLE_FILE).is_file() {
        return Ok(models_dir.join(model));
    }
    let ids: Vec<String> = list(models_dir).into_iter().take(10).map(|e| e.id).collect();
    Err(ModelNotFoundError {
        model: model.to_owned(),
        models_dir: models_dir.to_owned(),
        hint: if ids.is_empty() { " (it holds no models)".into() } else { format!(" (available: {})", ids.join(", ")) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_are_never_reused() {
        let d = tempfile::tempdir().unwrap();
        let a = allocate_id(d.path(), "2026_11_26").unwrap();
        assert_eq!(a, "model_2026_11_26_001");
        fs::create_dir(d.path().join(&a)).unwrap();
        fs::write(d.path().join(&a).join(BUNDLE_FILE), b"x").unwrap();
        let b = allocate_id(d.path(), "2026_11_26").unwrap();
        assert_eq!(b, "model_2026_11_26_002");
        // Deleting the newest model must not hand its id out again.
        fs::remove_dir_all(d.path().join(&a)).unwrap();
        assert_eq!(allocate_id(d.path(), "2026_11_26").unwrap(), "model_2026_11_26_003");
        assert_eq!(allocate_id(d.path(), "2026_11_27").unwrap(), "model_2026_11_27_001");
    }

    #[test]
    fn resolve_by_id_or_dir_and_list_newest_first() {
        let d = tempfile::tempdir().unwrap();
        for id in ["model_2026_01_01_999", "model_2026_01_01_1000", ".tmp-x"] {
            fs::create_dir(d.path().join(id)).unwrap();
            fs::write(d.path().join(id).join(BUNDLE_FILE), b"x").unwrap();
        }
        let ids: Vec<String> = list(d.path()).into_iter().map(|e| e.id).collect();
        assert_eq!(ids, vec!["model_2026_01_01_1000", "model_2026_01_01_999"]);
        let d = tempfile::tempdir().unwrap();
        for id in ["model_2026_01_01_001", "model_2026_01_02_001", ".tmp-x"] {
            fs::create_dir(d.path().join(id)).unwrap();
            fs::write(d.path().join(id).join(BUNDLE_FILE), b"x").unwrap();
        }
        let ids: Vec<String> = list(d.path()).into_iter().map(|e| e.id).collect();
        assert_eq!(ids, vec!["model_2026_01_02_001", "model_2026_01_01_001"]);
        assert!(resolve(d.path(), "model_2026_01_01_001").is_ok());
        let dir = d.path().join("model_2026_01_01_001");
        assert_eq!(resolve(d.path(), dir.to_str().unwrap()).unwrap(), dir);
        let e = resolve(d.path(), "nope").unwrap_err();
        assert!(e.to_string().contains("available: model_2026_01_02_001"), "{e}");
        assert!(resolve(d.path(), "../x").is_err());
        assert!(resolve(d.path(), ".tmp-x").is_err());
    }
}
