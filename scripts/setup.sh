#!/usr/bin/env bash
# Install what the tests need on a fresh Debian machine (idempotent; skips what is present):
# redis-server, Debian chromium, the wasm32 toolchain (rustc-web recipe, unless rustup has the
# target; wasi-libc for the WASI build), binaryen's wasm-opt, the npm dev tools (package.json: playwright-core, workerd, and the
# hosts the package test runs @trainer/inference in: deno, bun, esbuild, typescript; their
# platform binaries come as npm packages, and package.json's allowScripts lets their postinstall
# scripts run), and a Python venv (.venv) with the peers' clients of tests/python (tritonclient,
# kserve, onnxruntime, shap, …).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=()
command -v redis-server >/dev/null || pkgs+=(redis-server)
[ -x /usr/bin/chromium ] || pkgs+=(chromium)
command -v wasm-opt >/dev/null || pkgs+=(binaryen)
if ! (command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown); then
  [ -x /usr/bin/rustc ] || pkgs+=(rustc-web)
  [ -x /usr/bin/cargo ] || pkgs+=(cargo-web)
  [ -d /usr/lib/rustlib/src/rust/library ] || pkgs+=(rust-web-src)
  command -v wasm-ld-16 >/dev/null || pkgs+=(lld-16)
fi
# The WASI build's C runtime, unless rustup brings the wasm32-wasip1 target's own.
if ! (command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1); then
  [ -f /usr/lib/wasm32-wasi/libc.a ] || pkgs+=(wasi-libc)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "setup: apt-get install ${pkgs[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
npm_tools_ok() {
  [ -d node_modules/playwright-core ] || return 1
  for b in workerd deno bun esbuild tsc; do
    node_modules/.bin/$b --version >/dev/null 2>&1 || return 1
  done
}
if ! npm_tools_ok; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
  npm_tools_ok || { echo "setup: the npm dev tools do not run after npm ci" >&2; exit 1; }
fi
if ! .venv/bin/python -c 'import pytest, tritonclient.http, kserve, onnx, onnxruntime, shap, wasmtime, pandas' 2>/dev/null; then
  echo "setup: Python venv .venv (tests/python/requirements.txt)"
  if ! python3 -m venv .venv 2>/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv .venv
  fi
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r tests/python/requirements.txt
fi
