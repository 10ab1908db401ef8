#!/usr/bin/env bash
# Our Hugging Face tokenizer.json tokenizer (rlhf_prep encode/decode) against the reference, the
# `tokenizers` package (Tokenizer.from_file: tokenizer.json run exactly as written; see
# tests/hf/tokenizer_ref.py for why not transformers' AutoTokenizer), on ~6000 texts
# (tests/hf/tokenizer_ref.py corpus: tokenizers/cases.jsonl, 13 constructed non-English/chat
# texts, then real text: Open Assistant messages, hh-rlhf dialogues, tinyshakespeare paragraphs;
# multi-line, up to ~2000 chars), for
# ../shared/data/tokenizers/{qwen3,llama3,mistral}. Lines compared exactly, per tokenizer:
#   1. encode                      == encode(text, add_special_tokens=False)
#   2. encode --add-special-tokens == encode(text, add_special_tokens=True)
#   3. decode of (1)'s ids          == decode(ids, skip_special_tokens=True), as UTF-8 bytes
#   4. the tokenizer.json path form with JSON-string input on stdin gives (1) for cases.jsonl.
# Our tool gets the folder (tokenizer.json + tokenizer_config.json), the reference the file.
# The reference Python environment comes from launch/pyenv.sh (build/pyenv; pip-installs
# tokenizers etc. once). Skips (ctest skip, exit 77; a failure under CI=true: skip.sh) when ../shared/data or that environment
# is unavailable, unless RLHF_REQUIRE_DATA=1 (then it fails). RLHF_DATA overrides the data folder.
# Usage: test_hf_tokenizers.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=${1:?usage: $0 BIN_DIR SOURCE_DIR}
SRC=${2:?usage: $0 BIN_DIR SOURCE_DIR}
DATA=${RLHF_DATA:-$SRC/../shared/data}
source "$SRC/tests/scripts/skip.sh"
[ -d "$DATA/tokenizers" ] || skip "no test data folder $DATA/tokenizers"
PY=$(bash "$SRC/launch/pyenv.sh") || skip "no reference Python environment (launch/pyenv.sh failed)"
REF=("$PY" "$SRC/tests/hf/tokenizer_ref.py")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
t0=$(date +%s)

"${REF[@]}" corpus "$TMP/corpus.jsonl" --data "$DATA"
n_cases=$(wc -l < "$DATA/tokenizers/cases.jsonl")  # the corpus starts with cases.jsonl
head -n "$n_cases" "$TMP/corpus.jsonl" > "$TMP/cases.jsonl"

fail=0
# ours CMD...: run rlhf_prep; on failure show its stderr and record the failure.
ours() {
  "$BIN/rlhf_prep" "$@" 2> "$TMP/err" && return
  { echo "FAIL: rlhf_prep $*:"; tail -n 20 "$TMP/err"; } >&2  # stdout may be redirected
  fail=1; return 1
}
for t in qwen3 llama3 mistral; do
  D=$DATA/tokenizers/$t
  for mode in plain special; do
    flag=(); label="no special"
    [ $mode = special ] && { flag=(--add-special-tokens); label="add special"; }
    "${REF[@]}" encode "$D/tokenizer.json" "$TMP/corpus.jsonl" "$TMP/$t.$mode.ref" "${flag[@]}"
    ours encode --tokenizer "$D" "${flag[@]}" --in "$TMP/corpus.jsonl" --out "$TMP/$t.$mode.ours" \
      && { "${REF[@]}" compare "$TMP/$t.$mode.ref" "$TMP/$t.$mode.ours" "$TMP/corpus.jsonl" \
             --name "$t encode ($label)" || fail=1; }
  done
  if [ -f "$TMP/$t.plain.ours" ]; then
    ours decode --tokenizer "$D" --in "$TMP/$t.plain.ours" --out "$TMP/$t.dec" \
      && { "${REF[@]}" decode-check "$D/tokenizer.json" "$TMP/$t.plain.ours" "$TMP/$t.dec" \
             --name "$t decode" || fail=1; }
  fi
  # tokenizer.json path, bare JSON strings on stdin, ids on stdout.
  "$PY" -c 'import json,sys; [print(json.dumps(json.loads(l)["text"])) for l in sys.stdin]' \
    < "$TMP/cases.jsonl" > "$TMP/cases_str.jsonl"
  head -n "$n_cases" "$TMP/$t.plain.ref" > "$TMP/$t.cases.ref"
  ours encode --tokenizer "$D/tokenizer.json" < "$TMP/cases_str.jsonl" > "$TMP/$t.cases.ours" \
    && { "${REF[@]}" compare "$TMP/$t.cases.ref" "$TMP/$t.cases.ours" "$TMP/cases.jsonl" \
           --name "$t encode (tokenizer.json, stdin)" || fail=1; }
done

echo "($(wc -l < "$TMP/corpus.jsonl") texts, $(($(date +%s) - t0)) s)"
[ "$fail" = 0 ] || { echo "FAIL: our tokenizer.json encode/decode differ from Hugging Face tokenizers" >&2; exit 1; }
echo "PASS: qwen3, llama3, mistral encode/decode match Hugging Face tokenizers"
