#!/usr/bin/env bash
# quickstart.sh — the README's main command: set up, build, then run the whole pipeline
# (data -> SFT -> RM -> PPO-ptx -> eval) on the embedded task into runs/quickstart (CPU).
# NP=2 runs every stage on 2 MPI ranks.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/launch/setup.sh"
exec bash "$ROOT/launch/pipeline.sh" "$ROOT/configs/tiny" "${RUN_DIR:-$ROOT/runs/quickstart}"
