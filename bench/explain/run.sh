#!/usr/bin/env bash
# Explanation benchmark: the cost and accuracy of our Shapley values (`model.explain` in the
# wasm package, `trainer predict --explain` natively) against `shap`'s explainers with our
# model as f. See bench/explain/README.md.
#
# Steps: train the embedded ESG model (15 features, 3 categorical) and a 10-feature numeric
# model (scripts/gen_numeric_dataset.py, 2,000 rows, 3 classes, seed 1); take N rows of each;
# then measure
#   * wasm (Node, one thread, bench/explain/explain.mjs): ms per explanation, p50/p99, at the
#     default options (ESG: permutation; 10 features: exact);
#   * native: wall of `trainer predict --explain` over the N rows minus the wall without
#     --explain, ÷ N; and exact at 15 features (`--explain-method exact`) on EXACT_ROWS rows,
#     the reference for the error max/mean |φ − φ_exact|;
#   * shap (bench/explain/shap_ref.py): shap.explainers.Permutation on the ESG model and
#     shap.explainers.Exact on the 10-feature model, background = our exported background,
#     f = the model's ONNX export in onnxruntime (one thread): ms per explanation, ours ÷
#     shap, error against exact / agreement (max |Δφ|);
#   * the gzip -9 size of inference-wasm/pkg/inference_bg.wasm.
# Prints one markdown table (also saved to bench/out/explain.md).
#
# Run:          bench/explain/run.sh
# Quick check:  N=50 EXACT_ROWS=5 bench/explain/run.sh
# Environment:
#   TRAINER_BIN     trainer binary (default target/release/trainer; copied before use)
#   N               rows explained per implementation (default 200)
#   EXACT_ROWS      ESG rows given the exact reference (default 10; ~4 s each natively)
#   SHAP_MAX_EVALS  shap Permutation's max_evals (default 4·15·2 = 120: ours' forward rows
#                   per background row at 2 permutations)
#   PYTHON          Python with shap, onnxruntime, pandas, numpy (default .venv/bin/python,
#                   else python3); KEEP_TMP=1 keeps the temp dir
# Prerequisites: release trainer build; the wasm package (scripts/build-wasm.sh:
#   inference-wasm/pkg); Node >= 18; Python with shap (0.51), onnxruntime, pandas, numpy.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bench_init explain

N=${N:-200}
EXACT_ROWS=${EXACT_ROWS:-10}
[ "$EXACT_ROWS" -le "$N" ] || EXACT_ROWS=$N
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
need node gzip "$PYTHON"
[ -f inference-wasm/pkg/node.cjs ] && [ -f inference-wasm/pkg/inference_bg.wasm ] \
  || die "missing the wasm package: run scripts/build-wasm.sh"
"$PYTHON" -c 'import shap, onnxruntime, pandas, numpy' 2>/dev/null \
  || die "$PYTHON lacks shap/onnxruntime/pandas/numpy (set PYTHON)"
trainer_bin
T=$BENCH_TMP
models=$T/models

# train_model NAME ARGS...: train into $models; the model dir in $MODEL_DIR.
train_model() {
  local name=$1; shift
  "$TRAINER" train --models-dir "$models" --json "$@" >"$T/train-$name.out" 2>"$T/train-$name.err" \
    || { tail -n 20 "$T/train-$name.err" >&2; die "training $name failed"; }
  MODEL_DIR=$(tail -n1 "$T/train-$name.out" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["model_dir"])')
}

log "training the ESG model (embedded data set)"
train_model esg
esg=$MODEL_DIR
log "training a 10-feature numeric model"
"$PYTHON" scripts/gen_numeric_dataset.py --rows 2000 --features 10 --classes 3 --seed 1 --out "$T/num10.csv" >&2
train_model num --data "$T/num10.csv" --target label --task classification
num=$MODEL_DIR

for m in esg num; do
  dir=${!m}
  "$TRAINER" export --model "$dir" --format onnx --out "$T/$m.onnx" >&2
  "$TRAINER" export --model "$dir" --format background --out "$T/$m-bg.csv" >&2
done

"$PYTHON" bench/explain/shap_ref.py rows --esg trainer/data/esg_ratings.csv --num "$T/num10.csv" --n "$N" \
  --out-esg "$T/esg-rows.csv" --out-num "$T/num-rows.csv"
head -n $((EXACT_ROWS + 1)) "$T/esg-rows.csv" >"$T/esg-exact-rows.csv"

log "wasm: $N explanations per model"
node bench/explain/explain.mjs --bundle "$esg/model.safetensors" --rows "$T/esg-rows.csv" --out "$T/wasm-esg.json"
node bench/explain/explain.mjs --bundle "$num/model.safetensors" --rows "$T/num-rows.csv" --out "$T/wasm-num.json"

# native NAME MODEL_DIR ROWS ARGS...: ms per explanation = (wall with ARGS − wall without) ÷ rows;
# the explanations in $T/NAME.out, the result in $NATIVE_MS.
native() {
  local name=$1 dir=$2 rows=$3; shift 3
  local n plain
  n=$(($(wc -l <"$rows") - 1))
  measure "$name-plain" "$TRAINER" predict --model "$dir" --input "$rows" --json
  plain=$WALL_S
  measure "$name" "$TRAINER" predict --model "$dir" --input "$rows" --json --explain "$@"
  NATIVE_MS=$(awk -v a="$WALL_S" -v b="$plain" -v n="$n" 'BEGIN { printf "%.4f", (a - b) * 1000 / n }')
}

log "native: $N explanations per model"
native native-esg "$esg" "$T/esg-rows.csv"
esg_ms=$NATIVE_MS
native native-num "$num" "$T/num-rows.csv"
num_ms=$NATIVE_MS
log "native: exact reference (2^15 coalitions) on $EXACT_ROWS ESG rows"
native native-exact-esg "$esg" "$T/esg-exact-rows.csv" --explain-method exact
exact_ms=$NATIVE_MS

log "shap: the same rows"
"$PYTHON" bench/explain/shap_ref.py table \
  --esg-rows "$T/esg-rows.csv" --num-rows "$T/num-rows.csv" \
  --esg-bg "$T/esg-bg.csv" --num-bg "$T/num-bg.csv" --esg-onnx "$T/esg.onnx" --num-onnx "$T/num.onnx" \
  --wasm-esg "$T/wasm-esg.json" --wasm-num "$T/wasm-num.json" \
  --native-esg "$T/native-esg.out" --native-num "$T/native-num.out" --native-exact-esg "$T/native-exact-esg.out" \
  --native-esg-ms "$esg_ms" --native-num-ms "$num_ms" --native-exact-esg-ms "$exact_ms" \
  --wasm-gzip "$(gzip -9 -c inference-wasm/pkg/inference_bg.wasm | wc -c)" \
  --shap-max-evals "${SHAP_MAX_EVALS:-0}" --cpus "$(nproc)" | publish explain
