//! Connections to the Redis that servers and workers share (the scale-out mode): a small
//! pool of blocking connections with timeouts, used from tokio's blocking pool, and the key
//! names under one prefix.
//!
//! Blocking connections, not redis-rs's async ones: the async connection's 500 ms response
//! timeout breaks `XREADGROUP BLOCK` longer than that (redis-rs#1924), and every call here is
//! a handful of round trips on the control path, never on the predict path. A blocking read
//! takes a connection of its own for its whole wait, with a read timeout past the block time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the shared Redis is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedisLink {
    /// `redis://[:password@]host:port[/db]`.
    pub url: String,
    /// Key prefix of everything this deployment stores (`trainer:`).
    pub prefix: String,
    /// Connect, read and write timeout of ordinary commands.
    pub timeout: Duration,
}

/// Most idle connections kept.
const MAX_IDLE: usize = 8;

/// A pool of blocking connections to one Redis.
#[derive(Clone)]
pub struct Pool {
    client: redis::Client,
    link: Arc<RedisLink>,
    idle: Arc<Mutex<Vec<redis::Connection>>>,
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

impl Pool {
    /// A pool for `link` (connects lazily: a Redis that is down now may be up later).
    pub fn new(link: RedisLink) -> Result<Self, String> {
        let client =
            redis::Client::open(link.url.as_str()).map_err(|e| format!("redis URL {}: {e}", redact(&link.url)))?;
        Ok(Self { client, link: Arc::new(link), idle: Arc::new(Mutex::new(Vec::new())) })
    }

    /// The settings.
    pub fn link(&self) -> &RedisLink {
        &self.link
    }

    /// `prefix` + `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.link.prefix)
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let con = self.client.get_connection_with_timeout(self.link.timeout)?;
        con.set_read_timeout(Some(self.link.timeout))?;
        con.set_write_timeout(Some(self.link.timeout))?;
        Ok(con)
    }

    /// Run `f` on a pooled connection (blocking: call from a blocking context). A connection
    /// that saw an error is dropped, so a restarted Redis gets fresh connections. A pooled
    /// connection found dropped (Redis restarted since it was used) means every idle one is
    /// dead: they are all discarded and `f` runs once more on a fresh connection. The command
    /// never reached a live server then, so running it again is safe.
    pub fn run<T>(&self, mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>) -> redis::RedisResult<T> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let was_pooled = pooled.is_some();
        let mut con = match pooled {
            Some(c) => c,
            None => self.connect()?,
        };
        let mut out = f(&mut con);
        if was_pooled && out.as_ref().is_err_and(redis::RedisError::is_connection_dropped) {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
            con = self.connect()?;
            out = f(&mut con);
        }
        if out.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(con);
            }
        }
        out
    }

    /// Run `f` on a fresh connection whose reads may wait `wait` longer than usual (a
    /// blocking `XREADGROUP`); it is not pooled afterwards.
    pub fn run_blocking<T>(
        &self,
        wait: Duration,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let mut con = self.connect()?;
        con.set_read_timeout(Some(self.link.timeout + wait))?;
        f(&mut con)
    }

    /// Run `f` on the blocking pool.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Pool) -> redis::RedisResult<T> + Send + 'static,
    ) -> Result<T, String> {
        let pool = self.clone();
        let url = self.link.url.clone();
        tokio::task::spawn_blocking(move || f(&pool))
            .await
            .map_err(|e| format!("redis call panicked: {e}"))?
            .map_err(|e| describe(&url, &e))
    }
}

/// A Redis error as users should read it (the URL without its password).
pub fn describe(url: &str, e: &redis::RedisError) -> String {
    let what =
        if e.is_connection_refusal() || e.is_io_error() || e.is_timeout() { "cannot reach redis" } else { "redis" };
    format!("{what} at {}: {e}", redact(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("redis://:secret@10.0.0.1:6379/2"), "redis://***@10.0.0.1:6379/2");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
