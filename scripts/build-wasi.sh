#!/usr/bin/env bash
# Build the inference core as a WASI command (wasm32-wasip1, +simd128, size-optimised
# profile): inference-wasm/wasi/inference-wasi.wasm. A bundle path and a request on stdin give
# the answer on stdout (src/bin/inference-wasi.rs), for wasmtime, Spin and Fastly-style hosts.
#
# Toolchain: rustup's wasm32-wasip1 target when installed (it brings its own wasi-libc), else
# the same Debian recipe as scripts/build-wasm.sh (rustc-web + rust-web-src, -Zbuild-std) with
# Debian's wasi-libc for the C runtime: std is linked against /usr/lib/wasm32-wasi/libc.a and
# the command entry point crt1-command.o (passed to the binary's link only, not the library's).
set -euo pipefail
cd "$(dirname "$0")/.."

target=wasm32-wasip1
export CARGO_TARGET_DIR="${WASI_TARGET_DIR:-$PWD/target-wasi}"
flags="-C target-feature=+simd128"
wasi_libc=/usr/lib/wasm32-wasi

if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  echo "build-wasi: rustup's $target target"
  RUSTFLAGS="$flags" cargo build --profile wasm-release --target "$target" -p inference-wasm --bin inference-wasi
elif [ -x /usr/bin/rustc ] && command -v wasm-ld-16 >/dev/null && [ -d /usr/lib/rustlib/src/rust/library ] \
  && [ -f "$wasi_libc/libc.a" ]; then
  echo "build-wasi: Debian rustc-web with -Zbuild-std and wasi-libc"
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_WASIP1_LINKER=wasm-ld-16 \
    RUSTFLAGS="$flags -Zunstable-options -Cpanic=immediate-abort -C link-self-contained=no -C link-arg=-L$wasi_libc" \
    /usr/bin/cargo rustc --profile wasm-release --target "$target" -p inference-wasm --bin inference-wasi \
    -Zbuild-std=std,panic_abort -- -C "link-arg=$wasi_libc/crt1-command.o"
else
  echo "build-wasi: no $target toolchain. Either 'rustup target add $target', or" >&2
  echo "  apt-get install -y rustc-web cargo-web rust-web-src lld-16 wasi-libc" >&2
  exit 1
fi

out=inference-wasm/wasi
mkdir -p "$out"
wasm="$CARGO_TARGET_DIR/$target/wasm-release/inference-wasi.wasm"
if command -v wasm-opt >/dev/null; then
  # -ocimfs 20: see build-wasm.sh (one-caller inlining without a size cap bloats the module).
  wasm-opt -O3 -ocimfs 20 --strip-debug --strip-producers --enable-simd --enable-bulk-memory \
    --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals "$wasm" -o "$out/inference-wasi.wasm"
else
  cp "$wasm" "$out/inference-wasi.wasm"
fi
raw=$(stat -c %s "$out/inference-wasi.wasm")
gz=$(gzip -9 -c "$out/inference-wasi.wasm" | wc -c)
echo "build-wasi: $out/inference-wasi.wasm $raw bytes ($gz gzip)"
