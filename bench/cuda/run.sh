#!/usr/bin/env bash
# GPU check for a CUDA machine (one command, a few minutes): the training benchmark at batch
# 256 and 4096 — the CUDA build on the GPU, the same binary on the CPU, and PyTorch on CUDA —
# plus GPU/CPU bundle parity: a model trained on the GPU must give, through the CPU/wasm
# inference core, the test accuracy the GPU run reported.
#
# Run on the GPU machine from the repo root, with the binary built by scripts/build-cuda.sh:
#   TRAINER_BIN=target/cuda/release/trainer bench/cuda/run.sh
# Environment: ROWS (200000), EPOCHS (3), BATCHES ("256 4096").
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${TRAINER_BIN:-target/cuda/release/trainer}"
# cudart/cublas/curand 13 from the machine's toolkit, or from PyTorch's CUDA 13 wheels.
torch_libs=$(python3 -c 'import nvidia, os; p = os.path.join(os.path.dirname(nvidia.__path__[0]), "nvidia", "cu13", "lib"); print(p if os.path.isdir(p) else "")' 2>/dev/null || true)
export LD_LIBRARY_PATH="${torch_libs:+$torch_libs:}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
ldd "$BIN" | grep -q "not found" && { ldd "$BIN" | grep "not found" >&2; echo "missing CUDA libraries" >&2; exit 1; }
ROWS="${ROWS:-200000}"; EPOCHS="${EPOCHS:-3}"; BATCHES="${BATCHES:-256 4096}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
data="$tmp/data.csv"
python3 scripts/gen_numeric_dataset.py --rows "$ROWS" --features 32 --classes 5 --seed 42 --out "$data" >&2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true

field() { python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print($1)"; }
run_trainer() { # device batch
  "$BIN" train --data "$data" --target label --epochs "$EPOCHS" --patience 0 --batch-size "$2" \
    --device "$1" --models-dir "$tmp/models" --save-test-rows --json 2>/dev/null
}
echo "| batch | engine | samples/s | test accuracy |"
echo "|---:|---|---:|---:|"
for b in $BATCHES; do
  for dev in cuda cpu; do
    out=$(run_trainer "$dev" "$b")
    echo "| $b | trainer --device $dev | $(echo "$out" | field "int(d['samples_per_second'])") | $(echo "$out" | field "round(d['test_metrics']['accuracy'], 4)") |"
    if [ "$dev" = cuda ]; then gpu_out="$out"; fi
  done
  ref=$(python3 bench/reference/torch_pipeline.py --data "$data" --target label --task classification \
    --hidden 128,64,32 --dropout 0.2 --epochs "$EPOCHS" --batch-size "$b" --patience 0 --threads 16 --device cuda 2>/dev/null | tail -1)
  echo "| $b | PyTorch CUDA | $(echo "$ref" | field "int(d['samples_per_second'])") | $(echo "$ref" | field "round(d['test_metrics']['accuracy'], 4)") |"
done

# Parity: the GPU-trained bundle through the CPU inference core.
dir=$(echo "$gpu_out" | field "d['model_dir']")
reported=$(echo "$gpu_out" | field "d['test_metrics']['accuracy']")
"$BIN" predict --model "$dir" --input "$dir/test_rows.csv" --json > "$tmp/pred.jsonl"
python3 - "$dir/test_rows.csv" "$tmp/pred.jsonl" "$reported" <<'PY'
import csv, json, sys
labels = [r["label"] for r in csv.DictReader(open(sys.argv[1]))]
preds = [json.loads(l)["predicted_label"] for l in open(sys.argv[2])]
acc = sum(p == l for p, l in zip(preds, labels)) / len(labels)
print(f"\nparity: GPU-reported test accuracy {float(sys.argv[3]):.6f}, CPU core on the same rows {acc:.6f}",
      "OK" if abs(acc - float(sys.argv[3])) < 1e-9 else "MISMATCH")
PY
