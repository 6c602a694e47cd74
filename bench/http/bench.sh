#!/usr/bin/env bash
# HTTP predict benchmark: `trainer serve` (axum, Rust inference core) against a FastAPI +
# uvicorn + PyTorch reference of the same endpoint (bench/http/fastapi_reference.py).
#
# What it measures, for each server in turn (never both at once):
#   1. trains the default model (embedded ESG dataset) into a temporary models dir;
#   2. starts the server on 127.0.0.1 (a free port), sends one warm-up request and checks
#      that both servers give the same answer (class, max |Δp| over the probabilities);
#   3. runs `wrk -t2 -c16 -d$DURATION --latency` POSTing one real ESG row
#      (`{"data":{"features":[...]}}`, newest model) to /api/ml/predict;
#   4. for our server, in the same process, also: GET /health (the ceiling: the same
#      stack with no work), then the same row through each serving protocol
#      (OIP V2 /v2/models/ID/infer, KServe V1 /v1/models/ID:predict, MLflow /invocations);
#      each as a share of /health's req/s;
#   5. reports requests/s, p50 and p99 latency (wrk's HdrHistogram, via predict.lua),
#      the server's RSS after warm-up (VmRSS) and peak RSS over the run (VmHWM) from
#      /proc/PID/status; non-2xx answers and socket errors are counted, never ignored.
# Prints two markdown tables (also saved to bench/out/http.md): Rust ÷ FastAPI on
# /api/ml/predict, and our routes against /health (the goal: predict ≥ 80% of /health).
#
# Run (from anywhere):   bench/http/bench.sh
# Quick check:           DURATION=3s bench/http/bench.sh
# Environment:
#   TRAINER_BIN  trainer binary (default target/release/trainer; copied before use)
#   DURATION     wrk duration per server (default 20s); THREADS (2), CONNECTIONS (16)
#   EPOCHS       training epochs of the model (default: the trainer's default, 100 with
#                early stopping); the model's size and speed do not depend on it
#   ROW          1-based data row of trainer/data/esg_ratings.csv to send (default 1)
#   PYTHON       Python interpreter (default python3)
#   KEEP_TMP=1   keep the temp dir (models, server logs, wrk output)
# Prerequisites: a release build of the trainer; wrk (apt-get install wrk); curl;
#   Python with `pip install -r bench/reference/requirements.txt` (torch, fastapi,
#   uvicorn[standard], safetensors).
# Both servers and wrk share the machine's cores: run it on an otherwise idle machine.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bench_init http

DURATION=${DURATION:-20s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-16}
ROW=${ROW:-1}
PYTHON=${PYTHON:-python3}
need wrk curl "$PYTHON"
"$PYTHON" -c 'import fastapi, uvicorn, safetensors, torch' 2>/dev/null \
  || die "the FastAPI reference needs: pip install -r bench/reference/requirements.txt"
trainer_bin

models="$BENCH_TMP/models"
log "training the default model (embedded ESG dataset)"
train_args=(train --models-dir "$models" --json)
[ -n "${EPOCHS:-}" ] && train_args+=(--epochs "$EPOCHS")
"$TRAINER" "${train_args[@]}" >"$BENCH_TMP/train.out" 2>"$BENCH_TMP/train.err" \
  || { tail -n 20 "$BENCH_TMP/train.err" >&2; die "training failed"; }
model_id=$(tail -n1 "$BENCH_TMP/train.out" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["model_id"])')
log "model $model_id"

# The request body: one real row of the ESG data (target column left out).
body="$BENCH_TMP/body.json"
"$PYTHON" - "$ROW" "$BENCH_TMP" >"$body" <<'EOF'
import json, sys
sys.path.insert(0, "bench")
from esg_rows import feature_rows
names, rows = feature_rows()
features = rows[int(sys.argv[1]) - 1]
print(json.dumps({"data": {"features": features}}))
# The same row in the other protocols' shapes.
out = sys.argv[2]
# BYTES elements are strings (as tritonclient sends them; the server checks JSON data's type).
json.dump({"inputs": [{"name": "input", "shape": [1, len(features)], "datatype": "BYTES",
                       "data": [str(v) for v in features]}]},
          open(f"{out}/body_v2.json", "w"))
json.dump({"instances": [features]}, open(f"{out}/body_v1.json", "w"))
json.dump({"dataframe_split": {"columns": names, "data": [features]}},
          open(f"{out}/body_mlflow.json", "w"))
EOF
log "body: $(cat "$body")"

results="$BENCH_TMP/results.txt"
routes="$BENCH_TMP/routes.txt"
: >"$results"
: >"$routes"

# wrk_route KEY URL [BODY]: one wrk run against our server (GET without a body); its RESULT
# line goes to $routes.
wrk_route() {
  local key=$1 url=$2 body_file=${3:-}
  log "rust $key: wrk -t$THREADS -c$CONNECTIONS -d$DURATION $url"
  BODY_FILE="$body_file" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
    -s bench/http/predict.lua "$url" >"$BENCH_TMP/route_$key.wrk" 2>&1 \
    || { cat "$BENCH_TMP/route_$key.wrk" >&2; die "wrk failed against $url"; }
  grep '^RESULT' "$BENCH_TMP/route_$key.wrk" | sed "s|^RESULT|$key|" >>"$routes"
}

# bench_server KEY LABEL cmd...: start, warm up, wrk, record RSS, stop.
bench_server() {
  local key=$1 label=$2; shift 2
  local logfile="$BENCH_TMP/$key.log" url pid status
  spawn "$logfile" "$@"
  pid=$SPAWNED
  url=$(wait_listening "$logfile" "$pid")
  log "$label: pid $pid at $url"
  status=$(curl -sS -o "$BENCH_TMP/$key.response.json" -w '%{http_code}' \
    -H 'Content-Type: application/json' --data-binary "@$body" "$url/api/ml/predict")
  [ "$status" = 200 ] || { cat "$BENCH_TMP/$key.response.json" >&2; die "$label answered HTTP $status"; }
  # A short second warm-up, so lazy initialisation is not part of the measured run.
  BODY_FILE="$body" wrk -t1 -c1 -d1s -s bench/http/predict.lua "$url/api/ml/predict" >/dev/null
  local idle_kib; idle_kib=$(proc_kib "$pid" VmRSS)
  log "$label: wrk -t$THREADS -c$CONNECTIONS -d$DURATION"
  BODY_FILE="$body" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
    -s bench/http/predict.lua "$url/api/ml/predict" >"$BENCH_TMP/$key.wrk" 2>&1 \
    || { cat "$BENCH_TMP/$key.wrk" >&2; die "wrk failed against $label"; }
  if [ "$key" = rust ]; then
    grep '^RESULT' "$BENCH_TMP/$key.wrk" | sed "s|^RESULT|api_ml|" >>"$routes"
    wrk_route health "$url/health"
    wrk_route v2 "$url/v2/models/$model_id/infer" "$BENCH_TMP/body_v2.json"
    wrk_route v1 "$url/v1/models/$model_id:predict" "$BENCH_TMP/body_v1.json"
    wrk_route mlflow "$url/invocations" "$BENCH_TMP/body_mlflow.json"
  fi
  local hwm_kib rss_kib
  hwm_kib=$(proc_kib "$pid" VmHWM)
  rss_kib=$(proc_kib "$pid" VmRSS)
  kill -0 "$pid" 2>/dev/null || die "$label died during the run"
  stop "$pid"
  grep '^RESULT' "$BENCH_TMP/$key.wrk" | sed "s/^RESULT/$key label=\"$label\" idle_kib=$idle_kib rss_kib=$rss_kib hwm_kib=$hwm_kib/" >>"$results"
  grep -E 'Requests/sec|Non-2xx|Socket errors' "$BENCH_TMP/$key.wrk" | sed "s/^/[http] $key: /" >&2 || true
}

bench_server rust "trainer serve (axum, Rust)" \
  "$TRAINER" serve --host 127.0.0.1 --port 0 --models-dir "$models"
bench_server fastapi "FastAPI + uvicorn + PyTorch (1 worker)" \
  "$PYTHON" bench/http/fastapi_reference.py --host 127.0.0.1 --port 0 --models-dir "$models"

"$PYTHON" - "$results" "$BENCH_TMP/rust.response.json" "$BENCH_TMP/fastapi.response.json" \
  "$DURATION" "$THREADS" "$CONNECTIONS" "$ROW" "$model_id" "$routes" <<'EOF' | publish http
import json, shlex, sys
results, rust_resp, py_resp, duration, threads, conns, row, model_id, routes_file = sys.argv[1:]
runs = {}
for line in open(results):
    key, *fields = shlex.split(line)
    runs[key] = dict(f.split("=", 1) for f in fields)
a, b = json.load(open(rust_resp)), json.load(open(py_resp))
same_class = a.get("predicted_class") == b.get("predicted_class")
dp = max(abs(x - y) for x, y in zip(a["probabilities"], b["probabilities"]))

def stats(r):
    n, s = int(r["requests"]), float(r["seconds"])
    errors = sum(int(r[k]) for k in r if k.startswith("err_"))
    return {
        "rps": n / s, "p50": float(r["p50_us"]) / 1e3, "p99": float(r["p99_us"]) / 1e3,
        # RSS is recorded per server, not per route.
        "idle": int(r.get("idle_kib", 0)) / 1024, "hwm": int(r.get("hwm_kib", 0)) / 1024,
        "errors": errors, "requests": n,
    }

rows = [(runs[k]["label"], stats(runs[k])) for k in ("rust", "fastapi")]
print("| server | req/s | p50 ms | p99 ms | RSS after warm-up MiB | peak RSS MiB | requests (errors) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for label, s in rows:
    print(f"| {label} | {s['rps']:,.0f} | {s['p50']:.3f} | {s['p99']:.3f} | {s['idle']:.1f} "
          f"| {s['hwm']:.1f} | {s['requests']:,} ({s['errors']}) |")
r, f = rows[0][1], rows[1][1]
ratio = lambda k: f"{r[k] / f[k]:.2f}×" if f[k] else "n/a"
print(f"| **ratio Rust ÷ FastAPI** | {ratio('rps')} | {ratio('p50')} | {ratio('p99')} "
      f"| {ratio('idle')} | {ratio('hwm')} | |")
print()
routes = {}
for line in open(routes_file):
    key, *fields = shlex.split(line)
    routes[key] = dict(f.split("=", 1) for f in fields)
health = stats(routes["health"])["rps"]
print()
print("| our server, same process | req/s | p50 ms | p99 ms | share of /health | requests (errors) |")
print("|---|---:|---:|---:|---:|---:|")
labels = {"health": "GET /health (ceiling)", "api_ml": "POST /api/ml/predict", "v2": "POST /v2/models/ID/infer (OIP V2)",
          "v1": "POST /v1/models/ID:predict (KServe V1)", "mlflow": "POST /invocations (MLflow)"}
for key in ("health", "api_ml", "v2", "v1", "mlflow"):
    s = stats(routes[key])
    print(f"| {labels[key]} | {s['rps']:,.0f} | {s['p50']:.3f} | {s['p99']:.3f} | {s['rps'] / health:.1%} "
          f"| {s['requests']:,} ({s['errors']}) |")
print()
print(f"wrk -t{threads} -c{conns} -d{duration} --latency, POST /api/ml/predict with ESG row {row} "
      f"(newest model {model_id}); both answer class {a['predicted_class']} "
      f"({'same' if same_class else 'DIFFERENT'}), max |Δp| = {dp:.2e}.")
# A route that answered errors measured error handling, not prediction: fail the run.
failed = [k for k in routes if stats(routes[k])["errors"]] + [label for label, s in rows if s["errors"]]
if failed:
    sys.exit(f"non-2xx answers or socket errors on: {', '.join(failed)} (see the [http] lines above)")
EOF
