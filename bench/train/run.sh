#!/usr/bin/env bash
# Training speed benchmark: the trainer (Rust) against the PyTorch reference
# pipeline (bench/reference/torch_pipeline.py), one run each, on the same numeric data.
#
# Data: ROWS x 32 float features, 5 classes (scripts/gen_numeric_dataset.py, seed 42,
# cached under bench/out/). Both split it the same way (test 0.2, validation 0.1 of all
# rows, seed 42) and train the same network (hidden 128,64,32, relu, dropout 0.2,
# BatchNorm; Adam lr 0.001) for exactly EPOCHS epochs (--patience 0: no early stopping),
# with 2 threads (RAYON_NUM_THREADS=2 / --threads 2), for batch sizes 32 and 256.
# Reported per batch size: samples/s of the training loop (each tool's own
# samples_per_second: training rows processed ÷ wall time of the epoch loop, including
# the per-epoch validation pass), wall seconds and peak RSS of the whole command
# (/usr/bin/time -v; includes loading the CSV, preprocessing, evaluation, saving), and
# test accuracy, with Rust ÷ PyTorch ratios.
# The ceiling, measured in the same run before the trainers: the `gemm` crate's sustained
# f32 GFLOP/s on CEILING_N² matrices with 1 and THREADS threads (examples/gemm_ceiling.rs).
# Each tool's training GFLOP/s = samples/s × the GEMM FLOPs of one training sample
# (forward 2·Σ in·out, weight gradients 2·Σ in·out, input gradients 2·Σ in·out over every
# layer but the first, plus the per-epoch validation forward pass spread over the training
# rows), printed as a share of both ceilings. Memory: peak RSS ÷ (f32 size of the data, all
# rows × features + target, plus the model's parameters), and the same less the trainer's fixed
# footprint (code, libc, the GEMM packing buffers, thread stacks): the peak RSS of the same
# command on the first FIXED_ROWS rows, measured in the same run.
# Prints one markdown table (also saved to bench/out/train.md).
#
# Run:          bench/train/run.sh
# Quick check:  ROWS=20000 EPOCHS=1 bench/train/run.sh
# Environment:  TRAINER_BIN (default target/release/trainer; copied before use),
#               ROWS (200000), EPOCHS (3), BATCHES ("32 256"), THREADS (2),
#               CEILING_BIN (target/release/examples/gemm_ceiling), CEILING_N (1024),
#               PYTHON (python3), FIXED_ROWS (2000), KEEP_TMP=1
# Prerequisites: release trainer build and `cargo build --release -p trainer --example
#   gemm_ceiling`; /usr/bin/time; Python with torch, numpy, pandas,
#   scikit-learn (pip install -r bench/reference/requirements.txt).
# Run it on an otherwise idle machine: both tools use THREADS cores.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bench_init train

ROWS=${ROWS:-200000}
EPOCHS=${EPOCHS:-3}
BATCHES=${BATCHES:-32 256}
THREADS=${THREADS:-2}
FIXED_ROWS=${FIXED_ROWS:-2000}
PYTHON=${PYTHON:-python3}
CEILING_BIN=${CEILING_BIN:-target/release/examples/gemm_ceiling}
CEILING_N=${CEILING_N:-1024}
need "$PYTHON"
[ -x "$CEILING_BIN" ] || die "no GEMM ceiling binary at $CEILING_BIN (cargo build --release -p trainer --example gemm_ceiling)"
[ -x /usr/bin/time ] || die "/usr/bin/time is required (apt-get install time)"
"$PYTHON" -c 'import torch, sklearn, pandas' 2>/dev/null \
  || die "the PyTorch reference needs: pip install -r bench/reference/requirements.txt"
trainer_bin

data=$(numeric_dataset "$ROWS")
cat "$data" >/dev/null # page cache

common=(--hidden 128,64,32 --dropout 0.2 --lr 0.001 --epochs "$EPOCHS" --patience 0 --seed 42
        --test-size 0.2 --val-size 0.1)
log "ceiling: gemm f32 on ${CEILING_N}² matrices, 1 and $THREADS threads"
"$CEILING_BIN" --threads "$THREADS" --sizes "$CEILING_N" >"$BENCH_TMP/ceiling.jsonl"

results="$BENCH_TMP/results.txt"
: >"$results"
log "fixed footprint: the trainer on the first $FIXED_ROWS rows"
head -n "$((FIXED_ROWS + 1))" "$data" >"$BENCH_TMP/fixed.csv"
RAYON_NUM_THREADS=$THREADS measure rust_fixed "$TRAINER" train --data "$BENCH_TMP/fixed.csv" --target label \
  --task classification --models-dir "$BENCH_TMP/models" --json --batch-size 256 "${common[@]}"
echo "$PEAK_KIB" >"$BENCH_TMP/fixed_kib.txt"
for bs in $BATCHES; do
  log "batch $bs: trainer ($EPOCHS epochs, RAYON_NUM_THREADS=$THREADS)"
  RAYON_NUM_THREADS=$THREADS measure "rust_$bs" "$TRAINER" train --data "$data" --target label \
    --task classification --models-dir "$BENCH_TMP/models" --json --batch-size "$bs" "${common[@]}"
  echo "rust $bs $WALL_S $PEAK_KIB $(tail -n1 "$BENCH_TMP/rust_$bs.out")" >>"$results"
  # "data: … (200000 rows, 32 features; train 140000 / val 20000 / test 40000; …)"
  grep -o 'train [0-9]* / val [0-9]* / test [0-9]*' "$BENCH_TMP/rust_$bs.err" | head -n1 >"$BENCH_TMP/split.txt"

  log "batch $bs: PyTorch ($EPOCHS epochs, --threads $THREADS)"
  measure "torch_$bs" "$PYTHON" bench/reference/torch_pipeline.py --data "$data" --target label \
    --task classification --threads "$THREADS" --batch-size "$bs" "${common[@]}"
  echo "torch $bs $WALL_S $PEAK_KIB $(tail -n1 "$BENCH_TMP/torch_$bs.out")" >>"$results"
done

"$PYTHON" - "$results" "$ROWS" "$EPOCHS" "$THREADS" "$BENCH_TMP/ceiling.jsonl" "$BENCH_TMP/split.txt" \
  "$(cat "$BENCH_TMP/fixed_kib.txt")" "$FIXED_ROWS" <<'EOF' | publish train
import json, sys
from importlib.metadata import version
results, rows, epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ceiling_lines = [json.loads(line) for line in open(sys.argv[5])]
ceiling = {c["threads"]: c["gflops"] for c in ceiling_lines}
ceiling_n = ceiling_lines[0]["n"]
_, n_train, _, _, n_val, _, _, n_test = open(sys.argv[6]).read().split()
n_train, n_val = int(n_train), int(n_val)
fixed_mib, fixed_rows = int(sys.argv[7]) / 1024, int(sys.argv[8])
# GEMM FLOPs of one training sample of 32 -> 128, 64, 32 -> 5.
dims = [32, 128, 64, 32, 5]
macs = [i * o for i, o in zip(dims, dims[1:])]
forward = 2 * sum(macs)
per_sample = forward + 2 * sum(macs) + 2 * sum(macs[1:]) + forward * n_val / n_train
params = sum(i * o + 3 * o for i, o in zip(dims[:-1], dims[1:-1])) + dims[-2] * dims[-1] + dims[-1]
data_mib = (rows * (dims[0] + 1) + params) * 4 / 2**20
runs = {}
for line in open(results):
    impl, bs, wall, kib, summary = line.split(" ", 4)
    s = json.loads(summary)
    if s["epochs_run"] != epochs:
        sys.exit(f"{impl} batch {bs} ran {s['epochs_run']} epochs, expected {epochs}")
    runs[(impl, int(bs))] = {
        "sps": s["samples_per_second"], "wall": float(wall), "rss": int(kib) / 1024,
        "acc": s["test_metrics"]["accuracy"], "loop": s["train_seconds"],
    }
    r = runs[(impl, int(bs))]
    r["gflops"] = r["sps"] * per_sample / 1e9
    r["share"] = r["gflops"] / ceiling[threads]
    r["share1"] = r["gflops"] / ceiling[1]
    r["rss_ratio"] = r["rss"] / data_mib
    r["rss_data_ratio"] = (r["rss"] - fixed_mib) / data_mib if impl == "rust" else None
print("| batch | metric | trainer (Rust) | PyTorch | Rust ÷ PyTorch |")
print("|---:|---|---:|---:|---:|")
metrics = [
    ("sps", "training samples/s", lambda v: f"{v:,.0f}"),
    ("gflops", "training GFLOP/s (GEMM FLOPs)", lambda v: f"{v:.1f}"),
    ("share", f"share of the {threads}-thread GEMM ceiling", lambda v: f"{v:.1%}"),
    ("share1", "share of the 1-thread GEMM ceiling", lambda v: f"{v:.1%}"),
    ("loop", "training loop s", lambda v: f"{v:.2f}"),
    ("wall", "whole command wall s", lambda v: f"{v:.2f}"),
    ("rss", "peak RSS MiB", lambda v: f"{v:.1f}"),
    ("rss_ratio", "peak RSS ÷ (f32 data + model)", lambda v: f"{v:.2f}×"),
    ("rss_data_ratio", "(peak RSS − fixed footprint) ÷ (f32 data + model)", lambda v: f"{v:.2f}×"),
    ("acc", "test accuracy", lambda v: f"{v:.4f}"),
]
for bs in sorted({b for _, b in runs}):
    r, t = runs[("rust", bs)], runs[("torch", bs)]
    for key, label, fmt in metrics:
        if t[key] is None:
            print(f"| {bs} | {label} | {fmt(r[key])} | | |")
            continue
        ratio = f"{r[key] / t[key]:.2f}×" if t[key] else "n/a"
        print(f"| {bs} | {label} | {fmt(r[key])} | {fmt(t[key])} | {ratio} |")
print()
print(f"{rows:,} rows × 32 features, 5 classes (train/val/test 0.7/0.1/0.2, seed 42); hidden 128,64,32 relu, "
      f"dropout 0.2, Adam lr 0.001, {epochs} epoch{'s' if epochs != 1 else ''} without early stopping, {threads} threads; "
      f"one run each; torch {version('torch')}.")
print()
print(f"Ceiling (same run): gemm f32 {ceiling_n}² sustained: {ceiling[1]:.1f} GFLOP/s on 1 thread, "
      f"{ceiling[threads]:.1f} on {threads}. One training sample = {per_sample:,.0f} GEMM FLOPs "
      f"({forward:,} forward, {2 * sum(macs) + 2 * sum(macs[1:]):,} backward, "
      f"{forward * n_val / n_train:,.0f} validation pass per training row; train {n_train:,} / val {n_val:,} rows). "
      f"f32 data + model = {data_mib:.1f} MiB. Fixed footprint: the trainer's peak RSS on the first "
      f"{fixed_rows:,} rows, {fixed_mib:.1f} MiB.")
EOF
