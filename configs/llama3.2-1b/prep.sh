#!/usr/bin/env bash
# Datasets for configs/llama3.2-1b: the shared recipe data (configs/hf_prep.sh) with $RLHF_MODEL's
# tokenizer, in the model's own chat template (RLHF_CHAT_TEMPLATE=auto).
exec bash "$(dirname "${BASH_SOURCE[0]}")/../hf_prep.sh" "$@"
