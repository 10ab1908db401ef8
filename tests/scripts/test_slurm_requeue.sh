#!/usr/bin/env bash
# test_slurm_requeue.sh — a pre-empted Slurm job continues where it stopped (launch/slurm.sbatch).
#
#   bash tests/scripts/test_slurm_requeue.sh BIN_DIR SOURCE_DIR   (ctest: script.test_slurm_requeue)
#
# Without Slurm: the sbatch file runs as a plain script (RLHF_LAUNCHER=local, SLURM_JOB_ID set)
# with a stand-in `scontrol` on PATH that records its arguments. A tiny SFT run (60 steps) gets
# SIGUSR1 — sent to the batch shell, as --signal=B:USR1@120 does — after a few steps: the script
# must exit 75 having called `scontrol requeue JOBID`; the same command line again (what the
# requeued job runs, --resume added by the file) must resume from the checkpoint and finish with
# weights identical to an uninterrupted run (max |Δw| = 0 on CPU) and metrics.jsonl steps 1..60
# once. About 20 s on 2 cores.
set -euo pipefail
BIN=${1:?usage: $0 BIN_DIR SOURCE_DIR}; SRC=${2:?usage: $0 BIN_DIR SOURCE_DIR}
BIN=$(cd "$BIN" && pwd)
W=$(mktemp -d /tmp/rlhf_slurm.XXXXXX)
trap 'rm -rf "$W"' EXIT
export RLHF_THREADS=1 OMP_NUM_THREADS=1
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

"$BIN/rlhf_prep" synth --out "$W/data" --n-sft 128 --n-sft-eval 8 --n-ranked 8 --n-ranked-eval 4 \
  --n-prompts 8 --n-prompts-eval 4 --pretrain-bytes 4000 --pretrain-eval-bytes 1000 2>/dev/null
ARGS=(--config "$SRC/configs/tiny/sft.yaml" --set model.n_layer=2 --set model.d_model=64
      --set model.n_head=2 --set model.n_kv_head=2 --set model.d_ff=128 --set data.train="$W/data/sft.h5"
      --set data.eval= --set train.max_steps=60 --set train.global_batch_size=8 --set train.micro_batch_size=8
      --set train.warmup_steps=2 --set ckpt.every=0 --set run.tensorboard=false)
"$BIN/sft_train" "${ARGS[@]}" --set run.dir="$W/ref" 2>"$W/ref.log" || { tail -3 "$W/ref.log"; exit 1; }

mkdir -p "$W/fakebin"
printf '#!/bin/sh\necho "$@" >> "%s/scontrol.calls"\n' "$W" > "$W/fakebin/scontrol"
chmod +x "$W/fakebin/scontrol"
JOBENV=(env PATH="$W/fakebin:$PATH" SLURM_JOB_ID=4242 RLHF_LAUNCHER=local)
SBATCH=(bash "$SRC/launch/slurm.sbatch" "$BIN/sft_train" "${ARGS[@]}" --set run.dir="$W/run")
# The batch shell itself in the background ($! is its pid: Slurm signals that shell, B:USR1).
"${JOBENV[@]}" "${SBATCH[@]}" > "$W/job1.log" 2>&1 &
JOB=$!
for _ in $(seq 1 600); do  # until a few steps are logged (at most 60 s)
  [ "$(cat "$W/run/metrics.jsonl" 2>/dev/null | wc -l)" -ge 3 ] && break
  sleep 0.1
done
kill -USR1 "$JOB"
set +e; wait "$JOB"; rc=$?; set -e
stopped_at=$(wc -l < "$W/run/metrics.jsonl")
[ "$rc" = 75 ] && ok "SIGUSR1 to the batch shell: exit 75 after step $stopped_at of 60" \
  || { tail -5 "$W/job1.log"; bad "exit code $rc, expected 75"; }
[ "$stopped_at" -lt 60 ] || bad "the run finished before the signal (test inconclusive)"
[ "$(cat "$W/scontrol.calls" 2>/dev/null)" = "requeue 4242" ] && ok "scontrol requeue 4242 called" \
  || bad "scontrol calls: '$(cat "$W/scontrol.calls" 2>/dev/null)'"
grep -q "resuming from\|no checkpoint to resume from" "$W/job1.log" || bad "first start did not pass --resume"

"${JOBENV[@]}" SLURM_RESTART_COUNT=1 "${SBATCH[@]}" > "$W/job2.log" 2>&1 || { tail -5 "$W/job2.log"; bad "requeued job failed"; }
grep -q "resuming from" "$W/job2.log" && ok "requeued job resumed ($(grep -o 'resuming from.*' "$W/job2.log" | head -1))" \
  || bad "requeued job did not resume"
[ "$(jq -c -s 'map(.step)' "$W/run/metrics.jsonl")" = "$(jq -c -s 'map(.step)' "$W/ref/metrics.jsonl")" ] \
  && ok "metrics.jsonl steps 1..60 once" || bad "metrics.jsonl steps differ from the reference"
d=$("$BIN/rlhf_eval" weights-diff --a "$W/ref" --b "$W/run" 2>/dev/null | tail -n 1 | jq '.max_abs_diff')
[ "$d" = 0 ] && ok "final weights identical to the uninterrupted run (max |dw| = 0)" || bad "max |dw| = $d"
[ $fail = 0 ] && echo PASS
exit $fail
