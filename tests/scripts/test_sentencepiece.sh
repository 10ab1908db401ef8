#!/usr/bin/env bash
# Our SentencePiece tokenizer (rlhf_prep encode/decode --tokenizer X.model) against the reference
# command-line tools of the Debian package `sentencepiece` (spm_train, spm_encode, spm_decode).
# Two tiny models are trained here on the first 300 KB of tinyshakespeare (about a second):
#   bpe      BPE, vocab 400, Llama 2 style: byte_fallback (<0xNN> pieces), identity normalization,
#            whitespace runs kept, digits split;
#   unigram  unigram, vocab 400, spm_train's defaults: nmt_nfkc normalization (precompiled
#            charsmap), whitespace runs collapsed, no byte fallback (unseen characters -> <unk>).
# Input: the first 2000 lines of tinyshakespeare plus tricky strings (accents, NFD, NFKC-sensitive
# characters, CJK, emoji, whitespace runs, leading/trailing spaces, an empty line, a literal "▁",
# "<s>" and "<0x41>" as plain text). spm_encode reads one sentence per line: single-line texts only.
# Checks, per model, lines compared exactly:
#   1. encode                       == spm_encode --output_format=id (no BOS/EOS)
#   2. encode --add-special-tokens   == spm_encode --output_format=id --extra_options=bos
#   3. decode of (2)'s ids           == spm_decode --input_format=id (control ids dropped, <unk>
#                                      as spm_decode prints it)
#   4. the folder form (a folder holding tokenizer.model) and JSON-string input on stdin give (1).
# Skips (ctest skip, exit 77; a failure under CI=true: skip.sh) when spm_train is not installed or ../shared/data is absent,
# unless RLHF_REQUIRE_DATA=1 (then it fails).
# Usage: test_sentencepiece.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=${1:?usage: $0 BIN_DIR SOURCE_DIR}
SRC=${2:?usage: $0 BIN_DIR SOURCE_DIR}
TEXT=${RLHF_DATA:-$SRC/../shared/data}/corpus/tinyshakespeare.txt
source "$SRC/tests/scripts/skip.sh"
for tool in spm_train spm_encode spm_decode; do
  command -v $tool >/dev/null || skip "'$tool' is not installed (Debian package sentencepiece)"
done
command -v jq >/dev/null || { echo "FAIL: jq is not installed" >&2; exit 1; }
[ -f "$TEXT" ] || skip "no test data file $TEXT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
t0=$(date +%s)

head -c 300000 "$TEXT" > "$TMP/train.txt"
{ head -n 2000 "$TEXT"
  cat <<'EOF'
Hello, world!
  leading spaces
trailing spaces   
multiple   spaces	and	tabs

naïve café résumé — “quoted” ‘text’
é vs é (NFD vs NFC)
ﬁ ligature, ｆｕｌｌｗｉｄｔｈ １２３, ℌ, ½, Ⅻ
你好，世界！ 日本語のテキストです。
Привет, как дела?
emoji: 😀🎉👍🏽 👨‍👩‍👧
1234567890 and 3.14159 and 1,000,000
a literal ▁ meta symbol, <s> and </s> and <unk> and <0x41> as text
def f(x):    return x ** 2  # square
EOF
} > "$TMP/in.txt"
jq -R . < "$TMP/in.txt" > "$TMP/in.jsonl"   # one JSON string per line: our input
n=$(wc -l < "$TMP/in.txt")

spm_train --input="$TMP/train.txt" --model_prefix="$TMP/bpe" --vocab_size=400 --model_type=bpe \
  --character_coverage=1.0 --byte_fallback=true --normalization_rule_name=identity \
  --remove_extra_whitespaces=false --split_digits=true --minloglevel=2 >/dev/null 2>&1
spm_train --input="$TMP/train.txt" --model_prefix="$TMP/unigram" --vocab_size=400 \
  --model_type=unigram --character_coverage=1.0 --minloglevel=2 >/dev/null 2>&1

# spm's "1 2 3" lines -> "[1,2,3]".
ids_json() { sed -e 's/ /,/g' -e 's/^/[/' -e 's/$/]/'; }
fail=0
# check NAME EXPECTED OURS: OURS (normalised with jq -c) against EXPECTED, line by line; prints the
# first differing lines and "NAME: K/N lines equal".
check() {
  local name=$1 exp=$2 got=$3.c eq total
  jq -c . "$3" > "$got" || { echo "FAIL: $name: $3 is not JSON lines"; fail=1; return; }
  total=$(wc -l < "$exp")
  eq=$(paste -d '\t' "$exp" "$got" | awk -F'\t' '$1"" == $2""' | wc -l)
  if [ "$(wc -l < "$got")" != "$total" ] || [ "$eq" != "$total" ]; then
    echo "FAIL: $name: differs from the reference (<: expected, >: ours; input line numbers):"
    diff <(nl -ba "$exp") <(nl -ba "$got") | grep '^[<>]' | head -n 12 || true
    fail=1
  fi
  echo "$name: $eq/$total lines equal"
}
# ours CMD... : run rlhf_prep; on failure show its stderr and record the failure.
ours() {
  "$BIN/rlhf_prep" "$@" 2> "$TMP/err" && return
  { echo "FAIL: rlhf_prep $*:"; tail -n 20 "$TMP/err"; } >&2  # stdout may be redirected
  fail=1; return 1
}

for m in bpe unigram; do
  M=$TMP/$m.model
  spm_encode --model="$M" --output_format=id < "$TMP/in.txt" | ids_json > "$TMP/$m.ref"
  spm_encode --model="$M" --output_format=id --extra_options=bos < "$TMP/in.txt" | ids_json > "$TMP/$m.ref_bos"
  spm_decode --model="$M" --input_format=id < <(tr -d '[]' < "$TMP/$m.ref_bos" | tr ',' ' ') \
    | jq -R . | jq -c . > "$TMP/$m.ref_dec"

  ours encode --tokenizer "$M" --in "$TMP/in.jsonl" --out "$TMP/$m.out" \
    && check "$m encode" "$TMP/$m.ref" "$TMP/$m.out"
  ours encode --tokenizer "$M" --add-special-tokens --in "$TMP/in.jsonl" --out "$TMP/$m.out_bos" \
    && check "$m encode --add-special-tokens" "$TMP/$m.ref_bos" "$TMP/$m.out_bos"
  ours decode --tokenizer "$M" --in "$TMP/$m.ref_bos" --out "$TMP/$m.dec" \
    && check "$m decode" "$TMP/$m.ref_dec" "$TMP/$m.dec"
  mkdir -p "$TMP/$m.dir" && cp "$M" "$TMP/$m.dir/tokenizer.model"
  ours encode --tokenizer "$TMP/$m.dir" < "$TMP/in.jsonl" > "$TMP/$m.out_dir" \
    && check "$m encode (folder, stdin)" "$TMP/$m.ref" "$TMP/$m.out_dir"
done

echo "($n input lines, $(($(date +%s) - t0)) s)"
[ "$fail" = 0 ] || { echo "FAIL: SentencePiece encode/decode differ from spm_encode/spm_decode" >&2; exit 1; }
echo "PASS: SentencePiece encode/decode match spm_encode/spm_decode (bpe and unigram models)"
