#!/usr/bin/env bash
# Fault injection (ctest label faults): nothing is lost and nothing is silently accepted.
#   1. Full disk while rlhf_prep writes (a 560 KiB tmpfs as root, else RLIMIT_FSIZE): non-zero
#      exit with the cause, no crash, the previous output byte-identical, no temporary left.
#   2. Full disk during a checkpoint save: clean non-zero exit, the earlier checkpoints intact and
#      resumable once there is space again.
#   3. Corrupt checkpoints: a truncated optim.h5 in the newest checkpoint stops --resume with the
#      reason and the readable older ones (nothing deleted, no silent fallback); --resume-from an
#      older one works and metrics.jsonl never repeats a step; `latest` pointing outside the run
#      and a state.yaml with step -5 are refused naming what is wrong.
#   4. Refusals: duplicate YAML keys, a directory as --config, rlhf_prep --in X --out X,
#      rlhf_convert into an existing checkpoint without --force; absurd model sizes (n_layer 1e12
#      in YAML and in a config.json, train.micro_batch_size 1e9) fail in seconds naming the key;
#      a missing data.bias_data or a wrong-kind data.eval fails before step 1 naming key and
#      file; gzip trailing data is counted, or refused under --strict; no backtraces.
#   5. SIGTERM to launch/mpirun.sh with 2 ranks: the ranks checkpoint and the launcher exits 75.
# Usage: test_faults.sh BIN_DIR SOURCE_DIR
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" faults "$@"
T=$W
at_exit 'for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null; done'
MOUNTS=()
[ -n "${KEEP:-}" ] && trap - EXIT
crashed() { [ "$1" -ge 128 ]; }  # killed by a signal (139 segfault, 134 abort)

small_tmpfs() {  # small_tmpfs DIR SIZE -> 0 when mounted
  mkdir -p "$1"
  [ "$(id -u)" = 0 ] && mount -t tmpfs -o "size=$2" tmpfs "$1" 2>/dev/null && MOUNTS+=("$1")
}

"$BIN/rlhf_prep" synth --out "$T/data" --n-sft 64 --n-sft-eval 16 --n-ranked 32 --n-ranked-eval 8 \
  --n-prompts 16 --n-prompts-eval 8 --pretrain-bytes 20000 --pretrain-eval-bytes 4000 2>/dev/null \
  || { echo "FAIL synth"; exit 1; }
SFT=("$BIN/sft_train" --config "$SRC/configs/tiny/sft.yaml" --set data.train="$T/data/sft.h5"
     --set data.eval="$T/data/sft_eval.h5" --set model.n_layer=1 --set model.d_model=32
     --set model.d_ff=64 --set model.n_head=2 --set model.n_kv_head=2 --set train.global_batch_size=4
     --set train.micro_batch_size=4 --set train.eval_every=0 --set train.warmup_steps=1)

# ---- 1. full disk during rlhf_prep -----------------------------------------------------------
printf '"a prompt"\n"another"\n' > "$T/p.jsonl"
if small_tmpfs "$T/full" 560k; then how="tmpfs 560k"; OUT=$T/full/out.h5; else
  how="RLIMIT_FSIZE"; OUT=$T/out.h5; fi
"$BIN/rlhf_prep" prompts --in "$T/p.jsonl" --out "$OUT" 2>/dev/null || bad "prep: first write"
before=$(md5sum < "$OUT")
if [ "$how" = "tmpfs 560k" ]; then
  "$BIN/rlhf_prep" pretrain --in "$SRC/../shared/data/corpus/tinyshakespeare.txt" --out "$OUT" > "$T/p1.out" 2> "$T/p1.err"; rc=$?
else
  ( trap '' XFSZ; ulimit -f 560; exec "$BIN/rlhf_prep" pretrain --in "$SRC/../shared/data/corpus/tinyshakespeare.txt" --out "$OUT" ) > "$T/p1.out" 2> "$T/p1.err"; rc=$?
fi
if [ "$rc" -ne 0 ] && ! crashed "$rc" && grep -qiE "no space left|too large|disk full" "$T/p1.err"; then
  ok "prep on a full disk ($how): exit $rc, $(grep -m1 -oiE "cannot write[^:]*: [^:]*: [A-Za-z ]+|No space left on device|File too large" "$T/p1.err" | head -1)"
else cat "$T/p1.err" | tail -3; bad "prep on a full disk: exit $rc"; fi
grep -q "wrote" "$T/p1.err" && bad "prep printed 'wrote' although the write failed"
[ "$(md5sum < "$OUT")" = "$before" ] && ok "previous output intact" || bad "previous output changed"
left=$(find "$(dirname "$OUT")" -name '*.tmp*' | wc -l)
[ "$left" -eq 0 ] && ok "no temporary left" || bad "$left temporary files left"

# ---- 2. full disk during a checkpoint save ---------------------------------------------------
if small_tmpfs "$T/ck" 4m; then
  R=$T/ck/run
  "${SFT[@]}" --set run.dir="$R" --set train.max_steps=2 --set ckpt.every=1 --set ckpt.keep_last=5 > /dev/null 2>&1 \
    || bad "ckpt: first run"
  avail=$(df -k --output=avail "$T/ck" | tail -1)
  dd if=/dev/zero of="$T/ck/filler" bs=1k count=$(( avail - 40 )) status=none 2>/dev/null
  "${SFT[@]}" --set run.dir="$R" --set train.max_steps=4 --set ckpt.every=1 --set ckpt.keep_last=5 --resume > "$T/c1.out" 2> "$T/c1.err"; rc=$?
  if [ "$rc" -ne 0 ] && ! crashed "$rc" && grep -qiE "no space left|disk full" "$T/c1.err"; then
    ok "checkpoint save on a full disk: exit $rc ($(grep -m1 -oiE "checkpoint save at step [0-9]+ failed" "$T/c1.err"))"
  else tail -3 "$T/c1.err"; bad "checkpoint save on a full disk: exit $rc"; fi
  [ "$(cat "$R/checkpoints/latest")" = "step_00000002" ] && [ -d "$R/checkpoints/step_00000001" ] \
    && ok "earlier checkpoints intact, latest unchanged" || bad "checkpoints after the failed save: $(ls "$R/checkpoints")"
  [ -z "$(ls -A "$R/checkpoints" | grep '^\.tmp')" ] && ok "no temporary checkpoint left" || bad "temporary checkpoint left"
  rm -f "$T/ck/filler"
  "${SFT[@]}" --set run.dir="$R" --set train.max_steps=4 --set ckpt.every=1 --set ckpt.keep_last=5 --resume > /dev/null 2>&1 \
    && ok "resumed after space came back" || bad "resume after space came back"
else
  echo "SKIP checkpoint full-disk case (needs root for a tmpfs)"
fi

# ---- 3. corrupt checkpoints --------------------------------------------------------------------
R=$T/corrupt
"${SFT[@]}" --set run.dir="$R" --set train.max_steps=4 --set ckpt.every=1 --set ckpt.keep_last=5 > /dev/null 2>&1 || bad "corrupt: first run"
C=$R/checkpoints
truncate -s $(( $(stat -c %s "$C/step_00000004/optim.h5") / 2 )) "$C/step_00000004/optim.h5"
"${SFT[@]}" --set run.dir="$R" --set train.max_steps=6 --set ckpt.every=1 --set ckpt.keep_last=1 --resume > "$T/r1.out" 2> "$T/r1.err"; rc=$?
if [ "$rc" -ne 0 ] && grep -q "step_00000004 is unreadable" "$T/r1.err" && grep -q -- "--resume-from" "$T/r1.err" \
   && grep -q "step_00000003" "$T/r1.err"; then ok "truncated optim.h5: resume refused with the reason and the older ones"
else tail -3 "$T/r1.err"; bad "truncated optim.h5 (exit $rc)"; fi
[ "$(ls -d "$C"/step_* | wc -l)" -eq 4 ] && ok "nothing deleted" || bad "checkpoints deleted: $(ls "$C")"
"${SFT[@]}" --set run.dir="$R" --set train.max_steps=4 --set ckpt.every=1 --set ckpt.keep_last=5 \
  --resume-from "$C/step_00000003" > /dev/null 2> "$T/r2.err" || { tail -3 "$T/r2.err"; bad "--resume-from an older checkpoint"; }
steps=$(jq -r '.step' "$R/metrics.jsonl" | tr '\n' ' ')
[ "$steps" = "1 2 3 4 " ] && ok "metrics.jsonl steps after the resume: $steps" || bad "metrics.jsonl steps repeat: $steps"
echo "../../../etc" > "$C/latest"
"${SFT[@]}" --set run.dir="$R" --set train.max_steps=6 --resume > /dev/null 2> "$T/r3.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q "not a step_N checkpoint of this run" "$T/r3.err" && ok "latest outside the run refused" \
  || { tail -2 "$T/r3.err"; bad "latest outside the run (exit $rc)"; }
echo "step_00000004" > "$C/latest"
sed -i 's/"step": 4/"step": -5/' "$C/step_00000004/state.yaml"
"${SFT[@]}" --set run.dir="$R" --set train.max_steps=6 --resume > /dev/null 2> "$T/r4.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q "'step' must be an integer >= 0, got -5" "$T/r4.err" && ok "state.yaml step -5 refused" \
  || { tail -2 "$T/r4.err"; bad "state.yaml step -5 (exit $rc)"; }

# ---- 4. refusals -----------------------------------------------------------------------------------
printf 'train:\n  max_steps: 3\n  max_steps: 5\n' > "$T/dup.yaml"
"$BIN/sft_train" --config "$T/dup.yaml" --dry-run > /dev/null 2> "$T/d.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q "key 'train.max_steps' is set twice" "$T/d.err" && ok "duplicate YAML key refused" \
  || { tail -2 "$T/d.err"; bad "duplicate YAML key (exit $rc)"; }
"$BIN/sft_train" --config "$SRC/configs/tiny" --dry-run > /dev/null 2> "$T/d2.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q "is a directory" "$T/d2.err" && ok "directory as --config refused" || bad "directory as --config (exit $rc)"
cp "$T/p.jsonl" "$T/same.jsonl"; before=$(md5sum < "$T/same.jsonl")
"$BIN/rlhf_prep" prompts --in "$T/same.jsonl" --out "$T/same.jsonl" > /dev/null 2> "$T/s.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q "is also an input" "$T/s.err" && [ "$(md5sum < "$T/same.jsonl")" = "$before" ] \
  && ok "--in X --out X refused, X untouched" || bad "--in X --out X (exit $rc)"
"$BIN/rlhf_convert" init --family gpt2 --tokenizer byte --out "$T/ck_init" > /dev/null 2>&1 || bad "convert init"
"$BIN/rlhf_convert" init --family gpt2 --tokenizer byte --out "$T/ck_init" > /dev/null 2> "$T/i.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q -- "--force" "$T/i.err" && ok "convert into an existing checkpoint refused" || bad "convert overwrite (exit $rc)"
"$BIN/rlhf_convert" init --family gpt2 --tokenizer byte --out "$T/ck_init" --force > /dev/null 2>&1 \
  && ok "... and allowed with --force" || bad "convert --force"
"$BIN/rlhf_convert" to-hf --in "$T/ck_init" --out "$T/hf_out" --max-shard-mb 0.05 > /dev/null 2>&1 && [ "$(ls "$T/hf_out" | grep -c safetensors)" -gt 2 ] || bad "to-hf in shards"
"$BIN/rlhf_convert" to-hf --in "$T/ck_init" --out "$T/hf_out" > /dev/null 2> "$T/th.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q "already holds a Hugging Face model" "$T/th.err" && ok "to-hf into an existing HF folder refused" \
  || { tail -2 "$T/th.err"; bad "to-hf overwrite (exit $rc)"; }
"$BIN/rlhf_convert" to-hf --in "$T/ck_init" --out "$T/hf_out" --force > /dev/null 2>&1 \
  && [ "$(ls "$T/hf_out" | grep -c safetensors)" -eq 1 ] && ok "... --force replaces it, no stale shards left" \
  || bad "to-hf --force: $(ls "$T/hf_out" | tr '\n' ' ')"
# A --force export that fails part way (its tokenizer cannot be copied) leaves the previous export
# byte for byte, and no staging folder behind.
"$BIN/rlhf_convert" init --family gpt2 --tokenizer "$SRC/../shared/data/gpt2" --out "$T/ck_gpt2tok" > /dev/null 2>&1 \
  || bad "convert init with the gpt2 tokenizer"
rm -f "$T/ck_gpt2tok/tokenizer/merges.txt"
before=$(cd "$T/hf_out" && md5sum * | md5sum)
"$BIN/rlhf_convert" to-hf --in "$T/ck_gpt2tok" --out "$T/hf_out" --force > /dev/null 2> "$T/tf.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q "the folder was left as it was" "$T/tf.err" && [ "$(cd "$T/hf_out" && md5sum * | md5sum)" = "$before" ] \
  && [ -z "$(ls -d "$T"/hf_out.rlhf-* 2>/dev/null)" ] && ok "a failed to-hf --force leaves the previous export untouched" \
  || { tail -2 "$T/tf.err"; ls "$T"; bad "failed to-hf --force (exit $rc)"; }

# Absurd sizes fail fast, naming the key: from YAML and from a Hugging Face config.json.
start=$(date +%s)
"$BIN/sft_train" --config "$SRC/configs/tiny/sft.yaml" --set model.n_layer=1000000000000 --dry-run > /dev/null 2> "$T/n.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q "model.n_layer = .1000000000000.: expected an integer in \[1, 1024\]" "$T/n.err" \
  && ok "model.n_layer 1e12 refused" || { tail -2 "$T/n.err"; bad "n_layer 1e12 (exit $rc)"; }
mkdir -p "$T/hf_big"
printf '{"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1000000000000, "num_attention_heads": 4, "max_position_embeddings": 64}' > "$T/hf_big/config.json"
"$BIN/rlhf_convert" from-hf --in "$T/hf_big" --out "$T/hf_big_ckpt" --tokenizer byte > /dev/null 2> "$T/h.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q "n_layer must be in" "$T/h.err" && ok "config.json num_hidden_layers 1e12 refused" \
  || { tail -2 "$T/h.err"; bad "config.json n_layer 1e12 (exit $rc)"; }
"$BIN/rlhf_eval" reward --policy x --reward-model y --prompts z --micro-batch 0 > /dev/null 2> "$T/m.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q -- "--micro-batch: Value 0 not in range" "$T/m.err" && ok "rlhf_eval --micro-batch 0 refused naming the flag" \
  || { tail -2 "$T/m.err"; bad "--micro-batch 0 (exit $rc)"; }
"${SFT[@]}" --set run.dir="$T/mb" --set train.micro_batch_size=1000000000 --set train.global_batch_size=1000000000 > /dev/null 2> "$T/mb.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q "train.micro_batch_size = 1000000000 .* is far too large" "$T/mb.err" && [ ! -s "$T/mb/metrics.jsonl" ] \
  && ok "train.micro_batch_size 1e9 refused before allocating ($(grep -o 'needs about [0-9.]* GiB' "$T/mb.err"))" \
  || { tail -2 "$T/mb.err"; bad "micro_batch_size 1e9 (exit $rc)"; }
[ $(( $(date +%s) - start )) -le 20 ] && ok "size checks fail fast ($(( $(date +%s) - start )) s)" || bad "size checks slow"

# Every input a stage will need is opened before step 1, and a bad one names its key and file.
"${SFT[@]}" --set run.dir="$T/rm_sft" --set train.max_steps=1 > /dev/null 2>&1 || bad "sft for rm"
"$BIN/rm_train" --config "$SRC/configs/tiny/rm.yaml" --set run.dir="$T/rmrun" --set init="$T/rm_sft" \
  --set data.train="$T/data/ranked.h5" --set data.eval="$T/data/ranked_eval.h5" \
  --set data.bias_data="$T/nope/sft.h5" --set train.max_steps=2 > /dev/null 2> "$T/b.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q "data.bias_data: cannot open '$T/nope/sft.h5'" "$T/b.err" && [ ! -s "$T/rmrun/metrics.jsonl" ] \
  && [ ! -d "$T/rmrun/checkpoints" ] && ok "rm_train: a missing data.bias_data fails before step 1, naming key and file" \
  || { tail -2 "$T/b.err"; bad "missing bias_data (exit $rc)"; }
"${SFT[@]}" --set run.dir="$T/ev" --set data.eval="$T/data/ranked_eval.h5" > /dev/null 2> "$T/e.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q "data.eval: $T/data/ranked_eval.h5" "$T/e.err" && [ ! -s "$T/ev/metrics.jsonl" ] \
  && ok "sft_train: a ranked file as data.eval fails before step 1" || { tail -2 "$T/e.err"; bad "wrong-kind data.eval (exit $rc)"; }

# gzip input with bytes after the stream: counted (with the offset), an error under --strict.
printf '{"prompt": "p", "response": "r"}\n' | gzip -c > "$T/g.jsonl.gz"; printf 'JUNK' >> "$T/g.jsonl.gz"
"$BIN/rlhf_prep" sft --in "$T/g.jsonl.gz" --out "$T/g.h5" > /dev/null 2> "$T/g.err"; rc=$?
[ "$rc" -eq 0 ] && grep -q "trailing_data_after_gzip = 1" "$T/g.err" && ok "gzip trailing data counted" \
  || { tail -3 "$T/g.err"; bad "gzip trailing data not counted (exit $rc)"; }
"$BIN/rlhf_prep" sft --in "$T/g.jsonl.gz" --out "$T/g2.h5" --strict > /dev/null 2> "$T/g2.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q "4 bytes after the gzip stream" "$T/g2.err" && [ ! -e "$T/g2.h5" ] \
  && ok "gzip trailing data refused under --strict" || { tail -2 "$T/g2.err"; bad "gzip trailing data --strict (exit $rc)"; }

# Library errors reach the user without a C++ backtrace (RLHF_DEBUG=1 keeps it).
for f in "$T"/*.err; do grep -q "frame #" "$f" && bad "backtrace printed in $(basename "$f")"; done

# ---- 5. SIGTERM to the launcher with 2 ranks -------------------------------------------------------
R=$T/sig
bash "$SRC/launch/mpirun.sh" 2 "${SFT[@]}" --set run.dir="$R" --set train.max_steps=100000 \
  --set train.global_batch_size=8 > "$T/sig.out" 2> "$T/sig.err" &
pid=$!
for _ in $(seq 1 120); do [ -s "$R/metrics.jsonl" ] && break; sleep 0.5; done
kill -TERM "$pid"
wait "$pid"; rc=$?
if [ "$rc" -eq 75 ] && [ -f "$R/checkpoints/latest" ]; then ok "SIGTERM to mpirun.sh -np 2: exit 75, checkpoint $(cat "$R/checkpoints/latest")"
else tail -5 "$T/sig.err"; bad "SIGTERM to mpirun.sh -np 2: exit $rc"; fi
exit $fail
