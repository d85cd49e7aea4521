#!/usr/bin/env bash
# Builds `coaug` with candle's CUDA backend (`--device cuda`) into target/cuda/release/coaug.
#
# With a CUDA toolkit installed (nvcc on PATH, or CUDA_HOME set) it is a plain cargo build.
# Without one, CUDA 13.0's compiler, headers and libraries come from PyPI wheels (pip
# download, ~700 MB, into $COAUG_CACHE/cuda-13.0), so a CPU-only build box can produce a
# GPU binary; where no NVIDIA driver is installed either, the link step uses a stub
# libcuda.so built from cudarc's list of driver entry points (the real one is loaded at run
# time on the GPU machine). The binary needs the CUDA 13 runtime libraries (libcudart,
# libcublas, libcublasLt, libcurand) and a driver ≥ 580 where it runs.
#
#   CUDA_COMPUTE_CAP=90 scripts/build-cuda.sh      # H100/H200; 80 for A100, 89 for L4/4090
#
# CUDA_COMPUTE_CAP is required when this machine has no GPU (nvcc cannot ask one).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${CUDA_COMPUTE_CAP:-}" ]; then
  if command -v nvidia-smi >/dev/null; then
    CUDA_COMPUTE_CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
  else
    echo "error: no GPU here to ask; set CUDA_COMPUTE_CAP (e.g. 90 for H100/H200, 80 for A100)" >&2
    exit 2
  fi
fi
export CUDA_COMPUTE_CAP

if [ -z "${CUDA_HOME:-}" ] && ! command -v nvcc >/dev/null; then
  root="${COAUG_CACHE:-$HOME/.cache/coaug}/cuda-13.0"
  export CUDA_HOME="$root/nvidia/cu13"
  if [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
    command -v python3 >/dev/null || { echo "error: python3 (with pip) is needed to fetch the CUDA toolkit wheels" >&2; exit 2; }
    mkdir -p "$root/wheels"
    echo "fetching the CUDA 13.0 toolkit wheels from PyPI into $root" >&2
    for p in nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
             nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 \
             nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35; do
      python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --python-version 3.12 -d "$root/wheels" "$p"
    done
    for w in "$root"/wheels/*.whl; do python3 -m zipfile -e "$w" "$root"; done
    chmod +x "$CUDA_HOME"/bin/* "$CUDA_HOME"/nvvm/bin/*
    (cd "$CUDA_HOME/lib" && for l in cublas cublasLt cudart nvrtc; do ln -sf lib$l.so.13 lib$l.so; done \
      && ln -sf libcurand.so.10 libcurand.so)
  fi
  export PATH="$CUDA_HOME/bin:$PATH"
  export LIBRARY_PATH="$CUDA_HOME/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
fi

# No driver on this machine: link against a stub that only names the driver's functions.
if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so ' && [ ! -e "${CUDA_HOME:-/nonexistent}/lib64/stubs/libcuda.so" ]; then
  stub="target/cuda/libcuda-stub"
  mkdir -p "$stub"
  if [ ! -e "$stub/libcuda.so" ]; then
    cargo fetch --locked >/dev/null
    sys=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path '*cudarc-0.19*/src/driver/sys/mod.rs' | head -1)
    grep -o '^pub unsafe fn cu[A-Za-z0-9_]*' "$sys" | sed 's/pub unsafe fn //' | sort -u \
      | awk '{print "int " $1 "(void) { return 999; }"}' > "$stub/stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub/libcuda.so" "$stub/stub.c"
  fi
  export LIBRARY_PATH="$PWD/$stub${LIBRARY_PATH:+:$LIBRARY_PATH}"
fi

CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}" cargo build --release --locked -p coaug --features cuda "$@"
echo "built ${CARGO_TARGET_DIR:-target/cuda}/release/coaug (compute capability $CUDA_COMPUTE_CAP); run it with --device cuda" >&2
