//! A `trainer serve` under test, and a small HTTP client for it.

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `trainer serve` on 127.0.0.1 with its own models and data dirs (the fixtures iris.csv and
/// diabetes.csv in the data dir), stopped on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub models: tempfile::TempDir,
    pub data: tempfile::TempDir,
    pub agent: ureq::Agent,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let models = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        for f in ["iris.csv", "diabetes.csv"] {
            std::fs::copy(super::fixture(f), data.path().join(f)).unwrap();
        }
        Self::start_in(models, data, extra)
    }

    /// A server over existing dirs (to restart one on the same models).
    pub fn start_in(models: tempfile::TempDir, data: tempfile::TempDir, extra: &[&str]) -> Server {
        Self::start_with(super::trainer(), models, data, extra)
    }

    /// As [`Server::start_in`], with the command's environment.
    pub fn start_with(
        mut cmd: std::process::Command,
        models: tempfile::TempDir,
        data: tempfile::TempDir,
        extra: &[&str],
    ) -> Server {
        let (m, d) = (models.path().to_str().unwrap(), data.path().to_str().unwrap());
        let args: Vec<&str> = ["--models-dir", m, "--data-dir", d].into_iter().chain(extra.iter().copied()).collect();
        let (child, base) = super::serve(&mut cmd, &args);
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Server { child, base, models, data, agent }
    }

    /// Stop (SIGKILL) and hand back the dirs.
    pub fn kill(mut self) -> (tempfile::TempDir, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dummy = || tempfile::tempdir().unwrap();
        let models = std::mem::replace(&mut self.models, dummy());
        let data = std::mem::replace(&mut self.data, dummy());
        (models, data)
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let mut res = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                r.call()
            }
            ("DELETE", _) => {
                let mut r = self.agent.delete(&url);
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                r.call()
            }
            (_, b) => {
                let mut r = self.agent.post(&url);
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                r.send(b.unwrap_or(""))
            }
        }
        .unwrap();
        (res.status().as_u16(), res.body_mut().with_config().limit(50 << 20).read_to_string().unwrap())
    }

    /// Send only the request head of a POST announcing `len` body bytes; return status and body.
    pub fn raw_post_headers(&self, path: &str, len: usize) -> (u16, String) {
        use std::io::{Read, Write};
        let addr = self.base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{{").unwrap();
        // Read just the response (the server may keep the socket open for the unsent body).
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head, body) = loop {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed before a response");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    break (head.to_owned(), body[..len].to_owned());
                }
            }
        };
        let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, body)
    }

    pub fn bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let mut res = self.agent.get(format!("{}{path}", self.base)).call().unwrap();
        (res.status().as_u16(), res.body_mut().with_config().limit(50 << 20).read_to_vec().unwrap())
    }

    pub fn json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let text = body.map(|b| b.to_string());
        let (s, t) = self.call(method, path, text.as_deref(), &[("content-type", "application/json")]);
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    /// Queue a training and poll it to the end, checking progress never decreases.
    pub fn train(&self, body: Value) -> Value {
        let (s, r) = self.json("POST", "/api/ml/train", Some(body));
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["status"], "pending");
        self.wait(r["task_id"].as_str().unwrap())
    }

    pub fn wait(&self, task: &str) -> Value {
        let start = Instant::now();
        let mut last = 0;
        loop {
            let (s, st) = self.json("GET", &format!("/api/ml/train/status/{task}"), None);
            assert_eq!(s, 200);
            let p = st["progress"].as_u64().unwrap();
            assert!(p >= last && p <= 100, "progress went from {last} to {p}");
            last = p;
            if ["completed", "failed", "cancelled"].contains(&st["status"].as_str().unwrap_or("")) {
                return st;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "training did not finish: {st}");
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
