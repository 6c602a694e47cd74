#!/usr/bin/env bash
# Build `trainer` with candle's CUDA backend: `cargo build --release -p trainer --features cuda`.
#
# Requirements on the build machine:
#   - a CUDA toolkit ≥ 12.0 with `nvcc` on PATH (or CUDA_ROOT/CUDA_PATH set): candle-kernels
#     compiles its kernels to PTX with nvcc, and cudarc reads the CUDA version from it;
#   - the CUDA libraries to link against (cudarc uses dynamic linking): libcuda (the driver, or
#     the toolkit's lib64/stubs/libcuda.so on a machine without a GPU), libcudart, libcublas,
#     libcublasLt, libcurand — the same major version must be present where it runs;
#   - CUDA_COMPUTE_CAP: the target GPU's compute capability without the dot (default 90 =
#     H100/H200; 80 = A100, 89 = L4/RTX 40xx, 86 = RTX 30xx). Without a GPU on the build machine,
#     candle cannot detect it, so set it.
# Without a system toolkit, WITH_PYPI_CUDA=1 fetches nvcc, headers and libraries from NVIDIA's
# PyPI wheels (nvidia-cuda-nvcc==${CUDA_MAJOR}.*, …; CUDA_MAJOR defaults to 13, the version of
# the GPU machines here) into .cuda/ and builds against those; a linker stub for libcuda is
# generated from the driver API names cudarc uses. The binary goes
# to target/cuda/release/trainer (separate target dir: the CPU build stays untouched).
# `scripts/build-cuda.sh --clippy` runs clippy on the CUDA build instead (same environment).
set -euo pipefail
cd "$(dirname "$0")/.."
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
CUDA_MAJOR="${CUDA_MAJOR:-13}"

if ! command -v nvcc >/dev/null && [ -z "${CUDA_ROOT:-}${CUDA_PATH:-}" ]; then
  if [ "${WITH_PYPI_CUDA:-0}" != 1 ]; then
    echo "build-cuda: no nvcc on PATH. Install the CUDA toolkit, or rerun with WITH_PYPI_CUDA=1" >&2
    exit 1
  fi
  root="$PWD/.cuda"
  mkdir -p "$root/py"
  # CUDA 13's wheels (unsuffixed names, files under nvidia/cu13/) ship nvcc itself; the
  # -cu12 nvcc wheel has only ptxas.
  # x.0 releases: PTX from an older toolkit loads on any newer driver of that major version.
  # (curand numbers its releases on its own: 10.4.0 is CUDA 13.0's.)
  read -r -a pkgs <<<"${PYPI_CUDA_PKGS:-nvidia-cuda-nvcc==${CUDA_MAJOR}.0.* nvidia-cuda-runtime==${CUDA_MAJOR}.0.* \
nvidia-cublas==${CUDA_MAJOR}.0.* nvidia-cuda-nvrtc==${CUDA_MAJOR}.0.* nvidia-cuda-cccl==${CUDA_MAJOR}.0.* nvidia-curand==10.4.0.* \
nvidia-nvvm==${CUDA_MAJOR}.0.* nvidia-cuda-crt==${CUDA_MAJOR}.0.*}"
  python3 -m pip install -q --target "$root/py" "${pkgs[@]}"
  toolkit="$root/py/nvidia/cu${CUDA_MAJOR}"
  [ -x "$toolkit/bin/nvcc" ] || { echo "build-cuda: the wheels brought no nvcc under $toolkit" >&2; exit 1; }
  [ -e "$toolkit/lib64" ] || ln -s lib "$toolkit/lib64"
  (cd "$toolkit/lib" && for f in lib*.so.*; do base="${f%%.so.*}.so"; [ -e "$base" ] || ln -s "$f" "$base"; done)
  cargo fetch --quiet  # cudarc's sources name the driver symbols for the stub below
  if [ ! -e "$toolkit/lib/libcuda.so" ]; then
    # Stub for link time only: the real driver library is loaded on the GPU machine.
    grep -rhoE '\bcu[A-Z][A-Za-z0-9_]+' ~/.cargo/registry/src/*/cudarc-*/src/driver/sys/ 2>/dev/null | sort -u \
      | awk '{print "void " $1 "(void) {}"}' > "$root/cuda_stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$toolkit/lib/libcuda.so" "$root/cuda_stub.c"
  fi
  export CUDA_ROOT="$toolkit" PATH="$toolkit/bin:$PATH"
  export LIBRARY_PATH="$toolkit/lib:${LIBRARY_PATH:-}" LD_LIBRARY_PATH="$toolkit/lib:${LD_LIBRARY_PATH:-}"
fi

if [ "${1:-}" = --clippy ]; then
  exec cargo clippy --release -p trainer --features cuda --target-dir target/cuda --all-targets -- -D warnings
fi
echo "build-cuda: nvcc $(nvcc --version | grep -o 'release [0-9.]*'), compute capability $CUDA_COMPUTE_CAP"
cargo build --release -p trainer --features cuda --target-dir target/cuda
# A stripped copy to carry to a GPU machine (the unstripped binary is ~61 MiB).
strip -o target/cuda/release/trainer-stripped target/cuda/release/trainer
ls -la target/cuda/release/trainer target/cuda/release/trainer-stripped
echo "build-cuda: needs at run time: $(ldd target/cuda/release/trainer | awk '/cuda|cublas|curand|nvrtc/ {print $1}' | xargs)"
echo "build-cuda: (libcuda.so.1 comes from the GPU driver; the stub in .cuda/ is for linking only)"
