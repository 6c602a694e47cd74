//! Which [`ModelStore`] and [`TaskQueue`] a process uses: everything local to one `trainer
//! serve` (a models directory and an in-process queue), or shared through Redis by any number
//! of servers and workers (`--redis`).

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::ServeError;
use crate::queue::local::{LocalOptions, LocalQueue};
use crate::queue::redis::{RedisQueue, RedisQueueOptions};
use crate::queue::TaskQueue;
use crate::redis_pool::{Pool, RedisLink};
use crate::store::fs::{FsOptions, FsStore};
use crate::store::redis::{DirWithSharedIds, RedisStore, RedisStoreOptions, SharedIds};
use crate::store::ModelStore;

/// Where shared models live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedModels {
    /// Bundles in Redis, with a verified cache on each machine.
    Redis,
    /// The models directory is shared (NFS and the like); ids still come from Redis.
    Dir,
}

impl SharedModels {
    /// The `--model-store` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Dir => "dir",
        }
    }
}

/// Every process of one deployment must publish models where the others look: the first to
/// start records its `--model-store` in Redis (`{prefix}model_store`), and a process started
/// with the other one is refused. Redis unreachable at startup is only a warning: processes
/// ride out outages, and the next start checks again.
fn check_model_store(pool: &Pool, models: SharedModels) -> Result<(), ServeError> {
    let key = pool.key("model_store");
    let recorded = pool.run(|c| {
        redis::cmd("SET").arg(&key).arg(models.name()).arg("NX").query::<()>(c)?;
        redis::cmd("GET").arg(&key).query::<Option<String>>(c)
    });
    match recorded {
        Ok(Some(r)) if r != models.name() => Err(ServeError::Config(format!(
            "this deployment keeps its models in `{r}` (recorded in Redis as {key} by the first process), but this \
             process was started with --model-store {mine}: the models it published would be invisible to the \
             others. Start it with --model-store {r}; to move the deployment, stop every process and DEL {key}",
            mine = models.name()
        ))),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %crate::redis_pool::describe(&pool.link().url, &e), "cannot check the deployment's model store");
            Ok(())
        }
    }
}

/// The Redis side of a shared deployment.
#[derive(Debug, Clone)]
pub struct SharedConfig {
    /// The Redis and key prefix.
    pub link: RedisLink,
    /// Where models live.
    pub models: SharedModels,
    /// Delivery and expiry of tasks.
    pub queue: RedisQueueOptions,
    /// Largest bundle stored in Redis.
    pub max_redis_bundle_bytes: u64,
}

/// Everything that decides a process's store and queue.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Local models (or the shared directory, or the cache of Redis bundles).
    pub models_dir: PathBuf,
    /// Largest bundle loaded.
    pub max_bundle_bytes: u64,
    /// Memory for loaded models.
    pub cache_bytes: u64,
    /// Most tasks pending or running.
    pub max_queued: usize,
    /// Redis, when shared.
    pub shared: Option<SharedConfig>,
}

/// The local cache of Redis bundles inside the models directory.
pub const REDIS_CACHE_DIR: &str = ".redis-cache";

/// A process's store and queue, and its connection to the shared Redis, if any.
pub struct Backend {
    /// Where models live.
    pub store: Arc<dyn ModelStore>,
    /// Where tasks wait.
    pub queue: Arc<dyn TaskQueue>,
    /// The shared Redis (tuning rungs live there too).
    pub redis: Option<Pool>,
}

/// The store and queue `cfg` describes.
pub fn open(cfg: &BackendConfig) -> Result<Backend, ServeError> {
    let fs_opts = FsOptions { max_bundle_bytes: cfg.max_bundle_bytes, cache_bytes: cfg.cache_bytes };
    let Some(shared) = &cfg.shared else {
        let store = FsStore::open_dir(&cfg.models_dir, fs_opts)?;
        let queue = LocalQueue::new(
            Some(&cfg.models_dir),
            LocalOptions { max_queued: cfg.max_queued, ..LocalOptions::default() },
        )?;
        return Ok(Backend { store: Arc::new(store), queue: Arc::new(queue), redis: None });
    };
    let pool = Pool::new(shared.link.clone()).map_err(ServeError::Config)?;
    check_model_store(&pool, shared.models)?;
    let store: Arc<dyn ModelStore> = match shared.models {
        SharedModels::Redis => Arc::new(RedisStore::new(
            pool.clone(),
            RedisStoreOptions {
                max_bundle_bytes: shared.max_redis_bundle_bytes.min(cfg.max_bundle_bytes),
                cache_bytes: cfg.cache_bytes,
                cache_dir: cfg.models_dir.join(REDIS_CACHE_DIR),
            },
        )?),
        SharedModels::Dir => Arc::new(DirWithSharedIds {
            dir: FsStore::open_dir(&cfg.models_dir, fs_opts)?,
            ids: SharedIds::new(pool.clone()),
        }),
    };
    let queue = RedisQueue::new(pool.clone(), RedisQueueOptions { max_queued: cfg.max_queued, ..shared.queue });
    Ok(Backend { store, queue: Arc::new(queue), redis: Some(pool) })
}
