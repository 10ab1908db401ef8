#!/usr/bin/env bash
# netns_two_nodes.sh — a 2-"node" MPI job on one machine: two network namespaces joined by a veth
# pair, one rank in each, Open MPI over TCP only (no shared memory between the "nodes").
#
#   tests/scripts/netns_two_nodes.sh BIN_DIR SOURCE_DIR [gtest filter]   (needs root + ip netns)
#
#   ns rlhf_nodeA_<pid>: veth 10.200.0.1/24, hostname nodeA, runs mpirun + rank 0
#   ns rlhf_nodeB_<pid>: veth 10.200.0.2/24, hostname nodeB, runs the remote orted + rank 1
# Checks: placement (one rank per namespace, local rank 0/1 on each), the Comm and DataParallel
# tests over TCP (the veth byte counters must grow), and failure semantics across the "nodes": an
# exception on rank 1 and a kill -9 of rank 1 (both on nodeB) end the job non-zero within 60 s.
# There is no ssh: Open MPI's rsh launcher (plm_rsh_agent) is pointed at a generated agent script
# that "logs in" to 10.200.0.2 by `ip netns exec rlhf_nodeB` (+ its own UTS namespace so the
# hostname differs; Open MPI keys session directories and node identity on it). The addresses are
# private and exist only inside these two namespaces, which are deleted on exit (trap).
set -euo pipefail
BIN=${1:?usage: $0 BIN_DIR SOURCE_DIR [gtest filter]}
SRC=${2:?usage: $0 BIN_DIR SOURCE_DIR [gtest filter]}
FILTER=${3:-Comm*:DataParallel*}
TESTS="$BIN/rlhf_mpi_tests"
[ -x "$TESTS" ] || { echo "netns: $TESTS not built" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "netns: needs root (ip netns)" >&2; exit 1; }

NSA=rlhf_nodeA_$$ NSB=rlhf_nodeB_$$ VA=rlhfa$$ VB=rlhfb$$  # unique: ctest may run twice
IPA=10.200.0.1 IPB=10.200.0.2 NET=10.200.0.0/24
WORK=$(mktemp -d)
cleanup() {
  ip netns del "$NSA" 2>/dev/null || true   # deleting a namespace also deletes its veth end
  ip netns del "$NSB" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- the two "nodes" -------------------------------------------------------------------------
ip netns add "$NSA"
ip netns add "$NSB"
ip link add "$VA" netns "$NSA" type veth peer name "$VB" netns "$NSB"
ip -n "$NSA" addr add "$IPA/24" dev "$VA"
ip -n "$NSB" addr add "$IPB/24" dev "$VB"
for ns in "$NSA" "$NSB"; do
  ip -n "$ns" link set lo up
done
ip -n "$NSA" link set "$VA" up
ip -n "$NSB" link set "$VB" up
echo "[netns] $NSA ($IPA) <-> $NSB ($IPB) up"

# ---- launcher plumbing -----------------------------------------------------------------------
# rsh agent: called by mpirun as `agent HOST COMMAND...` (like ssh); runs COMMAND in HOST's
# namespace, through a shell as sshd would.
cat >"$WORK/netns_agent.sh" <<AGENT
#!/bin/sh
host=\$1; shift
case "\$host" in
  $IPB|nodeB) ns=$NSB; name=nodeB ;;
  $IPA|nodeA) ns=$NSA; name=nodeA ;;
  *) echo "netns_agent: unknown host \$host" >&2; exit 255 ;;
esac
exec ip netns exec "\$ns" unshare --uts /bin/sh -c "hostname \$name && \$*"
AGENT
chmod +x "$WORK/netns_agent.sh"
printf '%s slots=1\n%s slots=1\n' "$IPA" "$IPB" >"$WORK/hostfile"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --hostfile "$WORK/hostfile" -np 2 --map-by node --bind-to none
  --mca plm rsh --mca plm_rsh_agent "$WORK/netns_agent.sh" --mca plm_rsh_no_tree_spawn 1
  --mca btl tcp,self --mca btl_tcp_if_include "$NET"
  --mca oob tcp --mca oob_tcp_if_include "$NET"
  --mca orte_abort_on_non_zero_status 1
  -x RLHF_THREADS=1 -x OMP_NUM_THREADS=1 -x PATH)
[ -n "${LD_LIBRARY_PATH:-}" ] && MPIRUN+=(-x LD_LIBRARY_PATH)
in_nodeA() { ip netns exec "$NSA" unshare --uts /bin/sh -c 'hostname nodeA && exec "$@"' sh "$@"; }

# 1. Placement: each rank in its own namespace, local rank 0 of 1 on its "node".
in_nodeA timeout -k 5 120 "${MPIRUN[@]}" /bin/sh -c \
  'echo "rank $OMPI_COMM_WORLD_RANK host $(hostname) netns $(readlink /proc/self/ns/net) local $OMPI_COMM_WORLD_LOCAL_RANK/$OMPI_COMM_WORLD_LOCAL_SIZE"' \
  | sort | tee "$WORK/placement.txt"
[ "$(wc -l <"$WORK/placement.txt")" = 2 ] || { echo "netns: expected 2 ranks" >&2; exit 1; }
grep -q '^rank 0 host nodeA .* local 0/1$' "$WORK/placement.txt" &&
  grep -q '^rank 1 host nodeB .* local 0/1$' "$WORK/placement.txt" ||
  { echo "netns: ranks not one per node" >&2; exit 1; }
[ "$(awk '{print $6}' "$WORK/placement.txt" | sort -u | wc -l)" = 2 ] ||
  { echo "netns: both ranks in the same network namespace" >&2; exit 1; }

# 2. The collective and data-parallel tests across the veth (TCP only).
tx0=$(ip netns exec "$NSA" cat "/sys/class/net/$VA/statistics/tx_bytes")
echo "[netns] running rlhf_mpi_tests --gtest_filter='$FILTER' across the two namespaces"
in_nodeA timeout -k 5 600 "${MPIRUN[@]}" "$TESTS" --gtest_filter="$FILTER" --gtest_color=no \
  2>&1 | tee "$WORK/tests.log" | grep -E '^\[rank|PASSED|FAILED|error' || true
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
  echo "netns: test job failed (exit $rc)"; tail -40 "$WORK/tests.log"; exit 1
fi
tx1=$(ip netns exec "$NSA" cat "/sys/class/net/$VA/statistics/tx_bytes")
echo "[netns] $VA sent $((tx1 - tx0)) bytes during the tests"
[ $((tx1 - tx0)) -gt 100000 ] || { echo "netns: too little traffic over the veth" >&2; exit 1; }

# 3. Failure semantics across the "nodes" (rank 1 lives on nodeB).
now() { date +%s.%N; }
t0=$(now)
set +e
in_nodeA timeout -k 5 150 "${MPIRUN[@]}" "$TESTS" --gtest_also_run_disabled_tests \
  --gtest_filter='FaultInjection.DISABLED_ThrowOnRank1AtStep3' >"$WORK/throw.log" 2>&1
rc=$?
set -e
dt=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
echo "[netns] exception on rank 1 (nodeB): exit $rc after ${dt}s"
{ [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && awk -v d="$dt" 'BEGIN { exit !(d < 60) }' &&
  grep -q '\[rank 1\] error: injected failure at step 3' "$WORK/throw.log"; } ||
  { echo "netns: exception case failed"; tail -30 "$WORK/throw.log"; exit 1; }

mkdir -p "$WORK/pids"
set +e
RLHF_FAULT_PID_DIR="$WORK/pids" RLHF_FAULT_SECONDS=120 in_nodeA timeout -k 5 150 \
  "${MPIRUN[@]}" -x RLHF_FAULT_PID_DIR -x RLHF_FAULT_SECONDS "$TESTS" \
  --gtest_also_run_disabled_tests --gtest_filter='FaultInjection.DISABLED_LongRunning' \
  >"$WORK/kill.log" 2>&1 &
job=$!
for _ in $(seq 300); do [ -s "$WORK/pids/rank1.pid" ] && break; sleep 0.1; done
[ -s "$WORK/pids/rank1.pid" ] || { echo "netns: ranks did not start"; kill -TERM $job; exit 1; }
sleep 1
t0=$(now)
kill -KILL "$(cat "$WORK/pids/rank1.pid")"   # same PID namespace: nodeB's rank is visible here
wait $job
rc=$?
set -e
dt=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
echo "[netns] kill -9 of rank 1 (nodeB): exit $rc, ${dt}s after the kill"
{ [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && awk -v d="$dt" 'BEGIN { exit !(d < 60) }'; } ||
  { echo "netns: kill case failed"; tail -30 "$WORK/kill.log"; exit 1; }
echo "[netns] OK: 2 ranks in 2 namespaces over TCP"
