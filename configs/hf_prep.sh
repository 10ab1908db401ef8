#!/usr/bin/env bash
# Datasets for the Hugging Face recipes (configs/qwen3-0.6b, configs/llama3.2-1b), tokenized with
# the imported model's own tokenizer (the checkpoint at $RLHF_MODEL carries it in tokenizer/) and
# rendered as conversations by a chat template (RLHF_CHAT_TEMPLATE: auto = the model's own; each
# recipe's prep.sh picks one), from the real data in ../shared/data:
#   RLHF_MODEL=runs/qwen3-0.6b/model RLHF_BIN=build/bin RLHF_ROOT=. RLHF_DATA=runs/qwen3-0.6b/data bash configs/qwen3-0.6b/prep.sh
# Held out (as in configs/oasst/prep.sh): the last 20 Open Assistant trees (SFT eval, and their
# first user turns as PPO eval prompts), hh-rlhf harmless-test pairs (RM eval), the last 4000
# lines of tinyshakespeare (ptx eval).
set -euo pipefail
SHARED=${RLHF_SHARED_DATA:-$RLHF_ROOT/../shared/data}
TOK=${RLHF_TOKENIZER:-$RLHF_MODEL/tokenizer}
P=$RLHF_BIN/rlhf_prep
LIM=(--max-prompt-tokens 384 --max-response-tokens 512)
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
$P prompts --in "$SHARED/oasst/prompt_lottery_en_250_text.jsonl" "${CHAT[@]}" --max-prompt-tokens 256 --out "$D/prompts.h5"
$P prompts --in "$D/prompts_eval.jsonl" "${CHAT[@]}" --max-prompt-tokens 256 --out "$D/prompts_eval.h5"
$P pretrain --in "$D/pretrain.txt" --tokenizer "$TOK" --out "$D/pretrain.h5"
$P pretrain --in "$D/pretrain_eval.txt" --tokenizer "$TOK" --out "$D/pretrain_eval.h5"
