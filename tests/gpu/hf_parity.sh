#!/usr/bin/env bash
# Logit parity with Hugging Face transformers, for the GPU machine (python3 with torch,
# transformers and safetensors). Builds nothing: BIN_DIR must hold rlhf_convert.
#   1. random HF models (gpt2 tied; llama GQA untied, rope_theta 500; llama tied) made by
#      transformers -> rlhf_convert from-hf -> our logits vs HF's; then to-hf again -> the
#      safetensors must be bit-identical to HF's and HF must reproduce our logits from them;
#   2. our freshly initialised checkpoints (rlhf_convert init, both families) -> to-hf -> compare;
#   3. stories260K (llama2.c import, q/k permutation) -> to-hf -> compare, when the data exists.
# Our side runs on cpu and, when the binary has CUDA, on cuda (SDPA kernels); HF runs fp32 eager on
# CPU. Prints max |dlogit| per case; exits non-zero when any exceeds TOL (default 1e-3).
# Usage: tests/gpu/hf_parity.sh BIN_DIR [TOL]
set -uo pipefail
BIN=${1:?usage: $0 BIN_DIR [TOL]}
TOL=${2:-1e-3}
HERE=$(cd "$(dirname "$0")" && pwd)
PY="python3 $HERE/hf_parity.py"
DATA="$HERE/../../../shared/data/stories260K"
python3 -c "import torch, transformers, safetensors" 2>/dev/null || {
  echo "FAIL: hf_parity needs python3 with torch, transformers and safetensors" >&2; exit 2; }
[[ -x "$BIN/rlhf_convert" ]] || { echo "FAIL: $BIN/rlhf_convert not found" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
run() { "$@" || { echo "FAIL: $*" >&2; fails=$((fails + 1)); return 1; }; }

devices="cpu"
"$BIN/rlhf_convert" init --family gpt2 --tokenizer byte --out "$TMP/probe" \
  --config-json '{"n_layer":1,"n_head":2,"d_model":16,"d_ff":32,"max_seq_len":16}' 2>/dev/null &&
  "$BIN/rlhf_convert" logits --in "$TMP/probe" --out "$TMP/probe.safetensors" --device cuda \
    --batch 1 --len 4 2>/dev/null && devices="cpu cuda"
echo "our devices: $devices"

check_logits() {  # HF_DIR CKPT TAG
  for dev in $devices; do
    run "$BIN/rlhf_convert" logits --in "$2" --out "$TMP/logits_$3_$dev.safetensors" \
      --device "$dev" --batch 3 --len 24 --seed 7 || continue
    run $PY compare "$1" "$TMP/logits_$3_$dev.safetensors" "$TOL"
  done
}

run $PY make "$TMP" || exit 1
for name in gpt2 llama_gqa llama_tied; do
  run "$BIN/rlhf_convert" from-hf --in "$TMP/hf_$name" --out "$TMP/ck_$name" --tokenizer byte || continue
  check_logits "$TMP/hf_$name" "$TMP/ck_$name" "$name"
  run "$BIN/rlhf_convert" to-hf --in "$TMP/ck_$name" --out "$TMP/rt_$name" || continue
  run $PY same-weights "$TMP/hf_$name" "$TMP/rt_$name"
  check_logits "$TMP/rt_$name" "$TMP/ck_$name" "rt_$name"
done

for fam in gpt2 llama; do
  cfg='{"n_layer":2,"n_head":4,"d_model":64,"d_ff":128,"max_seq_len":64}'
  [[ $fam == llama ]] && cfg='{"n_layer":2,"n_head":4,"n_kv_head":2,"d_model":64,"d_ff":128,"max_seq_len":64,"tie_embeddings":false,"rope_theta":1000.0}'
  run "$BIN/rlhf_convert" init --family $fam --tokenizer byte --seed 3 --config-json "$cfg" \
    --out "$TMP/init_$fam" || continue
  run "$BIN/rlhf_convert" to-hf --in "$TMP/init_$fam" --out "$TMP/init_hf_$fam" || continue
  check_logits "$TMP/init_hf_$fam" "$TMP/init_$fam" "init_$fam"
done

if [[ -f "$DATA/stories260K.bin" && -f "$DATA/tok512.bin" ]]; then
  run "$BIN/rlhf_convert" from-llama2c --model "$DATA/stories260K.bin" --tokenizer "$DATA/tok512.bin" \
    --out "$TMP/stories" &&
    run "$BIN/rlhf_convert" to-hf --in "$TMP/stories" --out "$TMP/stories_hf" &&
    check_logits "$TMP/stories_hf" "$TMP/stories" stories260K
else
  echo "NOTE: $DATA not present on this machine; stories260K parity not run"
fi

if (( fails > 0 )); then echo "hf_parity: $fails check(s) FAILED" >&2; exit 1; fi
echo "hf_parity: all checks passed (tol $TOL)"
