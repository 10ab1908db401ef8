# lib.sh — the preamble the script tests share. Not a test itself (ctest runs test_*.sh). Use:
#
#   set -euo pipefail
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" NAME "$@"     # NAME: the work directory's tag
#   ...; ok "what held" || bad "what did not"; ...
#   exit $fail
#
# It sets BIN and SRC from the test's arguments (BIN_DIR SOURCE_DIR; more are the test's own), W =
# a fresh work directory /tmp/rlhf_NAME.XXXXXX removed on exit (kept with KEEP=1), one thread per
# process (RLHF_THREADS, OMP_NUM_THREADS), mpirun allowed as root; ok / bad report one check (bad
# sets fail=1), at_exit CMD registers a cleanup run on exit before W is removed (the last
# registered first), and skip REASON (skip.sh) is a ctest skip.
LIB_NAME=${1:?usage: source lib.sh NAME BIN_DIR SOURCE_DIR}
BIN=${2:?usage: $0 BIN_DIR SOURCE_DIR}
SRC=${3:?usage: $0 BIN_DIR SOURCE_DIR}
BIN=$(cd "$BIN" && pwd)
W=$(mktemp -d "/tmp/rlhf_${LIB_NAME}.XXXXXX")
export RLHF_THREADS=${RLHF_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # as the launchers (process.h): no re-exec per binary
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fail=0
LIB_AT_EXIT=()

ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
at_exit() { LIB_AT_EXIT=("$*" "${LIB_AT_EXIT[@]}"); }
lib_on_exit() {
  local c
  for c in "${LIB_AT_EXIT[@]}"; do eval "$c" || true; done
  [ "${KEEP:-0}" = 1 ] && echo "kept $W" >&2 || rm -rf "$W"
}
trap lib_on_exit EXIT
source "$SRC/tests/scripts/skip.sh"
