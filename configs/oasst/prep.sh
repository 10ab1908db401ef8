#!/usr/bin/env bash
# Datasets for configs/oasst (real data from ../shared/data, GPT-2 tokenizer), into $RLHF_DATA:
# the chat recipes' datasets (configs/hf_prep.sh: Open Assistant threads with loss on every
# assistant turn, ranked sibling replies K = 2..9, held-out splits) in the hh template (GPT-2 ships
# none), prompts and responses cut at 96 tokens for this small CPU model.
export RLHF_TOKENIZER=${RLHF_TOKENIZER:-${RLHF_SHARED_DATA:-$RLHF_ROOT/../shared/data}/gpt2}
export RLHF_CHAT_TEMPLATE=${RLHF_CHAT_TEMPLATE:-hh}
export RLHF_MAX_PROMPT=${RLHF_MAX_PROMPT:-96} RLHF_MAX_RESPONSE=${RLHF_MAX_RESPONSE:-96}
export RLHF_MAX_PPO_PROMPT=${RLHF_MAX_PPO_PROMPT:-96}
exec bash "$(dirname "${BASH_SOURCE[0]}")/../hf_prep.sh" "$@"
