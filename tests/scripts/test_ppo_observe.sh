#!/usr/bin/env bash
# test_ppo_observe.sh — what a user watches in a PPO run: held-out evaluation (data.eval every
# train.eval_every iterations -> eval_* metrics) and run.dir/samples.jsonl (ppo.log_samples_every),
# both surviving a stop + resume from an earlier checkpoint without a repeated step.
#
#   bash tests/scripts/test_ppo_observe.sh BIN_DIR SOURCE_DIR     (ctest: script.test_ppo_observe)
#
# A tiny SFT (3 steps) and RM (2 steps), then PPO for 4 iterations of 8 prompts, eval every 2 on
# the 4 held-out prompts, samples every iteration; run 1 stops at step 3, run 2 resumes from the
# step-2 checkpoint. Checks: eval_* keys at steps 2 and 4 only, in summary.json too; the step-4
# evaluation equals `rlhf_eval reward` on the final checkpoint with the same seed, sampling and
# batch (an independent load of the three models); samples.jsonl holds 4 rows per step 1..4 with
# prompt, response, RM score, KL, length and the hidden score of the embedded task; the RM stage
# writes 2 held-out groups to its samples.jsonl. About 20 s
# on 2 cores. Needs jq.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" ppo_obs "$@"

source "$SRC/tests/scripts/tiny_models.sh"
tiny_sft_rm "$BIN" "$SRC" "$W"
PPO=("$BIN/ppo_train" --config "$SRC/configs/tiny/ppo.yaml" --set run.dir="$W/ppo" --set init="$W/sft"
     --set ppo.reward_model="$W/rm" --set data.train="$W/data/prompts.h5" --set data.eval="$W/data/prompts_eval.h5"
     --set data.pretrain="$W/data/pretrain.h5" --set data.pretrain_eval="$W/data/pretrain_eval.h5"
     --set train.max_steps=4 --set train.warmup_steps=0 --set train.global_batch_size=8
     --set train.micro_batch_size=8 --set ppo.minibatch_size=8 --set ppo.ppo_epochs=1
     --set ppo.max_new_tokens=16 --set ppo.ptx_batch_size=4 --set ppo.ptx_seq_len=16
     --set train.eval_every=2 --set train.eval_batches=1 --set ppo.log_samples_every=1
     --set ckpt.every=2 --set ckpt.keep_last=3 --set run.log_every=100)
"${PPO[@]}" --set train.stop_at_step=3 2>"$W/ppo1.log" || { tail -5 "$W/ppo1.log"; echo "FAIL ppo run 1"; exit 1; }
"${PPO[@]}" --resume-from "$W/ppo/checkpoints/step_00000002" 2>"$W/ppo2.log" \
  || { tail -5 "$W/ppo2.log"; echo "FAIL ppo resumed run"; exit 1; }
! grep -q "data.eval.*no effect" "$W/ppo1.log" && ok "no 'data.eval has no effect' warning" \
  || bad "ppo_train still says data.eval has no effect"
grep -q "# ppo eval at step 2 on 4 held-out prompts" "$W/ppo1.log" && ok "eval line in the log" || bad "no eval line"

M=$W/ppo/metrics.jsonl
[ "$(jq -c -s 'map(.step)' "$M")" = "[1,2,3,4]" ] && ok "metrics.jsonl steps 1..4 once" \
  || bad "metrics.jsonl steps $(jq -c -s 'map(.step)' "$M")"
for k in eval_reward_mean eval_kl_to_ref eval_length_mean eval_eos_rate eval_hidden_score eval_prompts; do
  at=$(jq -c -s "map(select(has(\"$k\")) | .step)" "$M")
  [ "$at" = "[2,4]" ] || bad "$k at steps $at, expected [2,4]"
  jq -e ".$k | numbers" "$W/ppo/summary.json" >/dev/null || bad "$k not in summary.json"
done
[ "$(jq -s '.[3].eval_prompts' "$M")" = 4 ] && ok "eval_* at steps 2 and 4 (4 prompts) and in summary.json" \
  || bad "eval_prompts $(jq -s '.[3].eval_prompts' "$M")"

# The step-4 evaluation == rlhf_eval reward on the final checkpoint (seed = run.seed, micro-batch 8).
"$BIN/rlhf_eval" reward --policy "$W/ppo" --reward-model "$W/rm" --reference "$W/sft" \
  --prompts "$W/data/prompts_eval.h5" --seed 1234 --micro-batch 8 --max-new-tokens 16 --temperature 1 \
  2>/dev/null | tail -n 1 > "$W/reward.json"
for pair in reward_mean:eval_reward_mean kl_to_ref:eval_kl_to_ref length_mean:eval_length_mean \
            eos_rate:eval_eos_rate hidden_score:eval_hidden_score; do
  a=$(jq ".${pair%%:*}" "$W/reward.json"); b=$(jq -s ".[3].${pair##*:}" "$M")
  awk -v a="$a" -v b="$b" 'BEGIN {d=a-b; if (d<0) d=-d; exit !(d <= 1e-5 + 1e-5*(a<0?-a:a))}' \
    || bad "${pair##*:} = $b in training, rlhf_eval reward says $a"
done
ok "step-4 eval == rlhf_eval reward ($(jq -c '{reward_mean, kl_to_ref, hidden_score}' "$W/reward.json"))"

S=$W/ppo/samples.jsonl
[ "$(jq -c -s 'map(.step)' "$S")" = "[1,1,1,1,2,2,2,2,3,3,3,3,4,4,4,4]" ] && ok "samples.jsonl: 4 rows per step 1..4" \
  || bad "samples.jsonl steps $(jq -c -s 'map(.step)' "$S")"
jq -e -s 'all(.[]; .stage == "ppo" and (.prompt | strings | length > 0) and (.response | strings)
          and (.rm_score | numbers) and (.reward | numbers) and (.kl | numbers) and (.length | numbers)
          and (.eos | type == "boolean") and (.hidden_score | numbers) and .length <= 16)' "$S" >/dev/null \
  && ok "samples rows have prompt, response, rm_score, reward, kl, length, eos, hidden_score" \
  || bad "samples rows incomplete: $(head -c 300 "$S")"
# RM's held-out examples at its one evaluation (step 2; finish() does not repeat them).
jq -e -s 'length == 2 and all(.[]; .stage == "rm" and .step == 2 and (.prompt | length > 0)
          and (.responses | length >= 2) and all(.responses[]; (.text | strings) and (.rank | numbers) and (.reward | numbers)))' \
  "$W/rm/samples.jsonl" >/dev/null && ok "rm samples.jsonl: 2 held-out groups with ranks and rewards" \
  || bad "rm samples.jsonl: $(head -c 300 "$W/rm/samples.jsonl" 2>/dev/null)"
[ $fail = 0 ] && echo PASS
exit $fail
