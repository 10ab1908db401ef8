#!/usr/bin/env bash
# Datasets for the Hugging Face recipes (configs/qwen3-0.6b, configs/llama3.2-1b), tokenized with
# the imported model's own tokenizer (the checkpoint at $RLHF_MODEL carries it in tokenizer/), from
# the real data in ../shared/data:
#   RLHF_MODEL=runs/qwen3-0.6b/model RLHF_BIN=build/bin RLHF_ROOT=. RLHF_DATA=runs/qwen3-0.6b/data bash configs/hf_prep.sh
# (each recipe's prep.sh runs this file).
set -euo pipefail
SHARED=${RLHF_SHARED_DATA:-$RLHF_ROOT/../shared/data}
TOK=${RLHF_TOKENIZER:-$RLHF_MODEL/tokenizer}
P=$RLHF_BIN/rlhf_prep
LIM=(--max-prompt-tokens 384 --max-response-tokens 512)
mkdir -p "$RLHF_DATA"
$P sft --format oasst-tree --in "$SHARED/oasst/en_100_tree.jsonl" --tokenizer "$TOK" "${LIM[@]}" --out "$RLHF_DATA/sft.h5"
cp "$RLHF_DATA/sft.h5" "$RLHF_DATA/sft_eval.h5"
$P ranked --format oasst-tree --in "$SHARED/oasst/en_100_tree.jsonl" --tokenizer "$TOK" "${LIM[@]}" --out "$RLHF_DATA/ranked.h5"
$P ranked --format hh-rlhf --in "$SHARED/hh-rlhf/harmless-base-test.jsonl.gz" --tokenizer "$TOK" "${LIM[@]}" --out "$RLHF_DATA/ranked_eval.h5"
$P prompts --in "$SHARED/oasst/prompt_lottery_en_250_text.jsonl" --tokenizer "$TOK" --max-prompt-tokens 256 --out "$RLHF_DATA/prompts.h5"
$P prompts --in "$SHARED/oasst/en_100_text.jsonl" --tokenizer "$TOK" --max-prompt-tokens 256 --out "$RLHF_DATA/prompts_eval.h5"
$P pretrain --in "$SHARED/corpus/tinyshakespeare.txt" --tokenizer "$TOK" --out "$RLHF_DATA/pretrain.h5"
cp "$RLHF_DATA/pretrain.h5" "$RLHF_DATA/pretrain_eval.h5"
