#!/usr/bin/env bash
# fuzz.sh — build the libFuzzer targets of tests/fuzz (clang, AddressSanitizer, UBSan) into
# build/fuzz and run each for a fixed time on its seed corpus (tests/fuzz/corpus/<target>).
#
#   bash launch/fuzz.sh [SECONDS] [TARGET...]     default: 30 s for every target
#
# New inputs that grow coverage go to build/fuzz/corpus/<target> (kept between runs; the seeds in
# the repo are only read). A finding — a crash, a sanitizer report, an exception other than
# rlhf::Error, a hang over FUZZ_TIMEOUT s (10) or memory over FUZZ_RSS_MB (2048) — fails the run;
# the input is saved as build/fuzz/artifacts/<target>-crash-* (replay: build/fuzz/bin/<target>
# FILE). FUZZ_MERGE=1 merges the grown corpus back into tests/fuzz/corpus (minimised) to commit.
# Prints one line per target: executions, coverage, corpus size.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FUZZ_BUILD_DIR:-$ROOT/build/fuzz}
SECS=${1:-30}
shift || true
case "$SECS" in ''|*[!0-9]*) echo "fuzz.sh: error: SECONDS must be a whole number, got '$SECS'" >&2; exit 2 ;; esac

RLHF_FUZZ=1 BUILD_DIR=$BUILD bash "$ROOT/launch/setup.sh"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$ROOT"/tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi
mkdir -p "$BUILD/artifacts"
fail=0
for t in "${targets[@]}"; do
  [ -x "$BUILD/bin/$t" ] || { echo "fuzz.sh: error: no target $t in $BUILD/bin" >&2; exit 2; }
  seeds=$ROOT/tests/fuzz/corpus/$t
  work=$BUILD/corpus/$t
  mkdir -p "$work"
  log=$BUILD/artifacts/$t.log
  # Leak checks stay on (our parsers must not leak per input); ASan's allocator may return null
  # on huge requests so std::bad_alloc is exercised rather than an abort.
  if ASAN_OPTIONS=allocator_may_return_null=1:detect_stack_use_after_return=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$BUILD/bin/$t" -max_total_time="$SECS" -timeout="${FUZZ_TIMEOUT:-10}" \
       -rss_limit_mb="${FUZZ_RSS_MB:-2048}" -max_len=8192 -print_final_stats=1 \
       -artifact_prefix="$BUILD/artifacts/$t-" "$work" "$seeds" > "$log" 2>&1; then
    runs=$(grep -m1 -oE 'stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
    cov=$(grep -E '#[0-9]+\s+DONE' "$log" | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' | tail -1)
    echo "fuzz.sh: $t: ${SECS} s, $runs executions, ${cov:-?}, no findings"
    if [ "${FUZZ_MERGE:-0}" = "1" ]; then
      "$BUILD/bin/$t" -merge=1 -max_len=8192 "$seeds" "$work" > "$BUILD/artifacts/$t.merge.log" 2>&1 \
        || echo "fuzz.sh: warning: merging $t's corpus failed (see $BUILD/artifacts/$t.merge.log)" >&2
    fi
  else
    echo "fuzz.sh: $t: FINDING (log: $log)" >&2
    grep -E 'ERROR|SUMMARY|runtime error|what\(\)|Test unit written|#[0-9] 0x' "$log" | head -20 >&2
    fail=1
  fi
done
exit $fail
