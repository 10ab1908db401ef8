#!/usr/bin/env bash
# End-to-end on real conversations (ctest label e2e): launch/pipeline.sh on configs/oasst (Open
# Assistant threads in the hh chat template, GPT-2 tokenizer, a small model), then:
#   - every stage completes and the evaluation report is written;
#   - the datasets are conversations (chat_template hh, SFT loss on assistant turns only);
#   - the evaluation sets are held out: no SFT eval conversation, PPO eval prompt or ptx eval
#     text occurs in the corresponding training set;
#   - the template travels: `rlhf_eval sample --chat` on the PPO checkpoint renders with the
#     template stored in it (GPT-2 has none of its own), and a dataset rendered with another
#     template (chatml) or none is refused by rm_train with both named.
# Usage: test_e2e_oasst.sh BIN_DIR SOURCE_DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" e2e_oasst "$@"
RUN=$W
command -v jq >/dev/null || { echo "jq missing (launch/setup.sh installs it)"; exit 1; }
SHARED=${RLHF_SHARED_DATA:-$SRC/../shared/data}
[ -f "$SHARED/oasst/en_100_tree.jsonl" ] || skip "no shared data in $SHARED"

t0=$(date +%s)
BIN=$BIN bash "$SRC/launch/pipeline.sh" "$SRC/configs/oasst" "$RUN" > "$RUN/pipeline.log" 2>&1 || {
  tail -n 60 "$RUN/pipeline.log"; echo "FAIL: pipeline failed"; exit 1; }
echo "pipeline time: $(( $(date +%s) - t0 ))s"
for s in sft rm ppo; do
  if jq -e '.complete == true' "$RUN/$s/summary.json" >/dev/null; then ok "$s complete"; else bad "$s incomplete"; fi
done
jq -e '.rm_heldout_pairs > 0 and .eval_prompts == 20' "$RUN/eval.json" >/dev/null && ok "eval report" || bad "eval report: $(cat "$RUN/eval.json")"

D=$RUN/data
P=$BIN/rlhf_prep
for f in sft sft_eval ranked ranked_eval prompts prompts_eval; do
  "$P" inspect "$D/$f.h5" | grep -q '^chat_template: hh (end_of_turn none' && ok "$f.h5 in the hh template" \
    || bad "$f.h5 is not an hh-template dataset"
done
"$P" inspect "$D/sft.h5" | grep -q '^target tokens: ' && ok "sft.h5 has target spans" || bad "sft.h5 has no target spans"

# Held out: the decoded rows of each eval set never occur in its training set.
rows() { "$P" inspect "$1" --rows 1000000 | grep '^{' | jq -c "$2" | sort -u; }
overlap() { comm -12 <(rows "$1" "$3") <(rows "$2" "$3") | wc -l; }
n=$(overlap "$D/sft.h5" "$D/sft_eval.h5" '.prompt + .response')
[ "$n" -eq 0 ] && ok "sft_eval held out from sft" || bad "$n SFT eval conversations are in the training set"
n=$(overlap "$D/sft.h5" "$D/prompts_eval.h5" '.prompt')
[ "$n" -eq 0 ] && ok "prompts_eval held out from the SFT conversations" || bad "$n eval prompts open a training conversation"
n=$(overlap "$D/prompts.h5" "$D/prompts_eval.h5" '.prompt')
[ "$n" -eq 0 ] && ok "prompts_eval held out from prompts" || bad "$n eval prompts are PPO training prompts"
if cmp -s "$D/pretrain.txt" "$D/pretrain_eval.txt"; then bad "ptx eval text = training text"; else ok "ptx eval text differs"; fi
n=$(comm -12 <(sort -u "$D/pretrain.txt") <(sort -u "$D/pretrain_eval.txt") | grep -c '[a-z]' || true)
echo "     (ptx eval lines also in training: $n — Shakespeare repeats short lines)"

# The template travels with the checkpoint.
if "$BIN/rlhf_eval" sample --checkpoint "$RUN/ppo" --chat --prompt "How do I boil an egg?" \
    --max-new-tokens 8 --seed 3 > "$RUN/sample.txt" 2> "$RUN/sample.err"; then
  grep -q "prompt tokens" "$RUN/sample.err" && ok "sample --chat with the checkpoint's template" || bad "sample --chat log"
else
  cat "$RUN/sample.err"; bad "sample --chat failed"
fi
"$P" ranked --format oasst-tree --chat-template chatml --tokenizer "$SHARED/gpt2" \
  --in "$D/trees_train.jsonl" --out "$RUN/ranked_chatml.h5" 2>/dev/null
if "$BIN/rm_train" --config "$SRC/configs/oasst/rm.yaml" --set run.dir="$RUN/rm_bad" --set init="$RUN/sft" \
    --set data.train="$RUN/ranked_chatml.h5" > "$RUN/bad.log" 2>&1; then
  bad "rm_train accepted a chatml dataset on an hh-trained checkpoint"
elif grep -q "chat template 'chatml'" "$RUN/bad.log" && grep -q "'hh'" "$RUN/bad.log"; then
  ok "template mismatch refused: $(grep -m1 -o "the dataset was rendered.*" "$RUN/bad.log" | cut -c1-120)"
else
  cat "$RUN/bad.log" | tail -5; bad "template mismatch error does not name both templates"
fi
"$P" ranked --format hh-rlhf --tokenizer "$SHARED/gpt2" --in "$SHARED/hh-rlhf/harmless-base-test.jsonl.gz" \
  --out "$RUN/ranked_plain.h5" 2>/dev/null
if "$BIN/rm_train" --config "$SRC/configs/oasst/rm.yaml" --set run.dir="$RUN/rm_bad2" --set init="$RUN/sft" \
    --set data.train="$RUN/ranked_plain.h5" > "$RUN/bad2.log" 2>&1; then
  bad "rm_train accepted plain rows on an hh-trained checkpoint"
elif grep -q "holds plain rows" "$RUN/bad2.log"; then ok "plain rows refused on a chat checkpoint"
else tail -5 "$RUN/bad2.log"; bad "plain-rows error"; fi
exit $fail
