#!/usr/bin/env bash
# test_generate.sh — `rlhf_eval generate`: batch generation to JSONL, data-parallel.
#
#   bash tests/scripts/test_generate.sh BIN_DIR SOURCE_DIR         (ctest: script.test_generate)
#
# On a tiny SFT checkpoint of the embedded task (3 steps): JSONL prompts (strings and
# {"prompt": ...}) with --n 2 on 1 rank and under mpirun -np 2 give byte-identical files (each
# item has its own seeded generator; same --micro-batch, so the same batches); every line has
# prompt, response, tokens, finish_reason ("length" exactly when max-new-tokens tokens and no stop);
# greedy (--temperature 0) responses equal `rlhf_eval sample` on the same prompt (an independent
# single-prompt path); a prompts .h5 gives one line per row and sample; a malformed JSONL line is
# an error naming file:line; --out naming the prompts file (by a link) is refused. About 15 s on 2
# cores. Needs jq.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" generate "$@"

"$BIN/rlhf_prep" synth --out "$W/data" --n-sft 64 --n-sft-eval 8 --n-ranked 8 --n-ranked-eval 4 \
  --n-prompts 8 --n-prompts-eval 5 --pretrain-bytes 4000 --pretrain-eval-bytes 1000 2>/dev/null
"$BIN/sft_train" --config "$SRC/configs/tiny/sft.yaml" --set model.n_layer=1 --set model.d_model=32 \
  --set model.n_head=2 --set model.n_kv_head=2 --set model.d_ff=64 --set run.dir="$W/sft" \
  --set data.train="$W/data/sft.h5" --set data.eval= --set train.max_steps=3 --set train.global_batch_size=8 \
  --set train.micro_batch_size=8 --set ckpt.every=0 2>"$W/log"
printf '%s\n' '"list 3 fruits:"' '{"prompt": "list 2 colors:", "id": 7}' '"name 4 animals:"' > "$W/p.jsonl"
G=("$BIN/rlhf_eval" generate --checkpoint "$W/sft" --max-new-tokens 12 --micro-batch 2)

"${G[@]}" --prompts "$W/p.jsonl" --out "$W/one.jsonl" --n 2 --seed 7 > "$W/one.out" 2>>"$W/log"
mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 \
  "${G[@]}" --prompts "$W/p.jsonl" --out "$W/two.jsonl" --n 2 --seed 7 > "$W/two.out" 2>>"$W/log"
[ "$(wc -l < "$W/one.jsonl")" = 6 ] && ok "3 prompts x --n 2 = 6 lines" || bad "$(wc -l < "$W/one.jsonl") lines"
cmp -s "$W/one.jsonl" "$W/two.jsonl" && ok "1 rank and 2 ranks write identical files" \
  || bad "1 rank and 2 ranks differ: $(diff "$W/one.jsonl" "$W/two.jsonl" | head -4)"
[ "$(tail -n 1 "$W/two.out" | jq '.samples, .ranks' | paste -sd' ')" = "6 2" ] && ok "summary line" \
  || bad "summary: $(tail -n 1 "$W/two.out")"
jq -e -s 'map(.index) == [0,1,2,3,4,5] and map(.prompt_index) == [0,0,1,1,2,2] and map(.sample) == [0,1,0,1,0,1]
          and .[2].prompt == "list 2 colors:"
          and all(.[]; (.response | strings) and (.tokens | arrays) and (.tokens | length) <= 12
                  and ((.finish_reason == "length") == ((.tokens | length) == 12)
                       or .finish_reason == "stop"))
          and (map(.finish_reason) - ["stop", "length"] == [])' "$W/one.jsonl" >/dev/null \
  && ok "fields: index, prompt_index, sample, prompt, response, tokens, finish_reason" \
  || bad "fields: $(head -2 "$W/one.jsonl")"
# A "stop" row has fewer than 12 tokens (the stop token is not in .tokens): consistent lengths.
jq -e -s 'all(.[]; .finish_reason != "stop" or (.tokens | length) < 12)' "$W/one.jsonl" >/dev/null \
  || bad "a stop row with 12 tokens"

"${G[@]}" --prompts "$W/p.jsonl" --out "$W/greedy.jsonl" --temperature 0 2>>"$W/log" >/dev/null
# Compared as bytes: prompt + the response's token ids (byte tokenizer: id = byte value) against
# sample's raw stdout (an untrained model's text need not be UTF-8; generate's JSON text has
# U+FFFD there, its "tokens" are exact).
for i in 0 1 2; do
  jq -c -s ".[$i]" "$W/greedy.jsonl" > "$W/g$i.json"
  "$BIN/rlhf_eval" sample --checkpoint "$W/sft" --prompt "$(jq -r .prompt "$W/g$i.json")" --max-new-tokens 12 \
    --temperature 0 > "$W/s$i.txt" 2>/dev/null
  python3 - "$W/g$i.json" "$W/s$i.txt" <<'EOF2' || bad "greedy row $i differs from rlhf_eval sample"
import json, sys
g = json.load(open(sys.argv[1]))
want = g["prompt"].encode() + bytes(t for t in g["tokens"] if t < 256)
got = open(sys.argv[2], "rb").read()
got = got[:-1] if got.endswith(b"\n") else got
sys.exit(0 if got == want else f"generate {want!r} != sample {got!r}")
EOF2
done
[ $fail = 0 ] && ok "greedy responses == rlhf_eval sample"

"${G[@]}" --prompts "$W/data/prompts_eval.h5" --out "$W/h5.jsonl" --n 2 2>>"$W/log" >/dev/null
[ "$(wc -l < "$W/h5.jsonl")" = 10 ] && jq -e -s 'all(.[]; .prompt | length > 0)' "$W/h5.jsonl" >/dev/null \
  && ok "prompts .h5: 5 rows x 2 = 10 lines, prompts decoded" || bad "h5: $(wc -l < "$W/h5.jsonl") lines"

printf '"ok"\n{"text": 1}\n' > "$W/bad.jsonl"
if "${G[@]}" --prompts "$W/bad.jsonl" --out "$W/bad.out" > /dev/null 2> "$W/bad.err"; then bad "bad JSONL accepted"
elif grep -q "bad.jsonl:2" "$W/bad.err"; then ok "bad JSONL: $(grep -o 'bad.jsonl:2[^"]*' "$W/bad.err" | head -1)"
else bad "bad JSONL error does not name file:line: $(tail -2 "$W/bad.err")"; fi
[ ! -e "$W/bad.out" ] || bad "an output file was written for bad input"

# --out naming the prompts file (here through a link) is refused before anything is written.
ln -s p.jsonl "$W/same.jsonl"; before=$(md5sum < "$W/p.jsonl")
if "${G[@]}" --prompts "$W/p.jsonl" --out "$W/same.jsonl" > /dev/null 2> "$W/same.err"; then bad "--out = the prompts file accepted"
elif grep -q "is the prompts file" "$W/same.err" && [ "$(md5sum < "$W/p.jsonl")" = "$before" ]; then
  ok "--out = the prompts file (a link to it) is refused, the prompts untouched"
else bad "--out = prompts: $(tail -2 "$W/same.err")"; fi
[ $fail = 0 ] && echo PASS
exit $fail
