#!/usr/bin/env bash
# setup.sh — install what is missing (apt-get), then configure and build in Release. Idempotent.
#
#   bash launch/setup.sh            CPU build against Debian/Ubuntu libtorch-dev (this machine, CI)
#   RLHF_CUDA=1 bash launch/setup.sh   CUDA build against the pip PyTorch found by python3 (+ NCCL
#                                      from the nvidia-nccl pip package); the GPU machine
# Variables: BUILD_DIR (default build), BUILD_TYPE (Release), JOBS (nproc).
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
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} with your package manager"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || die "apt-get update failed (no access to the package mirror?)"
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install failed for: ${missing[*]}"
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

cmake "${CMAKE_ARGS[@]}" >/dev/null || die "cmake configure failed (see the messages above)"
cmake --build "$BUILD_DIR" -j "$JOBS" || die "build failed"
echo "setup.sh: built into $BUILD_DIR/bin" >&2
