#!/usr/bin/env bash
# End-to-end (ctest label e2e): the whole pipeline on the embedded task, then the same PPO stage
# with ptx off, on held-out data (docs/TASK.md).
# Asserted (the issue's targets; measured values in docs/TASK.md "Status"):
#   - RM pairwise accuracy on held-out comparisons >= RM_TARGET (0.85; 0.881 measured)
#   - PPO's hidden score (the scorer the RM never sees) >= SFT's + HIDDEN_MARGIN (0.10; +0.162
#     measured). The hidden score of one sample has a standard deviation of ~0.5, so a mean over
#     the 200 held-out prompts has a standard error of ~0.035 and the difference of two such means
#     ~0.05: 0.10 is two standard errors, a gain that sampling noise alone produces rarely.
#   - PPO's mean reward under the RM above SFT's
#   - KL(PPO || SFT) per sequence below ppo.kl_target of configs/tiny/ppo.yaml
#   - with ptx on, the pretraining loss rises less than with ptx off (same seed)
#   - GRPO (configs/tiny/grpo.yaml, rule reward, no critic) from the same SFT: hidden score >= SFT's
#     + HIDDEN_MARGIN on the held-out prompts (+0.133 and +0.144 on two seeds since issue 31; docs/TASK.md)
#   - DPO (configs/tiny/dpo.yaml, here 200 steps at lr 2e-5) from the same SFT on the ranked data:
#     the same (+0.164 measured; dpo.yaml's 400 steps at 1e-5: +0.179)
#   - ppo eval_* metrics at steps 20 and 40, 16 rollouts in ppo/samples.jsonl, plots/{sft,rm,ppo,overview}.png
#   - the pipeline (everything after the build) takes <= 600 s (538 s measured before the PPO
#     held-out evaluation and the plots were added)
# Usage: test_e2e.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=$1; SRC=$2
RM_TARGET=0.85
HIDDEN_MARGIN=0.10
command -v jq >/dev/null || { echo "jq missing (launch/setup.sh installs it)"; exit 1; }
RUN=$(mktemp -d /tmp/rlhf_e2e.XXXXXX)
trap 'rm -rf "$RUN"' EXIT
t0=$(date +%s)
BIN=$BIN bash "$SRC/launch/pipeline.sh" "$SRC/configs/tiny" "$RUN" > "$RUN/pipeline.log" 2>&1 || {
  tail -n 60 "$RUN/pipeline.log"; echo "FAIL: pipeline failed"; exit 1; }
elapsed=$(( $(date +%s) - t0 ))
E=$RUN/eval.json
cat "$E"
echo "pipeline time: ${elapsed}s"
# Same PPO with ptx off (same seed) for the ptx comparison.
"$BIN/ppo_train" --config "$SRC/configs/tiny/ppo.yaml" --set run.dir="$RUN/ppo_noptx" --set init="$RUN/sft" \
  --set ppo.reward_model="$RUN/rm" --set ppo.ptx_coef=0 --set data.train="$RUN/data/prompts.h5" \
  --set data.eval="$RUN/data/prompts_eval.h5" \
  --set data.pretrain="$RUN/data/pretrain.h5" --set data.pretrain_eval="$RUN/data/pretrain_eval.h5" \
  > "$RUN/noptx.log" 2>&1 || { tail -n 40 "$RUN/noptx.log"; echo "FAIL: ppo without ptx failed"; exit 1; }
rise_on=$(jq '.ptx_eval_loss_rise' "$RUN/ppo/summary.json")
rise_off=$(jq '.ptx_eval_loss_rise' "$RUN/ppo_noptx/summary.json")
kl_target=$(grep -E '^\s*kl_target:' "$SRC/configs/tiny/ppo.yaml" | awk '{print $2}')
echo "ptx loss rise: with ptx $rise_on, without $rise_off; kl bound $kl_target"

# GRPO (configs/tiny/grpo.yaml: critic-free, the hidden scorer as a rule reward, no RM) from the
# same SFT with PPO's rollout budget, compared with SFT on the held-out prompts.
"$BIN/ppo_train" --config "$SRC/configs/tiny/grpo.yaml" --set run.dir="$RUN/grpo" --set init="$RUN/sft" \
  --set data.train="$RUN/data/prompts.h5" --set data.pretrain="$RUN/data/pretrain.h5" \
  --set data.pretrain_eval="$RUN/data/pretrain_eval.h5" > "$RUN/grpo.log" 2>&1 \
  || { tail -n 40 "$RUN/grpo.log"; echo "FAIL: grpo failed"; exit 1; }
"$BIN/rlhf_eval" compare --a "$RUN/grpo" --b "$RUN/sft" --reward-model "$RUN/rm" \
  --prompts "$RUN/data/prompts_eval.h5" 2>/dev/null | tail -n 1 > "$RUN/eval_grpo.json"
cat "$RUN/eval_grpo.json"
# DPO (configs/tiny/dpo.yaml) from the same SFT on the same ranked data, compared the same way;
# here in half the steps at twice the learning rate (200 x 2e-5 instead of 400 x 1e-5: the
# suite's time on 2 cores; both measured in docs/TASK.md).
"$BIN/dpo_train" --config "$SRC/configs/tiny/dpo.yaml" --set run.dir="$RUN/dpo" --set init="$RUN/sft" \
  --set train.max_steps=200 --set train.learning_rate=2e-5 --set train.eval_every=0 --set ckpt.every=0 \
  --set data.train="$RUN/data/ranked.h5" --set data.eval="$RUN/data/ranked_eval.h5" > "$RUN/dpo.log" 2>&1 \
  || { tail -n 40 "$RUN/dpo.log"; echo "FAIL: dpo failed"; exit 1; }
"$BIN/rlhf_eval" compare --a "$RUN/dpo" --b "$RUN/sft" --reward-model "$RUN/rm" --max-new-tokens 40 \
  --prompts "$RUN/data/prompts_eval.h5" 2>/dev/null | tail -n 1 > "$RUN/eval_dpo.json"
cat "$RUN/eval_dpo.json"

fail=0
check() {  # check NAME JQ_EXPR
  if jq -e "$2" "$E" >/dev/null; then echo "ok   $1"; else echo "FAIL $1 ($2)"; fail=1; fi
}
check "rm held-out accuracy >= $RM_TARGET" ".rm_heldout_accuracy >= $RM_TARGET"
check "ppo hidden score >= sft hidden score + $HIDDEN_MARGIN" ".ppo_hidden_score >= .sft_hidden_score + $HIDDEN_MARGIN"
check "ppo KL to sft < $kl_target" ".ppo_kl_to_sft < $kl_target"
check "ppo reward > sft reward" '.ppo_reward_mean > .sft_reward_mean'
if jq -e ".a_hidden_score >= .b_hidden_score + $HIDDEN_MARGIN" "$RUN/eval_grpo.json" >/dev/null; then
  echo "ok   grpo hidden score >= sft hidden score + $HIDDEN_MARGIN ($(jq -c '[.a_hidden_score, .b_hidden_score]' "$RUN/eval_grpo.json"))"
else echo "FAIL grpo hidden score: $(cat "$RUN/eval_grpo.json")"; fail=1; fi
if jq -e ".a_hidden_score >= .b_hidden_score + $HIDDEN_MARGIN" "$RUN/eval_dpo.json" >/dev/null; then
  echo "ok   dpo hidden score >= sft hidden score + $HIDDEN_MARGIN ($(jq -c '[.a_hidden_score, .b_hidden_score]' "$RUN/eval_dpo.json"))"
else echo "FAIL dpo hidden score: $(cat "$RUN/eval_dpo.json")"; fail=1; fi
if jq -n -e "$rise_on < $rise_off" >/dev/null; then echo "ok   ptx limits the pretraining-loss rise"; else echo "FAIL ptx: $rise_on !< $rise_off"; fail=1; fi
# What a user watches (issue 18): eval_* metrics at PPO's eval_every (20), samples.jsonl
# (ppo.log_samples_every 10: 4 rollouts at steps 10, 20, 30, 40), plots of every stage.
at=$(jq -c -s 'map(select(has("eval_reward_mean") and has("eval_kl_to_ref") and has("eval_hidden_score")) | .step)' "$RUN/ppo/metrics.jsonl")
if [ "$at" = "[20,40]" ]; then echo "ok   ppo eval_* metrics at steps $at"; else echo "FAIL ppo eval_* at steps $at"; fail=1; fi
n=$(jq -s 'map(select(.stage == "ppo" and (.hidden_score | numbers))) | length' "$RUN/ppo/samples.jsonl" 2>/dev/null || echo 0)
if [ "$n" = 16 ]; then echo "ok   ppo/samples.jsonl: 16 rollouts"; else echo "FAIL ppo/samples.jsonl: $n rollouts, expected 16"; fail=1; fi
pngs=$(ls "$RUN"/plots/{sft,rm,ppo,overview}.png 2>/dev/null | wc -l)
if [ "$pngs" = 4 ]; then echo "ok   plots: $(cd "$RUN/plots" && ls *.png | paste -sd' ')"; else echo "FAIL plots: $pngs of 4 PNGs"; fail=1; fi
if [ "$elapsed" -le 600 ]; then echo "ok   pipeline ${elapsed}s <= 600s"; else echo "FAIL pipeline ${elapsed}s > 600s"; fail=1; fi
exit $fail
