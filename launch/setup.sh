#!/usr/bin/env bash
# setup.sh — install what is missing (apt-get), then configure and build in Release. Idempotent.
#
#   bash launch/setup.sh               CPU build against Debian/Ubuntu libtorch-dev (the default)
#   RLHF_TORCH=pip bash launch/setup.sh   build against PyPI's torch (the GPU machine's libtorch,
#                                      CUDA-enabled: every CUDA path is compiled; runs on CPU too)
#   RLHF_CUDA=1 bash launch/setup.sh   the same (RLHF_CUDA=1 implies RLHF_TORCH=pip)
#   RLHF_FUZZ=1 bash launch/setup.sh   the libFuzzer targets only (clang, ASan + UBSan, Debian's
#                                      libtorch; RelWithDebInfo), for launch/fuzz.sh
# PyPI torch: a python3 that already imports torch (RLHF_PYTHON, else build/pyenv, else python3 —
# the GPU machine has one) is used as it is; otherwise build/pyenv is created and
# torch==$RLHF_TORCH_VERSION installed into it from PyPI (with nvidia-nccl-cu13: NCCL), once.
# The product never runs Python; it only needs the libtorch and NCCL files from the wheels.
# Variables: BUILD_DIR (default build), BUILD_TYPE (Release), JOBS (nproc), PCRE2_ROOT (a prefix
# holding include/pcre2.h when libpcre2-dev cannot be installed), RLHF_CXX_STANDARD (17; 20 for
# libtorch >= 2.13), RLHF_TORCH_VERSION (2.11.0, the GPU machine's), RLHF_PYTHON, PYENV_DIR
# (build/pyenv).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
BUILD_TYPE=${BUILD_TYPE:-Release}
JOBS=${JOBS:-$(nproc)}
CUDA=${RLHF_CUDA:-0}
FUZZ=${RLHF_FUZZ:-0}
[ "$FUZZ" != "0" ] && BUILD_TYPE=${BUILD_TYPE_FUZZ:-RelWithDebInfo}
TORCH_SRC=${RLHF_TORCH:-debian}
[ "$CUDA" != "0" ] && TORCH_SRC=pip
case "$TORCH_SRC" in debian|pip) ;; *) echo "setup.sh: error: RLHF_TORCH must be debian or pip, got '$TORCH_SRC'" >&2; exit 1 ;; esac
TORCH_VERSION=${RLHF_TORCH_VERSION:-2.11.0}
PYENV_DIR=${PYENV_DIR:-$ROOT/build/pyenv}

die() { echo "setup.sh: error: $*" >&2; exit 1; }

# Debian 12 / Ubuntu 24.04 package names.
PKGS=(cmake g++ make pkg-config ccache libopenmpi-dev openmpi-bin libhdf5-dev libyaml-cpp-dev
      libgtest-dev nlohmann-json3-dev libcli11-dev libfmt-dev zlib1g-dev libpcre2-dev libutf8proc-dev
      libsentencepiece-dev sentencepiece libcpp-httplib-dev iproute2 jq python3-matplotlib)
if [ "$TORCH_SRC" = "debian" ]; then
  # libtorch on reference BLAS is ~20x slower: OpenBLAS (OpenMP flavour) is required.
  PKGS+=(libtorch-dev libopenblas0-openmp)
fi
# libFuzzer and the sanitizer runtimes come with clang's compiler-rt.
[ "$FUZZ" != "0" ] && PKGS+=(clang libclang-rt-dev)

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

# The python whose torch wheel we build against (see the header); installs it when none has one.
pip_torch_python() {
  local py
  for py in ${RLHF_PYTHON:-} "$PYENV_DIR/bin/python" python3; do
    if [ -n "$py" ] && "$py" -c 'import torch' >/dev/null 2>&1; then command -v "$py"; return 0; fi
  done
  [ -z "${RLHF_PYTHON:-}" ] || die "RLHF_PYTHON=$RLHF_PYTHON cannot import torch"
  command -v python3 >/dev/null || die "RLHF_TORCH=pip needs python3 (apt-get install python3 python3-venv)"
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    ${SUDO:-} apt-get install -y -qq --no-install-recommends python3-venv >/dev/null 2>&1 \
      || die "python3 cannot create a virtual environment (install python3-venv)"
  fi
  echo "setup.sh: creating $PYENV_DIR with torch==$TORCH_VERSION from PyPI (once; several GB)" >&2
  python3 -m venv "$PYENV_DIR" || die "cannot create $PYENV_DIR"
  "$PYENV_DIR/bin/pip" install -q --disable-pip-version-check "torch==$TORCH_VERSION" >&2 \
    || die "pip install torch==$TORCH_VERSION into $PYENV_DIR failed (no access to PyPI?)"
  echo "$PYENV_DIR/bin/python"
}

if [ "$TORCH_SRC" = "pip" ]; then
  PY=$(pip_torch_python) || exit 1
  TORCH_PREFIX=$("$PY" -c 'import torch;print(torch.utils.cmake_prefix_path)' 2>/dev/null) \
    || die "$PY cannot import torch"
  echo "setup.sh: libtorch from $("$PY" -c 'import torch;print(torch.__version__)' 2>/dev/null) ($PY)" >&2
  CMAKE_ARGS+=(-DCMAKE_PREFIX_PATH="$TORCH_PREFIX")
  if NCCL_ROOT=$("$PY" -c 'import nvidia.nccl as n;print(n.__path__[0])' 2>/dev/null); then
    # The pip wheel ships libnccl.so.2 only; give the linker a plain name.
    [ -e "$NCCL_ROOT/lib/libnccl.so" ] || ln -sf libnccl.so.2 "$NCCL_ROOT/lib/libnccl.so" 2>/dev/null || true
    CMAKE_ARGS+=(-DNCCL_ROOT="$NCCL_ROOT")
  fi
  NVCC=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; } || true)
  [ -n "$NVCC" ] && CMAKE_ARGS+=(-DCMAKE_CUDA_COMPILER="$NVCC" -DCUDAToolkit_ROOT="$(dirname "$(dirname "$NVCC")")")
fi

# A fresh build directory uses make, or ninja where make is absent (e.g. an image with pip's ninja).
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] && ! command -v make >/dev/null && command -v ninja >/dev/null; then
  CMAKE_ARGS+=(-G Ninja)
fi
[ -n "${PCRE2_ROOT:-}" ] && CMAKE_ARGS+=(-DPCRE2_ROOT="$PCRE2_ROOT")
[ -n "${RLHF_CXX_STANDARD:-}" ] && CMAKE_ARGS+=(-DRLHF_CXX_STANDARD="$RLHF_CXX_STANDARD")
BUILD_ARGS=()
if [ "$FUZZ" != "0" ]; then
  [ "$TORCH_SRC" = "debian" ] || die "RLHF_FUZZ=1 builds against Debian's libtorch (not with RLHF_TORCH=pip / RLHF_CUDA=1)"
  CMAKE_ARGS+=(-DRLHF_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++)
  BUILD_ARGS+=(--target rlhf_fuzz_all)
fi
cmake "${CMAKE_ARGS[@]}" >/dev/null \
  || die "cmake configure failed (see the messages above)${unresolved:+; packages not installed: $unresolved}"
cmake --build "$BUILD_DIR" -j "$JOBS" ${BUILD_ARGS[@]+"${BUILD_ARGS[@]}"} \
  || die "build failed${unresolved:+ (packages not installed: $unresolved)}"
echo "setup.sh: built into $BUILD_DIR/bin" >&2
