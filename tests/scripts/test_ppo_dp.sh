#!/usr/bin/env bash
# PPO on 1 rank vs 2 ranks (mpirun -np 2) with the same seed and train.global_batch_size: after 2
# iterations the actor and the critic agree to max |Δw| < 1e-5 and every step's reward, KL and
# losses to a relative 1e-4 (fp32 CPU; not exactly 0: the 2-rank gradient is summed in a
# different order, and the prompts are padded to a different length per rank).
# What makes that possible (src/ppo/ppo_step.h): each response is sampled from its own generator
# seeded by its row of the global batch; the losses are token means over the whole minibatch
# across ranks; the per-epoch minibatches are the same global rows on any rank count; the ptx
# windows come from one global list. The run exercises all of it: 2 PPO epochs, 2 minibatches per
# epoch, micro-batches of 1 row, ptx on, adaptive β, ragged responses (EOS).
# Usage: test_ppo_dp.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=$1; SRC=$2
W=$(mktemp -d /tmp/rlhf_ppo_dp.XXXXXX)
trap 'rm -rf "$W"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
"$BIN/rlhf_prep" synth --out "$W/data" --seed 5 --n-sft 64 --n-sft-eval 8 --n-ranked 16 --n-ranked-eval 4 \
  --n-prompts 32 --n-prompts-eval 4 --pretrain-bytes 4000 --pretrain-eval-bytes 1000 2>/dev/null
MODEL=(--set model.n_layer=1 --set model.d_model=32 --set model.n_head=2 --set model.n_kv_head=2 --set model.d_ff=64
       --set model.max_seq_len=64 --set model.dropout=0 --set run.log_every=100 --set ckpt.every=0)
"$BIN/sft_train" --config "$SRC/configs/tiny/sft.yaml" "${MODEL[@]}" --set run.dir="$W/sft" --set data.train="$W/data/sft.h5" \
  --set data.eval= --set train.max_steps=3 --set train.global_batch_size=8 --set train.micro_batch_size=8 2>"$W/log"
"$BIN/rm_train" --config "$SRC/configs/tiny/rm.yaml" --set run.dir="$W/rm" --set init="$W/sft" --set ckpt.every=0 \
  --set data.train="$W/data/ranked.h5" --set data.eval= --set data.bias_data= --set train.max_steps=2 \
  --set train.global_batch_size=4 --set train.micro_batch_size=4 2>>"$W/log"
ppo() { "$@" --config "$SRC/configs/tiny/ppo.yaml" --set init="$W/sft" --set ppo.reward_model="$W/rm" \
        --set data.train="$W/data/prompts.h5" --set data.eval= --set data.pretrain="$W/data/pretrain.h5" \
        --set data.pretrain_eval="$W/data/pretrain_eval.h5" --set run.log_every=100 --set ckpt.every=0 \
        --set train.max_steps=2 --set train.warmup_steps=0 --set train.global_batch_size=8 \
        --set train.micro_batch_size=1 --set ppo.minibatch_size=4 --set ppo.ppo_epochs=2 \
        --set ppo.max_new_tokens=16 --set ppo.ptx_coef=0.5 --set ppo.ptx_batch_size=4 --set ppo.ptx_seq_len=16 \
        --set ppo.adaptive_kl=true --set ppo.kl_target=0.5 --set ppo.kl_horizon=10 --set model.dropout=0; }
MPI=(mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2)
ppo "$BIN/ppo_train" --set run.dir="$W/ppo1" 2>>"$W/log"
ppo "${MPI[@]}" "$BIN/ppo_train" --set run.dir="$W/ppo2" 2>>"$W/log"
fail=0
n1=$(wc -l < "$W/ppo1/metrics.jsonl"); n2=$(wc -l < "$W/ppo2/metrics.jsonl")
[ "$n1" = 2 ] && [ "$n2" = 2 ] || { echo "FAIL: $n1 and $n2 steps, expected 2"; fail=1; }
# Ragged responses: not every row ran to max_new_tokens.
len=$(jq -s 'map(.response_length) | min' "$W/ppo1/metrics.jsonl")
awk -v l="$len" 'BEGIN {exit !(l < 16)}' || { echo "FAIL: mean response length $len, no EOS in any step"; fail=1; }
for k in reward_mean kl_to_ref beta policy_loss value_loss ptx_loss clip_frac entropy; do
  worst=$(paste -d' ' <(jq ".$k" "$W/ppo1/metrics.jsonl") <(jq ".$k" "$W/ppo2/metrics.jsonl") \
          | awk '{d=($1-$2); if (d<0) d=-d; a=($1<0?-$1:$1); r=(a>1e-3?d/a:d/1e-3); if (r>m) m=r} END {printf "%.3g", m+0}')
  echo "$k: max relative difference $worst ($(jq -c ".$k" "$W/ppo1/metrics.jsonl" | paste -sd' '))"
  awk -v r="$worst" 'BEGIN {exit !(r < 1e-4)}' || { echo "FAIL $k beyond tolerance"; fail=1; }
done
ck() { echo "$1/checkpoints/$(cat "$1/checkpoints/latest")"; }
for f in model.h5 critic.h5; do
  wd=$("$BIN/rlhf_eval" weights-diff --a "$(ck "$W/ppo1")/$f" --b "$(ck "$W/ppo2")/$f" 2>/dev/null | tail -n 1)
  diff=$(echo "$wd" | jq '.max_abs_diff'); echo "$f: $wd"
  awk -v d="$diff" 'BEGIN {exit !(d < 1e-5)}' || { echo "FAIL $f weights beyond tolerance"; fail=1; }
done
# The weights moved: the comparison is not between two copies of the SFT policy.
moved=$("$BIN/rlhf_eval" weights-diff --a "$W/sft" --b "$(ck "$W/ppo1")/model.h5" 2>/dev/null | tail -n 1 | jq '.max_abs_diff')
awk -v d="$moved" 'BEGIN {exit !(d > 1e-4)}' || { echo "FAIL: PPO did not move the actor ($moved)"; fail=1; }
[ $fail = 0 ] && echo "ok   PPO 1 rank == 2 ranks after 2 iterations (actor moved by $moved)"
exit $fail
