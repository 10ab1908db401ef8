#!/usr/bin/env bash
# test_lora.sh — LoRA through the stages (model.lora, common/model/lora.h).
#
#   bash tests/scripts/test_lora.sh BIN_DIR SOURCE_DIR   (ctest: script.test_lora)
#
# A tiny plain SFT model is the base. Then:
# 1. LoRA SFT from it: only adapters train (trained-parameter count in the log), the checkpoint's
#    model.h5 holds adapters only (much smaller than the base) and names its base; stopped at step
#    4 and resumed, its weights equal an uninterrupted run exactly (max |dw| = 0, CPU);
# 2. rlhf_convert merge-lora gives a plain model.h5 equal to what every tool reads from the LoRA
#    checkpoint; to-hf exports the merged model;
# 3. RM with LoRA from the SFT base, PPO with LoRA actor + critic (reference = the actor's base
#    with adapters off): runs, resumes exactly, and rlhf_eval reads its checkpoints;
# 4. errors: a target the family lacks, LoRA from scratch, a missing base.
# About 40 s on 2 cores.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" lora "$@"
wdiff() { "$BIN/rlhf_eval" weights-diff --a "$1" --b "$2" 2>/dev/null | tail -n 1 | jq '.max_abs_diff'; }

"$BIN/rlhf_prep" synth --out "$W/data" --seed 3 --n-sft 64 --n-sft-eval 8 --n-ranked 16 --n-ranked-eval 4 \
  --n-prompts 16 --n-prompts-eval 4 --pretrain-bytes 4000 --pretrain-eval-bytes 1000 2>/dev/null
COMMON=(--set run.log_every=100 --set ckpt.every=0 --set run.tensorboard=false)
"$BIN/sft_train" --config "$SRC/configs/tiny/sft.yaml" "${COMMON[@]}" --set model.n_layer=2 --set model.d_model=64 \
  --set model.n_head=2 --set model.n_kv_head=2 --set model.d_ff=128 --set model.max_seq_len=64 \
  --set run.dir="$W/base" --set data.train="$W/data/sft.h5" --set data.eval= --set train.max_steps=4 \
  --set train.global_batch_size=8 --set train.micro_batch_size=8 2>"$W/base.log" || { tail -3 "$W/base.log"; exit 1; }

# 1. LoRA SFT: adapters only, small checkpoint, exact resume.
LORA=(--set model.lora.rank=4 --set model.lora.alpha=8 --set model.lora.targets=c_attn,c_fc)
SFT=("$BIN/sft_train" --config "$SRC/configs/tiny/sft.yaml" "${COMMON[@]}" "${LORA[@]}" --set init="$W/base"
     --set data.train="$W/data/sft.h5" --set data.eval= --set train.max_steps=8 --set train.warmup_steps=0
     --set train.global_batch_size=8 --set train.micro_batch_size=4 --set train.learning_rate=1e-2
     --set model.lora.dropout=0.1 --set model.dropout=0.1 --set ckpt.every=4)
"${SFT[@]}" --set run.dir="$W/lora_ref" 2>"$W/lora_ref.log" || { tail -3 "$W/lora_ref.log"; exit 1; }
# 2 layers x (c_attn 64->192: 4*64 + 192*4, c_fc 64->128: 4*64 + 128*4) = 2 * (1024 + 768) = 3584
grep -q "# sft: 3584 params" "$W/lora_ref.log" && ok "LoRA SFT trains the adapters only (3584 parameters)" \
  || bad "trained parameters: $(grep -o '# sft: [0-9]* params' "$W/lora_ref.log")"
base_sz=$(stat -c %s "$W/base/checkpoints/$(cat "$W/base/checkpoints/latest")/model.h5")
lora_sz=$(stat -c %s "$W/lora_ref/checkpoints/$(cat "$W/lora_ref/checkpoints/latest")/model.h5")
[ $((lora_sz * 5)) -lt "$base_sz" ] && ok "LoRA model.h5 $lora_sz bytes vs base $base_sz" \
  || bad "LoRA model.h5 $lora_sz bytes, base $base_sz"
d=$(wdiff "$W/base" "$W/lora_ref"); [ "$d" != 0 ] && [ "$d" != null ] && ok "adapters changed the merged model (max |dw| $d)" \
  || bad "merged LoRA model equals its base (max |dw| = $d)"
"${SFT[@]}" --set run.dir="$W/lora_run" --set train.stop_at_step=4 2>"$W/lora1.log" || { tail -3 "$W/lora1.log"; exit 1; }
"${SFT[@]}" --set run.dir="$W/lora_run" --resume 2>"$W/lora2.log" || { tail -3 "$W/lora2.log"; bad "LoRA resume failed"; }
grep -q "resuming from" "$W/lora2.log" || bad "LoRA run did not resume"
d=$(wdiff "$W/lora_ref" "$W/lora_run"); [ "$d" = 0 ] && ok "LoRA SFT stopped at 4 + resumed = uninterrupted (max |dw| = 0)" \
  || bad "LoRA resume: max |dw| = $d"

jq -e '.peak_memory.measured_bytes[0] > 0 and .peak_memory.estimate_bytes > 0 and .peak_memory.kind == "cpu_max_rss"' \
  "$W/lora_ref/summary.json" >/dev/null && ok "summary.json: peak_memory measured $(jq '.peak_memory.measured_bytes[0]' "$W/lora_ref/summary.json") B (max RSS) next to the estimate $(jq '.peak_memory.estimate_bytes' "$W/lora_ref/summary.json") B" \
  || bad "summary.json peak_memory: $(jq -c '.peak_memory' "$W/lora_ref/summary.json")"

# 2. merge-lora and to-hf.
"$BIN/rlhf_convert" merge-lora --in "$W/lora_ref" --out "$W/merged" 2>"$W/merge.log" || { cat "$W/merge.log"; bad "merge-lora failed"; }
d=$(wdiff "$W/lora_ref" "$W/merged"); [ "$d" = 0 ] && ok "merge-lora = the LoRA checkpoint as tools read it (max |dw| = 0)" \
  || bad "merge-lora: max |dw| = $d"
"$BIN/rlhf_convert" merge-lora --in "$W/base" --out "$W/m2" 2>"$W/e.log" && bad "merge-lora of a plain model succeeded" \
  || { grep -q "not a LoRA model" "$W/e.log" && ok "merge-lora of a plain model: clear error" || bad "merge-lora error: $(cat "$W/e.log")"; }
"$BIN/rlhf_convert" to-hf --in "$W/lora_ref" --out "$W/hf" 2>"$W/hf.log" && [ -f "$W/hf/config.json" ] \
  && ok "to-hf exports the merged LoRA model" || { tail -2 "$W/hf.log"; bad "to-hf of a LoRA checkpoint"; }

# 3. RM and PPO with LoRA.
"$BIN/rm_train" --config "$SRC/configs/tiny/rm.yaml" "${COMMON[@]}" "${LORA[@]}" --set run.dir="$W/rm" --set init="$W/base" \
  --set data.train="$W/data/ranked.h5" --set data.eval= --set data.bias_data="$W/data/sft.h5" --set train.max_steps=2 \
  --set train.global_batch_size=4 --set train.micro_batch_size=4 2>"$W/rm.log" || { tail -3 "$W/rm.log"; exit 1; }
# adapters 3584 + score head 64 weights (score.bias stays fixed)
grep -q "3648" "$W/rm.log" && ok "LoRA RM trains adapters + score.weight (3648 parameters)" \
  || bad "RM trained parameters: $(grep -i 'params' "$W/rm.log" | head -1)"
PPO=("$BIN/ppo_train" --config "$SRC/configs/tiny/ppo.yaml" "${COMMON[@]}" "${LORA[@]}" --set init="$W/base"
     --set ppo.reward_model="$W/rm" --set data.train="$W/data/prompts.h5" --set data.eval=
     --set data.pretrain="$W/data/pretrain.h5" --set data.pretrain_eval= --set train.max_steps=4
     --set train.warmup_steps=0 --set train.global_batch_size=4 --set train.micro_batch_size=4
     --set ppo.minibatch_size=4 --set ppo.ppo_epochs=1 --set ppo.max_new_tokens=8 --set ppo.ptx_batch_size=2
     --set ppo.ptx_seq_len=16 --set ckpt.every=2)
"${PPO[@]}" --set run.dir="$W/ppo_ref" 2>"$W/ppo_ref.log" || { tail -5 "$W/ppo_ref.log"; exit 1; }
kl1=$(jq -s '.[0].kl_to_ref' "$W/ppo_ref/metrics.jsonl"); kl4=$(jq -s '.[3].kl_to_ref' "$W/ppo_ref/metrics.jsonl")
grep -q "reference policy = the actor's base" "$W/ppo_ref.log" && [ "$kl1" = 0 ] && [ "$kl4" != 0 ] \
  && ok "PPO: reference = the actor with adapters off (KL exactly 0 at step 1, $kl4 at step 4)" \
  || bad "PPO reference: KL $kl1 at step 1, $kl4 at step 4 (must be 0, then not 0)"
"${PPO[@]}" --set run.dir="$W/ppo_run" --set train.stop_at_step=2 2>"$W/ppo1.log" || { tail -5 "$W/ppo1.log"; exit 1; }
"${PPO[@]}" --set run.dir="$W/ppo_run" --resume 2>"$W/ppo2.log" || { tail -5 "$W/ppo2.log"; bad "PPO LoRA resume failed"; }
d=$(wdiff "$W/ppo_ref" "$W/ppo_run"); [ "$d" = 0 ] && ok "LoRA PPO stopped at 2 + resumed = uninterrupted (max |dw| = 0)" \
  || bad "LoRA PPO resume: max |dw| = $d"
lora_c=$(stat -c %s "$W/ppo_ref/checkpoints/$(cat "$W/ppo_ref/checkpoints/latest")/critic.h5")
[ $((lora_c * 5)) -lt "$base_sz" ] && ok "LoRA critic.h5 holds adapters + head ($lora_c bytes)" || bad "critic.h5 $lora_c bytes"
"$BIN/rlhf_eval" reward --policy "$W/ppo_ref" --reward-model "$W/rm" --prompts "$W/data/prompts_eval.h5" \
  --max-new-tokens 8 > "$W/eval.json" 2>"$W/eval.log" && jq -e '.reward_mean | numbers' "$W/eval.json" >/dev/null \
  && ok "rlhf_eval reward reads the LoRA actor and RM" || { tail -3 "$W/eval.log"; bad "rlhf_eval on LoRA checkpoints"; }

# 4. Errors.
err() {  # err NAME EXPECTED_TEXT CMD...
  local name=$1 want=$2; shift 2
  if "$@" >"$W/err.out" 2>&1; then bad "$name: succeeded"; return; fi
  grep -qF -- "$want" "$W/err.out" && ok "$name: '$want'" || bad "$name: $(tail -2 "$W/err.out")"
}
err "target the family lacks" "model.lora.targets: 'gate' is not a projection of a gpt2 model" \
  "${SFT[@]}" --set run.dir="$W/e1" --set model.lora.targets=c_attn,gate
err "LoRA from scratch" "model.lora.rank = 4: LoRA adapts a pretrained model" \
  "${SFT[@]}" --set run.dir="$W/e2" --set init=
mv "$W/base" "$W/base_moved"
err "base moved away" "which does not exist" "$BIN/rlhf_eval" weights-diff --a "$W/lora_ref" --b "$W/merged"
mv "$W/base_moved" "$W/base"
[ $fail = 0 ] && echo PASS
exit $fail
