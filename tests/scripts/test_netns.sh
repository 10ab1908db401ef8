#!/usr/bin/env bash
# ctest wrapper for netns_two_nodes.sh: a 2-rank job whose ranks live in two network namespaces
# ("nodes") joined by a veth pair, Open MPI over TCP. Skips (ctest skip, exit 77; a failure under CI=true: skip.sh) only when
# not root or network namespaces cannot be created here; any other problem fails.
# Usage: tests/scripts/test_netns.sh BIN_DIR SOURCE_DIR
set -u
BIN=${1:?usage: $0 BIN_DIR SOURCE_DIR}
SRC=${2:?usage: $0 BIN_DIR SOURCE_DIR}
source "$SRC/tests/scripts/skip.sh"
if [ "$(id -u)" != 0 ]; then
  skip "test_netns needs root (ip netns / veth); running as uid $(id -u)"
fi
for tool in ip unshare; do
  command -v $tool >/dev/null 2>&1 || skip "'$tool' is not installed"
done
probe=rlhf_probe_$$
if ! err=$(ip netns add "$probe" 2>&1); then
  skip "ip netns is unavailable here: $err"
fi
ip netns del "$probe"
exec bash "$SRC/tests/scripts/netns_two_nodes.sh" "$BIN" "$SRC"
