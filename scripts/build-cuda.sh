#!/usr/bin/env bash
# Build `trainer` with candle's CUDA backend: `cargo build --release -p trainer --features cuda`.
#
# Requirements on the build machine:
#   - a CUDA toolkit ≥ 12.0 with `nvcc` on PATH (or CUDA_ROOT/CUDA_PATH set): candle-kernels
#     compiles its kernels to PTX with nvcc, and cudarc reads the CUDA version from it;
#   - the CUDA libraries to link against (cudarc uses dynamic linking): libcuda (the driver, or
#     the toolkit's lib64/stubs/libcuda.so on a machine without a GPU), libcudart, libcublas,
#     libcublasLt, libcurand, libnvrtc — the same major version must be present where it runs;
#   - CUDA_COMPUTE_CAP: the target GPU's compute capability without the dot (default 90 =
#     H100/H200; 80 = A100, 89 = L4/RTX 40xx, 86 = RTX 30xx). Without a GPU on the build machine,
#     candle cannot detect it, so set it.
# Without a system toolkit, WITH_PYPI_CUDA=1 fetches nvcc, headers and libraries from NVIDIA's
# PyPI wheels (nvidia-cuda-nvcc-cu${CUDA_MAJOR}, …) into .cuda/ and builds against those; a
# linker stub for libcuda is generated from the driver API names cudarc uses. The binary goes
# to target/cuda/release/trainer (separate target dir: the CPU build stays untouched).
set -euo pipefail
cd "$(dirname "$0")/.."
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
CUDA_MAJOR="${CUDA_MAJOR:-12}"

if ! command -v nvcc >/dev/null && [ -z "${CUDA_ROOT:-}${CUDA_PATH:-}" ]; then
  if [ "${WITH_PYPI_CUDA:-0}" != 1 ]; then
    echo "build-cuda: no nvcc on PATH. Install the CUDA toolkit, or rerun with WITH_PYPI_CUDA=1" >&2
    exit 1
  fi
  root="$PWD/.cuda"
  mkdir -p "$root/py"
  python3 -m pip install -q --target "$root/py" \
    "nvidia-cuda-nvcc-cu${CUDA_MAJOR}" "nvidia-cuda-runtime-cu${CUDA_MAJOR}" "nvidia-cublas-cu${CUDA_MAJOR}" \
    "nvidia-curand-cu${CUDA_MAJOR}" "nvidia-cuda-nvrtc-cu${CUDA_MAJOR}" "nvidia-cuda-cccl-cu${CUDA_MAJOR}"
  # Lay the wheels out like a toolkit: bin/, include/, lib64/.
  toolkit="$root/toolkit"
  mkdir -p "$toolkit/bin" "$toolkit/include" "$toolkit/lib64"
  for d in "$root"/py/nvidia/*/; do
    [ -d "$d/bin" ] && cp -rn "$d/bin/." "$toolkit/bin/"
    [ -d "$d/include" ] && cp -rn "$d/include/." "$toolkit/include/"
    [ -d "$d/lib" ] && cp -rn "$d/lib/." "$toolkit/lib64/"
  done
  (cd "$toolkit/lib64" && for f in lib*.so.*; do base="${f%%.so.*}.so"; [ -e "$base" ] || ln -s "$f" "$base"; done)
  if [ ! -e "$toolkit/lib64/libcuda.so" ]; then
    # Stub for link time only: the real driver library is loaded on the GPU machine.
    grep -rhoE '\bcu[A-Z][A-Za-z0-9_]+' ~/.cargo/registry/src/*/cudarc-*/src/driver/sys/ 2>/dev/null | sort -u \
      | awk '{print "void " $1 "(void) {}"}' > "$root/cuda_stub.c"
    cc -shared -fPIC -o "$toolkit/lib64/libcuda.so" "$root/cuda_stub.c"
  fi
  export CUDA_ROOT="$toolkit" PATH="$toolkit/bin:$PATH"
  export LIBRARY_PATH="$toolkit/lib64:${LIBRARY_PATH:-}" LD_LIBRARY_PATH="$toolkit/lib64:${LD_LIBRARY_PATH:-}"
fi

echo "build-cuda: nvcc $(nvcc --version | grep -o 'release [0-9.]*'), compute capability $CUDA_COMPUTE_CAP"
cargo build --release -p trainer --features cuda --target-dir target/cuda
ls -la target/cuda/release/trainer
