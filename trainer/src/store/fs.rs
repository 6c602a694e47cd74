//! The filesystem model store: `models/<model_id>/` holds `model.safetensors` (the bundle),
//! `summary.json` (what listing needs), `metadata.json` and the extra files.
//!
//! - Saving writes a hidden temp directory and renames it into place, so a model directory
//!   exists complete or not at all; ids come from a locked counter file and are never reused.
//! - Listing answers from an in-memory index, refreshed when the directory changes (checked
//!   at most every [`REFRESH_INTERVAL`]), so other processes' saves and deletes show up.
//! - Only regular files are read (never through a symlink, never a FIFO), each size-capped.
//! - Blocking file work runs on tokio's blocking pool, never on the async workers.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use inference::Model;

use super::cache::ModelCache;
use super::{sha256_hex, Listing, Loaded, ModelId, ModelStore, ModelSummary, NewModel, Page};
use crate::error::{ModelNotFoundError, StoreError};

/// File name of the self-contained bundle.
pub const BUNDLE_FILE: &str = "model.safetensors";
/// File name of the human-readable metadata.
pub const METADATA_FILE: &str = "metadata.json";
/// File name of the listing summary.
pub const SUMMARY_FILE: &str = "summary.json";
/// Holds the last id handed out, so deleted ids are never reused.
const LAST_ID_FILE: &str = ".last_model_id";
/// How often, at most, the directory is checked for other processes' changes.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(250);
/// Largest `summary.json` read.
const MAX_SUMMARY_BYTES: u64 = 1 << 20;

/// Settings of a filesystem store.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// Largest bundle file read.
    pub max_bundle_bytes: u64,
    /// Memory for loaded models (see [`ModelCache`]).
    pub cache_bytes: u64,
}

/// Bundles larger than this are refused unless configured otherwise (512 MiB).
pub const DEFAULT_MAX_BUNDLE_BYTES: u64 = 512 << 20;
/// Loaded models are kept up to this many bytes unless configured otherwise (256 MiB).
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;

impl Default for FsOptions {
    fn default() -> Self {
        Self { max_bundle_bytes: DEFAULT_MAX_BUNDLE_BYTES, cache_bytes: DEFAULT_CACHE_BYTES }
    }
}

/// A models directory.
#[derive(Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    opts: FsOptions,
    cache: ModelCache,
    index: Mutex<Index>,
    /// Held while the directory is looked at, so concurrent requests wait for one look instead
    /// of reading the index half-built (at start-up, lists came back empty).
    scan: Mutex<()>,
}

/// Models by id, newest first, and when the directory was last looked at.
#[derive(Default)]
struct Index {
    entries: Vec<(ModelId, ModelSummary)>,
    dir_mtime: Option<SystemTime>,
    checked: Option<Instant>,
}

impl Index {
    /// Whether the directory was looked at within [`REFRESH_INTERVAL`]: the index may be trusted
    /// without looking again.
    fn is_fresh(&self) -> bool {
        self.checked.is_some_and(|t| t.elapsed() < REFRESH_INTERVAL)
    }
}

fn backend(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{context}: {e}"))
}

fn not_found(id: &ModelId, hint: String) -> StoreError {
    StoreError::NotFound(ModelNotFoundError { model: id.to_string(), hint })
}

/// Read `path` if it is a regular file (not a symlink, FIFO or device) of at most `max` bytes.
pub fn read_regular(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f =
        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "is a symbolic link")
            } else {
                e
            }
        })?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    if meta.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} bytes, over the limit of {max}", meta.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    Read::by_ref(&mut f).take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("over the limit of {max} bytes")));
    }
    Ok(bytes)
}

/// Whether `path` is a real directory (not a symlink to one).
fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// A summary from a verified model and its bundle bytes (for bundles saved without one).
pub fn summarize(model: &Model, bytes: &[u8]) -> ModelSummary {
    // (The model id is the bundle's; stores refuse bundles whose id differs from their name.)
    #[derive(serde::Deserialize, Default)]
    struct Head {
        #[serde(default)]
        saved_at: String,
        #[serde(default)]
        test_metrics: serde_json::Value,
        #[serde(default)]
        dataset: Option<Dataset>,
    }
    #[derive(serde::Deserialize)]
    struct Dataset {
        source: String,
        target_column: String,
    }
    let head: Head = serde_json::from_str(model.metadata_json()).unwrap_or_default();
    let (dataset, target_column) = head.dataset.map(|d| (d.source, d.target_column)).unzip();
    ModelSummary {
        model_id: model.id().to_owned(),
        saved_at: head.saved_at,
        task_type: model.task_type().as_str().to_owned(),
        test_metrics: head.test_metrics,
        dataset,
        target_column,
        bundle_sha256: sha256_hex(bytes),
        bundle_bytes: bytes.len() as u64,
        status: "ok".into(),
        error: None,
    }
}

impl FsStore {
    /// A store over `dir` (created if absent); interrupted saves and deletes left by dead
    /// processes are cleaned up.
    pub fn open_dir(dir: &Path, opts: FsOptions) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        clean_stale_temp_dirs(dir);
        let cache = ModelCache::new(opts.cache_bytes);
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                opts,
                cache,
                index: Mutex::default(),
                scan: Mutex::default(),
            }),
        })
    }

    /// The models directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The directory of model `id` (for the CLI's extra files, e.g. `test_rows.csv`).
    pub fn model_dir(&self, id: &ModelId) -> PathBuf {
        self.inner.dir.join(id.as_str())
    }

    /// Run blocking store work on tokio's blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner)).await.map_err(|e| backend("store task", e))?
    }

    /// The highest sequence number among this directory's models of `date` (0 when none).
    pub async fn highest_seq(&self, date: &str) -> Result<u64, StoreError> {
        let date = date.to_owned();
        self.blocking(move |inner| Ok(highest_seq(&inner.dir, &date))).await
    }
}

impl Inner {
    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-read the directory if it may have changed (always when `force`); within
    /// [`REFRESH_INTERVAL`] of the last look it is not even checked.
    fn refresh(&self, force: bool) {
        self.refresh_with(force, true)
    }

    /// As [`Inner::refresh`], but always compare the directory's mtime (a missed id may be new).
    fn refresh_on_miss(&self) {
        self.refresh_with(false, false)
    }

    fn refresh_with(&self, force: bool, rate_limited: bool) {
        if !force && rate_limited && self.index().is_fresh() {
            return;
        }
        let _scanning = self.scan.lock().unwrap_or_else(|p| p.into_inner());
        // Another request may have finished a look while this one waited.
        if !force && rate_limited && self.index().is_fresh() {
            return;
        }
        let now = Instant::now();
        let mtime = fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        {
            let mut ix = self.index();
            if !force && mtime.is_some() && ix.dir_mtime == mtime {
                ix.checked = Some(now);
                return;
            }
        }
        let names: Vec<ModelId> = match fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .filter_map(|e| ModelId::parse(e.file_name().to_str()?).ok())
                .filter(|id| is_real_dir(&self.dir.join(id.as_str())))
                .collect(),
            Err(_) => Vec::new(),
        };
        let known: std::collections::HashMap<ModelId, ModelSummary> = self.index().entries.iter().cloned().collect();
        let mut entries: Vec<(ModelId, ModelSummary)> = names
            .into_iter()
            .filter_map(|id| match known.get(&id) {
                Some(s) => Some((id, s.clone())),
                None => self.discover(&id).map(|s| (id, s)),
            })
            .collect();
        entries.sort_by(|a, b| b.0.order_key().cmp(&a.0.order_key()));
        let mut ix = self.index();
        ix.entries = entries;
        ix.dir_mtime = mtime;
        // Only now: the fast paths of `open` and `newest` trust a fresh index.
        ix.checked = Some(now);
    }

    /// The summary of a model directory not yet indexed: its `summary.json` when it matches the
    /// bundle file's size, else from verifying the bundle. `None` if it holds no bundle.
    fn discover(&self, id: &ModelId) -> Option<ModelSummary> {
        let dir = self.dir.join(id.as_str());
        let bundle = fs::symlink_metadata(dir.join(BUNDLE_FILE)).ok()?;
        let from_file = read_regular(&dir.join(SUMMARY_FILE), MAX_SUMMARY_BYTES)
            .ok()
            .and_then(|b| serde_json::from_slice::<ModelSummary>(&b).ok())
            .filter(|s| s.model_id == id.as_str() && s.bundle_bytes == bundle.len() && bundle.is_file());
        if let Some(s) = from_file {
            return Some(s);
        }
        Some(match self.load(id) {
            Ok(l) => {
                let s = summarize(&l.model, &l.bytes);
                self.cache.put(id.clone(), Arc::new(l));
                s
            }
            Err(e) => unloadable(id, &e),
        })
    }

    /// Read and verify a bundle.
    fn load(&self, id: &ModelId) -> Result<Loaded, StoreError> {
        let dir = self.dir.join(id.as_str());
        if !is_real_dir(&dir) {
            return Err(not_found(id, String::new()));
        }
        let path = dir.join(BUNDLE_FILE);
        let bytes = read_regular(&path, self.opts.max_bundle_bytes).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => not_found(id, String::new()),
            _ => StoreError::Corrupt {
                id: id.to_string(),
                source: inference::BundleError::Safetensors(format!("{BUNDLE_FILE}: {e}")),
            },
        })?;
        let model = Model::from_bytes(&bytes).map_err(|source| StoreError::Corrupt { id: id.to_string(), source })?;
        // One name per model: the directory and the bundle must agree on it.
        if model.id() != id.as_str() {
            return Err(StoreError::Corrupt {
                id: id.to_string(),
                source: inference::BundleError::Inconsistent(format!(
                    "the bundle's model_id is `{}`, its directory `{id}`",
                    inference::error::truncate_echo(model.id())
                )),
            });
        }
        let sha256 = sha256_hex(&bytes);
        Ok(Loaded { model: Arc::new(model), bytes: Bytes::from(bytes), sha256 })
    }

    /// Load (verified) into the cache, or mark the entry unloadable.
    fn load_cached(&self, id: &ModelId) -> Result<Arc<Loaded>, StoreError> {
        if let Some(l) = self.cache.get(id) {
            return Ok(l);
        }
        match self.load(id) {
            Ok(l) => {
                let l = Arc::new(l);
                self.cache.put(id.clone(), l.clone());
                Ok(l)
            }
            Err(e) => {
                if matches!(e, StoreError::Corrupt { .. }) {
                    tracing::warn!(model_id = %id, error = %e, "model cannot be loaded");
                    let mut ix = self.index();
                    if let Some((_, s)) = ix.entries.iter_mut().find(|(i, _)| i == id) {
                        *s = unloadable(id, &e);
                    }
                }
                Err(e)
            }
        }
    }

    fn hint(&self) -> String {
        let ix = self.index();
        let ids: Vec<&str> = ix.entries.iter().filter(|(_, s)| s.is_ok()).take(10).map(|(i, _)| i.as_str()).collect();
        if ids.is_empty() {
            " (there are no models)".into()
        } else {
            format!(" (available: {})", ids.join(", "))
        }
    }

    /// Whether the index lists `id` (no clone: this runs on every predict).
    fn is_indexed(&self, id: &ModelId) -> bool {
        self.index().entries.iter().any(|(i, _)| i == id)
    }
}

fn unloadable(id: &ModelId, e: &StoreError) -> ModelSummary {
    ModelSummary {
        model_id: id.to_string(),
        saved_at: String::new(),
        task_type: String::new(),
        test_metrics: serde_json::Value::Null,
        dataset: None,
        target_column: None,
        bundle_sha256: String::new(),
        bundle_bytes: 0,
        status: "unloadable".into(),
        error: Some(e.to_string()),
    }
}

#[async_trait]
impl ModelStore for FsStore {
    async fn reserve_id(&self, date: &str) -> Result<ModelId, StoreError> {
        let date = date.to_owned();
        self.blocking(move |inner| allocate_id(&inner.dir, &date).map_err(|e| backend("reserving a model id", e))).await
    }

    async fn save(&self, m: NewModel) -> Result<(), StoreError> {
        self.blocking(move |inner| {
            let final_dir = inner.dir.join(m.id.as_str());
            let tmp = inner.dir.join(format!(".tmp-{}-{}", m.id, std::process::id()));
            let summary = serde_json::to_vec_pretty(&m.summary).map_err(|e| backend("summary", e))?;
            let write_all = || -> std::io::Result<()> {
                fs::create_dir(&tmp)?;
                write_synced(&tmp.join(BUNDLE_FILE), &m.bundle)?;
                write_synced(&tmp.join(METADATA_FILE), &m.metadata_json)?;
                write_synced(&tmp.join(SUMMARY_FILE), &summary)?;
                for (name, content) in &m.extra {
                    write_synced(&tmp.join(name), content)?;
                }
                if final_dir.exists() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        format!("model {} already exists", m.id),
                    ));
                }
                fs::rename(&tmp, &final_dir)?;
                // Make the rename itself durable.
                File::open(&inner.dir)?.sync_all()
            };
            if let Err(e) = write_all() {
                let _ = fs::remove_dir_all(&tmp);
                return Err(backend(&format!("saving model {}", m.id), e));
            }
            inner.refresh(true);
            Ok(())
        })
        .await
    }

    async fn list(&self, page: &Page) -> Result<Listing, StoreError> {
        let page = page.clone();
        self.blocking(move |inner| {
            inner.refresh(false);
            let ix = inner.index();
            let start = match &page.after {
                Some(after) => {
                    ix.entries.iter().position(|(i, _)| after.order_key() > i.order_key()).unwrap_or(ix.entries.len())
                }
                None => 0,
            };
            let rest = &ix.entries[start..];
            let models: Vec<ModelSummary> = rest.iter().take(page.limit).map(|(_, s)| s.clone()).collect();
            let next = (rest.len() > page.limit).then(|| rest[page.limit - 1].0.clone());
            Ok(Listing { models, next })
        })
        .await
    }

    async fn open(&self, id: &ModelId) -> Result<Arc<Loaded>, StoreError> {
        // Steady state: a cache hit with no refresh due answers without leaving this thread.
        if self.inner.index().is_fresh() {
            if let (Some(l), true) = (self.inner.cache.get(id), self.inner.is_indexed(id)) {
                return Ok(l);
            }
        }
        let id = id.clone();
        self.blocking(move |inner| {
            inner.refresh(false);
            if !inner.is_indexed(&id) {
                // A stat, not a rescan, unless the directory changed: missing ids cost little.
                inner.refresh_on_miss();
            }
            if !inner.is_indexed(&id) {
                inner.cache.evict(&id);
                return Err(not_found(&id, inner.hint()));
            }
            inner.load_cached(&id)
        })
        .await
    }

    async fn delete(&self, id: &ModelId) -> Result<(), StoreError> {
        let id = id.clone();
        self.blocking(move |inner| {
            inner.refresh(true);
            let dir = inner.dir.join(id.as_str());
            if !inner.is_indexed(&id) || !is_real_dir(&dir) {
                return Err(not_found(&id, String::new()));
            }
            // Rename first so the model disappears at once, then remove.
            let trash = inner.dir.join(format!(".deleted-{id}-{}", uuid::Uuid::new_v4()));
            fs::rename(&dir, &trash).map_err(|e| backend(&format!("deleting model {id}"), e))?;
            let _ = fs::remove_dir_all(&trash);
            inner.cache.evict(&id);
            inner.refresh(true);
            Ok(())
        })
        .await
    }

    async fn newest(&self) -> Result<Option<ModelId>, StoreError> {
        // Steady state, as in `open`: the newest usable entry is cached and no refresh is due.
        // Why: the hop to the blocking pool was two context switches per predict without an id
        // (profiled: half the server's cycles in the scheduler).
        {
            let ix = self.inner.index();
            if ix.is_fresh() {
                if let Some((id, _)) = ix.entries.iter().find(|(_, s)| s.is_ok()) {
                    if self.inner.cache.get(id).is_some() {
                        return Ok(Some(id.clone()));
                    }
                }
            }
        }
        self.blocking(|inner| {
            inner.refresh(false);
            let candidates: Vec<ModelId> =
                inner.index().entries.iter().filter(|(_, s)| s.is_ok()).map(|(i, _)| i.clone()).collect();
            for id in candidates {
                match inner.load_cached(&id) {
                    Ok(_) => return Ok(Some(id)),
                    Err(StoreError::Corrupt { .. } | StoreError::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            Ok(None)
        })
        .await
    }

    async fn count(&self) -> Result<usize, StoreError> {
        self.blocking(|inner| {
            inner.refresh(false);
            Ok(inner.index().entries.len())
        })
        .await
    }
}

/// Hand out the next id for `date` (`YYYY_MM_DD`), e.g. `model_2026_11_26_001`. A locked
/// counter file serialises concurrent trainers, across processes too.
pub fn allocate_id(models_dir: &Path, date: &str) -> std::io::Result<ModelId> {
    fs::create_dir_all(models_dir)?;
    let mut f: File =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(models_dir.join(LAST_ID_FILE))?;
    f.lock()?;
    let mut last = String::new();
    f.read_to_string(&mut last)?;
    let next = sequence_of(&format!("model_{date}_"), last.trim()).unwrap_or(0).max(highest_seq(models_dir, date));
    let id = super::id_for(date, next + 1);
    f.set_len(0)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(id.as_str().as_bytes())?;
    f.sync_all()?;
    Ok(id)
}

fn sequence_of(prefix: &str, id: &str) -> Option<u64> {
    id.strip_prefix(prefix).and_then(|s| s.parse::<u64>().ok())
}

/// The highest sequence number among `models_dir`'s models of `date` (0 when none).
pub fn highest_seq(models_dir: &Path, date: &str) -> u64 {
    let prefix = format!("model_{date}_");
    let Ok(rd) = fs::read_dir(models_dir) else { return 0 };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| sequence_of(&prefix, n)))
        .max()
        .unwrap_or(0)
}

/// Remove temp directories left by saves whose process is gone (a running `trainer train`
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

/// Load the model in `dir` (a directory holding `model.safetensors`), as the CLI's
/// `--model DIR` does; errors name the directory as given.
pub fn load_dir(dir: &Path, max_bytes: u64) -> Result<Loaded, StoreError> {
    let bytes = read_regular(&dir.join(BUNDLE_FILE), max_bytes).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            StoreError::NotFound(ModelNotFoundError { model: dir.display().to_string(), hint: String::new() })
        }
        _ => StoreError::Corrupt {
            id: dir.display().to_string(),
            source: inference::BundleError::Safetensors(e.to_string()),
        },
    })?;
    let model =
        Model::from_bytes(&bytes).map_err(|source| StoreError::Corrupt { id: dir.display().to_string(), source })?;
    let sha256 = sha256_hex(&bytes);
    Ok(Loaded { model: Arc::new(model), bytes: Bytes::from(bytes), sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed fixture bundle, renamed `id`.
    fn fixture_bytes(id: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/parity/esg_relu/model.safetensors");
        let mut b = inference::Bundle::from_bytes(&fs::read(path).unwrap()).unwrap();
        b.metadata.model_id = id.to_owned();
        b.to_safetensors().unwrap()
    }

    /// A model directory as an older build wrote it (no summary.json).
    fn plant(dir: &Path, id: &str, bytes: &[u8]) {
        fs::create_dir_all(dir.join(id)).unwrap();
        fs::write(dir.join(id).join(BUNDLE_FILE), bytes).unwrap();
    }

    /// A store over `dir` holding models `{day}_001` to `{day}_{n}`, bundles only.
    fn planted_store(dir: &Path, day: &str, n: usize) -> FsStore {
        for i in 1..=n {
            let id = format!("{day}_{i:03}");
            plant(dir, &id, &fixture_bytes(&id));
        }
        FsStore::open_dir(dir, FsOptions::default()).unwrap()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// Requests racing the first look at a directory all see every model: none reads the index
    /// while another request is still building it.
    #[test]
    fn concurrent_first_looks_see_every_model() {
        let d = tempfile::tempdir().unwrap();
        // No summary.json: each model is verified on discovery, which keeps the first look slow.
        let store = planted_store(d.path(), "model_2026_12_02", 40);
        let seen: Vec<usize> = std::thread::scope(|s| {
            let looks: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        store.inner.refresh(false);
                        store.inner.index().entries.len()
                    })
                })
                .collect();
            looks.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(seen, vec![40; 4]);
    }

    #[test]
    fn ids_increase_and_are_never_reused() {
        let d = tempfile::tempdir().unwrap();
        let a = allocate_id(d.path(), "2026_11_26").unwrap();
        assert_eq!(a.as_str(), "model_2026_11_26_001");
        plant(d.path(), a.as_str(), b"x");
        assert_eq!(allocate_id(d.path(), "2026_11_26").unwrap().as_str(), "model_2026_11_26_002");
        // Deleting the newest model must not hand its id out again.
        fs::remove_dir_all(d.path().join(a.as_str())).unwrap();
        assert_eq!(allocate_id(d.path(), "2026_11_26").unwrap().as_str(), "model_2026_11_26_003");
        assert_eq!(allocate_id(d.path(), "2026_11_27").unwrap().as_str(), "model_2026_11_27_001");
    }

    #[test]
    fn corrupt_models_are_listed_as_unloadable_and_skipped_as_newest() {
        let d = tempfile::tempdir().unwrap();
        plant(d.path(), "model_2026_01_01_001", &fixture_bytes("model_2026_01_01_001"));
        plant(d.path(), "model_2026_01_01_003", &fixture_bytes("another_name"));
        let mut bad = fixture_bytes("model_2026_01_01_002");
        let last = bad.len() - 3;
        bad[last] ^= 0x40;
        plant(d.path(), "model_2026_01_01_002", &bad);
        fs::create_dir(d.path().join("not_a_model")).unwrap();
        let store = FsStore::open_dir(d.path(), FsOptions::default()).unwrap();
        let rt = rt();
        let newest = rt.block_on(store.newest()).unwrap().unwrap();
        assert_eq!(newest.as_str(), "model_2026_01_01_001");
        let list = rt.block_on(store.list(&Page { limit: 10, after: None })).unwrap();
        let status: Vec<(&str, &str)> = list.models.iter().map(|s| (s.model_id.as_str(), s.status.as_str())).collect();
        assert_eq!(
            status,
            [
                ("model_2026_01_01_003", "unloadable"),
                ("model_2026_01_01_002", "unloadable"),
                ("model_2026_01_01_001", "ok")
            ]
        );
        assert!(list.models[0].error.as_deref().unwrap().contains("its directory"), "{:?}", list.models[0]);
        assert!(list.models[1].error.as_deref().unwrap().contains("weights_sha256 mismatch"));
        let id = ModelId::parse("model_2026_01_01_002").unwrap();
        assert!(matches!(rt.block_on(store.open(&id)), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn symlinks_and_fifos_are_never_read() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        plant(outside.path(), "model_2026_01_01_001", &fixture_bytes("model_2026_01_01_001"));
        std::os::unix::fs::symlink(outside.path().join("model_2026_01_01_001"), d.path().join("model_2026_01_01_001"))
            .unwrap();
        fs::create_dir(d.path().join("model_2026_01_01_002")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("model_2026_01_01_002").join(BUNDLE_FILE)).unwrap();
        fs::create_dir(d.path().join("model_2026_01_01_003")).unwrap();
        let fifo = d.path().join("model_2026_01_01_003").join(BUNDLE_FILE);
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let store = FsStore::open_dir(d.path(), FsOptions::default()).unwrap();
        let rt = rt();
        // The symlinked directory is not a model; the other two are unloadable; nothing hangs.
        assert_eq!(rt.block_on(store.newest()).unwrap(), None);
        for id in ["model_2026_01_01_002", "model_2026_01_01_003"] {
            let id = ModelId::parse(id).unwrap();
            assert!(matches!(rt.block_on(store.open(&id)), Err(StoreError::Corrupt { .. })), "{id}");
        }
        let id = ModelId::parse("model_2026_01_01_001").unwrap();
        assert!(matches!(rt.block_on(store.open(&id)), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn pages_follow_the_cursor() {
        let d = tempfile::tempdir().unwrap();
        let store = planted_store(d.path(), "model_2026_01_01", 5);
        let rt = rt();
        let p1 = rt.block_on(store.list(&Page { limit: 2, after: None })).unwrap();
        let ids = |l: &Listing| l.models.iter().map(|s| s.model_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&p1), ["model_2026_01_01_005", "model_2026_01_01_004"]);
        let p2 = rt.block_on(store.list(&Page { limit: 2, after: p1.next.clone() })).unwrap();
        assert_eq!(ids(&p2), ["model_2026_01_01_003", "model_2026_01_01_002"]);
        let p3 = rt.block_on(store.list(&Page { limit: 2, after: p2.next.clone() })).unwrap();
        assert_eq!((ids(&p3), p3.next), (vec!["model_2026_01_01_001".to_owned()], None));
        assert_eq!(rt.block_on(store.count()).unwrap(), 5);
    }

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
