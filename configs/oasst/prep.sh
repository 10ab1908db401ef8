#!/usr/bin/env bash
# Datasets for configs/oasst (real data from ../shared/data, GPT-2 tokenizer), into $RLHF_DATA.
#   Conversations in a chat template (RLHF_CHAT_TEMPLATE, default hh: GPT-2 ships none): SFT on
#   Open Assistant threads (loss on every assistant turn), ranked groups (K = 2..9) of sibling
#   replies; held out: the last 20 of the 100 trees (SFT eval, and their first user turns as PPO
#   eval prompts), Anthropic hh-rlhf harmless-test comparisons (RM eval), the last 4000 lines of
#   tinyshakespeare (ptx eval). PPO prompts: the OA prompt lottery (disjoint from the trees).
set -euo pipefail
SHARED=${RLHF_SHARED_DATA:-$RLHF_ROOT/../shared/data}
TOK=${RLHF_TOKENIZER:-$SHARED/gpt2}
TPL=${RLHF_CHAT_TEMPLATE:-hh}
P=$RLHF_BIN/rlhf_prep
LIM=(--max-prompt-tokens 96 --max-response-tokens 96)
CHAT=(--tokenizer "$TOK" --chat-template "$TPL")
D=$RLHF_DATA
# Splits (files in the data folder, not the repository): trees and their root texts share order.
head -n 80 "$SHARED/oasst/en_100_tree.jsonl" > "$D/trees_train.jsonl"
tail -n 20 "$SHARED/oasst/en_100_tree.jsonl" > "$D/trees_eval.jsonl"
tail -n 20 "$SHARED/oasst/en_100_text.jsonl" > "$D/prompts_eval.jsonl"
head -n 36000 "$SHARED/corpus/tinyshakespeare.txt" > "$D/pretrain.txt"
tail -n 4000 "$SHARED/corpus/tinyshakespeare.txt" > "$D/pretrain_eval.txt"

$P sft --format oasst-tree --in "$D/trees_train.jsonl" "${CHAT[@]}" "${LIM[@]}" --out "$D/sft.h5"
$P sft --format oasst-tree --in "$D/trees_eval.jsonl" "${CHAT[@]}" "${LIM[@]}" --out "$D/sft_eval.h5"
$P ranked --format oasst-tree --in "$D/trees_train.jsonl" "${CHAT[@]}" "${LIM[@]}" --out "$D/ranked.h5"
$P ranked --format hh-rlhf --in "$SHARED/hh-rlhf/harmless-base-test.jsonl.gz" "${CHAT[@]}" "${LIM[@]}" --out "$D/ranked_eval.h5"
$P prompts --in "$SHARED/oasst/prompt_lottery_en_250_text.jsonl" "${CHAT[@]}" --max-prompt-tokens 96 --out "$D/prompts.h5"
$P prompts --in "$D/prompts_eval.jsonl" "${CHAT[@]}" --max-prompt-tokens 96 --out "$D/prompts_eval.h5"
$P pretrain --in "$D/pretrain.txt" --tokenizer "$TOK" --out "$D/pretrain.h5"
$P pretrain --in "$D/pretrain_eval.txt" --tokenizer "$TOK" --out "$D/pretrain_eval.h5"
