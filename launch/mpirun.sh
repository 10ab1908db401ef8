#!/usr/bin/env bash
# launch/mpirun.sh — run a trainer (or any rlhf binary) as NP ranks on this machine.
#   launch/mpirun.sh NP BINARY [args...]
# e.g. launch/mpirun.sh 2 build/bin/sft_train --config configs/tiny/sft.yaml
#
# - Threads: RLHF_THREADS = OMP_NUM_THREADS = max(1, cores / NP) unless already set, so NP ranks
#   do not oversubscribe the cores (libtorch's intra-op pool per rank).
# - OMP_WAIT_POLICY=PASSIVE unless set (OpenMP threads sleep at barriers instead of spinning:
#   spinning ranks starve each other on shared cores; see common/core/process.h).
# - Binding: --bind-to none (each rank's thread pool may use any core; Open MPI's default binds a
#   rank to one core when NP <= 2, which would serialise its threads).
# - --oversubscribe when NP > cores; --allow-run-as-root when run as root (containers).
# - Failure semantics: a rank that throws prints "[rank R] error: ..." and calls MPI_Abort; a
#   rank killed by a signal makes mpirun kill the others. Both end the job non-zero. We pin the
#   Open MPI settings that make this so (they are the defaults; an inherited environment must not
#   turn them off): orte_abort_on_non_zero_status=1. See docs/DISTRIBUTED.md.
# - Exit status: the ranks' own. mpirun reports 1 for any non-zero rank exit, so rank 0 writes its
#   exit code to RLHF_EXIT_STATUS_FILE (a temporary file) and this script exits with it: 75 after a
#   SIGTERM / SIGUSR1 checkpoint (kExitPreempted) reaches the scheduler, which can requeue. A
#   SIGTERM or SIGUSR1 sent to this script reaches the ranks as SIGUSR1 (mpirun forwards USR1 and
#   leaves the job running; a SIGTERM to mpirun itself would tear the job down with SIGKILL 1 s
#   later, too soon for a large model's checkpoint) and the script waits for the job to end. So
#   signal the launcher only (Slurm: sbatch --signal=B:TERM@120), not its process group.
# - Extra mpirun options: MPIRUN_ARGS="--hostfile hosts -x NCCL_SOCKET_IFNAME" (see
#   launch/hostfile.example for several nodes).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 NP BINARY [args...]" >&2
  exit 2
fi
NP=$1; shift
BINARY=$1; shift
case "$NP" in ''|*[!0-9]*|0) echo "$0: NP must be a positive integer, got '$NP'" >&2; exit 2;; esac
command -v "$BINARY" >/dev/null 2>&1 || [ -x "$BINARY" ] || {
  echo "$0: binary '$BINARY' not found or not executable" >&2; exit 2; }

CORES=$(nproc)
THREADS=$(( CORES / NP ))
[ "$THREADS" -ge 1 ] || THREADS=1
export RLHF_THREADS=${RLHF_THREADS:-$THREADS}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$RLHF_THREADS}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

ARGS=(-np "$NP" --bind-to none -x RLHF_THREADS -x OMP_NUM_THREADS -x OMP_WAIT_POLICY
      --mca orte_abort_on_non_zero_status 1)
[ "$(id -u)" = 0 ] && ARGS+=(--allow-run-as-root)
[ "$NP" -gt "$CORES" ] && ARGS+=(--oversubscribe)
# Forward NCCL / CUDA settings when present (multi-GPU runs).
for v in NCCL_DEBUG NCCL_SOCKET_IFNAME NCCL_IB_DISABLE CUDA_VISIBLE_DEVICES; do
  [ -n "${!v:-}" ] && ARGS+=(-x "$v")
done
# shellcheck disable=SC2206
EXTRA=(${MPIRUN_ARGS:-})
STATUS=$(mktemp "${TMPDIR:-/tmp}/rlhf_exit.XXXXXX")
export RLHF_EXIT_STATUS_FILE=$STATUS
ARGS+=(-x RLHF_EXIT_STATUS_FILE)
echo "[launch] mpirun ${ARGS[*]} ${EXTRA[*]} $BINARY $* (RLHF_THREADS=$RLHF_THREADS)" >&2
mpirun "${ARGS[@]}" "${EXTRA[@]}" "$BINARY" "$@" &
PID=$!
trap 'kill -USR1 $PID 2>/dev/null || true' TERM USR1
trap 'kill -INT $PID 2>/dev/null || true' INT
set +e
while :; do
  wait "$PID"; RC=$?
  kill -0 "$PID" 2>/dev/null || break  # wait returned for a trapped signal: keep waiting
done
set -e
if [ "$RC" -ne 0 ] && [ -s "$STATUS" ]; then RC=$(cat "$STATUS"); fi
rm -f "$STATUS"
exit "$RC"
