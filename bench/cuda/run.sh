#!/usr/bin/env bash
# GPU check for a CUDA machine (one command, about two minutes on an H100):
#  1. training speed at batch 256 and 4096: the fused CUDA step (`--device cuda`), candle's
#     autograd on the same GPU (`TRAINER_ENGINE=candle`, the general path), the same binary on
#     the CPU, and PyTorch on CUDA (bench/reference/torch_pipeline.py, same data and network);
#  2. GPU/CPU bundle parity: `trainer crosscheck --device cuda` on the GPU-trained bundle's test
#     rows (the CUDA engine's eval outputs against the CPU inference core, ≤ 1e-5), and the CPU
#     core's accuracy on those rows against the accuracy the GPU run reported;
#  3. engine agreement: without dropout, one epoch from the same seed on the GPU and on the CPU
#     (same initial weights and batches) must end at nearly the same weights and predictions.
#
# Run on the GPU machine from the repo root, with the binary built by scripts/build-cuda.sh:
#   TRAINER_BIN=target/cuda/release/trainer bench/cuda/run.sh
# Environment: ROWS (200000), EPOCHS (3), BATCHES ("256 4096").
# Exit status: non-zero if a parity or agreement check fails (speed is only reported).
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN="${TRAINER_BIN:-target/cuda/release/trainer}"
# cudart/cublas/curand 13 from the machine's toolkit, or from PyTorch's CUDA 13 wheels.
torch_libs=$(python3 -c 'import nvidia, os; p = os.path.join(os.path.dirname(nvidia.__path__[0]), "nvidia", "cu13", "lib"); print(p if os.path.isdir(p) else "")' 2>/dev/null || true)
export LD_LIBRARY_PATH="${torch_libs:+$torch_libs:}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
if ldd "$BIN" | grep -q "not found"; then ldd "$BIN" | grep "not found" >&2; echo "missing CUDA libraries" >&2; exit 1; fi
ROWS="${ROWS:-200000}"; EPOCHS="${EPOCHS:-3}"; BATCHES="${BATCHES:-256 4096}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
data="$tmp/data.csv"
python3 scripts/gen_numeric_dataset.py --rows "$ROWS" --features 32 --classes 5 --seed 42 --out "$data" >&2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
failed=0

field() { python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print($1)" 2>/dev/null || echo "failed"; }
run_trainer() { # device batch [extra flags]
  local dev=$1 b=$2; shift 2
  "$BIN" train --data "$data" --target label --epochs "$EPOCHS" --patience 0 --batch-size "$b" \
    --device "$dev" --models-dir "$tmp/models" --save-test-rows --json "$@" 2>"$tmp/err" || { tail -3 "$tmp/err" >&2; echo '{}'; }
}
row() { # batch label json
  echo "| $1 | $2 | $(echo "$3" | field "int(d['samples_per_second'])") | $(echo "$3" | field "round(d['test_metrics']['accuracy'], 4)") |"
}
echo "| batch | engine | samples/s | test accuracy |"
echo "|---:|---|---:|---:|"
for b in $BATCHES; do
  gpu_out=$(run_trainer cuda "$b"); row "$b" "trainer --device cuda (fused CUDA step)" "$gpu_out"
  [ "$b" = "${BATCHES%% *}" ] && first_gpu="$gpu_out"
  row "$b" "trainer --device cuda, TRAINER_ENGINE=candle" "$(TRAINER_ENGINE=candle run_trainer cuda "$b")"
  row "$b" "trainer --device cpu (fused CPU step)" "$(run_trainer cpu "$b")"
  ref=$(python3 bench/reference/torch_pipeline.py --data "$data" --target label --task classification \
    --hidden 128,64,32 --dropout 0.2 --epochs "$EPOCHS" --batch-size "$b" --patience 0 --threads 16 --device cuda 2>/dev/null | tail -1)
  row "$b" "PyTorch CUDA" "$ref"
done

# 2. Parity: the GPU-trained bundle (first batch size) through the CPU inference core.
dir=$(echo "$first_gpu" | field "d['model_dir']")
reported=$(echo "$first_gpu" | field "d['test_metrics']['accuracy']")
echo
echo "bundle written on the GPU: $dir (engine $(python3 -c "import json; print(json.load(open('$dir/metadata.json')).get('engine'))" 2>/dev/null))"
"$BIN" crosscheck --model "$dir" --device cuda || failed=1
"$BIN" predict --model "$dir" --input "$dir/test_rows.csv" --json > "$tmp/pred.jsonl" || failed=1
python3 - "$dir/test_rows.csv" "$tmp/pred.jsonl" "$reported" <<'PY' || failed=1
import csv, json, sys
labels = [r["label"] for r in csv.DictReader(open(sys.argv[1]))]
preds = [json.loads(l)["predicted_label"] for l in open(sys.argv[2])]
acc = sum(p == l for p, l in zip(preds, labels)) / len(labels)
ok = abs(acc - float(sys.argv[3])) < 1e-9
print(f"accuracy: GPU-reported {float(sys.argv[3]):.6f}, CPU inference core on the same rows {acc:.6f}", "OK" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
PY

# 3. Engine agreement without dropout: one epoch, same seed, GPU vs CPU, for each activation,
#    both losses and each optimizer; then each GPU bundle through `crosscheck --device cuda`.
head -n 6001 "$data" > "$tmp/small.csv"
cases=("relu" "gelu --activation gelu" "tanh --activation tanh" "sigmoid --activation sigmoid"
       "leaky_relu --activation leaky_relu" "regression --task regression"
       "adamw --optimizer adamw --weight-decay 0.01" "sgd --optimizer sgd --lr 0.01 --weight-decay 0.001")
for c in "${cases[@]}"; do
  read -r name flags <<<"$c"
  for dev in cuda cpu; do
    # shellcheck disable=SC2086
    "$BIN" train --data "$tmp/small.csv" --target label --epochs 1 --patience 0 --batch-size 256 --dropout 0 \
      $flags --device "$dev" --models-dir "$tmp/agree-$name-$dev" --save-test-rows --json 2>/dev/null | tail -1 > "$tmp/agree-$name-$dev.json"
  done
  python3 - "$name" "$tmp/agree-$name-cuda" "$tmp/agree-$name-cpu" <<'PY' || failed=1
import glob, sys
import numpy as np
from safetensors.numpy import load_file
a, b = (load_file(glob.glob(d + "/*/model.safetensors")[0]) for d in sys.argv[2:4])
worst = 0.0
for name in sorted(a):
    # A Linear bias ahead of BatchNorm has a zero gradient in exact arithmetic: Adam turns float
    # noise there into lr-sized steps, and BatchNorm cancels them, so it is not compared.
    if not name.endswith("linear.bias"):
        worst = max(worst, float(np.max(np.abs(a[name] - b[name]))) / max(1.0, float(np.max(np.abs(b[name])))))
ok = worst <= 1e-3
print(f"engine agreement, {sys.argv[1]} (no dropout, 1 epoch): max relative |Δweight| {worst:.2e}", "OK" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
PY
  "$BIN" crosscheck --model "$(field "d['model_dir']" < "$tmp/agree-$name-cuda.json")" --device cuda || failed=1
done
exit $failed
