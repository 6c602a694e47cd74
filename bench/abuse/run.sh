#!/usr/bin/env bash
# Abuse benchmark: how `trainer serve` (default limits) holds up under heavy clients.
#
# For each case a fresh server (127.0.0.1, a free port) is started; while the abusive clients
# run, `wrk -t1 -c4 -d$DURATION --latency` GETs /health (bench/http/predict.lua without
# BODY_FILE), so the table shows what a well-behaved client sees meanwhile:
#   0. baseline: /health with no other load (the trained ESG model in the models dir);
#   1. 8 clients posting, in a loop, maximum-size predicts: 10,000 ESG rows (--max-batch-rows)
#      padded with JSON whitespace to just under --max-body-bytes (10 MiB);
#   2. 1,100 slow sockets, the server under `ulimit -n 1024`: each sends a partial request
#      header, then one more byte per second (held SLOW_HOLD s: --header-timeout and
#      --max-connections decide what happens to them);
#   3. 10,000 models (one trained bundle cloned under 9,999 new ids, the id inside rewritten):
#      2 clients walking `GET /api/ml/models?limit=1000` pages and 2 predicting once per model id
#      (shuffled), so the LRU model cache (--model-cache-bytes) is churned;
#   4. a 3,000-class target (9,000 rows) sent to `POST /api/ml/train` twice: with the default
#      max_classes, and asking max_classes = 3000 (over the server's --max-classes 1000);
#   5. a 1,000-class target (10,000 rows, 2 epochs), just under the cap: it trains.
# Per case: /health p50/p99 and requests (errors: socket errors and non-2xx, by kind), the
# server's peak RSS (VmHWM) and RSS after the case (VmRSS) from /proc/PID/status, and what the
# abusive clients got (HTTP status counts, latencies, closed sockets).
# Prints one markdown table (also saved to bench/out/abuse.md).
#
# Run:          bench/abuse/run.sh
# Quick check:  DURATION=5s bench/abuse/run.sh
# Environment:  TRAINER_BIN (default target/release/trainer), DURATION (wrk run per case and
#               abusive load, 10s), SLOW_HOLD (seconds the slow sockets are held, default
#               2 × 10 s header timeout + 4, or DURATION + 4 if longer), MODELS (10000),
#               KEEP_TMP=1.
# Prerequisites: a release build; wrk; curl; python3 (standard library only); ~1 GB of free
#   disk in $TMPDIR for the cloned models.
# The clients and the server share the machine's cores: run it on an otherwise idle machine.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
bench_init abuse
need wrk curl python3
trainer_bin

DURATION=${DURATION:-10s}
MODELS=${MODELS:-10000}
# wrk's duration syntax (5s, 1m, 1h, or plain seconds) in seconds, for the Python clients.
secs() {
  case $1 in
    *s) echo "${1%s}" ;;
    *m) echo $(( ${1%m} * 60 )) ;;
    *h) echo $(( ${1%h} * 3600 )) ;;
    *) echo "$1" ;;
  esac
}
DUR_S=$(secs "$DURATION")
HEADER_TIMEOUT=10 # the server's default --header-timeout, stated for SLOW_HOLD
SLOW_HOLD=${SLOW_HOLD:-$(( DUR_S + 4 > 2 * HEADER_TIMEOUT + 4 ? DUR_S + 4 : 2 * HEADER_TIMEOUT + 4 ))}

# The clients: one Python file, one subcommand per abusive client. Each prints, last, a line
# "CELL <text>" with what it got, for the table.
PY="$BENCH_TMP/abuse.py"
cat >"$PY" <<'EOF'
import collections, csv, errno, hashlib, http.client, json, os, random, resource, selectors
import socket, struct, sys, threading, time, urllib.parse

def hostport(url):
    u = urllib.parse.urlsplit(url)
    return u.hostname, u.port

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q / 100 * len(xs)))] if xs else float("nan")

def counts(c):
    return ", ".join(f"{k}×{v:,}" for k, v in sorted(c.items(), key=lambda kv: str(kv[0]))) or "none"

def esg_rows():
    sys.path.insert(0, "bench")
    from esg_rows import feature_rows
    return feature_rows()[1]

class Client:
    """One keep-alive connection; reconnects after an error (counted by kind)."""
    def __init__(self, url, timeout=120):
        self.host, self.port = hostport(url)
        self.timeout, self.conn = timeout, None
    def request(self, method, path, body=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            self.conn.request(method, path, body=body, headers=headers)
            r = self.conn.getresponse()
            data = r.read()
            return r.status, data, r.headers
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            self.conn = None
            return type(e).__name__, b"", {}

def cmd_body(rows, limit, out, row_out):
    """A predict body of ROWS ESG rows, padded with whitespace to just under LIMIT bytes."""
    rows, limit = int(rows), int(limit)
    data = esg_rows()
    feats = [data[i % len(data)] for i in range(rows)]
    body = json.dumps({"data": {"features": feats}}, separators=(",", ":")).encode()
    pad = limit - 4096 - len(body)
    open(out, "wb").write(body + b" " * max(pad, 0))
    json.dump(data[0], open(row_out, "w"))
    print(f"body: {rows} rows, {len(body):,} B of JSON, {max(len(body) + pad, len(body)):,} B with padding")

def cmd_predicts(url, body_file, clients, seconds):
    """CLIENTS threads POSTing BODY to /api/ml/predict in a loop for SECONDS."""
    body = open(body_file, "rb").read()
    end = time.monotonic() + float(seconds)
    status, lat, lock = collections.Counter(), [], threading.Lock()
    def loop():
        c = Client(url)
        while time.monotonic() < end:
            t = time.monotonic()
            s, _, _ = c.request("POST", "/api/ml/predict", body)
            with lock:
                status[s] += 1
                lat.append(time.monotonic() - t)
    ts = [threading.Thread(target=loop) for _ in range(int(clients))]
    for t in ts: t.start()
    for t in ts: t.join()
    print(f"CELL {sum(status.values()):,} predicts of {len(body) / 2**20:.1f} MiB from {clients} clients: "
          f"{counts(status)}; each p50 {pct(lat, 50):.2f} s, max {max(lat, default=float('nan')):.2f} s")

def cmd_slow(url, n, seconds, ready_file):
    """N sockets sending a partial request header, then one byte a second, for SECONDS."""
    n, seconds = int(n), float(seconds)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 100)), hard))
    addr = hostport(url)
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    state = {}  # socket -> [phase, t_open]
    failed, closed_after, answers = collections.Counter(), [], collections.Counter()
    def close(s, why):
        phase, t_open = state.pop(s)
        sel.unregister(s)
        s.close()
        if phase == "open":
            closed_after.append(time.monotonic() - t_open)
        else:
            failed[why] += 1
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        err = s.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            failed[errno.errorcode.get(err, err)] += 1
            s.close()
            continue
        state[s] = ["connecting", None]
        sel.register(s, selectors.EVENT_WRITE)
    ready, next_drip = False, time.monotonic() + 1
    while time.monotonic() - t0 < seconds:
        for key, mask in sel.select(timeout=0.1):
            s = key.fileobj
            if s not in state:
                continue
            if state[s][0] == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    close(s, errno.errorcode.get(err, err))
                    continue
                state[s] = ["open", time.monotonic()]
                try:
                    s.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
                except OSError:
                    close(s, "send")
                    continue
                sel.modify(s, selectors.EVENT_READ)
            else:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/"):
                    answers[data.split(b" ", 2)[1].decode(errors="replace")] += 1
                if not data:
                    close(s, "eof")
        now = time.monotonic()
        if not ready and (all(p == "open" for p, _ in state.values()) or now - t0 > 5):
            open(ready_file, "w").write("ready\n")
            ready = True
        if now >= next_drip:
            next_drip += 1
            for s in [s for s, (p, _) in state.items() if p == "open"]:
                try:
                    s.send(b"a")
                except OSError:
                    close(s, "send")
    still_open = sum(1 for p, _ in state.values() if p == "open")
    connecting = len(state) - still_open
    opened = len(closed_after) + still_open
    print(f"CELL {n:,} slow sockets: {opened:,} connected"
          + (f", {sum(failed.values()):,} failed ({counts(failed)})" if failed else "")
          + (f", {connecting:,} never connected" if connecting else "")
          + f"; in {seconds:.0f} s the server closed {len(closed_after):,}"
          + (f" ({pct(closed_after, 10):.1f} / {pct(closed_after, 50):.1f} / {pct(closed_after, 90):.1f} s"
             f" after connecting: p10 / p50 / p90)" if closed_after else "")
          + f", answered {counts(answers)}; {still_open:,} still open")

def cmd_clone(models_dir, model_id, total, ids_out):
    """TOTAL - 1 copies of model MODEL_ID under new ids of its date (…_002 …), each bundle's id rewritten."""
    total = int(total)
    src = os.path.join(models_dir, model_id)
    bundle = open(os.path.join(src, "model.safetensors"), "rb").read()
    (n,) = struct.unpack("<Q", bundle[:8])
    header, tensors = bundle[8:8 + n], bundle[8 + n:]
    meta = open(os.path.join(src, "metadata.json"), "rb").read()
    summary = json.load(open(os.path.join(src, "summary.json")))
    prefix, _ = model_id.rsplit("_", 1)
    old = model_id.encode()
    ids = [model_id]
    for seq in range(2, total + 1):
        new = f"{prefix}_{seq:03}"
        # Ids are [A-Za-z0-9_.-]: a plain byte replacement keeps the (escaped) JSON valid; the
        # tensors and their weights_sha256 are untouched; the header is re-padded to 8 bytes.
        h = header.rstrip(b" ").replace(old, new.encode())
        h += b" " * (-(8 + len(h)) % 8)
        b = struct.pack("<Q", len(h)) + h + tensors
        d = os.path.join(models_dir, new)
        os.mkdir(d)
        open(os.path.join(d, "model.safetensors"), "wb").write(b)
        open(os.path.join(d, "metadata.json"), "wb").write(meta.replace(old, new.encode()))
        s = dict(summary, model_id=new, bundle_bytes=len(b), bundle_sha256=hashlib.sha256(b).hexdigest())
        json.dump(s, open(os.path.join(d, "summary.json"), "w"))
        ids.append(new)
    open(ids_out, "w").write("\n".join(ids) + "\n")
    print(f"{len(ids):,} models, bundle {len(bundle):,} B")

def cmd_models(url, ids_file, row_file, seconds):
    """2 threads walking the model list (pages of 1000), 2 predicting once per model id."""
    ids = open(ids_file).read().split()
    random.Random(1).shuffle(ids)
    row = json.load(open(row_file))
    end = time.monotonic() + float(seconds)
    lock = threading.Lock()
    page_st, page_lat, walks, pred_st, pred_lat = collections.Counter(), [], [], collections.Counter(), []
    todo = iter(ids)
    def lister():
        c = Client(url)
        while time.monotonic() < end:
            t_walk, cursor, seen = time.monotonic(), None, 0
            while time.monotonic() < end:
                path = "/api/ml/models?limit=1000" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
                t = time.monotonic()
                s, data, headers = c.request("GET", path)
                with lock:
                    page_st[s] += 1
                    page_lat.append(time.monotonic() - t)
                if s != 200:
                    break
                seen += len(json.loads(data))
                cursor = headers.get("x-next-cursor")
                if not cursor:
                    with lock:
                        walks.append((time.monotonic() - t_walk, seen))
                    break
    def predictor():
        c = Client(url)
        while time.monotonic() < end:
            with lock:
                mid = next(todo, None)
            if mid is None:
                return
            body = json.dumps({"model_id": mid, "data": {"features": row}}).encode()
            t = time.monotonic()
            s, _, _ = c.request("POST", "/api/ml/predict", body)
            with lock:
                pred_st[s] += 1
                pred_lat.append(time.monotonic() - t)
    ts = [threading.Thread(target=f) for f in (lister, lister, predictor, predictor)]
    for t in ts: t.start()
    for t in ts: t.join()
    ms = lambda xs, q: f"{pct(xs, q) * 1e3:.1f}"
    # A walk ends at the page without a cursor; one that saw fewer models than there are is short
    # (e.g. a 200 [] answered while the server's first directory scan was still running).
    full = [t for t, seen in walks if seen == len(ids)]
    short = [seen for t, seen in walks if seen != len(ids)]
    walk = (f"{len(full)} full walks of {len(ids):,} models" + (f" (first {full[0]:.2f} s)" if full else "")
            + (f", {len(short)} short walks (saw {min(short):,}" + (f"–{max(short):,}" if max(short) != min(short) else "")
               + " models)" if short else ""))
    print(f"CELL list pages (limit 1000): {counts(page_st)}, p50 {ms(page_lat, 50)} ms, p99 {ms(page_lat, 99)} ms, "
          f"{walk}; predicts on {sum(pred_st.values()):,} distinct ids: {counts(pred_st)}, "
          f"p50 {ms(pred_lat, 50)} ms, p99 {ms(pred_lat, 99)} ms")

def cmd_classes(out, classes, rows):
    """A CSV of ROWS rows, 4 numeric features and a target `label` of CLASSES classes."""
    classes, rows, rng = int(classes), int(rows), random.Random(7)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["f1", "f2", "f3", "f4", "label"])
        for i in range(rows):
            k = i % classes
            w.writerow([f"{k / classes + rng.gauss(0, 0.01):.5f}"] + [f"{rng.random():.5f}" for _ in range(3)]
                       + [f"class_{k:04}"])

def train(c, body, wait):
    """POST /api/ml/train and poll the task to its end; a short description."""
    t0 = time.monotonic()
    s, data, _ = c.request("POST", "/api/ml/train", json.dumps(body).encode())
    try:
        answer = json.loads(data)
    except ValueError:
        answer = {}
    if s not in (200, 201, 202) or "task_id" not in answer:
        return f"POST {s} {answer.get('error', '')} (“{str(answer.get('message', ''))[:100]}”)"
    st = {}
    while time.monotonic() - t0 < wait:
        s2, data, _ = c.request("GET", f"/api/ml/train/status/{answer['task_id']}")
        st = json.loads(data) if s2 == 200 else {}
        if st.get("status") in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.1)
    end = st.get("status", "?")
    kind = f" {st['error_kind']}" if st.get("error_kind") else ""
    if st.get("error"):
        kind += f" (“{str(st['error'])[:100]}”)"
    return f"POST {s} → task {end}{kind} after {time.monotonic() - t0:.1f} s"

def cmd_train(url, dataset, classes):
    c = Client(url)
    base = {"dataset_path": dataset, "target_column": "label", "train_config": {"epochs": 2, "patience": 0}}
    if int(classes) > 1000:
        a = train(c, base, 120)
        b = train(c, dict(base, max_classes=int(classes)), 120)
        print(f"CELL default max_classes: {a}; asking max_classes {classes}: {b}")
    else:
        print(f"CELL {classes} classes, 2 epochs: {train(c, base, 300)}")

if __name__ == "__main__":
    globals()["cmd_" + sys.argv[1]](*sys.argv[2:])
EOF
py() { python3 "$PY" "$@"; }

log "training the default model (embedded ESG dataset)"
models="$BENCH_TMP/models"
"$TRAINER" train --models-dir "$models" --json >"$BENCH_TMP/train.out" 2>"$BENCH_TMP/train.err" \
  || { tail -n 20 "$BENCH_TMP/train.err" >&2; die "training failed"; }
model_id=$(tail -n1 "$BENCH_TMP/train.out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["model_id"])')
log "model $model_id"
MAX_BODY=10485760 # the server's default --max-body-bytes (README "Limits and security")
py body 10000 "$MAX_BODY" "$BENCH_TMP/big.json" "$BENCH_TMP/row.json" >&2

mkdir -p "$BENCH_TMP/cases"
order="$BENCH_TMP/cases/order"
: >"$order"

# serve KEY [flags...]: a fresh server for one case (the trained model, $BENCH_TMP/data);
# $SERVER (pid) and $URL.
serve() {
  local key=$1; shift
  spawn "$BENCH_TMP/$key.server.log" "$@"
  SERVER=$SPAWNED
  URL=$(wait_listening "$BENCH_TMP/$key.server.log" "$SERVER")
  curl -sf -o /dev/null "$URL/health" || die "$key: /health does not answer"
}
serve_flags=(serve --host 127.0.0.1 --port 0 --data-dir "$BENCH_TMP/data")

# health KEY: wrk on /health for DURATION (the measurement taken during each case).
health() {
  BODY_FILE='' wrk -t1 -c4 -d"$DURATION" --latency -s bench/http/predict.lua "$URL/health" \
    >"$BENCH_TMP/$1.wrk" 2>&1 || log "$1: wrk failed (see $BENCH_TMP/$1.wrk)"
}

# finish KEY LABEL [ABUSER_PID]: wait for the case's client, record the server's memory, stop it.
finish() {
  local key=$1 label=$2 abuser=${3:-}
  if [ -n "$abuser" ]; then
    wait "$abuser" || log "$key: the client exited with $? (see $BENCH_TMP/$key.client.log)"
    grep '^CELL ' "$BENCH_TMP/$key.client.log" | tail -n1 | sed 's/^CELL //' >"$BENCH_TMP/cases/$key.abuse" || true
  fi
  if kill -0 "$SERVER" 2>/dev/null; then
    echo "$(proc_kib "$SERVER" VmHWM) $(proc_kib "$SERVER" VmRSS)" >"$BENCH_TMP/cases/$key.mem"
  else
    echo "died died" >"$BENCH_TMP/cases/$key.mem"
    log "$key: the server died (see $BENCH_TMP/$key.server.log)"
  fi
  stop "$SERVER"
  cp "$BENCH_TMP/$key.wrk" "$BENCH_TMP/cases/$key.wrk" 2>/dev/null || true
  printf '%s\t%s\n' "$key" "$label" >>"$order"
}

log "0. baseline: /health alone"
serve baseline "$TRAINER" "${serve_flags[@]}" --models-dir "$models"
health baseline
finish baseline "baseline: /health alone"

log "1. 8 clients posting 10,000-row, ~10 MiB predicts"
serve big "$TRAINER" "${serve_flags[@]}" --models-dir "$models"
spawn "$BENCH_TMP/big.client.log" python3 "$PY" predicts "$URL" "$BENCH_TMP/big.json" 8 "$((DUR_S + 1))"
abuser=$SPAWNED
sleep 1 # the first bodies in flight
health big
finish big "8 × max-size predicts (10,000 rows, 10 MiB) at once" "$abuser"

log "2. 1,100 slow sockets for ${SLOW_HOLD} s (server under ulimit -n 1024)"
# `exec` keeps the pid: $SERVER is the trainer itself.
serve slow bash -c 'ulimit -n 1024 && exec "$@"' _ "$TRAINER" "${serve_flags[@]}" --models-dir "$models"
spawn "$BENCH_TMP/slow.client.log" python3 "$PY" slow "$URL" 1100 "$SLOW_HOLD" "$BENCH_TMP/slow.ready"
abuser=$SPAWNED
for _ in $(seq 100); do [ -e "$BENCH_TMP/slow.ready" ] && break; sleep 0.1; done
health slow
finish slow "1,100 slow sockets (ulimit -n 1024)" "$abuser"

log "3. $MODELS models: cloning the trained one"
many="$BENCH_TMP/many"
mkdir -p "$many"
cp -r "$models/$model_id" "$many/"
py clone "$many" "$model_id" "$MODELS" "$BENCH_TMP/ids.txt" >&2
serve many "$TRAINER" "${serve_flags[@]}" --models-dir "$many"
spawn "$BENCH_TMP/many.client.log" python3 "$PY" models "$URL" "$BENCH_TMP/ids.txt" "$BENCH_TMP/row.json" "$((DUR_S + 1))"
abuser=$SPAWNED
health many
finish many "$(python3 -c "print(f'{$MODELS:,}')") models: paged lists + a predict per id" "$abuser"
rm -rf "$many" # ~1 GB

# A training request for a CLASSES-class target over ROWS rows, with /health measured meanwhile.
class_case() {
  local classes=$1 rows=$2 label=$3 key="classes$1"
  py classes "$BENCH_TMP/data/$key.csv" "$classes" "$rows"
  serve "$key" "$TRAINER" "${serve_flags[@]}" --models-dir "$BENCH_TMP/models$classes"
  spawn "$BENCH_TMP/$key.client.log" python3 "$PY" train "$URL" "$key.csv" "$classes"
  local abuser=$SPAWNED
  health "$key"
  finish "$key" "$label" "$abuser"
}
mkdir -p "$BENCH_TMP/data"

log "4. a 3,000-class target"
class_case 3000 9000 "train: 3,000 classes (9,000 rows)"

log "5. a 1,000-class target (the cap), 2 epochs"
class_case 1000 10000 "train: 1,000 classes (10,000 rows, 2 epochs)"

python3 - "$BENCH_TMP/cases" "$DURATION" "$SLOW_HOLD" "$(nproc)" <<'EOF' | publish abuse
import os, sys
cases, duration, hold, cores = sys.argv[1:]
def read(key, ext):
    p = os.path.join(cases, f"{key}.{ext}")
    return open(p).read().strip() if os.path.exists(p) else ""
print("| case | /health p50 ms | /health p99 ms | /health requests (errors) | server peak RSS MiB "
      "| RSS after MiB | abusive requests: statuses |")
print("|---|---:|---:|---:|---:|---:|---|")
for line in open(os.path.join(cases, "order")):
    key, label = line.rstrip("\n").split("\t")
    r = {}
    for l in read(key, "wrk").splitlines():
        if l.startswith("RESULT "):
            r = dict(kv.split("=", 1) for kv in l.split()[1:])
    if r:
        errs = {k[4:]: int(v) for k, v in r.items() if k.startswith("err_") and int(v)}
        detail = f": {', '.join(f'{k} {v:,}' for k, v in errs.items())}" if errs else ""
        # No answer in the window: the latency percentiles are empty, not zero.
        answered = int(r["requests"]) > 0
        p50, p99 = (f"{float(r[k]) / 1e3:.2f}" if answered else "none answered" for k in ("p50_us", "p99_us"))
        reqs = f"{int(r['requests']):,} ({sum(errs.values()):,}{detail})"
    else:
        p50 = p99 = reqs = "wrk failed"
    hwm, rss = (read(key, "mem") or "? ?").split()
    mib = lambda v: f"{int(v) / 1024:.1f}" if v.isdigit() else v
    print(f"| {label} | {p50} | {p99} | {reqs} | {mib(hwm)} | {mib(rss)} | {read(key, 'abuse') or '—'} |")
print()
print(f"/health: wrk -t1 -c4 -d{duration} --latency during each case (errors: connect/read/write/timeout "
      f"socket errors and non-2xx `status`; wrk's timeout is 2 s). One fresh `trainer serve` per case, default "
      f"limits (10 MiB bodies, 10,000 rows, 512 connections, 10 s header timeout, 256 MiB model cache, "
      f"1,000 classes); slow sockets held {hold} s; {cores} cores shared by server and clients.")
EOF
