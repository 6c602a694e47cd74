#!/usr/bin/env bash
# Package the wasm bindings as ONE npm package, @trainer/inference: inference-wasm/pkg/ and its
# `npm pack` tarball (inference-wasm/trainer-inference-<version>.tgz), version = the crate's.
# Input: wasm-bindgen's output as scripts/build-wasm.sh leaves it ($BINDGEN_DIR, default
# target-wasm/bindgen: web/ = the ES module glue, nodejs/ = the CommonJS glue, snippets
# inlined); scripts/pack.mjs turns it into the package (entries per host, types, package.json).
# Also refreshes web/pkg/, the page's copy of the package's browser entry (inference.js +
# inference_bg.wasm, the two files `trainer serve` embeds). Runs at the end of build-wasm.sh,
# or alone: scripts/pack.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bindgen="${BINDGEN_DIR:-${WASM_TARGET_DIR:-$PWD/target-wasm}/bindgen}"
for f in web/inference.js web/inference_bg.wasm nodejs/inference.js nodejs/inference_bg.wasm; do
  [ -f "$bindgen/$f" ] || { echo "pack: $bindgen/$f is missing: run scripts/build-wasm.sh" >&2; exit 1; }
done
# The crate version, from inference-wasm/Cargo.toml's [package] table.
version=$(awk '/^\[/ {p = ($0 == "[package]")} p && /^version *=/ {gsub(/^version *= *"|".*$/, ""); print; exit}' inference-wasm/Cargo.toml)
[ -n "$version" ] || { echo "pack: no version in inference-wasm/Cargo.toml" >&2; exit 1; }

pkg=inference-wasm/pkg
node scripts/pack.mjs "$bindgen" "$pkg" "$version"

# The tarball, beside the package directory (an older version's tarball is removed).
rm -f inference-wasm/trainer-inference-*.tgz
tarball=$(cd "$pkg" && npm pack --silent --pack-destination .. 2>/dev/null | tail -n1)
tarball="inference-wasm/$tarball"
[ -f "$tarball" ] || { echo "pack: npm pack did not write a tarball" >&2; exit 1; }

# The page (web/) loads the package's browser entry from web/pkg/.
rm -rf web/pkg
mkdir -p web/pkg
cp "$pkg/inference.js" "$pkg/inference_bg.wasm" web/pkg/

wasm_raw=$(stat -c %s "$pkg/inference_bg.wasm")
wasm_gz=$(gzip -9 -c "$pkg/inference_bg.wasm" | wc -c)
unpacked=$(find "$pkg" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
echo "pack: $pkg ($(find "$pkg" -type f | wc -l) files, $unpacked bytes unpacked); inference_bg.wasm $wasm_raw bytes ($wasm_gz gzip)"
echo "pack: $tarball $(stat -c %s "$tarball") bytes"
