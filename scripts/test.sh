#!/usr/bin/env bash
# Run every test: formatting and lints, the Rust unit and integration tests (CLI, HTTP,
# hardening, router, Redis, parity, bad input), the wasm build, the JS tests (wasm in Node, the
# page in headless Chromium, the edge worker under workerd) and the Python client tests (Triton,
# KServe, MLflow formats, ONNX in onnxruntime). Installs missing prerequisites first.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --release -- -D warnings
echo "== cargo test"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --no-fail-fast
else
  cargo test --release --workspace --no-fail-fast
fi
echo "== wasm build"
./scripts/build-wasm.sh
echo "== JS tests (Node wasm, Chromium, workerd)"
TRAINER_BIN="$PWD/target/release/trainer" node --test tests/js/
echo "== Python client tests (tritonclient, kserve, MLflow formats, onnxruntime)"
TRAINER_BIN="$PWD/target/release/trainer" .venv/bin/python -m pytest -q tests/python
