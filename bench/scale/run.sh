#!/usr/bin/env bash
# Scale-out benchmark: servers and workers sharing one redis-server (see README "Scale-out").
#
# Measures, in one run, on this machine:
#   1. 40 short trainings (the embedded ESG dataset, 20 epochs each) submitted at once to an
#      API-only `trainer serve --redis`, run by 1 and then 2 `trainer worker`s: wall time
#      from the first submission to the last completion, and tasks/min;
#   2. predict req/s (wrk, one ESG row) against one instance, and against two instances at
#      once (one wrk per instance, same total connections), plus the latency of the first
#      predict of a model a fresh instance fetches from Redis, against its second;
#   3. Redis memory per finished task record and per stored model (MEMORY USAGE, averaged).
# Prints one markdown table (also saved to bench/out/scale.md).
#
# Run:          bench/scale/run.sh
# Quick check:  TASKS=10 DURATION=3s bench/scale/run.sh
# Environment:  TRAINER_BIN (default target/release/trainer), TASKS (40), EPOCHS (20),
#               DURATION (wrk seconds per run, 10s), CONNECTIONS (16), KEEP_TMP=1.
# Prerequisites: a release build; redis-server and redis-cli; wrk; curl; python3.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bench_init scale
need redis-server redis-cli wrk curl python3
trainer_bin

TASKS=${TASKS:-40}
EPOCHS=${EPOCHS:-20}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
spawn "$BENCH_TMP/redis.log" redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$BENCH_TMP"
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
REDIS="redis://127.0.0.1:$port"

serve() { # serve NAME: an API-only instance; its URL in $URL
  spawn "$BENCH_TMP/$1.log" "$TRAINER" serve --port 0 --redis "$REDIS" --workers 0 --models-dir "$BENCH_TMP/$1" \
    --data-dir "$BENCH_TMP/data"
  URL=$(wait_listening "$BENCH_TMP/$1.log" "$SPAWNED")
}
serve a; A=$URL
results="$BENCH_TMP/results.txt"; : >"$results"

# run_batch WORKERS: start that many workers, submit $TASKS trainings, time them to the end.
run_batch() {
  local n=$1 pids=()
  for i in $(seq "$n"); do
    spawn "$BENCH_TMP/worker-$n-$i.log" "$TRAINER" worker --redis "$REDIS" --models-dir "$BENCH_TMP/w$n-$i" \
      --data-dir "$BENCH_TMP/data"
    pids+=("$SPAWNED")
  done
  for i in $(seq "$n"); do
    for _ in $(seq 100); do grep -q ' ready' "$BENCH_TMP/worker-$n-$i.log" 2>/dev/null && break; sleep 0.05; done
  done
  log "$TASKS trainings through $n worker(s)"
  python3 - "$A" "$TASKS" "$EPOCHS" "$n" >>"$results" <<'PY'
import json, sys, time, urllib.request
base, tasks, epochs, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
body = {"target_column": "esg_rating", "train_config": {"epochs": epochs, "patience": 0}}
t0 = time.monotonic()
ids = [call("POST", "/api/ml/train", body)["task_id"] for _ in range(tasks)]
left = set(ids)
while left:
    for t in list(left):
        st = call("GET", f"/api/ml/train/status/{t}")
        if st["status"] in ("completed", "failed", "cancelled"):
            assert st["status"] == "completed", st
            left.discard(t)
    time.sleep(0.05)
wall = time.monotonic() - t0
print(f"batch workers={workers} wall={wall:.2f} per_min={tasks / wall * 60:.1f}")
PY
  for p in "${pids[@]}"; do stop "$p"; done
}
mkdir -p "$BENCH_TMP/data"
run_batch 1
run_batch 2

# Predict throughput: one instance, then two at once.
model=$(curl -s "$A/api/ml/models?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["model_id"])')
body="$BENCH_TMP/body.json"
python3 - "$model" >"$body" <<'PY'
import json, sys
sys.path.insert(0, "bench")
from esg_rows import feature_rows
print(json.dumps({"model_id": sys.argv[1], "data": {"features": feature_rows()[1][0]}}))
PY
curl -sf -H 'content-type: application/json' --data-binary "@$body" "$A/api/ml/predict" >/dev/null
wrk_rps() { # wrk_rps URL CONNS OUT
  BODY_FILE="$body" wrk -t1 -c"$2" -d"$DURATION" -s bench/http/predict.lua "$1/api/ml/predict" >"$3" 2>&1
}
log "predict: one instance"
wrk_rps "$A" "$CONNECTIONS" "$BENCH_TMP/one.wrk"
serve b; B=$URL
# First use on a fresh instance: the bundle comes from Redis (then the local cache).
first=$(curl -s -o /dev/null -w '%{time_total}' -H 'content-type: application/json' --data-binary "@$body" "$B/api/ml/predict")
second=$(curl -s -o /dev/null -w '%{time_total}' -H 'content-type: application/json' --data-binary "@$body" "$B/api/ml/predict")
log "predict: two instances"
wrk_rps "$A" $((CONNECTIONS / 2)) "$BENCH_TMP/two-a.wrk" & wa=$!
wrk_rps "$B" $((CONNECTIONS / 2)) "$BENCH_TMP/two-b.wrk" & wb=$!
wait "$wa" "$wb"
rps() { awk '/^RESULT/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] } printf "%.0f", r["requests"] / r["seconds"] }' "$1"; }
echo "predict one=$(rps "$BENCH_TMP/one.wrk") two_a=$(rps "$BENCH_TMP/two-a.wrk") two_b=$(rps "$BENCH_TMP/two-b.wrk") first_ms=$(python3 -c "print(f'{$first*1000:.2f}')") second_ms=$(python3 -c "print(f'{$second*1000:.2f}')")" >>"$results"

# Redis memory per finished task and per model.
task_mem=$(redis-cli -p "$port" --scan --pattern 'trainer:task:*' | head -n 50 | while read -r k; do redis-cli -p "$port" memory usage "$k" samples 0; done | awk '{ s += $1; n++ } END { printf "%.0f", s / n }')
model_mem=$(redis-cli -p "$port" --scan --pattern 'trainer:model:*' | head -n 50 | while read -r k; do redis-cli -p "$port" memory usage "$k" samples 0; done | awk '{ s += $1; n++ } END { printf "%.0f", s / n }')
bundle=$(redis-cli -p "$port" hstrlen "trainer:model:$model" bundle)
echo "memory task=$task_mem model=$model_mem bundle=$bundle" >>"$results"

python3 - "$results" "$TASKS" "$EPOCHS" "$DURATION" "$CONNECTIONS" "$(nproc)" <<'PY' | publish scale
import sys
lines = {}
for line in open(sys.argv[1]):
    kind, *kv = line.split()
    lines.setdefault(kind, []).append(dict(x.split("=", 1) for x in kv))
tasks, epochs, duration, conns, cores = sys.argv[2:]
print("| what | 1 | 2 | 2 ÷ 1 |")
print("|---|---:|---:|---:|")
b1, b2 = lines["batch"]
print(f"| {tasks} trainings ({epochs} epochs, embedded data): wall s, workers | {float(b1['wall']):.1f} | {float(b2['wall']):.1f} | {float(b1['wall']) / float(b2['wall']):.2f}× faster |")
print(f"| tasks/min, workers | {b1['per_min']} | {b2['per_min']} | {float(b2['per_min']) / float(b1['per_min']):.2f}× |")
p = lines["predict"][0]
one, two = int(p["one"]), int(p["two_a"]) + int(p["two_b"])
print(f"| predict req/s, instances (wrk -c{conns} in total, {duration}) | {one:,} | {two:,} ({int(p['two_a']):,} + {int(p['two_b']):,}) | {two / one:.2f}× |")
print()
m = lines["memory"][0]
print(f"First predict of a model on a fresh instance (bundle fetched from Redis, verified, cached): "
      f"{p['first_ms']} ms; the next: {p['second_ms']} ms (curl time_total). "
      f"Redis memory: {int(m['task']):,} B per finished task record, {int(m['model']):,} B per stored model "
      f"(bundle {int(m['bundle']):,} B). {cores} cores: workers and instances share them, see the README.")
PY
