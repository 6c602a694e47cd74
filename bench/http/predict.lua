-- wrk script for bench/http/bench.sh: POST one JSON body (read from $BODY_FILE), or GET, and print a
-- machine-readable summary line ("RESULT key=value ...", latencies in microseconds).
-- Without BODY_FILE it sends GETs (the /health ceiling).
local path = os.getenv("BODY_FILE")
if path and path ~= "" then
  local f = assert(io.open(path, "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.6f p50_us=%.1f p90_us=%.1f p99_us=%.1f mean_us=%.1f max_us=%.1f " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
