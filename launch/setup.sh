#!/usr/bin/env bash
# setup.sh — install what is missing (apt-get), then configure and build in Release. Idempotent.
#
#   bash launch/setup.sh            CPU build against Debian/Ubuntu libtorch-dev (this machine, CI)
#   RLHF_CUDA=1 bash launch/setup.sh   CUDA build against the pip PyTorch found by python3 (+ NCCL
#                                      from the nvidia-nccl pip package); the GPU machine
# Variables: BUILD_DIR (default build), BUILD_TYPE (Release), JOBS (nproc), PCRE2_ROOT (a prefix
# holding include/pcre2.h when libpcre2-dev cannot be installed), RLHF_CXX_STANDARD (17; 20 for
# libtorch >= 2.13).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BUILD_TYPE=${BUILD_TYPE:-Release}
JOBS=${JOBS:-$(nproc)}
CUDA=${RLHF_CUDA:-0}

die() { echo "setup.sh: error: $*" >&2; exit 1; }

# Debian 12 / Ubuntu 24.04 package names.
PKGS=(cmake g++ make pkg-config ccache libopenmpi-dev openmpi-bin libhdf5-dev libyaml-cpp-dev
      libgtest-dev nlohmann-json3-dev libcli11-dev libfmt-dev zlib1g-dev libpcre2-dev iproute2 jq)
if [ "$CUDA" = "0" ]; then
  # libtorch on reference BLAS is ~20x slower: OpenBLAS (OpenMP flavour) is required.
  PKGS+=(libtorch-dev libopenblas0-openmp)
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing: ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != "0" ]; then
    command -v sudo >/dev/null || die "packages missing (${missing[*]}) and not root: run as root or install them"
    SUDO=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  # A machine without a package mirror (or with some tools installed outside dpkg, e.g. cmake
  # from pip) may still build: on failure, warn and let cmake be the judge.
  if ! command -v apt-get >/dev/null; then
    unresolved="${missing[*]} (apt-get not found)"
  elif ! $SUDO apt-get update -qq; then
    unresolved="${missing[*]} (apt-get update failed: no access to the package mirror?)"
  elif ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    unresolved="${missing[*]} (apt-get install failed)"
  fi
  [ -z "${unresolved:-}" ] || echo "setup.sh: warning: could not install: $unresolved; trying to build with what is present" >&2
fi

CMAKE_ARGS=(-S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE")
if [ "$CUDA" != "0" ]; then
  command -v python3 >/dev/null || die "RLHF_CUDA=1 needs python3 with PyTorch (pip install torch)"
  TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)' 2>/dev/null) \
    || die "RLHF_CUDA=1 but python3 cannot import torch"
  NCCL_ROOT=$(python3 -c 'import nvidia.nccl as n;print(n.__path__[0])' 2>/dev/null) \
    || die "RLHF_CUDA=1 but the nvidia-nccl pip package is missing (python3 -c 'import nvidia.nccl')"
  # The pip wheel ships libnccl.so.2 only; give the linker a plain name.
  [ -e "$NCCL_ROOT/lib/libnccl.so" ] || ln -sf libnccl.so.2 "$NCCL_ROOT/lib/libnccl.so" 2>/dev/null || true
  CMAKE_ARGS+=(-DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DNCCL_ROOT="$NCCL_ROOT")
  command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] && CMAKE_ARGS+=(-DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")
fi

# A fresh build directory uses make, or ninja where make is absent (e.g. an image with pip's ninja).
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] && ! command -v make >/dev/null && command -v ninja >/dev/null; then
  CMAKE_ARGS+=(-G Ninja)
fi
[ -n "${PCRE2_ROOT:-}" ] && CMAKE_ARGS+=(-DPCRE2_ROOT="$PCRE2_ROOT")
[ -n "${RLHF_CXX_STANDARD:-}" ] && CMAKE_ARGS+=(-DRLHF_CXX_STANDARD="$RLHF_CXX_STANDARD")
cmake "${CMAKE_ARGS[@]}" >/dev/null \
  || die "cmake configure failed (see the messages above)${unresolved:+; packages not installed: $unresolved}"
cmake --build "$BUILD_DIR" -j "$JOBS" \
  || die "build failed${unresolved:+ (packages not installed: $unresolved)}"
echo "setup.sh: built into $BUILD_DIR/bin" >&2
