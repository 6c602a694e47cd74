//! Shared helpers of the integration tests: the trainer binary, temp dirs, fixtures.
#![allow(dead_code)]

pub mod redis;
pub mod server;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The `trainer` binary under test.
pub fn trainer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trainer"));
    c.env("RAYON_NUM_THREADS", "1").env_remove("RUST_LOG");
    c
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fixture file path.
pub fn fixture(name: &str) -> String {
    root().join("tests/fixtures").join(name).display().to_string()
}

/// Run and capture; panics only if the process cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("failed to start trainer")
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The JSON object on the last stdout line.
pub fn last_json(o: &Output) -> serde_json::Value {
    let out = stdout(o);
    let line = out.lines().last().unwrap_or_else(|| panic!("no stdout; stderr: {}", stderr(o)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {line}\nstderr: {}", stderr(o)))
}

/// Train with `args` into `models`, asserting success; returns the `--json` summary.
pub fn train(models: &Path, args: &[&str]) -> serde_json::Value {
    let o = run(trainer().arg("train").args(args).arg("--models-dir").arg(models).arg("--json"));
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    last_json(&o)
}

/// Entries under a directory (empty if it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Start `trainer serve` (`cmd` carries the environment, `extra` more serve flags) on a free 127.0.0.1 port, without
/// the web page; returns the process and its base URL once it listens.
pub fn serve(cmd: &mut Command, extra: &[&str]) -> (Child, String) {
    let mut child = cmd
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--web-dir", "/nonexistent"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("failed to start trainer serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line).expect("server output");
    let base =
        line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("bad first line {line:?}")).to_owned();
    (child, base)
}
