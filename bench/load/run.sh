#!/usr/bin/env bash
# CSV loading benchmark: `trainer inspect --data FILE` (loads the file into the trainer's
# table and summarises it; no training) against pandas `read_csv`, on a large numeric CSV.
#
# What it measures: wall seconds and peak RSS (/usr/bin/time -v "Maximum resident set
# size") of each command as a whole process, on a ROWS x 33 CSV (32 float features + an
# integer label; scripts/gen_numeric_dataset.py, seed 42, cached under bench/out/). The
# file is read once beforehand so both start from the page cache. Also reported: the size
# of the data as f32 (ROWS x 33 x 4 bytes) and peak RSS ÷ that size, plus a baseline row
# (python3 + `import pandas`, reading nothing) to show the interpreter's share.
# Prints one markdown table (also saved to bench/out/load.md).
#
# Run:          bench/load/run.sh
# Quick check:  ROWS=20000 bench/load/run.sh
# Environment:  TRAINER_BIN (default target/release/trainer; copied before use),
#               ROWS (default 1000000), PYTHON (default python3), KEEP_TMP=1
# Prerequisites: release trainer build (with `inspect`); Python with numpy and pandas;
#   /usr/bin/time (Debian package `time`). Generating 1M rows takes ~15 s and ~330 MB of disk.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bench_init load

ROWS=${ROWS:-1000000}
PYTHON=${PYTHON:-python3}
need "$PYTHON"
[ -x /usr/bin/time ] || die "/usr/bin/time is required (apt-get install time)"
"$PYTHON" -c 'import pandas, numpy' 2>/dev/null || die "needs pandas and numpy"
trainer_bin
"$TRAINER" inspect --help >/dev/null 2>&1 || die "$TRAINER has no 'inspect' subcommand"

data=$(numeric_dataset "$ROWS")
cat "$data" >/dev/null # page cache

log "trainer inspect"
measure trainer "$TRAINER" inspect --data "$data"
t_wall=$WALL_S t_kib=$PEAK_KIB
t_rows=$(head -n1 "$BENCH_TMP/trainer.out")

log "pandas.read_csv"
measure pandas "$PYTHON" -c 'import sys, pandas as pd; df = pd.read_csv(sys.argv[1]); print(f"{df.shape[0]} rows, {df.shape[1]} columns")' "$data"
p_wall=$WALL_S p_kib=$PEAK_KIB
p_rows=$(head -n1 "$BENCH_TMP/pandas.out")

log "baseline: python3 + import pandas"
measure baseline "$PYTHON" -c 'import pandas'
b_wall=$WALL_S b_kib=$PEAK_KIB

[ "$t_rows" = "$p_rows" ] || die "row counts differ: trainer '$t_rows', pandas '$p_rows'"
log "both read: $t_rows"

"$PYTHON" - "$ROWS" "$data" "$t_wall" "$t_kib" "$p_wall" "$p_kib" "$b_wall" "$b_kib" <<'EOF' | publish load
import os, sys
rows, data = int(sys.argv[1]), sys.argv[2]
t_wall, t_kib, p_wall, p_kib, b_wall, b_kib = map(float, sys.argv[3:])
cols = 33
f32 = rows * cols * 4
mib = lambda kib: kib / 1024
print("| loader | wall s | peak RSS MiB | peak RSS ÷ f32 size |")
print("|---|---:|---:|---:|")
print(f"| `trainer inspect --data` | {t_wall:.2f} | {mib(t_kib):.1f} | {t_kib * 1024 / f32:.2f} |")
print(f"| pandas `read_csv` (python3 -c) | {p_wall:.2f} | {mib(p_kib):.1f} | {p_kib * 1024 / f32:.2f} |")
print(f"| baseline: python3 + `import pandas`, no read | {b_wall:.2f} | {mib(b_kib):.1f} | — |")
print(f"| **ratio trainer ÷ pandas** | {t_wall / p_wall:.2f}× | {t_kib / p_kib:.2f}× | |")
print()
print(f"Data: {rows:,} rows × {cols} columns (32 float features + label), CSV {os.path.getsize(data) / 2**20:.1f} MiB, "
      f"as f32 {f32 / 2**20:.1f} MiB ({rows:,} × {cols} × 4 bytes); one run each, file in the page cache; "
      f"wall and peak RSS of the whole process (/usr/bin/time -v).")
EOF
