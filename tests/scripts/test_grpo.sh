#!/usr/bin/env bash
# test_grpo.sh — critic-free PPO (ppo.advantage, ppo.samples_per_prompt; src/ppo/critic_free.h)
# end to end on the embedded task.
#
#   bash tests/scripts/test_grpo.sh BIN_DIR SOURCE_DIR     (ctest: script.test_grpo)
#
# A tiny SFT (3 steps) and RM (2 steps), then GRPO with the rule reward (ppo.reward: rule,
# synth_hidden: no reward model loaded), 4 responses per prompt, 4 prompts per iteration, 4
# iterations. Checks: it runs; no critic.h5 in any checkpoint; a run stopped at step 2 and resumed
# ends with the weights of the uninterrupted run (max |dw| = 0); the logged group advantages are
# sane: at step 1 (policy = reference, KL 0, so A = Â from the scores alone) adv_seq_mean = 0 up to
# round-off (every group is centred) and adv_abs_max <= (n-1)/sqrt(n) = 1.5 (the largest GRPO |Â|
# for n = 4: one score against 3 equal ones, std with n - 1); later steps add −β·(KL to go) per
# token; some adv_abs_mean > 0.1 (not all groups tied), groups_tied in [0, 1], value_loss 0; the logged samples'
# raw score is their hidden score (the rule is what scored them); rloo (with the RM) and
# reinforce_pp run one iteration without a critic; grpo with ppo.samples_per_prompt: 1 and an
# unknown ppo.reward_rule fail naming the key. The estimator lists only actor + reference.
# ppo.kl_in_loss with k3: a kl_loss term > 0 once the policy moved, none without the key.
# ppo.reward: command (a jq program scoring each JSONL row): the logged scores are the program's;
# a program that answers garbage at iteration 3 stops the run with an error naming the key and
# line, after a checkpoint of the 2 completed steps, and the resumed run ends equal to the
# uninterrupted one; a program that hangs is killed at ppo.reward_timeout_s. data.eval with the
# rule reward: eval_reward_mean = eval_hidden_score; with the command: the program's mean on the
# held-out rows, and a failed held-out scoring is skipped with a warning. About 70 s on 2 cores.
# Needs jq.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" grpo "$@"

source "$SRC/tests/scripts/tiny_models.sh"
tiny_sft_rm "$BIN" "$SRC" "$W"
ppo() { "$BIN/ppo_train" --config "$SRC/configs/tiny/ppo.yaml" --set init="$W/sft" \
     --set ppo.reward_model="$W/rm" --set data.train="$W/data/prompts.h5" --set data.eval= \
     --set data.pretrain= --set data.pretrain_eval= --set ppo.ptx_coef=0 \
     --set train.max_steps=4 --set train.warmup_steps=0 --set train.global_batch_size=4 \
     --set train.micro_batch_size=4 --set ppo.minibatch_size=4 --set ppo.ppo_epochs=2 \
     --set ppo.max_new_tokens=16 --set ppo.log_samples_every=0 --set run.log_every=100 \
     --set ckpt.every=2 --set ckpt.keep_last=3 --set ppo.samples_per_prompt=4 "$@"; }
ck() { echo "$1/checkpoints/$(cat "$1/checkpoints/latest")"; }

RULE=(--set ppo.reward=rule --set ppo.reward_model=)
# The estimator (--dry-run, and the start-up memory check) counts only the models that exist:
# GRPO with a rule reward has an actor and its reference, no critic and no reward model.
roles=$(ppo --set run.dir="$W/dry" --set ppo.advantage=grpo "${RULE[@]}" --dry-run 2>&1 | sed -n '/^# models/,/^# total/p')
grep -q "actor" <<<"$roles" && grep -q "reference" <<<"$roles" && ! grep -Eq "critic|reward" <<<"$roles" \
  && ok "dry run: actor + reference only" || bad "dry run models: $roles"
ppo --set run.dir="$W/full" --set ppo.advantage=grpo "${RULE[@]}" --set ppo.log_samples_every=1 2>"$W/full.log" \
  || { tail -5 "$W/full.log"; echo "FAIL grpo run"; exit 1; }
ok "grpo: 4 iterations of 4 prompts x 4 responses"
n_critic=$(find "$W/full" -name critic.h5 | wc -l)
[ "$n_critic" = 0 ] && [ -f "$(ck "$W/full")/model.h5" ] && ok "no critic.h5 (model.h5 saved)" \
  || bad "$n_critic critic.h5 files with ppo.advantage: grpo"

ppo --set run.dir="$W/cut" --set ppo.advantage=grpo "${RULE[@]}" --set train.stop_at_step=2 2>"$W/cut1.log" \
  || { tail -5 "$W/cut1.log"; echo "FAIL grpo run stopped at 2"; exit 1; }
ppo --set run.dir="$W/cut" --set ppo.advantage=grpo "${RULE[@]}" --resume 2>"$W/cut2.log" \
  || { tail -5 "$W/cut2.log"; echo "FAIL grpo resumed run"; exit 1; }
grep -q "resuming from" "$W/cut2.log" || bad "the second run did not say it resumed"
d=$("$BIN/rlhf_eval" weights-diff --a "$(ck "$W/full")/model.h5" --b "$(ck "$W/cut")/model.h5" 2>/dev/null | tail -n 1 | jq '.max_abs_diff')
awk -v d="$d" 'BEGIN {exit !(d == 0)}' && ok "stop at 2 + resume = uninterrupted (max |dw| = $d)" \
  || bad "resume not exact: max |dw| = $d"

M=$W/full/metrics.jsonl
[ "$(jq -c -s 'map(.step)' "$M")" = "[1,2,3,4]" ] || bad "metrics steps $(jq -c -s 'map(.step)' "$M")"
# GRPO with n = 4: at step 1 (KL 0) every group sums to 0, |Â| <= (n-1)/sqrt(n) = 1.5 (one outlier
# against 3 equal); the KL to go is added per token from then on (critic_free.h).
jq -e -s '(.[0].adv_seq_mean | fabs) < 1e-5 and .[0].adv_abs_max <= 1.5 + 1e-5
          and all(.[]; .adv_abs_mean >= 0 and (.adv_seq_mean | isnan | not)
          and .groups_tied >= 0 and .groups_tied <= 1 and .value_loss == 0 and .critic_grad_norm == 0)' "$M" >/dev/null \
  && jq -e -s 'any(.[]; .adv_abs_mean > 0.1)' "$M" >/dev/null \
  && ok "group advantages sane: $(jq -c -s 'map({adv_seq_mean, adv_abs_mean, adv_abs_max, groups_tied})[0]' "$M")" \
  || bad "group advantages: $(jq -c -s 'map({adv_seq_mean, adv_abs_mean, adv_abs_max, groups_tied, value_loss})' "$M")"

jq -e -s 'length == 16 and all(.[]; (.rm_score - .hidden_score | fabs) < 1e-6)' "$W/full/samples.jsonl" >/dev/null \
  && ok "rule reward: logged raw scores = hidden scores (16 samples)" \
  || bad "rule reward: $(jq -c -s 'map([.rm_score, .hidden_score])' "$W/full/samples.jsonl")"

# The held-out evaluation under the rule reward: synth_hidden is the hidden scorer, so the mean
# raw reward on the held-out prompts is their mean hidden score.
ppo --set run.dir="$W/ruleeval" --set ppo.advantage=grpo "${RULE[@]}" --set data.eval="$W/data/prompts_eval.h5" \
    --set train.eval_every=1 --set train.eval_batches=1 --set train.max_steps=1 --set ckpt.every=0 2>"$W/ruleeval.log" \
  && jq -e '.eval_prompts == 4 and ((.eval_reward_mean - .eval_hidden_score) | fabs) < 1e-5' "$W/ruleeval/summary.json" >/dev/null \
  && ok "rule reward on data.eval: eval_reward_mean = eval_hidden_score ($(jq -c '[.eval_reward_mean, .eval_hidden_score]' "$W/ruleeval/summary.json"))" \
  || bad "rule eval: $(tail -n 2 "$W/ruleeval.log"; jq -c '{eval_prompts, eval_reward_mean, eval_hidden_score}' "$W/ruleeval/summary.json" 2>&1)"
for a in rloo reinforce_pp; do
  extra=(); [ $a = reinforce_pp ] && extra=("${RULE[@]}")
  ppo --set run.dir="$W/$a" --set ppo.advantage=$a "${extra[@]}" --set train.max_steps=1 --set ckpt.every=0 2>"$W/$a.log" \
    && [ -z "$(find "$W/$a" -name critic.h5)" ] && jq -e '((if has("adv_seq_mean") then .adv_seq_mean else .adv_mean end) | fabs) < 1e-5' "$W/$a/metrics.jsonl" >/dev/null \
    && ok "$a: one iteration, no critic.h5, mean advantage ~ 0" || bad "$a: $(tail -n 3 "$W/$a.log")"
done
# ppo.kl_in_loss: β·k3 is a loss term (GRPO's form), not in the rewards. The policy starts as its
# reference, so the term is 0 only until the first update moves it; without the key it is never there.
ppo --set run.dir="$W/klloss" --set ppo.advantage=grpo "${RULE[@]}" --set ppo.kl_in_loss=true \
    --set ppo.kl_estimator=k3 --set ppo.kl_coef=0.1 --set train.max_steps=2 --set ckpt.every=0 2>"$W/klloss.log" \
  && jq -e -s 'length == 2 and all(.[]; .kl_loss >= 0) and .[1].kl_loss > 0' "$W/klloss/metrics.jsonl" >/dev/null \
  && jq -e -s 'all(.[]; .kl_loss == 0)' "$M" >/dev/null \
  && ok "kl_in_loss k3: kl_loss $(jq -c -s 'map(.kl_loss)' "$W/klloss/metrics.jsonl"), 0 without the key" \
  || bad "kl_in_loss: $(tail -n 2 "$W/klloss.log"; jq -c -s 'map(.kl_loss)' "$W/klloss/metrics.jsonl" "$M" 2>&1)"
# ppo.reward: command — a program reading JSONL rows on stdin, one number per line on stdout.
# This one scores len(prompt) + 0.5 if the response ended with EOS, and answers garbage from its
# FAIL_AT-th call on (it counts its calls in $COUNT).
# With FAIL_ONLY=k only its (k+1)-th call answers garbage; with KEEP its n-th call's input is
# kept in $KEEP.n.
cat > "$W/reward.sh" <<'SH'
n=$(cat "$COUNT" 2>/dev/null || echo 0); echo $((n + 1)) > "$COUNT"
if [ -n "${FAIL_AT:-}" ] && [ "$n" -ge "$FAIL_AT" ]; then cat >/dev/null; echo garbage; exit 0; fi
if [ "${FAIL_ONLY:-}" = "$n" ]; then cat >/dev/null; echo garbage; exit 0; fi
if [ -n "${KEEP:-}" ]; then tee "$KEEP.$n"; else cat; fi | jq --unbuffered -r '(.prompt | length) + (if .eos then 0.5 else 0 end)'
SH
CMD=(--set ppo.advantage=grpo --set ppo.reward=command --set ppo.reward_model= --set "ppo.reward_command=sh $W/reward.sh"
     --set train.max_steps=3 --set ckpt.every=0 --set ppo.log_samples_every=1)
COUNT=$W/c1 ppo --set run.dir="$W/cmd" "${CMD[@]}" 2>"$W/cmd.log" \
  && jq -e -s 'length == 12 and all(.[]; .rm_score == (.prompt | length) + (if .eos then 0.5 else 0 end))' \
       "$W/cmd/samples.jsonl" >/dev/null \
  && ok "command reward: 3 iterations, logged scores = the program's (12 samples)" \
  || bad "command reward: $(tail -n 2 "$W/cmd.log"; jq -c -s 'map([.rm_score, (.prompt | length), .eos])' "$W/cmd/samples.jsonl" 2>&1)"
if COUNT=$W/c2 FAIL_AT=2 ppo --set run.dir="$W/cmdfail" "${CMD[@]}" 2>"$W/cmdfail.log"; then
  bad "a command answering garbage did not stop the run"
else
  grep -q "ppo.reward_command 'sh .*reward.sh': stdout line 1: 'garbage' is not one finite number" "$W/cmdfail.log" \
    && [ "$(cat "$W/cmdfail/checkpoints/latest")" = step_00000002 ] \
    && jq -e '.complete == false and (.error | test("garbage"))' "$W/cmdfail/summary.json" >/dev/null \
    && ok "garbage at iteration 3: clear error, checkpoint of the 2 completed steps, summary.json has the error" \
    || bad "garbage: $(tail -n 2 "$W/cmdfail.log"; ls "$W/cmdfail/checkpoints")"
  COUNT=$W/c3 ppo --set run.dir="$W/cmdfail" "${CMD[@]}" --resume 2>"$W/cmdres.log" || bad "resume after garbage: $(tail -n 2 "$W/cmdres.log")"
  d=$("$BIN/rlhf_eval" weights-diff --a "$(ck "$W/cmd")/model.h5" --b "$(ck "$W/cmdfail")/model.h5" 2>/dev/null | tail -n 1 | jq '.max_abs_diff')
  awk -v d="$d" 'BEGIN {exit !(d == 0)}' && ok "resumed after the failure = uninterrupted (max |dw| = $d)" \
    || bad "resume after the failure differs: max |dw| = $d"
fi
# The held-out evaluation scores with the same program: calls are iteration 1, eval 1,
# iteration 2, eval 2 (the summary reuses it). Eval 1 answers garbage: a warning, only eval_error
# at step 1, the run goes on; eval 2's eval_reward_mean is the mean of the program's answers for
# the 4 held-out rows it was given.
EVAL=(--set data.eval="$W/data/prompts_eval.h5" --set train.eval_every=1 --set train.eval_batches=1)
if COUNT=$W/c4 FAIL_ONLY=1 KEEP=$W/in ppo --set run.dir="$W/cmdeval" "${CMD[@]}" "${EVAL[@]}" \
     --set train.max_steps=2 2>"$W/cmdeval.log"; then
  want=$(jq -s 'map((.prompt | length) + (if .eos then 0.5 else 0 end)) | add / length' "$W/in.3")
  grep -q "ppo eval at step 1 skipped: ppo.reward: command failed on the held-out prompts: .*'garbage' is not one finite number" \
       "$W/cmdeval.log" \
    && [ "$(wc -l <"$W/in.3")" = 4 ] \
    && jq -e -s '(.[0] | has("eval_reward_mean") | not) and (.[0].eval_error | test("garbage"))
                 and (.[1] | has("eval_reward_mean") and (has("eval_error") | not))' "$W/cmdeval/metrics.jsonl" >/dev/null \
    && jq -e --argjson w "$want" '.eval_prompts == 4 and ((.eval_reward_mean - $w) | fabs) < 1e-4' "$W/cmdeval/summary.json" >/dev/null \
    && ok "command reward on data.eval: eval_reward_mean $want = the program's mean for the 4 held-out rows; a failed eval is skipped with a warning" \
    || bad "command eval: want $want, $(jq -c '{eval_prompts, eval_reward_mean}' "$W/cmdeval/summary.json"; grep -m1 'eval at step 1' "$W/cmdeval.log")"
else
  bad "a failed held-out evaluation stopped the run: $(tail -n 2 "$W/cmdeval.log")"
fi
t0=$(date +%s)
if ppo --set run.dir="$W/hang" "${CMD[@]}" --set "ppo.reward_command=sleep 60" --set ppo.reward_timeout_s=1 2>"$W/hang.log"; then
  bad "a hanging command did not stop the run"
else
  dt=$(( $(date +%s) - t0 ))
  grep -q "ppo.reward_command 'sleep 60' did not answer 16 rows within ppo.reward_timeout_s = 1 s (killed)" "$W/hang.log" \
    && [ $dt -lt 40 ] && ok "a hanging command: killed at the timeout, clear error (run ended after ${dt} s)" \
    || bad "hang: $(tail -n 2 "$W/hang.log") after ${dt} s"
fi
if ppo --set run.dir="$W/bad" --set ppo.advantage=grpo --set ppo.samples_per_prompt=1 2>"$W/bad.log"; then
  bad "grpo with ppo.samples_per_prompt: 1 ran"
else
  grep -q "ppo.samples_per_prompt = 1" "$W/bad.log" && ok "grpo with 1 sample per prompt fails naming ppo.samples_per_prompt" \
    || bad "error does not name the key: $(tail -n 2 "$W/bad.log")"
fi
if ppo --set run.dir="$W/bad2" --set ppo.advantage=grpo "${RULE[@]}" --set ppo.reward_rule=nope 2>"$W/bad2.log"; then
  bad "an unknown ppo.reward_rule ran"
else
  grep -q "ppo.reward_rule = 'nope'.*registered: synth_hidden" "$W/bad2.log" && ok "unknown rule fails listing synth_hidden" \
    || bad "unknown rule error: $(tail -n 2 "$W/bad2.log")"
fi
[ $fail = 0 ] && echo PASS
exit $fail
