#!/usr/bin/env bash
# launch/mpirun.sh — run a trainer (or any rlhf binary) as NP ranks on this machine.
#   launch/mpirun.sh NP BINARY [args...]
# e.g. launch/mpirun.sh 2 build/bin/sft_train --config configs/tiny/sft.yaml
#
# - Threads: RLHF_THREADS = OMP_NUM_THREADS = max(1, cores / NP) unless already set, so NP ranks
#   do not oversubscribe the cores (libtorch's intra-op pool per rank).
# - Binding: --bind-to none (each rank's thread pool may use any core; Open MPI's default binds a
#   rank to one core when NP <= 2, which would serialise its threads).
# - --oversubscribe when NP > cores; --allow-run-as-root when run as root (containers).
# - Failure semantics: a rank that throws prints "[rank R] error: ..." and calls MPI_Abort; a
#   rank killed by a signal makes mpirun kill the others. Both end the job non-zero. We pin the
#   Open MPI settings that make this so (they are the defaults; an inherited environment must not
#   turn them off): orte_abort_on_non_zero_status=1. See docs/DISTRIBUTED.md.
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

ARGS=(-np "$NP" --bind-to none -x RLHF_THREADS -x OMP_NUM_THREADS
      --mca orte_abort_on_non_zero_status 1)
[ "$(id -u)" = 0 ] && ARGS+=(--allow-run-as-root)
[ "$NP" -gt "$CORES" ] && ARGS+=(--oversubscribe)
# Forward NCCL / CUDA settings when present (multi-GPU runs).
for v in NCCL_DEBUG NCCL_SOCKET_IFNAME NCCL_IB_DISABLE CUDA_VISIBLE_DEVICES; do
  [ -n "${!v:-}" ] && ARGS+=(-x "$v")
done
# shellcheck disable=SC2206
EXTRA=(${MPIRUN_ARGS:-})
echo "[launch] mpirun ${ARGS[*]} ${EXTRA[*]} $BINARY $* (RLHF_THREADS=$RLHF_THREADS)" >&2
exec mpirun "${ARGS[@]}" "${EXTRA[@]}" "$BINARY" "$@"
