#!/usr/bin/env bash
# stories260K through the command-line tools: rlhf_convert from-llama2c, then greedy
# `rlhf_eval sample` from an empty prompt (BOS), compared byte-for-byte with the text llama2.c's
# reference `run stories260K.bin -z tok512.bin -t 0 -n 200` prints. run -n 200 forwards 200
# positions and prints the token sampled at each: 200 new tokens after BOS.
# Usage: test_stories_cli.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=${1:?usage: $0 BIN_DIR SOURCE_DIR}
SRC=${2:?usage: $0 BIN_DIR SOURCE_DIR}
DATA="$SRC/../shared/data/stories260K"
for f in stories260K.bin tok512.bin expected_greedy_200.txt; do
  [[ -f "$DATA/$f" ]] || { echo "FAIL: missing test data file $DATA/$f" >&2; exit 1; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

"$BIN/rlhf_convert" from-llama2c --model "$DATA/stories260K.bin" --tokenizer "$DATA/tok512.bin" \
  --out "$TMP/ckpt"
[[ -f "$TMP/ckpt/model.h5" ]] || { echo "FAIL: no $TMP/ckpt/model.h5" >&2; exit 1; }
"$BIN/rlhf_eval" sample --checkpoint "$TMP/ckpt" --prompt "" --temperature 0 \
  --max-new-tokens 200 --device cpu > "$TMP/out.txt"
# The expected file has no trailing newline; sample prints one.
printf '%s\n' "$(cat "$DATA/expected_greedy_200.txt")" > "$TMP/expected.txt"
if ! diff "$TMP/expected.txt" "$TMP/out.txt"; then
  echo "FAIL: rlhf_eval sample output differs from expected_greedy_200.txt" >&2
  exit 1
fi

# A truncated model file must fail with a message naming the file and the tensor.
head -c 200000 "$DATA/stories260K.bin" > "$TMP/trunc.bin"
if "$BIN/rlhf_convert" from-llama2c --model "$TMP/trunc.bin" --tokenizer "$DATA/tok512.bin" \
     --out "$TMP/bad" 2> "$TMP/err.txt"; then
  echo "FAIL: truncated model file was accepted" >&2
  exit 1
fi
grep -q "trunc.bin" "$TMP/err.txt" && grep -q "'rms_att_weight'\|'wq'" "$TMP/err.txt" || {
  echo "FAIL: error does not name the file and tensor:" >&2; cat "$TMP/err.txt" >&2; exit 1; }
echo "PASS: stories260K CLI greedy text matches llama2.c"
