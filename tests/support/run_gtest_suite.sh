#!/usr/bin/env bash
# run_gtest_suite.sh — how ctest runs the unit tests: one ctest per gtest suite (a process per
# test would start libtorch and MPI ~320 times, about 1 s each on 2 cores).
#
#   run_gtest_suite.sh BINARY SUITE          runs SUITE.* and */SUITE.* (parameterised): the
#                                            binary's exit code; 77 (ctest's skip) when it passed
#                                            but a test of the suite skipped (GTEST_SKIP: no GPU);
#                                            1 when no test matched
#   run_gtest_suite.sh --check BINARY S...   fails naming every suite the binary has that is not
#                                            among S... (a suite CMake's scan missed would never run)
set -uo pipefail
if [ "${1:-}" = "--check" ]; then
  bin=$2; shift 2
  missing=0
  while IFS= read -r suite; do
    case " $* " in *" $suite "*) ;; *) echo "unit tests: suite $suite is not registered with ctest (CMakeLists.txt scans TEST/TEST_F/TEST_P lines)"; missing=1 ;; esac
  done < <("$bin" --gtest_list_tests | grep -v '^ ' | sed -E 's/\.$//; s/  #.*//; s#^[A-Za-z0-9_]+/##; s#/[0-9]+$##' | sort -u)
  [ $missing = 0 ] && echo "unit tests: every suite of $(basename "$bin") is registered ($# suites)"
  exit $missing
fi
bin=$1; suite=$2
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # as the launchers (process.h): no re-exec per suite
out=$("$bin" --gtest_filter="$suite.*:*/$suite.*:$suite/*" 2>&1); rc=$?
printf '%s\n' "$out"
[ $rc = 0 ] || exit $rc
grep -q '^\[==========\] 0 tests' <<<"$out" && { echo "no test of suite $suite ran"; exit 1; }
grep -q '^\[  SKIPPED \]' <<<"$out" && exit 77
exit 0
