#!/usr/bin/env bash
# Model-quality benchmark: `trainer train` (defaults) and `trainer tune` against
# scikit-learn baselines (LogisticRegression/Ridge, HistGradientBoosting, MLP at default
# parameters) and an Optuna + PyTorch search of the same space, on the same splits.
# See bench/quality/README.md for what is measured and how.
#
# Data: scikit-learn's iris, wine, breast cancer (classification) and diabetes
# (regression), exported to CSV under bench/out/quality-data/, and the embedded ESG set
# (trainer/data/esg_ratings.csv, target esg_rating). For each dataset and seed (1..SEEDS)
# `trainer train --save-split` makes the split (test 0.2, validation 0.1); every other
# method uses exactly its rows (trainer tune's own split.json is checked to be identical).
# Reported per dataset and method: test accuracy (classification) or R² (regression),
# mean ± std over the seeds, and the mean wall time of one (dataset, seed) run; then
# whether each goal holds with the measured numbers. Everything runs single-threaded.
# Prints one markdown table (also saved to bench/out/quality.md; raw numbers in
# bench/out/quality.json).
#
# Run:          nice -n 10 bench/quality/run.sh
# Quick check:  QUICK=1 bench/quality/run.sh          (1 seed, 4 trials)
# Environment:  TRAINER_BIN (default target/release/trainer; copied before use),
#               SEEDS (5: seeds 1..SEEDS), TRIALS (40), DATASETS (all:
#               "iris wine breast_cancer diabetes esg"), QUICK=1, VENV (bench/out/quality-venv),
#               SHIPPED_TIMEOUT (300: seconds allowed to each as-shipped `trainer tune`
#               run, whose global-importance step can take minutes; the search itself is
#               timed with --importance-rows 0), PYTHON (python3, used to create the venv),
#               KEEP_TMP=1
# Prerequisites: release trainer build; Python ≥ 3.9 with venv; the first run installs
#   bench/quality/requirements.txt (scikit-learn, pandas, optuna, torch) into $VENV.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bench_init quality

if [ "${QUICK:-0}" = 1 ]; then
  SEEDS=${SEEDS:-1}
  TRIALS=${TRIALS:-4}
fi
SEEDS=${SEEDS:-5}
TRIALS=${TRIALS:-40}
DATASETS=${DATASETS:-iris wine breast_cancer diabetes esg}
SHIPPED_TIMEOUT=${SHIPPED_TIMEOUT:-300}
VENV=${VENV:-bench/out/quality-venv}
PYTHON=${PYTHON:-python3}
[[ "$SEEDS" =~ ^[1-9][0-9]*$ ]] || die "SEEDS must be a positive count, got '$SEEDS'"
[[ "$TRIALS" =~ ^[1-9][0-9]*$ ]] || die "TRIALS must be a positive count, got '$TRIALS'"

# The Python side: a private venv with the requirements, installed when missing.
py_ready() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sklearn, pandas, optuna, torch' 2>/dev/null; }
if ! py_ready; then
  need "$PYTHON"
  log "setting up $VENV (bench/quality/requirements.txt)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  # The CPU-only torch wheel is much smaller; when its index cannot be reached, PyPI's.
  "$VENV/bin/python" -c 'import torch' 2>/dev/null \
    || "$VENV/bin/python" -m pip install -q --retries 1 --timeout 20 torch \
         --index-url https://download.pytorch.org/whl/cpu >&2 \
    || log "the CPU torch index is unreachable; installing torch from PyPI"
  "$VENV/bin/python" -m pip install -q -r bench/quality/requirements.txt >&2
  py_ready || die "$VENV lacks scikit-learn, pandas, optuna or torch after installing"
fi
trainer_bin

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=1
log "datasets: $DATASETS; seeds 1..$SEEDS; $TRIALS trials"
"$VENV/bin/python" bench/quality/quality.py --trainer "$TRAINER" --work "$BENCH_TMP/models" \
  --seeds "$(seq -s, 1 "$SEEDS")" --trials "$TRIALS" --datasets "$DATASETS" \
  --shipped-timeout "$SHIPPED_TIMEOUT" --json bench/out/quality.json >"$BENCH_TMP/table.md"
publish quality <"$BENCH_TMP/table.md"
