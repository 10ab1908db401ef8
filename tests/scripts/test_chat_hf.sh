#!/usr/bin/env bash
# Our chat templates (`rlhf_prep chat-template`, src/common/chat) against Hugging Face itself:
# transformers' AutoTokenizer.from_pretrained(folder).apply_chat_template(..., tokenize=False)
# (its jinja2 environment, its bos/eos tokens) for the shipped templates of
# ../shared/data/tokenizers/{qwen3,llama3}, on the golden conversations (chat_cases.jsonl, both
# generation flags) and on every multi-message root->leaf conversation of the Open Assistant
# trees (oasst/en_100_tree.jsonl), with and without the generation prompt (tests/hf/chat_ref.py).
# Every line must be equal, byte for byte. The reference Python environment comes from
# launch/pyenv.sh. Skips (ctest skip, exit 77; a failure under CI=true: skip.sh) when ../shared/data or that environment is
# unavailable, unless RLHF_REQUIRE_DATA=1 (then it fails). RLHF_DATA overrides the data folder.
# Usage: test_chat_hf.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=${1:?usage: $0 BIN_DIR SOURCE_DIR}
SRC=${2:?usage: $0 BIN_DIR SOURCE_DIR}
DATA=${RLHF_DATA:-$SRC/../shared/data}
source "$SRC/tests/scripts/skip.sh"
[ -f "$DATA/oasst/en_100_tree.jsonl" ] && [ -d "$DATA/tokenizers" ] || skip "no test data in $DATA"
PY=$(bash "$SRC/launch/pyenv.sh") || skip "no reference Python environment (launch/pyenv.sh failed)"
REF=("$PY" "$SRC/tests/hf/chat_ref.py")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

"${REF[@]}" conversations --data "$DATA" "$TMP/in.jsonl"
fail=0
for t in qwen3 llama3; do
  D=$DATA/tokenizers/$t
  "${REF[@]}" render "$D" "$TMP/in.jsonl" "$TMP/$t.ref"
  if "$BIN/rlhf_prep" chat-template --tokenizer "$D" --in "$TMP/in.jsonl" --out "$TMP/$t.ours" \
       2> "$TMP/err"; then
    "${REF[@]}" compare "$TMP/$t.ref" "$TMP/$t.ours" --name "$t chat_template" || fail=1
  else
    echo "FAIL: rlhf_prep chat-template --tokenizer $D:"; tail -n 20 "$TMP/err"; fail=1
  fi
done
[ $fail = 0 ] && echo "test_chat_hf: PASS" || { echo "test_chat_hf: FAIL"; exit 1; }
