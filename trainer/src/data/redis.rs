//! `redis:KEY` datasets. The key may hold a string (JSON records or CSV text), a list of JSON
//! records, or a hash of column → JSON array; each becomes the same table as the file would.

use std::time::Duration;

use redis::{Commands, Value};

use super::Table;
use crate::error::DataLoadError;
use crate::redis_pool::redact;

/// Connection settings for Redis datasets.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://[:password@]host:port[/db]`.
    pub url: String,
    /// Connect, read and write timeout.
    pub timeout: Duration,
}

impl Default for RedisOptions {
    /// `REDIS_URL` (default `redis://127.0.0.1:6379`) and `REDIS_TIMEOUT` seconds (default 5).
    fn default() -> Self {
        let timeout = std::env::var("REDIS_TIMEOUT")
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|t| t.is_finite() && *t > 0.0)
            .map_or(Duration::from_secs(5), Duration::from_secs_f64);
        Self { url: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()), timeout }
    }
}

impl RedisOptions {
    /// Settings from a config's `redis` section, else the environment.
    pub fn from_config(c: Option<&inference::config::RedisConfig>) -> Self {
        match c {
            Some(c) => Self { url: c.url.clone(), timeout: Duration::from_secs_f64(c.timeout_seconds) },
            None => Self::default(),
        }
    }
}

/// Which Redis keys a server may read as datasets: glob patterns where `*` matches any run
/// of characters (`datasets:*`), separated by commas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPattern(Vec<String>);

impl KeyPattern {
    /// Parse `datasets:*,shared:*`; empty patterns are dropped.
    pub fn parse(s: &str) -> Self {
        Self(s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect())
    }

    /// Whether `key` matches one of the patterns.
    pub fn matches(&self, key: &str) -> bool {
        self.0.iter().any(|p| glob(p.as_bytes(), key.as_bytes()))
    }
}

impl std::fmt::Display for KeyPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none: no Redis is configured for datasets (--redis or REDIS_URL)");
        }
        write!(f, "{:?}", self.0.join(","))
    }
}

/// `*`-only glob match, iterative (no backtracking blow-up).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Hash field holding the column order (a hash has none of its own).
const COLUMNS_FIELD: &str = "__columns__";

/// How `redis-put` stores a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisLayout {
    /// One string: a JSON array of records.
    String,
    /// A list of JSON records.
    List,
    /// A hash of column → JSON array.
    Hash,
}

fn connect(key: &str, opts: &RedisOptions) -> Result<redis::Connection, DataLoadError> {
    let err = |message: String| DataLoadError::Redis { key: key.to_owned(), message };
    let client =
        redis::Client::open(opts.url.as_str()).map_err(|e| err(format!("bad REDIS_URL {}: {e}", redact(&opts.url))))?;
    let con = client
        .get_connection_with_timeout(opts.timeout)
        .map_err(|e| err(format!("cannot connect to {}: {e}", redact(&opts.url))))?;
    con.set_read_timeout(Some(opts.timeout)).map_err(|e| err(e.to_string()))?;
    con.set_write_timeout(Some(opts.timeout)).map_err(|e| err(e.to_string()))?;
    Ok(con)
}

/// Load the table stored at `key`, refusing values over `max_bytes` (as `MEMORY USAGE` counts).
pub fn load(key: &str, opts: &RedisOptions, max_bytes: u64) -> Result<Table, DataLoadError> {
    let err = |message: String| DataLoadError::Redis { key: key.to_owned(), message };
    if key.is_empty() {
        return Err(err("empty key (use redis:KEY)".into()));
    }
    let mut con = connect(key, opts)?;
    let kind: String = redis::cmd("TYPE").arg(key).query(&mut con).map_err(|e| err(e.to_string()))?;
    if kind != "none" {
        let usage: Option<u64> =
            redis::cmd("MEMORY").arg("USAGE").arg(key).query(&mut con).map_err(|e| err(e.to_string()))?;
        if let Some(size) = usage.filter(|&u| u > max_bytes) {
            return Err(DataLoadError::TooLarge { name: format!("redis:{key}"), size, limit: max_bytes });
        }
    }
    let name = format!("redis:{key}");
    match kind.as_str() {
        "none" => Err(err("no such key".into())),
        "string" => {
            let bytes: Vec<u8> = con.get(key).map_err(|e| err(e.to_string()))?;
            super::parse_bytes(&name, &bytes)
        }
        "list" => {
            let items: Vec<Vec<u8>> = con.lrange(key, 0, -1).map_err(|e| err(e.to_string()))?;
            let mut json = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 2);
            json.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    json.push(b',');
                }
                json.extend_from_slice(item);
            }
            json.push(b']');
            super::json::read(&name, &json)
        }
        "hash" => {
            let mut fields: Vec<(String, Vec<u8>)> = con.hgetall(key).map_err(|e| err(e.to_string()))?;
            // Column order: the stored order when present, else by name (hash order is arbitrary).
            let order: Vec<String> = match fields.iter().position(|(k, _)| k == COLUMNS_FIELD) {
                Some(i) => serde_json::from_slice(&fields.remove(i).1)
                    .map_err(|e| err(format!("`{COLUMNS_FIELD}` is not a JSON array of names: {e}")))?,
                None => {
                    let mut names: Vec<String> = fields.iter().map(|(k, _)| k.clone()).collect();
                    names.sort();
                    names
                }
            };
            // Ranks by name (a name listed twice keeps its first place): a scan of `order` per
            // comparison was quadratic in a wide hash.
            let rank: std::collections::HashMap<&str, usize> =
                order.iter().enumerate().rev().map(|(i, name)| (name.as_str(), i)).collect();
            fields.sort_by_key(|(k, _)| rank.get(k.as_str()).copied().unwrap_or(usize::MAX));
            let mut obj = serde_json::Map::new();
            for (col, raw) in fields {
                let v: serde_json::Value = serde_json::from_slice(&raw)
                    .map_err(|e| err(format!("hash field `{col}` is not a JSON array: {e}")))?;
                obj.insert(col, v);
            }
            let bytes = serde_json::to_vec(&obj).map_err(|e| err(e.to_string()))?;
            super::json::read(&name, &bytes)
        }
        other => Err(err(format!("holds a {other}; expected a string, list or hash"))),
    }
}

/// Store a table read from `bytes` (CSV or JSON) at `key`, replacing what was there.
pub fn put(key: &str, table: &Table, layout: RedisLayout, opts: &RedisOptions) -> Result<usize, DataLoadError> {
    let err = |message: String| DataLoadError::Redis { key: key.to_owned(), message };
    let mut con = connect(key, opts)?;
    let records: Vec<serde_json::Value> = (0..table.n_rows())
        .map(|r| {
            let obj =
                table.columns.iter().map(|c| (c.name.clone(), cell_json(c, r))).collect::<serde_json::Map<_, _>>();
            serde_json::Value::Object(obj)
        })
        .collect();
    let _: Value = redis::cmd("DEL").arg(key).query(&mut con).map_err(|e| err(e.to_string()))?;
    match layout {
        RedisLayout::String => {
            let text = serde_json::to_string(&records).map_err(|e| err(e.to_string()))?;
            let _: () = con.set(key, text).map_err(|e| err(e.to_string()))?;
        }
        RedisLayout::List => {
            for chunk in records.chunks(1000) {
                let items: Vec<String> = chunk.iter().map(|r| r.to_string()).collect();
                let _: () = con.rpush(key, items).map_err(|e| err(e.to_string()))?;
            }
        }
        RedisLayout::Hash => {
            let mut fields: Vec<(String, String)> = table
                .columns
                .iter()
                .map(|c| {
                    let vals: Vec<serde_json::Value> = (0..table.n_rows()).map(|r| cell_json(c, r)).collect();
                    (c.name.clone(), serde_json::Value::Array(vals).to_string())
                })
                .collect();
            let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
            fields.push((COLUMNS_FIELD.to_owned(), serde_json::to_string(&names).map_err(|e| err(e.to_string()))?));
            let _: () = con.hset_multiple(key, &fields).map_err(|e| err(e.to_string()))?;
        }
    }
    Ok(table.n_rows())
}

fn cell_json(c: &super::Column, r: usize) -> serde_json::Value {
    match &c.data {
        super::ColumnData::Numeric(v) if v[r].is_nan() => serde_json::Value::Null,
        // f32 → f64 keeps the exact f32 value, so reloading gives the same f32.
        super::ColumnData::Numeric(v) => serde_json::json!(f64::from(v[r])),
        super::ColumnData::Text(v) => v[r].as_ref().map_or(serde_json::Value::Null, |s| serde_json::json!(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_patterns_glob() {
        let p = KeyPattern::parse("datasets:*, shared:*:csv");
        assert!(p.matches("datasets:iris") && p.matches("datasets:") && p.matches("shared:a:b:csv"));
        assert!(!p.matches("secretcfg") && !p.matches("xdatasets:iris") && !p.matches("shared:a:csvx"));
        assert!(KeyPattern::parse("*").matches("anything"));
        assert!(!KeyPattern::parse("").matches("x"));
    }
}
