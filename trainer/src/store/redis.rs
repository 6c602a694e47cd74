//! Models shared through Redis, so every server predicts with every model:
//!
//! - `{prefix}model:{id}`: a hash holding the bundle bytes (`bundle`, at most
//!   `max_bundle_bytes`), its `sha256`, the `summary` and `metadata` JSON, and `file:NAME`
//!   for the other files (curves, test rows);
//! - `{prefix}models`: a sorted set of the ids, newest first by date and sequence;
//! - `{prefix}model_seq:{date}`: the `INCR` counter ids come from, unique across processes.
//!
//! Each server keeps verified copies: loaded models in memory (a byte-bounded LRU) and the
//! bundle files in a local cache directory, checked against the stored sha256 before use.
//! A cached model is re-checked against Redis at most every [`REVALIDATE`], so a delete on
//! one server reaches the others within that; while Redis is unreachable the cached copies
//! keep serving.
//!
//! [`SharedIds`] is the other deployment: models in a shared directory ([`FsStore`], e.g.
//! on NFS), ids from the same Redis counter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use redis::Script;

use inference::Model;

use super::cache::ModelCache;
use super::fs::FsStore;
use super::{id_for, sha256_hex, Listing, Loaded, ModelId, ModelStore, ModelSummary, NewModel, Page};
use crate::error::{ModelNotFoundError, StoreError};
use crate::redis_pool::Pool;

/// How long a cached model is used before Redis is asked whether it still exists.
pub const REVALIDATE: Duration = Duration::from_secs(1);

/// Default cap on a bundle stored in Redis.
pub const DEFAULT_MAX_REDIS_BUNDLE_BYTES: u64 = 64 << 20;

/// Settings of the Redis model store.
#[derive(Debug, Clone)]
pub struct RedisStoreOptions {
    /// Largest bundle stored (bigger ones fail to save: use a shared directory instead).
    pub max_bundle_bytes: u64,
    /// Memory for loaded models.
    pub cache_bytes: u64,
    /// Where verified bundle files are cached on this machine.
    pub cache_dir: PathBuf,
}

const SAVE: &str = r"
-- KEYS: model hash, ids sorted set. ARGV: id, score, field/value pairs.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1";

const DELETE: &str = r"
-- KEYS: model hash, ids sorted set. ARGV: id.
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])";

/// The sorted-set score of an id: newest date and sequence highest (`model_YYYY_MM_DD_SEQ`
/// → YYYYMMDD·10⁷ + SEQ, exact in an f64); other ids 0.
fn score(id: &ModelId) -> f64 {
    let (_, date, seq, _) = id.order_key();
    let date: String = date.chars().filter(char::is_ascii_digit).collect();
    match date.parse::<u64>() {
        Ok(d) if date.len() == 8 => d as f64 * 1e7 + seq.min(9_999_999) as f64,
        _ => 0.0,
    }
}

/// Hands out model ids from Redis `INCR`: unique across every process sharing the Redis.
#[derive(Clone)]
pub struct SharedIds {
    pool: Pool,
    script: Arc<Script>,
}

/// The next sequence number of a date, never at or below a floor: `INCR`, raised past ARGV[1]
/// (the highest sequence a store already holds) and past the highest id in the sorted set
/// KEYS[2] (the Redis store's list) within ARGV[2]..ARGV[3]. A counter lost with Redis's data
/// (or evicted alone) would otherwise restart at 1 and hand out ids that models already have.
const RESERVE: &str = r"
local n = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
local top = redis.call('ZREVRANGEBYSCORE', KEYS[2], ARGV[3], ARGV[2], 'WITHSCORES', 'LIMIT', 0, 1)
if top[2] then
  floor = math.max(floor, tonumber(top[2]) - tonumber(ARGV[2]))
end
if n <= floor then
  n = floor + 1
  redis.call('SET', KEYS[1], n)
end
return n
";

impl SharedIds {
    /// Ids from `pool`'s Redis.
    pub fn new(pool: Pool) -> Self {
        Self { pool, script: Arc::new(Script::new(RESERVE)) }
    }

    /// The next id for `date` (`YYYY_MM_DD`), above `floor` (the highest sequence number of
    /// that date a store already holds) and above every id of that date in the Redis store.
    pub async fn reserve(&self, date: &str, floor: u64) -> Result<ModelId, StoreError> {
        let (key, ids, script) =
            (self.pool.key(&format!("model_seq:{date}")), self.pool.key("models"), self.script.clone());
        // The Redis store's scores: date × 10^7 + sequence (see `score`).
        let day = score(&id_for(date, 0));
        let n: u64 = self
            .pool
            .call(move |p| p.run(|c| script.key(&key).key(&ids).arg(floor).arg(day).arg(day + 9_999_999.0).invoke(c)))
            .await
            .map_err(StoreError::Backend)?;
        Ok(id_for(date, n))
    }
}

/// Models in Redis, with verified local copies.
pub struct RedisStore {
    pool: Pool,
    ids: SharedIds,
    opts: RedisStoreOptions,
    cache: ModelCache,
    /// When each cached model was last confirmed in Redis.
    checked: Mutex<HashMap<ModelId, Instant>>,
    save: Arc<Script>,
    delete: Arc<Script>,
}

fn backend(e: String) -> StoreError {
    StoreError::Backend(e)
}

fn not_found(id: &ModelId) -> StoreError {
    StoreError::NotFound(ModelNotFoundError { model: id.to_string(), hint: String::new() })
}

/// Write `bytes` to `path` through a temp file and a rename: whole or absent.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

impl RedisStore {
    /// A store on `pool` (creates the cache directory).
    pub fn new(pool: Pool, opts: RedisStoreOptions) -> std::io::Result<Self> {
        std::fs::create_dir_all(&opts.cache_dir)?;
        Ok(Self {
            ids: SharedIds::new(pool.clone()),
            cache: ModelCache::new(opts.cache_bytes),
            pool,
            opts,
            checked: Mutex::default(),
            save: Arc::new(Script::new(SAVE)),
            delete: Arc::new(Script::new(DELETE)),
        })
    }

    fn model_key(&self, id: &ModelId) -> String {
        self.pool.key(&format!("model:{id}"))
    }

    fn ids_key(&self) -> String {
        self.pool.key("models")
    }

    fn cache_file(&self, id: &ModelId) -> PathBuf {
        self.opts.cache_dir.join(format!("{id}.safetensors"))
    }

    fn checked(&self) -> std::sync::MutexGuard<'_, HashMap<ModelId, Instant>> {
        self.checked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forget every local copy of `id`.
    fn forget(&self, id: &ModelId) {
        self.cache.evict(id);
        self.checked().remove(id);
        let _ = std::fs::remove_file(self.cache_file(id));
    }

    /// Keep a verified model and note that Redis just confirmed it.
    fn keep(&self, id: &ModelId, loaded: Loaded) -> Arc<Loaded> {
        let loaded = Arc::new(loaded);
        self.cache.put(id.clone(), loaded.clone());
        self.checked().insert(id.clone(), Instant::now());
        loaded
    }

    /// Verify `bytes` against `sha256` and load them.
    fn load(id: &ModelId, bytes: Vec<u8>, sha256: &str) -> Result<Loaded, StoreError> {
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            return Err(StoreError::Corrupt {
                id: id.to_string(),
                source: inference::BundleError::HashMismatch { expected: sha256.to_owned(), actual },
            });
        }
        let model = Model::from_bytes(&bytes).map_err(|source| StoreError::Corrupt { id: id.to_string(), source })?;
        Ok(Loaded { model: Arc::new(model), bytes: Bytes::from(bytes), sha256: actual })
    }

    /// The local cache file, if it holds exactly `sha256`.
    fn cached_file(&self, id: &ModelId, sha256: &str) -> Option<Loaded> {
        let bytes = super::fs::read_regular(&self.cache_file(id), self.opts.max_bundle_bytes).ok()?;
        Self::load(id, bytes, sha256).ok()
    }
}

#[async_trait]
impl ModelStore for RedisStore {
    async fn reserve_id(&self, date: &str) -> Result<ModelId, StoreError> {
        self.ids.reserve(date, 0).await
    }

    async fn save(&self, m: NewModel) -> Result<(), StoreError> {
        let size = m.bundle.len() as u64;
        if size > self.opts.max_bundle_bytes {
            return Err(StoreError::TooLarge { id: m.id.to_string(), size, limit: self.opts.max_bundle_bytes });
        }
        let summary = serde_json::to_vec(&m.summary).map_err(|e| backend(e.to_string()))?;
        let (script, key, ids, id, score) =
            (self.save.clone(), self.model_key(&m.id), self.ids_key(), m.id.to_string(), score(&m.id));
        let sha = m.summary.bundle_sha256.clone();
        let bundle = m.bundle.clone();
        let saved: i64 = self
            .pool
            .call(move |p| {
                p.run(|c| {
                    let mut inv = script.key(&key);
                    inv.key(&ids).arg(&id).arg(score);
                    inv.arg("bundle").arg(&m.bundle).arg("sha256").arg(&sha).arg("summary").arg(&summary);
                    inv.arg("metadata").arg(&m.metadata_json);
                    for (name, content) in &m.extra {
                        inv.arg(format!("file:{name}")).arg(content);
                    }
                    inv.invoke(c)
                })
            })
            .await
            .map_err(backend)?;
        if saved == 0 {
            return Err(backend(format!("model {} already exists", m.id)));
        }
        // This server has the bytes already: cache them (best effort).
        if let Err(e) = write_atomic(&self.cache_file(&m.id), &bundle) {
            tracing::warn!(model_id = %m.id, error = %e, "cannot cache the bundle locally");
        }
        Ok(())
    }

    async fn list(&self, page: &Page) -> Result<Listing, StoreError> {
        let max = match &page.after {
            Some(after) => format!("({}", score(after)),
            None => "+inf".to_owned(),
        };
        let (ids_key, prefix, limit) = (self.ids_key(), self.pool.key("model:"), page.limit);
        let (ids, summaries): (Vec<String>, Vec<Option<Vec<u8>>>) = self
            .pool
            .call(move |p| {
                p.run(|c| {
                    let ids: Vec<String> = redis::cmd("ZREVRANGEBYSCORE")
                        .arg(&ids_key)
                        .arg(&max)
                        .arg("-inf")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(limit + 1)
                        .query(c)?;
                    let mut pipe = redis::pipe();
                    for id in ids.iter().take(limit) {
                        pipe.cmd("HGET").arg(format!("{prefix}{id}")).arg("summary");
                    }
                    let summaries: Vec<Option<Vec<u8>>> = if ids.is_empty() { Vec::new() } else { pipe.query(c)? };
                    Ok((ids, summaries))
                })
            })
            .await
            .map_err(backend)?;
        let models: Vec<ModelSummary> =
            summaries.into_iter().flatten().filter_map(|s| serde_json::from_slice(&s).ok()).collect();
        let next = (ids.len() > limit).then(|| ids.get(limit - 1).and_then(|i| ModelId::parse(i).ok())).flatten();
        Ok(Listing { models, next })
    }

    async fn open(&self, id: &ModelId) -> Result<Arc<Loaded>, StoreError> {
        let fresh = self.checked().get(id).is_some_and(|t| t.elapsed() < REVALIDATE);
        if fresh {
            if let Some(l) = self.cache.get(id) {
                return Ok(l);
            }
        }
        let key = self.model_key(id);
        let sha: Result<Option<String>, String> =
            self.pool.call(move |p| p.run(|c| redis::cmd("HGET").arg(&key).arg("sha256").query(c))).await;
        let sha = match sha {
            Ok(Some(sha)) => sha,
            Ok(None) => {
                self.forget(id);
                return Err(not_found(id));
            }
            Err(e) => {
                // Redis is away: keep serving what this server has verified before.
                if let Some(l) = self.cache.get(id) {
                    tracing::warn!(model_id = %id, error = %e, "serving the cached model while redis is unreachable");
                    return Ok(l);
                }
                return Err(backend(e));
            }
        };
        if let Some(l) = self.cache.get(id).filter(|l| l.sha256 == sha) {
            self.checked().insert(id.clone(), Instant::now());
            return Ok(l);
        }
        if let Some(l) = self.cached_file(id, &sha) {
            return Ok(self.keep(id, l));
        }
        let (key, max) = (self.model_key(id), self.opts.max_bundle_bytes);
        let bytes: Option<Vec<u8>> = self
            .pool
            .call(move |p| {
                p.run(|c| {
                    let len: u64 = redis::cmd("HSTRLEN").arg(&key).arg("bundle").query(c)?;
                    if len > max {
                        return Ok(Some(Vec::new()));
                    }
                    redis::cmd("HGET").arg(&key).arg("bundle").query(c)
                })
            })
            .await
            .map_err(backend)?;
        let bytes = match bytes {
            None => return Err(not_found(id)),
            Some(b) if b.is_empty() => {
                return Err(StoreError::TooLarge { id: id.to_string(), size: max + 1, limit: max });
            }
            Some(b) => b,
        };
        let (cache_file, owned_id, expected) = (self.cache_file(id), id.clone(), sha.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            let loaded = Self::load(&owned_id, bytes, &expected)?;
            if let Err(e) = write_atomic(&cache_file, &loaded.bytes) {
                tracing::warn!(model_id = %owned_id, error = %e, "cannot cache the bundle locally");
            }
            Ok::<_, StoreError>(loaded)
        })
        .await
        .map_err(|e| backend(format!("loading panicked: {e}")))??;
        Ok(self.keep(id, loaded))
    }

    async fn delete(&self, id: &ModelId) -> Result<(), StoreError> {
        let (script, key, ids, sid) = (self.delete.clone(), self.model_key(id), self.ids_key(), id.to_string());
        let removed: i64 = self
            .pool
            .call(move |p| p.run(|c| script.key(&key).key(&ids).arg(&sid).invoke(c)))
            .await
            .map_err(backend)?;
        self.forget(id);
        if removed == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    async fn newest(&self) -> Result<Option<ModelId>, StoreError> {
        let ids_key = self.ids_key();
        let ids: Vec<String> = self
            .pool
            .call(move |p| p.run(|c| redis::cmd("ZREVRANGE").arg(&ids_key).arg(0).arg(9).query(c)))
            .await
            .map_err(backend)?;
        for id in ids.iter().filter_map(|i| ModelId::parse(i).ok()) {
            match self.open(&id).await {
                Ok(_) => return Ok(Some(id)),
                Err(StoreError::Corrupt { .. } | StoreError::NotFound(_) | StoreError::TooLarge { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    async fn count(&self) -> Result<usize, StoreError> {
        let ids_key = self.ids_key();
        self.pool.call(move |p| p.run(|c| redis::cmd("ZCARD").arg(&ids_key).query(c))).await.map_err(backend)
    }
}

/// A shared models directory with ids from Redis (`--model-store dir` with `--redis`).
pub struct DirWithSharedIds {
    /// The directory store.
    pub dir: FsStore,
    /// The id counter.
    pub ids: SharedIds,
}

#[async_trait]
impl ModelStore for DirWithSharedIds {
    async fn reserve_id(&self, date: &str) -> Result<ModelId, StoreError> {
        // Above what the directory already holds: the directory outlives Redis's data.
        let floor = self.dir.highest_seq(date).await?;
        self.ids.reserve(date, floor).await
    }
    async fn save(&self, model: NewModel) -> Result<(), StoreError> {
        self.dir.save(model).await
    }
    async fn list(&self, page: &Page) -> Result<Listing, StoreError> {
        self.dir.list(page).await
    }
    async fn open(&self, id: &ModelId) -> Result<Arc<Loaded>, StoreError> {
        self.dir.open(id).await
    }
    async fn delete(&self, id: &ModelId) -> Result<(), StoreError> {
        self.dir.delete(id).await
    }
    async fn newest(&self) -> Result<Option<ModelId>, StoreError> {
        self.dir.newest().await
    }
    async fn count(&self) -> Result<usize, StoreError> {
        self.dir.count().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_order_ids_newest_first() {
        let s = |id: &str| score(&ModelId::parse(id).unwrap());
        assert!(s("model_2026_12_01_002") > s("model_2026_12_01_001"));
        assert!(s("model_2026_12_01_1000") > s("model_2026_12_01_999"));
        assert!(s("model_2027_01_01_001") > s("model_2026_12_31_999"));
        assert_eq!(s("custom"), 0.0);
        assert_eq!(s("model_2026_12_01_042"), 20_261_201.0 * 1e7 + 42.0);
    }
}
