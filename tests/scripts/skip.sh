# skip.sh — sourced by script tests that cannot run everywhere (reference data, a Python
# environment, root, an optional library). Not a test itself (ctest runs tests/scripts/test_*.sh).
#
#   source "$SRC/tests/scripts/skip.sh"; [ -d "$DATA" ] || skip "no test data in $DATA"
#
# skip REASON: ctest's skip — exit 77, which CMakeLists.txt declares as every script test's
# SKIP_RETURN_CODE, so ctest counts it as "Not Run (Skipped)", never as a pass. Under CI=true (the CI
# run) or RLHF_REQUIRE_DATA=1 a skip is a failure (exit 1) naming the reason: there every script
# test must run.
skip() {
  if [ "${CI:-}" = true ] || [ "${RLHF_REQUIRE_DATA:-0}" = 1 ]; then
    echo "FAIL: cannot run, and a skip is a failure here (CI=${CI:-} RLHF_REQUIRE_DATA=${RLHF_REQUIRE_DATA:-0}): $*" >&2
    exit 1
  fi
  echo "SKIPPED: $*"
  exit 77
}
