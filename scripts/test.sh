#!/usr/bin/env bash
# Run every test: formatting and lints, the Rust unit and integration tests (CLI, HTTP,
# hardening, router, Redis, parity, bad input), the wasm build and its npm package, the JS tests
# (wasm in Node, the page in headless Chromium, the edge worker under workerd with built-in and
# by-id models, the package's tarball in Node ESM/CJS, Deno, Bun, a bundled page, workerd and
# tsc) and the Python client tests (Triton, KServe, MLflow formats, ONNX in onnxruntime, SHAP, the
# WASI build under wasmtime).
# Installs missing prerequisites first.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
# The wasm first: the trainer binary embeds the page, web/pkg included.
echo "== wasm build and npm package (@trainer/inference)"
./scripts/build-wasm.sh
echo "== WASI command build (wasm32-wasip1)"
./scripts/build-wasi.sh
echo "== cargo clippy"
cargo clippy --all-targets --release -- -D warnings
echo "== cargo test"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --no-fail-fast
else
  cargo test --release --workspace --no-fail-fast
fi
echo "== cargo install into a temporary root, served from another directory"
./scripts/check-install.sh
echo "== JS tests (Node wasm, Chromium, workerd, the package in every host)"
TRAINER_BIN="$PWD/target/release/trainer" node --test tests/js/
echo "== Python client tests (tritonclient, kserve, MLflow formats, onnxruntime)"
TRAINER_BIN="$PWD/target/release/trainer" .venv/bin/python -m pytest -q tests/python
