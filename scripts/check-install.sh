#!/usr/bin/env bash
# `cargo install --path trainer` into a temporary root, then `trainer serve` from another
# directory: the page (and the wasm it loads) must come from the binary alone. Reuses the
# workspace's release build (CARGO_TARGET_DIR), so it only installs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(mktemp -d); run=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$root" "$run"' EXIT
CARGO_TARGET_DIR="$PWD/target" cargo install --quiet --locked --path trainer --root "$root"
cd "$run"
"$root/bin/trainer" serve --host 127.0.0.1 --port 0 --models-dir "$run/models" >"$run/out" 2>/dev/null &
pid=$!
for _ in $(seq 100); do grep -q 'listening on' "$run/out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^listening on //p' "$run/out")
[ -n "$base" ] || { echo "check-install: the installed trainer did not start" >&2; exit 1; }
fail() { echo "check-install: $*" >&2; exit 1; }
# Into a file first: `curl | grep -q` fails under pipefail when grep exits before curl is done.
curl -sf -H 'Accept: text/html' -o "$run/page.html" "$base/" || fail "GET / failed"
grep -q '<script' "$run/page.html" || fail "GET / is not the page"
[ "$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "$base/pkg/inference_bg.wasm")" = "200 application/wasm" ] \
  || fail "the installed binary carries no wasm (build it first: scripts/build-wasm.sh)"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/favicon.ico")" = 200 ] || fail "no favicon"
echo "check-install: the installed trainer serves the page and its wasm from $run"
