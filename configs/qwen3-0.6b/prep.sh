#!/usr/bin/env bash
# Datasets for configs/qwen3-0.6b: the shared recipe data (configs/hf_prep.sh) with $RLHF_MODEL's
# tokenizer, in the chatml layout (Qwen's tokens; Qwen3's own template drops earlier turns'
# reasoning and so cannot put the loss on every turn of a multi-turn thread: docs/DATA.md).
export RLHF_CHAT_TEMPLATE=${RLHF_CHAT_TEMPLATE:-chatml}
exec bash "$(dirname "${BASH_SOURCE[0]}")/../hf_prep.sh" "$@"
