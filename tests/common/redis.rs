//! A real `redis-server` for the tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on a free loopback port (persistence off unless `extra` says), stopped on drop.
pub struct Redis {
    pub child: Child,
    pub url: String,
    port: u16,
    extra: Vec<String>,
    /// Its working directory (where an AOF goes).
    pub dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

fn spawn(port: u16, dir: &std::path::Path, extra: &[String]) -> Child {
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server not installed (apt-get install redis-server)");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl Redis {
    pub fn start(extra: &[&str]) -> Redis {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let tmp = tempfile::tempdir().unwrap();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = spawn(port, tmp.path(), &extra);
        Redis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
            port,
            extra,
            dir: tmp.path().to_owned(),
            _dir: Some(tmp),
        }
    }

    pub fn con(&self, url: &str) -> redis::Connection {
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }

    /// Stop the server (SIGKILL: like a crash; what the AOF holds survives).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(self.port, &self.dir, &self.extra);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
