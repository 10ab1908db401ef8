#!/usr/bin/env bash
# Checkpoints survive SIGKILL at any moment: sft_train saves a checkpoint every step (tiny model),
# is killed with SIGKILL at a random point, and restarted with --resume, ROUNDS times. After each
# kill: checkpoints/latest (when present) is one complete line naming a step directory that
# exists with model.h5, optim.h5 and state.yaml; the next --resume resumes from exactly that
# directory (no silent fallback) and runs. A last resume must finish cleanly (exit 0). Every kill
# leaves run.dir/.lock behind, stale: the next run takes it (DirLock: a flock the kernel releases);
# in round 1 a second run started while the first holds run.dir is refused, naming the holder, and
# leaves its config.yaml untouched.
# Usage: test_ckpt_kill.sh BIN_DIR SOURCE_DIR [ROUNDS]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" kill "$@"
ROUNDS=${3:-10}
at_exit 'kill -9 $(jobs -p) 2>/dev/null'
"$BIN/rlhf_prep" synth --out "$W/data" --seed 5 --n-sft 256 --n-sft-eval 8 --n-ranked 8 --n-ranked-eval 4 \
  --n-prompts 8 --n-prompts-eval 4 --pretrain-bytes 2000 --pretrain-eval-bytes 1000 2>/dev/null
RUN="$W/sft"
ARGS=(--config "$SRC/configs/tiny/sft.yaml" --set run.dir="$RUN" --set data.train="$W/data/sft.h5"
      --set data.eval= --set model.n_layer=1 --set model.d_model=32 --set model.n_head=2
      --set model.n_kv_head=2 --set model.d_ff=64 --set model.max_seq_len=64 --set train.max_steps=100000
      --set train.global_batch_size=4 --set train.micro_batch_size=2 --set train.eval_every=0
      --set ckpt.every=1 --set ckpt.keep_last=2 --set run.log_every=1000)

# Prints the checkpoint `latest` names ("" when there is none yet) after checking it is complete.
check_latest() {
  local root="$RUN/checkpoints" name
  [ -e "$root/latest" ] || { echo ""; return 0; }
  name=$(cat "$root/latest")
  [[ "$name" =~ ^step_[0-9]{8}$ ]] || { bad "latest holds '$name' (not a step directory name)"; echo ""; return 0; }
  for f in model.h5 optim.h5 state.yaml; do
    [ -s "$root/$name/$f" ] || bad "latest -> $name but $f is missing or empty"
  done
  echo "$root/$name"
}

# While run $1 holds run.dir, a second run there is refused naming it, and changes nothing there.
second_run_refused() {
  local holder=$1 k before
  for k in $(seq 1 100); do grep -qs "pid $holder " "$RUN/.lock" && break; sleep 0.1; done
  before=$(md5sum < "$RUN/config.yaml")
  if "$BIN/sft_train" "${ARGS[@]}" --resume --set train.learning_rate=1e-3 >"$W/out.second" 2>"$W/log.second"; then
    bad "a second run in the same run.dir was not refused"
  elif grep -q "is in use by another run (sft_train, pid $holder on" "$W/log.second"; then
    ok "a second run in the same run.dir is refused, naming the holder (pid $holder)"
  else
    bad "second run: $(tail -n 2 "$W/log.second")"
  fi
  [ "$(md5sum < "$RUN/config.yaml")" = "$before" ] || bad "the refused run rewrote run.dir/config.yaml"
}

kills=0
early=0
for i in $(seq 1 "$ROUNDS"); do
  expect=$(check_latest)
  "$BIN/sft_train" "${ARGS[@]}" --resume >"$W/out.$i" 2>"$W/log.$i" &
  pid=$!
  # 1.0 .. 3.5 s: mostly past start-up (or resume), into steps that each write a checkpoint.
  sleep "$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.2f", 1.0 + 2.5 * rand() }')"
  if [ "$i" = 1 ]; then second_run_refused "$pid"; fi
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null || true
  # A kill during start-up (before the resume decision is printed) has nothing to check here.
  if [ -n "$expect" ] && grep -qE "resuming from|starting fresh" "$W/log.$i"; then
    grep -q "resuming from $expect" "$W/log.$i" ||
      bad "round $i: expected to resume from $expect; log says: $(grep -m1 -E 'resum|starting fresh' "$W/log.$i")"
  elif [ -n "$expect" ]; then
    early=$((early + 1))
  fi
  grep -q "error" "$W/log.$i" && bad "round $i: $(grep -m1 error "$W/log.$i")"
done
last=$(check_latest)
[ -n "$last" ] || bad "no checkpoint after $ROUNDS rounds"
step=$((10#$(basename "$last" | sed 's/step_//')))
"$BIN/sft_train" "${ARGS[@]}" --resume --set train.stop_at_step=$((step + 2)) >"$W/out.final" 2>"$W/log.final" ||
  bad "final resume from $last failed: $(tail -n 3 "$W/log.final")"
grep -q "resuming from $last" "$W/log.final" || bad "final run did not resume from $last"
echo "$kills SIGKILLs over $ROUNDS rounds ($early during start-up); last checkpoint $(basename "$last"); final resume ok"
[ $fail = 0 ] && echo "ok   every kill left a complete checkpoint that --resume used"
exit $fail
