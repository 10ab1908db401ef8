#!/usr/bin/env bash
# test.sh — the README's test command: set up (install + build from scratch when needed), then
# run every test with ctest: unit tests, MPI tests under `mpirun -np 2`, CLI/script tests and the
# end-to-end pipeline test. Extra arguments go to ctest (e.g. -L unit, -R Config).
#
# Two builds, so the GPU code cannot rot on machines without a GPU:
#   build/        the CPU build against Debian's libtorch-dev: the suite runs here;
#   build/cuda/   the CUDA variant against PyPI's torch (RLHF_CUDA=1; the GPU machine's libtorch)
#                 with every target, tests included: compiled and linked, and any error fails this
#                 command. It needs the CUDA toolkit (nvcc); without one it is skipped with a
#                 warning, unless RLHF_CUDA_BUILD=1 (then missing nvcc is an error).
# Then the fuzzers (launch/fuzz.sh: tests/fuzz, clang + ASan/UBSan, build/fuzz) run for
# RLHF_FUZZ_SECONDS (30) each; a finding fails this command. RLHF_FUZZ=0 skips them, and they are
# skipped when extra arguments select part of the suite.
# Variables: RLHF_CUDA_BUILD (auto | 1 | 0), RLHF_TEST_TORCH (debian | pip: which build the suite
#   runs in; pip = build/cuda, the CUDA-enabled pip libtorch, on CPU), BUILD_DIR (build),
#   RLHF_FUZZ (1 | 0), RLHF_FUZZ_SECONDS (30).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
CUDA_BUILD=${RLHF_CUDA_BUILD:-auto}
CUDA_DIR=$BUILD_DIR/cuda
TEST_TORCH=${RLHF_TEST_TORCH:-debian}
stamp() { date +%s; }

t0=$(stamp)
BUILD_DIR=$BUILD_DIR bash "$ROOT/launch/setup.sh"
t1=$(stamp)
echo "test.sh: CPU build (Debian libtorch) ready in $((t1 - t0)) s" >&2

have_nvcc() { command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; }
if [ "$CUDA_BUILD" = "1" ] || { [ "$CUDA_BUILD" = "auto" ] && have_nvcc; } || [ "$TEST_TORCH" = "pip" ]; then
  have_nvcc || { echo "test.sh: error: RLHF_CUDA_BUILD=1 but no nvcc (CUDA toolkit) found" >&2; exit 1; }
  RLHF_CUDA=1 BUILD_DIR=$CUDA_DIR bash "$ROOT/launch/setup.sh"
  t2=$(stamp)
  grep -q "RLHF_CUDA_ENABLED:INTERNAL=ON" "$CUDA_DIR/CMakeCache.txt" \
    || { echo "test.sh: error: $CUDA_DIR was configured without CUDA (see its CMakeCache.txt)" >&2; exit 1; }
  echo "test.sh: CUDA variant (pip libtorch) compiled and linked in $((t2 - t1)) s: $CUDA_DIR" >&2
elif [ "$CUDA_BUILD" = "auto" ]; then
  echo "test.sh: warning: no CUDA toolkit (nvcc): the CUDA variant was not compiled" >&2
fi

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # OpenMP threads sleep at barriers (common/core/process.h)
case "$TEST_TORCH" in
  debian) cd "$BUILD_DIR" ;;
  pip) cd "$CUDA_DIR" ;;
  *) echo "test.sh: error: RLHF_TEST_TORCH must be debian or pip, got '$TEST_TORCH'" >&2; exit 1 ;;
esac
echo "test.sh: running the suite in $PWD" >&2
rc=0
ctest --output-on-failure --timeout 1200 "$@" || rc=$?
if [ "${RLHF_FUZZ:-1}" != "0" ] && [ $# -eq 0 ]; then
  t3=$(stamp)
  FUZZ_BUILD_DIR=$BUILD_DIR/fuzz bash "$ROOT/launch/fuzz.sh" "${RLHF_FUZZ_SECONDS:-30}" || rc=1
  echo "test.sh: fuzzing (build + runs) took $(( $(stamp) - t3 )) s" >&2
fi
exit $rc
