#!/usr/bin/env bash
# Parity with Hugging Face transformers, every family (python with torch, transformers and
# safetensors: $PYTHON, default python3). Builds nothing: BIN_DIR must hold rlhf_convert.
# Runs on the GPU machine (our side on cpu and cuda) and, through tests/scripts/test_hf_parity.sh,
# on CPU in CI.
#   1. random HF models made by transformers (hf_parity.py make: gpt2; llama GQA untied; llama
#      tied; llama with llama3 rope_scaling, head_dim 32 != 64/4 and attention/mlp biases; llama
#      with linear scaling; mistral; qwen2; qwen3 with q/k norm and head_dim 32; reward models
#      Llama/Qwen2ForSequenceClassification) -> rlhf_convert from-hf -> our logits (or scores) vs
#      HF's, greedy generation of 32 tokens equal (causal LMs); to-hf again -> weights
#      bit-identical to HF's and HF reproduces our outputs from them; qwen3 also exported in
#      shards (--max-shard-mb) and llama3_bias as bf16 (bit-identical to HF's own bf16 rounding);
#   2. our freshly initialised checkpoints (rlhf_convert init, every family) -> to-hf -> compare;
#   3. stories260K (llama2.c import, q/k permutation) -> to-hf -> compare, when the data exists.
# HF runs fp32 eager on CPU. Prints max |dlogit| per case; exits non-zero when any check fails or
# exceeds TOL (default 1e-4).
# Usage: [PYTHON=...] tests/gpu/hf_parity.sh BIN_DIR [TOL]
set -uo pipefail
BIN=${1:?usage: $0 BIN_DIR [TOL]}
TOL=${2:-1e-4}
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
PY="$PYTHON $HERE/hf_parity.py"
DATA="$HERE/../../../shared/data/stories260K"
$PYTHON -c "import torch, transformers, safetensors" 2>/dev/null || {
  echo "FAIL: hf_parity needs $PYTHON with torch, transformers and safetensors" >&2; exit 2; }
[[ -x "$BIN/rlhf_convert" ]] || { echo "FAIL: $BIN/rlhf_convert not found" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
run() { "$@" || { echo "FAIL: $*" >&2; fails=$((fails + 1)); return 1; }; }
quiet() { "$@" 2>"$TMP/last.err" || { cat "$TMP/last.err" >&2; return 1; }; }

devices="cpu"
"$BIN/rlhf_convert" init --family gpt2 --tokenizer byte --out "$TMP/probe" \
  --config-json '{"n_layer":1,"n_head":2,"d_model":16,"d_ff":32,"max_seq_len":16}' 2>/dev/null &&
  "$BIN/rlhf_convert" logits --in "$TMP/probe" --out "$TMP/probe.safetensors" --device cuda \
    --batch 1 --len 4 2>/dev/null && devices="cpu cuda"
echo "our devices: $devices"

check_logits() {  # HF_DIR CKPT TAG [scores]
  for dev in $devices; do
    run quiet "$BIN/rlhf_convert" logits --in "$2" --out "$TMP/logits_$3_$dev.safetensors" \
      --device "$dev" --batch 3 --len 24 --seed 7 || continue
    if [[ ${4:-} == scores ]]; then
      run $PY compare-scores "$1" "$TMP/logits_$3_$dev.safetensors" "$TOL"
    else
      run $PY compare "$1" "$TMP/logits_$3_$dev.safetensors" "$TOL"
    fi
  done
}

check_greedy() {  # HF_DIR CKPT TAG
  for dev in $devices; do
    run quiet "$BIN/rlhf_convert" greedy --in "$2" --out "$TMP/greedy_$3_$dev.safetensors" \
      --device "$dev" --batch 3 --len 8 --new 32 --seed 5 || continue
    run $PY compare-greedy "$1" "$TMP/greedy_$3_$dev.safetensors"
  done
}

run quiet $PY make "$TMP" || exit 1
for name in $($PY names); do
  kind=logits; [[ $name == rm_* ]] && kind=scores
  run quiet "$BIN/rlhf_convert" from-hf --in "$TMP/hf_$name" --out "$TMP/ck_$name" --tokenizer byte || continue
  check_logits "$TMP/hf_$name" "$TMP/ck_$name" "$name" $kind
  [[ $kind == logits ]] && check_greedy "$TMP/hf_$name" "$TMP/ck_$name" "$name"
  run quiet "$BIN/rlhf_convert" to-hf --in "$TMP/ck_$name" --out "$TMP/rt_$name" || continue
  run $PY same-weights "$TMP/hf_$name" "$TMP/rt_$name"
  check_logits "$TMP/rt_$name" "$TMP/ck_$name" "rt_$name" $kind
done
run quiet "$BIN/rlhf_convert" to-hf --in "$TMP/ck_qwen3" --out "$TMP/shard_qwen3" --max-shard-mb 0.05 &&
  run test -f "$TMP/shard_qwen3/model.safetensors.index.json" &&
  run $PY same-weights "$TMP/hf_qwen3" "$TMP/shard_qwen3" &&
  check_logits "$TMP/shard_qwen3" "$TMP/ck_qwen3" shard_qwen3
run quiet "$BIN/rlhf_convert" to-hf --in "$TMP/ck_llama3_bias" --out "$TMP/bf16_llama3" --dtype bf16 &&
  run $PY same-weights "$TMP/hf_llama3_bias" "$TMP/bf16_llama3" bf16

base='"n_layer":2,"n_head":4,"d_model":64,"d_ff":128,"max_seq_len":64'
declare -A init_cfg=(
  [gpt2]="{$base}"
  [llama]="{$base,\"n_kv_head\":2,\"tie_embeddings\":false,\"rope_theta\":1000.0,\"head_dim_override\":32,\"qkv_bias\":true,\"o_bias\":true,\"rope_scaling\":{\"type\":\"llama3\",\"factor\":4.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":16}}"
  [mistral]="{$base,\"n_kv_head\":2,\"tie_embeddings\":false}"
  [qwen2]="{$base,\"n_kv_head\":2}"
  [qwen3]="{$base,\"n_kv_head\":1,\"head_dim_override\":32,\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}}"
)
for fam in gpt2 llama mistral qwen2 qwen3; do
  for kind in causal_lm scalar; do
    tag="init_${fam}_$kind"
    run quiet "$BIN/rlhf_convert" init --family $fam --tokenizer byte --seed 3 --kind $kind \
      --config-json "${init_cfg[$fam]}" --out "$TMP/$tag" || continue
    run quiet "$BIN/rlhf_convert" to-hf --in "$TMP/$tag" --out "$TMP/${tag}_hf" || continue
    check_logits "$TMP/${tag}_hf" "$TMP/$tag" "$tag" $([[ $kind == scalar ]] && echo scores)
  done
done

if [[ -f "$DATA/stories260K.bin" && -f "$DATA/tok512.bin" ]]; then
  run quiet "$BIN/rlhf_convert" from-llama2c --model "$DATA/stories260K.bin" --tokenizer "$DATA/tok512.bin" \
    --out "$TMP/stories" &&
    run quiet "$BIN/rlhf_convert" to-hf --in "$TMP/stories" --out "$TMP/stories_hf" &&
    check_logits "$TMP/stories_hf" "$TMP/stories" stories260K
else
  echo "NOTE: $DATA not present on this machine; stories260K parity not run"
fi

if (( fails > 0 )); then echo "hf_parity: $fails check(s) FAILED" >&2; exit 1; fi
echo "hf_parity: all checks passed (tol $TOL)"
