#!/usr/bin/env bash
# Datasets for configs/tiny: the embedded task (no external files), written to $RLHF_DATA.
set -euo pipefail
"$RLHF_BIN/rlhf_prep" synth --out "$RLHF_DATA" --seed 7 --n-ranked 10000
