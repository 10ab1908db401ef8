#!/usr/bin/env bash
# Parity with Hugging Face transformers, every family (python with torch, transformers and
# safetensors: $PYTHON, default python3). Builds nothing: BIN_DIR must hold rlhf_convert.
# Runs on the GPU machine (our side on cpu and cuda) and, through tests/scripts/test_hf_parity.sh,
# on CPU in CI.
#   1. random HF models made by transformers (gpt2; llama GQA untied; llama tied; llama with
#      llama3 rope_scaling, head_dim 32 != 64/4 and attention/mlp biases; llama with linear
#      scaling; mistral; qwen2; qwen3 with q/k norm and head_dim 32; reward models
#      Llama/Qwen2ForSequenceClassification) -> rlhf_convert from-hf -> our logits (or scores) vs
#      HF's, greedy generation of 32 tokens equal (causal LMs); to-hf again -> weights
#      bit-identical to HF's and HF reproduces our outputs from them; qwen3 also exported in
#      shards (--max-shard-mb) and llama3_bias as bf16 (bit-identical to HF's own bf16 rounding);
#   2. our freshly initialised checkpoints (rlhf_convert init, every family) -> to-hf -> compare;
#   3. stories260K (llama2.c import, q/k permutation) -> to-hf -> compare, when the data exists.
# HF runs fp32 eager on CPU. Prints max |dlogit| per case; exits non-zero when any check fails or
# exceeds TOL (default 1e-4).
# All of it runs in one Python process (`hf_parity.py all`: transformers imported once, our
# binary run as subprocesses, several at a time); this script probes our devices and calls it.
# Usage: [PYTHON=...] tests/gpu/hf_parity.sh BIN_DIR [TOL]
set -uo pipefail
BIN=${1:?usage: $0 BIN_DIR [TOL]}
TOL=${2:-1e-4}
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
[[ -x "$BIN/rlhf_convert" ]] || { echo "FAIL: $BIN/rlhf_convert not found" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Does our binary have CUDA (and a device)? With CUDA_VISIBLE_DEVICES set and empty (CI) it cannot.
devices="cpu"
if [[ ! -v CUDA_VISIBLE_DEVICES || -n $CUDA_VISIBLE_DEVICES ]]; then
  "$BIN/rlhf_convert" init --family gpt2 --tokenizer byte --out "$TMP/probe" \
    --config-json '{"n_layer":1,"n_head":2,"d_model":16,"d_ff":32,"max_seq_len":16}' 2>/dev/null &&
    "$BIN/rlhf_convert" logits --in "$TMP/probe" --out "$TMP/probe.safetensors" --device cuda \
      --batch 1 --len 4 2>/dev/null && devices="cpu,cuda"
fi

$PYTHON "$HERE/hf_parity.py" all "$BIN" "$TMP" "$TOL" --devices "$devices" \
  --stories "$HERE/../../../shared/data/stories260K"
