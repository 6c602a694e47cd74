#!/usr/bin/env bash
# The cold-start floor for bench/wasm's "cold start" row: in fresh Node processes, `require` of
# a wasm-bindgen module plus one `fromBundle` that only SHA-256s the bundle's weights (the check
# the real loader must make), and the same without the hash. Prints one table.
#   bench/wasm/floor/run.sh BUNDLE.safetensors [RUNS=9]
# Builds with rustup's wasm32 target or Debian's rustc-web, as scripts/build-wasm.sh does.
set -euo pipefail
cd "$(dirname "$0")"
bundle=$(realpath "$1"); runs="${2:-9}"
export CARGO_TARGET_DIR="$PWD/../../../target-wasm/floor"
flags="-C target-feature=+simd128"
build() { # extra cargo args
  if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    RUSTFLAGS="$flags" cargo build -q --release --target wasm32-unknown-unknown "$@"
  else
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-16 \
      RUSTFLAGS="$flags -Zunstable-options -Cpanic=immediate-abort" \
      /usr/bin/cargo build -q --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort "$@"
  fi
}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/cold.cjs" <<'JS'
const { performance } = require('perf_hooks');
const fs = require('fs');
const t0 = performance.now();
const { Floor } = require(process.argv[2]);
const t1 = performance.now();
const f = Floor.fromBundle(fs.readFileSync(process.argv[3]));
const t2 = performance.now();
if (!(f.check >= 0)) process.exit(1);
console.log(JSON.stringify({ require: t1 - t0, load: t2 - t1, total: t2 - t0 }));
JS
echo "| module | .wasm bytes | require, ms | fromBundle, ms | total, ms |"
echo "|---|---:|---:|---:|---:|"
for variant in hash no-hash; do
  if [ "$variant" = hash ]; then build; else build --features no-hash; fi
  out="$tmp/$variant"
  wasm-bindgen --target nodejs --out-dir "$out" --out-name floor --remove-name-section --remove-producers-section \
    "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/cold_start_floor.wasm"
  echo '{"type": "commonjs"}' > "$out/package.json"
  for _ in $(seq "$runs"); do node "$tmp/cold.cjs" "$out/floor.js" "$bundle"; done > "$tmp/$variant.jsonl"
  python3 - "$tmp/$variant.jsonl" "$variant" "$(stat -c %s "$out/floor_bg.wasm")" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
m = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
name = "SHA-256 of the weights" if sys.argv[2] == "hash" else "no hash"
print(f"| {name} | {sys.argv[3]} | {m['require']:.2f} | {m['load']:.2f} | {m['total']:.2f} |")
PY
done
