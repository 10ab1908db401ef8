#!/usr/bin/env bash
# Datasets for configs/qwen3-0.6b: the shared recipe data (configs/hf_prep.sh) with $RLHF_MODEL's tokenizer.
exec bash "$(dirname "${BASH_SOURCE[0]}")/../hf_prep.sh" "$@"
