# tiny_models.sh — sourced by the script tests that need the embedded task's data and a tiny
# trained SFT + reward model (one home for that preamble):
#
#   source "$SRC/tests/scripts/tiny_models.sh"
#   tiny_sft_rm BIN_DIR SOURCE_DIR WORK_DIR [SFT_STEPS=3]
#
# writes WORK_DIR/data (rlhf_prep synth, seed 5: 64 SFT rows, 16 ranked groups, 32 prompts, a
# small pretraining stream), WORK_DIR/sft (1 layer, d_model 32, context 64; SFT_STEPS steps of 8
# rows) and WORK_DIR/rm (2 steps of 4 groups from the SFT, no bias fit), logs in WORK_DIR/log.
tiny_sft_rm() {
  local bin=$1 src=$2 w=$3 steps=${4:-3}
  local model=(--set model.n_layer=1 --set model.d_model=32 --set model.n_head=2 --set model.n_kv_head=2
               --set model.d_ff=64 --set model.max_seq_len=64 --set model.dropout=0 --set run.log_every=100
               --set ckpt.every=0)
  "$bin/rlhf_prep" synth --out "$w/data" --seed 5 --n-sft 64 --n-sft-eval 8 --n-ranked 16 --n-ranked-eval 4 \
    --n-prompts 32 --n-prompts-eval 4 --pretrain-bytes 4000 --pretrain-eval-bytes 1000 2>/dev/null
  "$bin/sft_train" --config "$src/configs/tiny/sft.yaml" "${model[@]}" --set run.dir="$w/sft" \
    --set data.train="$w/data/sft.h5" --set data.eval= --set train.max_steps="$steps" \
    --set train.global_batch_size=8 --set train.micro_batch_size=8 2>"$w/log"
  "$bin/rm_train" --config "$src/configs/tiny/rm.yaml" --set run.dir="$w/rm" --set init="$w/sft" \
    --set ckpt.every=0 --set data.train="$w/data/ranked.h5" --set data.eval="$w/data/ranked_eval.h5" \
    --set data.bias_data= --set train.max_steps=2 --set train.global_batch_size=4 \
    --set train.micro_batch_size=4 2>>"$w/log"
}
