#!/usr/bin/env bash
# memory_table.sh — what fits: PPO's per-rank memory estimate (ppo_train --dry-run, dry_run.h) for
# 1.5B, 7B and 8B models under each memory option, on 1 x 80 GB, 1 x 141 GB and 8 x 80 GB.
#
#   bash bench/memory_table.sh [BIN_DIR]      (prints a markdown table; docs/PERFORMANCE.md)
#
# No weights are built: rlhf_convert init --header-only writes each model's config (the actor /
# reference from a causal LM, reward model and critic from a scalar model of the same size), and
# --dry-run --ranks N prints the estimate for N ranks. Settings: CUDA, bf16 autocast, activation
# checkpointing, prompts of up to 768 tokens + 256 new, 64 prompts per step, micro-batch 4.
# "fits" means the estimate is within the GPU's memory; the estimate has no allocator overhead
# (expect up to ~1.3x, dry_run.h), so a row within 1.3x of the limit is marked "tight".
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-$ROOT/build/bin}
W=$(mktemp -d /tmp/rlhf_memtable.XXXXXX)
trap 'rm -rf "$W"' EXIT

declare -A CFG=(
  [qwen2.5-1.5b]='{"family":"qwen2","vocab_size":151936,"n_layer":28,"n_head":12,"n_kv_head":2,"d_model":1536,"d_ff":8960,"max_seq_len":2048,"tie_embeddings":true,"qkv_bias":true}'
  [mistral-7b]='{"family":"mistral","vocab_size":32000,"n_layer":32,"n_head":32,"n_kv_head":8,"d_model":4096,"d_ff":14336,"max_seq_len":2048,"tie_embeddings":false}'
  [llama-3-8b]='{"family":"llama","vocab_size":128256,"n_layer":32,"n_head":32,"n_kv_head":8,"d_model":4096,"d_ff":14336,"max_seq_len":2048,"tie_embeddings":false,"rope_theta":500000}'
)
MODELS=(qwen2.5-1.5b mistral-7b llama-3-8b)
for m in "${MODELS[@]}"; do
  fam=$(echo "${CFG[$m]}" | sed 's/.*"family":"\([a-z0-9.]*\)".*/\1/')
  "$BIN/rlhf_convert" init --header-only --family "$fam" --tokenizer byte --config-json "${CFG[$m]}" \
    --out "$W/$m/sft" 2>/dev/null
  "$BIN/rlhf_convert" init --header-only --family "$fam" --tokenizer byte --config-json "${CFG[$m]}" \
    --kind scalar --out "$W/$m/rm" 2>/dev/null
done

# option name | --set arguments
OPTIONS=(
  "full fine-tuning, fp32 frozen|"
  "full, frozen bf16 + offload|--set ppo.frozen_dtype=bf16 --set ppo.offload_frozen=true"
  "full, ZeRO-3, frozen bf16 + offload|--set dist.zero_stage=3 --set ppo.frozen_dtype=bf16 --set ppo.offload_frozen=true"
  "LoRA r=16 (all), frozen bf16|--set model.lora.rank=16 --set ppo.frozen_dtype=bf16"
  "LoRA r=16 (all), frozen bf16 + offload|--set model.lora.rank=16 --set ppo.frozen_dtype=bf16 --set ppo.offload_frozen=true"
)
estimate() {  # estimate MODEL RANKS SETS... -> GiB per rank
  local m=$1 ranks=$2; shift 2
  "$BIN/ppo_train" --config "$ROOT/configs/tiny/ppo.yaml" --set init="$W/$m/sft" --set ppo.reward_model="$W/$m/rm" \
    --set train.device=cuda --set train.precision=bf16 --set model.activation_checkpointing=true \
    --set data.max_seq_len=768 --set ppo.max_new_tokens=256 --set train.global_batch_size=64 \
    --set train.micro_batch_size=4 --set ppo.minibatch_size=64 "$@" --dry-run --ranks "$ranks" 2>/dev/null \
    | grep '^# peak memory estimate' | sed 's/.* = \([0-9.]*\) GiB$/\1/'
}
verdict() {  # verdict GIB CAPACITY_GIB
  awk -v e="$1" -v c="$2" 'BEGIN { if (e * 1.3 <= c) print "fits"; else if (e <= c) print "tight"; else print "no" }'
}
echo "| model | option | 1 GPU: GiB per rank | 1 x 80 GB | 1 x 141 GB | 8 ranks: GiB per rank | 8 x 80 GB |"
echo "|---|---|---:|---|---|---:|---|"
for m in "${MODELS[@]}"; do
  for o in "${OPTIONS[@]}"; do
    name=${o%%|*}; sets=${o#*|}
    # shellcheck disable=SC2086
    one=$(estimate "$m" 1 $sets); eight=$(estimate "$m" 8 $sets)
    echo "| $m | $name | $one | $(verdict "$one" 74.5) | $(verdict "$one" 131.3) | $eight | $(verdict "$eight" 74.5) |"
  done
done
