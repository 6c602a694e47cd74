# Shared helpers of the benchmark scripts (bench/*/run.sh, bench/http/bench.sh).
# Source it from a script running under `set -euo pipefail`:
#
#   source "$(dirname "$0")/../lib.sh"
#   bench_init http          # cd to the repo root, temp dir $BENCH_TMP, cleanup trap
#   trainer_bin              # copies $TRAINER_BIN (default target/release/trainer) to
#                            #   $BENCH_TMP/trainer-bin and sets $TRAINER
#   spawn NAME LOG cmd...    # start a background process; killed by the trap; pid -> $SPAWNED
#   measure NAME cmd...      # run cmd under /usr/bin/time -v: $BENCH_TMP/NAME.{out,err,time}
#   publish NAME < table.md  # print the table and save it to bench/out/NAME.md
#
# Benchmarks are never tests: nothing here asserts a speed.

BENCH_PIDS=()

log() { printf '[%s] %s\n' "$BENCH_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

_bench_cleanup() {
  local status=$?
  local pid
  for pid in "${BENCH_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
  if [ -n "${BENCH_TMP:-}" ] && [ -d "$BENCH_TMP" ]; then
    if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $BENCH_TMP"; else rm -rf "$BENCH_TMP"; fi
  fi
  exit "$status"
}

# bench_init NAME: cd to the repository root, make bench/out and a private temp dir.
bench_init() {
  BENCH_NAME=$1
  BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  cd "$BENCH_ROOT"
  mkdir -p bench/out
  BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-$BENCH_NAME.XXXXXX")
  trap _bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# trainer_bin: snapshot the trainer binary, so a rebuild during the run cannot swap it.
# Path of the cached ROWS x 32 numeric CSV (5 classes, seed 42), generating it on first use.
numeric_dataset() {
  local data="bench/out/numeric_${1}x32_c5_s42.csv"
  if [ ! -s "$data" ]; then
    log "generating $data"
    "${PYTHON:-python3}" scripts/gen_numeric_dataset.py --rows "$1" --features 32 --classes 5 --seed 42 --out "$data.tmp"
    mv "$data.tmp" "$data"
  fi
  echo "$data"
}

trainer_bin() {
  local src=${TRAINER_BIN:-target/release/trainer}
  [ -x "$src" ] || die "no trainer binary at $src (cargo build --release -p trainer, or set TRAINER_BIN)"
  cp "$src" "$BENCH_TMP/trainer-bin"
  TRAINER="$BENCH_TMP/trainer-bin"
}

# need CMD...: fail early when a prerequisite is missing.
need() {
  local c
  for c in "$@"; do command -v "$c" >/dev/null || die "'$c' is required but not installed"; done
}

# spawn LOG cmd...: run cmd in the background (stdout+stderr to LOG); its pid in $SPAWNED.
spawn() {
  local logfile=$1; shift
  "$@" >"$logfile" 2>&1 &
  SPAWNED=$!
  BENCH_PIDS+=("$SPAWNED")
}

# stop PID: TERM, then KILL after 5 s.
stop() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# wait_listening LOG PID: wait (30 s) for a "listening on http://HOST:PORT" line; echo the URL.
wait_listening() {
  local logfile=$1 pid=$2 url
  for _ in $(seq 300); do
    url=$(grep -o 'listening on http://[0-9.:]*' "$logfile" 2>/dev/null | head -n1 | sed 's/^listening on //')
    if [ -n "$url" ]; then echo "$url"; return 0; fi
    kill -0 "$pid" 2>/dev/null || { cat "$logfile" >&2; die "server exited before listening"; }
    sleep 0.1
  done
  cat "$logfile" >&2
  die "server did not start listening within 30 s"
}

# proc_kib PID FIELD: a VmXXX field of /proc/PID/status, in KiB.
proc_kib() {
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# measure NAME cmd...: run cmd with /usr/bin/time -v; stdout/stderr/time report in
# $BENCH_TMP/NAME.{out,err,time}. Sets WALL_S (wall seconds) and PEAK_KIB (max RSS).
measure() {
  local name=$1; shift
  local base="$BENCH_TMP/$name" rc=0
  /usr/bin/time -v -o "$base.time" "$@" >"$base.out" 2>"$base.err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -n 20 "$base.err" >&2
    die "$name failed (exit $rc): $*"
  fi
  PEAK_KIB=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$base.time")
  # "Elapsed (wall clock) time (h:mm:ss or m:ss): 1:02.34"
  WALL_S=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0;
            for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$base.time")
}

# publish NAME: copy stdin (a markdown table) to stdout and bench/out/NAME.md.
publish() {
  tee "bench/out/$1.md"
  log "saved bench/out/$1.md"
}
