#!/usr/bin/env bash
# test.sh — the README's test command: set up (install + build from scratch when needed), then
# run every test with ctest: unit tests, MPI tests under `mpirun -np 2`, CLI/script tests and the
# end-to-end pipeline test. Extra arguments go to ctest (e.g. -L unit, -R Config).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
bash "$ROOT/launch/setup.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 1200 "$@"
