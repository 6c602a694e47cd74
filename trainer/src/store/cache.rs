//! Loaded models kept in memory, least recently used first out, bounded by bytes (the bundle
//! bytes plus the decoded weights, about twice the file).

use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::{Loaded, ModelId};

/// What one cached model costs in memory, roughly.
fn cost(l: &Loaded) -> u64 {
    2 * l.bytes.len() as u64
}

/// A byte-bounded LRU of loaded models.
pub struct ModelCache {
    inner: Mutex<Inner>,
    limit: u64,
}

struct Inner {
    lru: LruCache<ModelId, Arc<Loaded>>,
    bytes: u64,
}

impl ModelCache {
    /// A cache holding at most `limit` bytes (one model is always kept, however large).
    pub fn new(limit: u64) -> Self {
        Self { inner: Mutex::new(Inner { lru: LruCache::unbounded(), bytes: 0 }), limit }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached model, marked as just used.
    pub fn get(&self, id: &ModelId) -> Option<Arc<Loaded>> {
        self.lock().lru.get(id).cloned()
    }

    /// Keep `loaded`, evicting the least recently used until the budget holds.
    pub fn put(&self, id: ModelId, loaded: Arc<Loaded>) {
        let mut g = self.lock();
        g.bytes += cost(&loaded);
        if let Some(old) = g.lru.put(id, loaded) {
            g.bytes -= cost(&old);
        }
        while g.bytes > self.limit && g.lru.len() > 1 {
            match g.lru.pop_lru() {
                Some((_, old)) => g.bytes -= cost(&old),
                None => break,
            }
        }
    }

    /// Forget a model.
    pub fn evict(&self, id: &ModelId) {
        let mut g = self.lock();
        if let Some(old) = g.lru.pop(id) {
            g.bytes -= cost(&old);
        }
    }

    /// Models and bytes held.
    pub fn usage(&self) -> (usize, u64) {
        let g = self.lock();
        (g.lru.len(), g.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn loaded(bytes: usize) -> Arc<Loaded> {
        let model = inference::Model::from_bytes(&std::fs::read(fixture()).unwrap()).unwrap();
        Arc::new(Loaded { model: Arc::new(model), bytes: Bytes::from(vec![0u8; bytes]), sha256: String::new() })
    }

    fn fixture() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/parity/esg_relu/model.safetensors")
    }

    #[test]
    fn evicts_least_recently_used_past_the_byte_budget() {
        let c = ModelCache::new(1000);
        let id = |s: &str| ModelId::parse(s).unwrap();
        c.put(id("a"), loaded(200));
        c.put(id("b"), loaded(200));
        assert_eq!(c.usage(), (2, 800));
        assert!(c.get(&id("a")).is_some()); // a is now the most recent
        c.put(id("c"), loaded(200));
        assert!(c.get(&id("b")).is_none(), "b was least recently used");
        assert!(c.get(&id("a")).is_some() && c.get(&id("c")).is_some());
        c.evict(&id("a"));
        assert_eq!(c.usage(), (1, 400));
        // One model too large for the budget is still kept alone.
        c.put(id("big"), loaded(5000));
        assert_eq!(c.usage().0, 1);
    }
}
