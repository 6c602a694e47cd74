#!/usr/bin/env bash
# Build the inference core for wasm32 (+simd128, size-optimised profile) and generate the JS
# bindings: web/pkg (--target web, for browsers and edge workers) and inference-wasm/pkg-node
# (--target nodejs). Uses rustup's wasm32 target when installed, else Debian's rustc-web
# recipe (see ../shared/notes/wasm-toolchain.md). Installs wasm-bindgen-cli of exactly the
# crate's version when missing, and runs wasm-opt (binaryen) on rustc's output when present.
# The JS half of the bindings (inference-wasm/js/boundary.js) is inlined into both glue files,
# so each package is the usual glue + .wasm + .d.ts.
set -euo pipefail
cd "$(dirname "$0")/.."

target=wasm32-unknown-unknown
export CARGO_TARGET_DIR="${WASM_TARGET_DIR:-$PWD/target-wasm}"
flags="-C target-feature=+simd128"

# The CLI must match the crate version in Cargo.lock exactly.
wb_version=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
[ -n "$wb_version" ] || { echo "wasm-bindgen not found in Cargo.lock" >&2; exit 1; }

if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$target"; then
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
if command -v wasm-opt >/dev/null; then
  # Before wasm-bindgen: Debian's binaryen 108 breaks wasm-bindgen's output when run after it.
  wasm-opt -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-multivalue --enable-reference-types "$wasm" -o "$wasm.opt"
  wasm="$wasm.opt"
fi

if ! command -v wasm-bindgen >/dev/null || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$wb_version" ]; then
  echo "build-wasm: installing wasm-bindgen-cli $wb_version"
  cargo install wasm-bindgen-cli --version "$wb_version"
fi
# Fresh output dirs: wasm-bindgen never removes files an earlier build left there.
rm -rf web/pkg inference-wasm/pkg-node
for t in web:web/pkg nodejs:inference-wasm/pkg-node; do
  wasm-bindgen --target "${t%%:*}" --out-dir "${t#*:}" --out-name inference \
    --remove-name-section --remove-producers-section "$wasm"
done
node scripts/inline-js-snippets.mjs web/pkg inference-wasm/pkg-node
# The nodejs glue is CommonJS; the repo's package.json says "type": "module", so mark the folder.
echo '{"type": "commonjs"}' > inference-wasm/pkg-node/package.json
raw=$(stat -c %s web/pkg/inference_bg.wasm)
gz=$(gzip -9 -c web/pkg/inference_bg.wasm | wc -c)
echo "build-wasm: web/pkg/inference_bg.wasm $raw bytes ($gz gzip)"
