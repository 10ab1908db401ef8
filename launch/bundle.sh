#!/usr/bin/env bash
# bundle.sh — package a build's executables so another machine can run them without building:
#
#   bash launch/bundle.sh BUILD_DIR OUT.tar.gz
#
# Made for the GPU machine: the CUDA variant is compiled and linked here (launch/test.sh builds it
# into build/cuda), bundled, carried over, and `PREBUILT=OUT.tar.gz bash bench/gpu/run.sh` runs the
# CUDA tests and benchmarks with it, so GPU minutes go to tests and measurements, not to compiling.
# The bundle holds bin/ (stripped executables), lib/ (the shared libraries the target is known to
# lack: this distribution's yaml-cpp, whose soname differs between Debian 12 and Ubuntu 24.04) and
# MANIFEST (commit, libtorch version, each binary's needed libraries). libtorch, NCCL and the CUDA
# runtime come from the target's own pip torch (the same version: see docs/PERFORMANCE.md);
# bench/gpu/run.sh puts them on LD_LIBRARY_PATH and reports any library still not found.
set -euo pipefail
BUILD=${1:?usage: bundle.sh BUILD_DIR OUT.tar.gz}
OUT=${2:?usage: bundle.sh BUILD_DIR OUT.tar.gz}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -d "$BUILD/bin" ] || { echo "bundle.sh: error: $BUILD/bin does not exist (build first)" >&2; exit 1; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/bundle/bin" "$W/bundle/lib"
for f in "$BUILD"/bin/*; do
  [ -f "$f" ] && [ -x "$f" ] || continue
  cp "$f" "$W/bundle/bin/"
  strip --strip-unneeded "$W/bundle/bin/$(basename "$f")" 2>/dev/null || true
done
# Libraries to carry: resolved paths of dependencies matching these names.
CARRY_RE='libyaml-cpp\.so'
for f in "$W"/bundle/bin/*; do
  ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | grep -E "$CARRY_RE" || true
done | sort -u | while read -r lib; do cp -L "$lib" "$W/bundle/lib/"; done
{
  echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "built: $(date -u +%FT%TZ) on $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown}")"
  grep -E "^(Torch_DIR|CMAKE_PREFIX_PATH|RLHF_CUDA_ENABLED)" "$BUILD/CMakeCache.txt" 2>/dev/null || true
  echo "carried libraries: $(cd "$W/bundle/lib" && ls | tr '\n' ' ')"
  for f in "$W"/bundle/bin/*; do
    echo "needs $(basename "$f"): $(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
  done
} >"$W/bundle/MANIFEST"
tar -C "$W" -czf "$OUT" bundle
echo "bundle.sh: wrote $OUT ($(du -h "$OUT" | cut -f1)): $(ls "$W/bundle/bin" | wc -l) executables, lib: $(ls "$W/bundle/lib" | tr '\n' ' ')" >&2
