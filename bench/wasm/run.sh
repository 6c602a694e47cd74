#!/usr/bin/env bash
# Wasm inference benchmark: our wasm package (inference-wasm/pkg, @trainer/inference) against
# onnxruntime-web's wasm backend, in Node, on the same model. See bench/wasm/README.md.
#
# Steps: generate a 20,000-row numeric CSV (32 features, 5 classes; cached in bench/out/),
# train the default architecture (128,64,32, relu, dropout 0.2) on it for a few epochs,
# export the whole pipeline to ONNX (`trainer export --format onnx`), install
# onnxruntime-web into bench/wasm/node_modules if needed, then run bench.mjs: wasm sizes,
# cold start, single-row latency (p50/p99), batch rows/s at 10,000 rows, and agreement.
# Prints one markdown table (also saved to bench/out/wasm.md).
#
# Run:          bench/wasm/run.sh
# Quick check:  SINGLE=10000 BATCH_REPS=5 COLD_RUNS=2 bench/wasm/run.sh
# Environment:
#   TRAINER_BIN  trainer binary (default target/release/trainer; copied before use)
#   EPOCHS       training epochs (default 3); ROWS data rows (default 20000)
#   SINGLE       single-row calls per implementation (default 20000, at least 10000 for
#                the reported p99); BATCH_ROWS (10000); BATCH_REPS (20); COLD_RUNS (5)
#   ORT_THREADS  onnxruntime-web wasm threads (default 1: ours is single-threaded)
#   PYTHON       Python interpreter (default python3); KEEP_TMP=1 keeps the temp dir
# Prerequisites: release trainer build; the wasm package (scripts/build-wasm.sh:
#   inference-wasm/pkg); Node >= 18 and npm (registry access on the first run).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bench_init wasm

ROWS=${ROWS:-20000}
EPOCHS=${EPOCHS:-3}
PYTHON=${PYTHON:-python3}
need node npm "$PYTHON"
[ -f inference-wasm/pkg/node.cjs ] && [ -f inference-wasm/pkg/inference_bg.wasm ] \
  || die "missing the wasm package: run scripts/build-wasm.sh"
trainer_bin

data=$(numeric_dataset "$ROWS")

log "training 32 -> 128,64,32 -> 5 for $EPOCHS epochs"
"$TRAINER" train --data "$data" --target label --task classification --models-dir "$BENCH_TMP/models" \
  --hidden 128,64,32 --dropout 0.2 --epochs "$EPOCHS" --json >"$BENCH_TMP/train.out" 2>"$BENCH_TMP/train.err" \
  || { tail -n 20 "$BENCH_TMP/train.err" >&2; die "training failed"; }
model_dir=$(tail -n1 "$BENCH_TMP/train.out" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["model_dir"])')

"$TRAINER" export --model "$model_dir" --format onnx --out "$BENCH_TMP/model.onnx" >&2

if [ ! -d bench/wasm/node_modules/onnxruntime-web ]; then
  log "installing onnxruntime-web into bench/wasm/node_modules"
  (cd bench/wasm && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi) >&2
fi

ORT_THREADS=${ORT_THREADS:-1} node bench/wasm/bench.mjs \
  --bundle "$model_dir/model.safetensors" --onnx "$BENCH_TMP/model.onnx" --data "$data" \
  --single "${SINGLE:-20000}" --batch-rows "${BATCH_ROWS:-10000}" \
  --batch-reps "${BATCH_REPS:-20}" --cold-runs "${COLD_RUNS:-5}" | publish wasm
