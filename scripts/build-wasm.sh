#!/usr/bin/env bash
# Build the inference core for wasm32 (+simd128, size-optimised profile), generate the JS
# bindings, and package them as ONE npm package, @trainer/inference (scripts/pack.sh):
# inference-wasm/pkg/ and its `npm pack` tarball, with an entry per host (browsers and
# bundlers, Node ESM and CommonJS, Deno, Bun, Workers/workerd). The page's copy (web/pkg) is
# the package's browser entry. Uses rustup's wasm32 target when installed, else Debian's
# rustc-web recipe (see ../shared/notes/wasm-toolchain.md). Installs wasm-bindgen-cli of
# exactly the crate's version when missing, and runs wasm-opt (binaryen) on rustc's output
# when present. The JS half of the bindings (inference-wasm/js/boundary.js) is inlined into
# the glue, so each host loads one JS module and the .wasm.
#
# WASM_SKIP_CARGO=1 reuses the last cargo output (target-wasm/.../inference.wasm) and runs only
# wasm-opt, wasm-bindgen and the packaging.
set -euo pipefail
cd "$(dirname "$0")/.."

target=wasm32-unknown-unknown
export CARGO_TARGET_DIR="${WASM_TARGET_DIR:-$PWD/target-wasm}"
flags="-C target-feature=+simd128"

# The CLI must match the crate version in Cargo.lock exactly.
wb_version=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
[ -n "$wb_version" ] || { echo "wasm-bindgen not found in Cargo.lock" >&2; exit 1; }

if [ "${WASM_SKIP_CARGO:-0}" = 1 ]; then
  echo "build-wasm: WASM_SKIP_CARGO=1, reusing the last cargo output"
elif command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  echo "build-wasm: rustup's $target target"
  RUSTFLAGS="$flags" cargo build --profile wasm-release --target "$target" -p inference-wasm --lib
elif [ -x /usr/bin/rustc ] && command -v wasm-ld-16 >/dev/null && [ -d /usr/lib/rustlib/src/rust/library ]; then
  echo "build-wasm: Debian rustc-web with -Zbuild-std"
  # With std built here, panics can abort without their formatting machinery.
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-16 \
    RUSTFLAGS="$flags -Zunstable-options -Cpanic=immediate-abort" \
    /usr/bin/cargo build --profile wasm-release --target "$target" -p inference-wasm --lib -Zbuild-std=std,panic_abort
else
  echo "build-wasm: no wasm32 toolchain. Either 'rustup target add $target', or" >&2
  echo "  apt-get install -y rustc-web cargo-web rust-web-src lld-16" >&2
  exit 1
fi

wasm="$CARGO_TARGET_DIR/$target/wasm-release/inference.wasm"
[ -f "$wasm" ] || { echo "build-wasm: $wasm is missing (run without WASM_SKIP_CARGO first)" >&2; exit 1; }
if command -v wasm-opt >/dev/null; then
  # Before wasm-bindgen: Debian's binaryen 108 breaks wasm-bindgen's output when run after it.
  # -ocimfs 20: binaryen's -O3 otherwise inlines every function with one caller, whatever its
  # size, into that caller; the merged bodies compress worse (+5.6 KB gzip) and V8's lazy
  # compilation then compiles their cold paths too (cold start +3 ms, bench/wasm). -Oz is no
  # smaller and loses a quarter of batch speed.
  wasm-opt -O3 -ocimfs 20 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-multivalue --enable-reference-types "$wasm" -o "$wasm.opt"
  wasm="$wasm.opt"
fi

if ! command -v wasm-bindgen >/dev/null || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$wb_version" ]; then
  if [ "${WASM_SKIP_CARGO:-0}" = 1 ]; then
    echo "build-wasm: wasm-bindgen-cli $wb_version is needed (cargo install wasm-bindgen-cli --version $wb_version)" >&2
    exit 1
  fi
  echo "build-wasm: installing wasm-bindgen-cli $wb_version"
  cargo install wasm-bindgen-cli --version "$wb_version"
fi
# The raw bindings, for scripts/pack.sh: the ES module glue (--target web, the one every
# ES module host shares) and the CommonJS glue (--target nodejs, for require()); no .d.ts (the
# package's types are inference-wasm/js/package/index.d.ts). Fresh dirs: wasm-bindgen never
# removes files an earlier build left there.
bindgen="$CARGO_TARGET_DIR/bindgen"
rm -rf "$bindgen" inference-wasm/pkg-node # pkg-node: the old Node-only output, now the package's node.cjs
for t in web nodejs; do
  wasm-bindgen --target "$t" --out-dir "$bindgen/$t" --out-name inference --no-typescript \
    --remove-name-section --remove-producers-section "$wasm"
done
node scripts/inline-js-snippets.mjs "$bindgen/web" "$bindgen/nodejs"
BINDGEN_DIR="$bindgen" ./scripts/pack.sh
