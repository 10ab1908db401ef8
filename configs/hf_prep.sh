#!/usr/bin/env bash
# The chat recipes' datasets (configs/oasst, configs/qwen3-0.6b, configs/llama3.2-1b; each recipe's
# prep.sh sets its tokenizer, template and limits, then runs this file), from the real data in
# ../shared/data, rendered as conversations by a chat template:
#   RLHF_TOKENIZER (default $RLHF_MODEL/tokenizer: an imported model's own), RLHF_CHAT_TEMPLATE
#   (default auto = the tokenizer's own), RLHF_MAX_PROMPT / RLHF_MAX_RESPONSE / RLHF_MAX_PPO_PROMPT
#   (tokens; default 384 / 512 / 256). E.g.
#   RLHF_MODEL=runs/qwen3-0.6b/model RLHF_BIN=build/bin RLHF_ROOT=. RLHF_DATA=runs/qwen3-0.6b/data bash configs/qwen3-0.6b/prep.sh
# Held out: the last 20 Open Assistant trees (SFT eval, and their first user turns as PPO eval
# prompts; trees and their root texts share order), hh-rlhf harmless-test pairs (RM eval), the last
# 4000 lines of tinyshakespeare (ptx eval). PPO prompts: the OA prompt lottery (disjoint from the
# trees). Split files go into the data folder, never the repository.
set -euo pipefail
SHARED=${RLHF_SHARED_DATA:-$RLHF_ROOT/../shared/data}
TOK=${RLHF_TOKENIZER:-$RLHF_MODEL/tokenizer}
P=$RLHF_BIN/rlhf_prep
LIM=(--max-prompt-tokens "${RLHF_MAX_PROMPT:-384}" --max-response-tokens "${RLHF_MAX_RESPONSE:-512}")
PPO_LIM=(--max-prompt-tokens "${RLHF_MAX_PPO_PROMPT:-256}")
CHAT=(--tokenizer "$TOK" --chat-template "${RLHF_CHAT_TEMPLATE:-auto}")
D=$RLHF_DATA
mkdir -p "$D"
head -n 80 "$SHARED/oasst/en_100_tree.jsonl" > "$D/trees_train.jsonl"
tail -n 20 "$SHARED/oasst/en_100_tree.jsonl" > "$D/trees_eval.jsonl"
tail -n 20 "$SHARED/oasst/en_100_text.jsonl" > "$D/prompts_eval.jsonl"
head -n 36000 "$SHARED/corpus/tinyshakespeare.txt" > "$D/pretrain.txt"
tail -n 4000 "$SHARED/corpus/tinyshakespeare.txt" > "$D/pretrain_eval.txt"
$P sft --format oasst-tree --in "$D/trees_train.jsonl" "${CHAT[@]}" "${LIM[@]}" --out "$D/sft.h5"
$P sft --format oasst-tree --in "$D/trees_eval.jsonl" "${CHAT[@]}" "${LIM[@]}" --out "$D/sft_eval.h5"
$P ranked --format oasst-tree --in "$D/trees_train.jsonl" "${CHAT[@]}" "${LIM[@]}" --out "$D/ranked.h5"
$P ranked --format hh-rlhf --in "$SHARED/hh-rlhf/harmless-base-test.jsonl.gz" "${CHAT[@]}" "${LIM[@]}" --out "$D/ranked_eval.h5"
$P prompts --in "$SHARED/oasst/prompt_lottery_en_250_text.jsonl" "${CHAT[@]}" "${PPO_LIM[@]}" --out "$D/prompts.h5"
$P prompts --in "$D/prompts_eval.jsonl" "${CHAT[@]}" "${PPO_LIM[@]}" --out "$D/prompts_eval.h5"
$P pretrain --in "$D/pretrain.txt" --tokenizer "$TOK" --out "$D/pretrain.h5"
$P pretrain --in "$D/pretrain_eval.txt" --tokenizer "$TOK" --out "$D/pretrain_eval.h5"
