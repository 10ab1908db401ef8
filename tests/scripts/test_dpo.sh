#!/usr/bin/env bash
# test_dpo.sh — dpo_train (src/dpo/) end to end on synthetic ranked data.
#
#   bash tests/scripts/test_dpo.sh BIN_DIR SOURCE_DIR     (ctest: script.test_dpo, label e2e)
#
# A tiny SFT (3 steps) is the policy's init and the reference. Then:
# 1. --dry-run lists the policy and its reference;
# 2. DPO, 4 steps of 4 ranked groups (2 per forward): at step 1 the policy is the reference, so
#    every implicit reward β(log π − log π_ref) is 0 and the sigmoid loss (ε = 0) is ln 2 = 0.693147
#    (and accuracy 0: no pair has h > 0); the weights move; held-out eval_accuracy is logged;
# 3. stopped at step 2 and resumed = uninterrupted (rlhf_eval weights-diff max |dw| = 0, CPU);
#    2 ranks (mpirun -np 2) = 1 rank up to round-off, also at ZeRO stage 2;
# 4. dpo.loss: ipo at step 1: h = 0, loss = (0 − 1/(2β))² = 25 for β = 0.1; an explicit
#    dpo.reference (= the SFT checkpoint) gives ln 2 too;
# 5. LoRA DPO (rank 4 on c_attn, c_fc of the 1-layer d_model 32 model: 4·(32+96) + 4·(32+64) = 896
#    trained parameters; the reference is the policy's base): runs, step-1 loss ln 2, and rlhf_eval
#    reads its checkpoint (ppl), as it reads the full DPO checkpoint;
# 6. errors: dpo.loss: nope and dpo.label_smoothing: 0.7 fail naming the key.
# About 15-30 s on 2 cores. Needs jq and mpirun.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" dpo "$@"
ck() { echo "$1/checkpoints/$(cat "$1/checkpoints/latest")"; }
wdiff() { "$BIN/rlhf_eval" weights-diff --a "$1" --b "$2" 2>/dev/null | tail -n 1 | jq '.max_abs_diff'; }

"$BIN/rlhf_prep" synth --out "$W/data" --seed 5 --n-sft 64 --n-sft-eval 8 --n-ranked 16 --n-ranked-eval 4 \
  --n-prompts 8 --n-prompts-eval 4 --pretrain-bytes 4000 --pretrain-eval-bytes 1000 2>/dev/null
"$BIN/sft_train" --config "$SRC/configs/tiny/sft.yaml" --set model.n_layer=1 --set model.d_model=32 \
  --set model.n_head=2 --set model.n_kv_head=2 --set model.d_ff=64 --set model.max_seq_len=64 --set model.dropout=0 \
  --set run.log_every=100 --set ckpt.every=0 --set run.dir="$W/sft" --set data.train="$W/data/sft.h5" \
  --set data.eval= --set train.max_steps=3 --set train.global_batch_size=8 --set train.micro_batch_size=8 2>"$W/sft.log" \
  || { tail -5 "$W/sft.log"; echo "FAIL sft"; exit 1; }
dpo() { "$BIN/dpo_train" --config "$SRC/configs/tiny/dpo.yaml" --set init="$W/sft" \
     --set data.train="$W/data/ranked.h5" --set data.eval="$W/data/ranked_eval.h5" \
     --set train.max_steps=4 --set train.warmup_steps=0 --set train.learning_rate=1e-3 \
     --set train.global_batch_size=4 --set train.micro_batch_size=2 --set train.eval_every=0 \
     --set run.log_every=100 --set run.tensorboard=false --set ckpt.every=2 --set ckpt.keep_last=3 "$@"; }
step1() { jq -s '.[0]' "$1/metrics.jsonl"; }

# 1. the dry run's models
roles=$(dpo --set run.dir="$W/dry" --dry-run 2>&1 | sed -n '/^# models/,/^# total/p')
grep -q "policy" <<<"$roles" && grep -q "reference" <<<"$roles" && ok "dry run: policy + reference" \
  || bad "dry run models: $roles"

# 2. the full run: step 1 at the reference
dpo --set run.dir="$W/full" 2>"$W/full.log" || { tail -5 "$W/full.log"; echo "FAIL dpo run"; exit 1; }
M=$W/full/metrics.jsonl
[ "$(jq -c -s 'map(.step)' "$M")" = "[1,2,3,4]" ] && ok "4 steps logged" || bad "metrics steps $(jq -c -s 'map(.step)' "$M")"
step1 "$W/full" | jq -e '(.loss - 0.6931471805599453 | fabs) < 1e-5 and (.chosen_reward | fabs) < 1e-6
    and (.rejected_reward | fabs) < 1e-6 and (.margin | fabs) < 1e-6 and .accuracy == 0 and .pairs > 0
    and .chosen_logp < 0 and .rejected_logp < 0' >/dev/null \
  && ok "step 1 (policy = reference): loss ln 2, implicit rewards 0: $(step1 "$W/full" | jq -c '{loss, chosen_reward, rejected_reward, margin, accuracy, pairs, ties}')" \
  || bad "step 1: $(step1 "$W/full" | jq -c .)"
jq -e -s '.[3] | (.chosen_reward != 0 or .rejected_reward != 0) and (.loss - 0.6931471805599453 | fabs) > 1e-6' "$M" >/dev/null \
  && ok "step 4 moved off the reference: $(jq -s -c '.[3] | {loss, margin, accuracy}' "$M")" \
  || bad "step 4 still at the reference: $(jq -s -c '.[3]' "$M")"
jq -e '.stage == "dpo" and .complete and (.eval_accuracy >= 0) and (.eval_pairs > 0) and has("eval_margin")' \
  "$W/full/summary.json" >/dev/null \
  && ok "summary: held-out pair accuracy $(jq .eval_accuracy "$W/full/summary.json"), margin $(jq .eval_margin "$W/full/summary.json")" \
  || bad "summary: $(jq -c . "$W/full/summary.json")"
d=$(wdiff "$(ck "$W/sft")/model.h5" "$(ck "$W/full")/model.h5")
awk -v d="$d" 'BEGIN {exit !(d > 0)}' && ok "the policy moved from SFT (max |dw| = $d)" || bad "weights unchanged: $d"

# 3. stop + resume = uninterrupted
dpo --set run.dir="$W/cut" --set train.stop_at_step=2 2>"$W/cut1.log" || { tail -5 "$W/cut1.log"; echo "FAIL stopped run"; exit 1; }
dpo --set run.dir="$W/cut" --resume 2>"$W/cut2.log" || { tail -5 "$W/cut2.log"; echo "FAIL resumed run"; exit 1; }
grep -q "resuming from" "$W/cut2.log" || bad "the second run did not say it resumed"
d=$(wdiff "$(ck "$W/full")/model.h5" "$(ck "$W/cut")/model.h5")
awk -v d="$d" 'BEGIN {exit !(d == 0)}' && ok "stop at 2 + resume = uninterrupted (max |dw| = $d)" \
  || bad "resume not exact: max |dw| = $d"

# 3b. 2 ranks (mpirun -np 2, one micro-batch of 2 groups each) vs 1 rank (2 micro-batches): the same
#    losses and weights up to round-off of the gradient all-reduce (measured max |dw| = 0 here;
#    bound 1e-5, Adam's update at lr 1e-3 is ~1e-3 per step)
MPI=(mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2)
dpo_np2() { "${MPI[@]}" "$BIN/dpo_train" --config "$SRC/configs/tiny/dpo.yaml" --set init="$W/sft" \
       --set data.train="$W/data/ranked.h5" --set data.eval="$W/data/ranked_eval.h5" --set train.max_steps=4 \
       --set train.warmup_steps=0 --set train.learning_rate=1e-3 --set train.global_batch_size=4 \
       --set train.micro_batch_size=2 --set train.eval_every=0 --set run.log_every=100 --set run.tensorboard=false "$@"; }
if dpo_np2 --set ckpt.every=2 --set ckpt.keep_last=3 --set run.dir="$W/np2" 2>"$W/np2.log"; then
  d=$(wdiff "$(ck "$W/full")/model.h5" "$(ck "$W/np2")/model.h5")
  l1=$(jq -s -c 'map(.loss)' "$M"); l2=$(jq -s -c 'map(.loss)' "$W/np2/metrics.jsonl")
  awk -v d="$d" 'BEGIN {exit !(d < 1e-5)}' && jq -e -n --argjson a "$l1" --argjson b "$l2" \
      '[range(4)] | all(. as $i | ($a[$i] - $b[$i] | fabs) < 1e-5)' >/dev/null \
    && ok "2 ranks = 1 rank (max |dw| = $d; losses $l2)" || bad "2 ranks vs 1: max |dw| = $d, losses $l1 vs $l2"
else
  bad "dpo_train on 2 ranks: $(tail -n 3 "$W/np2.log")"
fi
# 3c. the same 2-rank run at ZeRO stage 2 (gradients reduce-scattered block by block during the
#     backward, common/train/zero.h): the same weights up to round-off
if dpo_np2 --set ckpt.every=0 --set dist.zero_stage=2 --set run.dir="$W/z2" 2>"$W/z2.log"; then
  d=$(wdiff "$(ck "$W/np2")/model.h5" "$(ck "$W/z2")/model.h5")
  awk -v d="$d" 'BEGIN {exit !(d < 1e-5)}' && jq -e '.zero_stage == 2 and .memory_per_rank[0].policy.peak_grad_bytes > 0' \
      "$W/z2/summary.json" >/dev/null \
    && ok "2 ranks at ZeRO stage 2 = stage 0 (max |dw| = $d)" || bad "ZeRO stage 2: max |dw| = $d; $(jq -c .memory_per_rank "$W/z2/summary.json")"
else
  bad "dpo_train at ZeRO stage 2: $(tail -n 3 "$W/z2.log")"
fi

# 4. ipo and an explicit reference, one step each
dpo --set run.dir="$W/ipo" --set dpo.loss=ipo --set dpo.beta=0.1 --set train.max_steps=1 --set ckpt.every=0 2>"$W/ipo.log" \
  && step1 "$W/ipo" | jq -e '(.loss - 25 | fabs) < 1e-4' >/dev/null \
  && ok "ipo step 1: loss (1/(2*0.1))^2 = $(step1 "$W/ipo" | jq .loss)" || bad "ipo: $(tail -n 2 "$W/ipo.log"; step1 "$W/ipo" | jq -c .)"
dpo --set run.dir="$W/ref" --set dpo.reference="$W/sft" --set train.max_steps=1 --set ckpt.every=0 2>"$W/ref.log" \
  && step1 "$W/ref" | jq -e '(.loss - 0.6931471805599453 | fabs) < 1e-5' >/dev/null \
  && ok "dpo.reference = the SFT checkpoint: step-1 loss ln 2" || bad "explicit reference: $(tail -n 2 "$W/ref.log")"

# 5. LoRA DPO
dpo --set run.dir="$W/lora" --set model.lora.rank=4 --set model.lora.alpha=8 --set model.lora.targets=c_attn,c_fc \
  --set train.learning_rate=1e-2 2>"$W/lora.log" || { tail -5 "$W/lora.log"; echo "FAIL lora dpo"; exit 1; }
grep -q "# dpo: 896 trained params" "$W/lora.log" && grep -q "reference = the policy's base" "$W/lora.log" \
  && ok "LoRA DPO trains the adapters only (896 parameters), reference = adapters off" \
  || bad "LoRA DPO: $(grep '# dpo' "$W/lora.log" | head -2)"
step1 "$W/lora" | jq -e '(.loss - 0.6931471805599453 | fabs) < 1e-5' >/dev/null \
  && jq -e -s '.[3] | (.chosen_reward != 0)' "$W/lora/metrics.jsonl" >/dev/null \
  && ok "LoRA step 1 loss ln 2; step 4 moved" || bad "LoRA metrics: $(jq -c -s 'map({loss, chosen_reward})' "$W/lora/metrics.jsonl")"
for r in full lora; do
  j=$("$BIN/rlhf_eval" ppl --checkpoint "$W/$r" --data "$W/data/sft_eval.h5" 2>"$W/eval_$r.log" | tail -n 1)
  jq -e '.loss > 0' <<<"$j" >/dev/null && ok "rlhf_eval reads the $r DPO checkpoint: $j" \
    || bad "rlhf_eval ppl on $r: $j $(tail -n 2 "$W/eval_$r.log")"
done

# 6. bad keys
for kv in dpo.loss=nope dpo.label_smoothing=0.7; do
  if dpo --set run.dir="$W/bad" --set "$kv" 2>"$W/bad.log"; then
    bad "$kv ran"
  else
    grep -q "${kv%%=*}" "$W/bad.log" && ok "$kv fails naming the key: $(grep -m1 "${kv%%=*}" "$W/bad.log")" \
      || bad "$kv error does not name the key: $(tail -n 2 "$W/bad.log")"
  fi
done
[ $fail = 0 ] && echo PASS
exit $fail
