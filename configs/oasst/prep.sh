#!/usr/bin/env bash
# Datasets for configs/oasst (real data from ../shared/data, GPT-2 tokenizer), into $RLHF_DATA.
#   SFT pairs and ranked groups (K = 2..9) from Open Assistant trees; held-out comparisons from
#   Anthropic hh-rlhf (harmless test); PPO prompts from the OA prompt lottery, held-out prompts
#   from en_100_text; ptx corpus tinyshakespeare.
set -euo pipefail
SHARED=${RLHF_SHARED_DATA:-$RLHF_ROOT/../shared/data}
TOK=${RLHF_TOKENIZER:-$SHARED/gpt2}
P=$RLHF_BIN/rlhf_prep
LIM=(--max-prompt-tokens 96 --max-response-tokens 96)
$P sft --format oasst-tree --in "$SHARED/oasst/en_100_tree.jsonl" --tokenizer "$TOK" "${LIM[@]}" --out "$RLHF_DATA/sft.h5"
cp "$RLHF_DATA/sft.h5" "$RLHF_DATA/sft_eval.h5"   # 100 trees only: no held-out SFT split
$P ranked --format oasst-tree --in "$SHARED/oasst/en_100_tree.jsonl" --tokenizer "$TOK" "${LIM[@]}" --out "$RLHF_DATA/ranked.h5"
$P ranked --format hh-rlhf --in "$SHARED/hh-rlhf/harmless-base-test.jsonl.gz" --tokenizer "$TOK" "${LIM[@]}" --out "$RLHF_DATA/ranked_eval.h5"
$P prompts --in "$SHARED/oasst/prompt_lottery_en_250_text.jsonl" --tokenizer "$TOK" --max-prompt-tokens 96 --out "$RLHF_DATA/prompts.h5"
$P prompts --in "$SHARED/oasst/en_100_text.jsonl" --tokenizer "$TOK" --max-prompt-tokens 96 --out "$RLHF_DATA/prompts_eval.h5"
$P pretrain --in "$SHARED/corpus/tinyshakespeare.txt" --tokenizer "$TOK" --out "$RLHF_DATA/pretrain.h5"
cp "$RLHF_DATA/pretrain.h5" "$RLHF_DATA/pretrain_eval.h5"
