//! Early pruning of trials: asynchronous successive halving (ASHA). A trial reports its best
//! validation loss so far at each rung (epochs `r`, `rη`, `rη²`, …); it goes on only if that
//! loss is among the best `max(1, ⌊n/η⌋)` of the `n` losses reported at the rung so far, its
//! own included. The first η trials at a rung always go on: with fewer, the comparison says
//! little, and small searches would otherwise prune half their trials at the first rung. The rungs are shared by every trial of a search: in memory for one process
//! ([`LocalRungs`]), or in Redis sorted sets for trials spread over workers ([`RedisRungs`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::redis_pool::Pool;

/// Pruning settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PruningOptions {
    /// Prune at all.
    pub enabled: bool,
    /// The first rung, in epochs.
    pub min_epochs: usize,
    /// η: each rung keeps about 1/η of the trials and is η times later than the last.
    pub reduction_factor: usize,
}

impl Default for PruningOptions {
    fn default() -> Self {
        Self { enabled: true, min_epochs: 4, reduction_factor: 3 }
    }
}

impl PruningOptions {
    /// The rung epochs for trials of `epochs` epochs (none when pruning is off).
    pub fn rungs(&self, epochs: usize) -> Vec<usize> {
        let mut r = Vec::new();
        if !self.enabled {
            return r;
        }
        let (mut e, eta) = (self.min_epochs.max(1), self.reduction_factor.max(2));
        while e < epochs {
            r.push(e);
            e = e.saturating_mul(eta);
        }
        r
    }
}

/// Whether the loss at `rank` (0 = best) of `n` reported at a rung goes on.
pub fn survives(rank: usize, n: usize, eta: usize) -> bool {
    let eta = eta.max(2);
    n <= eta || rank < (n / eta).max(1)
}

/// Where a search's rungs are kept.
pub trait Rungs: Send + Sync {
    /// Report trial `trial`'s best loss at rung `epoch`; whether it goes on. A rung that
    /// cannot be reached (Redis down) lets the trial go on.
    fn report(&self, epoch: usize, trial: usize, loss: f64) -> bool;
}

/// Rungs of a search in this process.
#[derive(Debug)]
pub struct LocalRungs {
    eta: usize,
    rungs: Mutex<HashMap<usize, Vec<f64>>>,
}

impl LocalRungs {
    /// Empty rungs with reduction factor `eta`.
    pub fn new(eta: usize) -> Self {
        Self { eta, rungs: Mutex::default() }
    }
}

impl Rungs for LocalRungs {
    fn report(&self, epoch: usize, _trial: usize, loss: f64) -> bool {
        let mut g = self.rungs.lock().unwrap_or_else(|p| p.into_inner());
        let at = g.entry(epoch).or_default();
        at.push(loss);
        let rank = at.iter().filter(|&&l| l < loss).count();
        survives(rank, at.len(), self.eta)
    }
}

const REPORT: &str = r"
-- KEYS: the rung's sorted set. ARGV: trial, loss, eta, ttl.
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local rank = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[2])
local n = redis.call('ZCARD', KEYS[1])
local eta = math.max(2, tonumber(ARGV[3]))
if n <= eta or rank < math.max(1, math.floor(n / eta)) then return 1 end
return 0";

/// Rungs of a search whose trials run on many workers: a sorted set per rung.
pub struct RedisRungs {
    pool: Pool,
    prefix: String,
    eta: usize,
    ttl: Duration,
    script: redis::Script,
}

impl RedisRungs {
    /// The rungs of study `study`, kept for `ttl`.
    pub fn new(pool: Pool, study: &str, eta: usize, ttl: Duration) -> Self {
        let prefix = pool.key(&format!("tune:{study}:rung:"));
        Self { pool, prefix, eta, ttl, script: redis::Script::new(REPORT) }
    }
}

impl Rungs for RedisRungs {
    fn report(&self, epoch: usize, trial: usize, loss: f64) -> bool {
        let key = format!("{}{epoch}", self.prefix);
        let r: redis::RedisResult<i64> = self
            .pool
            .run(|c| self.script.key(&key).arg(trial).arg(loss).arg(self.eta).arg(self.ttl.as_secs().max(1)).invoke(c));
        match r {
            Ok(keep) => keep == 1,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the shared rungs; the trial goes on");
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_grow_by_eta_and_keep_a_third() {
        let p = PruningOptions::default();
        assert_eq!(p.rungs(100), [4, 12, 36]);
        assert_eq!(p.rungs(4), Vec::<usize>::new());
        assert!(PruningOptions { enabled: false, ..p }.rungs(100).is_empty());
        let r = LocalRungs::new(3);
        // The first three go on whatever they report; then the best third.
        assert!(r.report(4, 0, 0.5));
        assert!(r.report(4, 1, 0.9));
        assert!(r.report(4, 2, 0.95));
        assert!(!r.report(4, 3, 0.8), "fourth of four, third best: pruned");
        assert!(r.report(4, 4, 0.4), "best of five");
        assert!(r.report(4, 5, 0.45), "second best of six survives");
        assert!(!r.report(4, 6, 0.46), "third best of seven does not");
        assert!(r.report(12, 5, 0.45), "rungs are separate");
    }
}
