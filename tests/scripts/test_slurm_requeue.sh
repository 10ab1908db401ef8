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
# once. The same with RLHF_LAUNCHER=mpirun and 2 ranks (against a 2-rank uninterrupted run).
# About 30 s on 2 cores.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" slurm "$@"

"$BIN/rlhf_prep" synth --out "$W/data" --n-sft 128 --n-sft-eval 8 --n-ranked 8 --n-ranked-eval 4 \
  --n-prompts 8 --n-prompts-eval 4 --pretrain-bytes 4000 --pretrain-eval-bytes 1000 2>/dev/null
ARGS=(--config "$SRC/configs/tiny/sft.yaml" --set model.n_layer=2 --set model.d_model=64
      --set model.n_head=2 --set model.n_kv_head=2 --set model.d_ff=128 --set data.train="$W/data/sft.h5"
      --set data.eval= --set train.max_steps=60 --set train.global_batch_size=8 --set train.micro_batch_size=4
      --set train.warmup_steps=2 --set ckpt.every=0 --set run.tensorboard=false)
MPI=(mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2)
"$BIN/sft_train" "${ARGS[@]}" --set run.dir="$W/ref" 2>"$W/ref.log" || { tail -3 "$W/ref.log"; exit 1; }
"${MPI[@]}" "$BIN/sft_train" "${ARGS[@]}" --set run.dir="$W/ref2" 2>"$W/ref2.log" || { tail -3 "$W/ref2.log"; exit 1; }

mkdir -p "$W/fakebin"
printf '#!/bin/sh\necho "$@" >> "%s/scontrol.calls"\n' "$W" > "$W/fakebin/scontrol"
chmod +x "$W/fakebin/scontrol"
# scenario LAUNCHER REF NAME [ENV...]: start the batch script, signal it, requeue, compare with REF.
scenario() {
  local launcher=$1 ref=$2 run=$W/$3; shift 3
  local JOBENV=(env PATH="$W/fakebin:$PATH" SLURM_JOB_ID=4242 RLHF_LAUNCHER="$launcher" "$@")
  local SBATCH=(bash "$SRC/launch/slurm.sbatch" "$BIN/sft_train" "${ARGS[@]}" --set run.dir="$run")
  rm -f "$W/scontrol.calls"
  # The batch shell itself in the background ($! is its pid: Slurm signals that shell, B:USR1).
  "${JOBENV[@]}" "${SBATCH[@]}" > "$run.job1.log" 2>&1 &
  local JOB=$!
  for _ in $(seq 1 600); do  # until a few steps are logged (at most 60 s)
    [ "$(cat "$run/metrics.jsonl" 2>/dev/null | wc -l)" -ge 3 ] && break
    sleep 0.1
  done
  kill -USR1 "$JOB"
  set +e; wait "$JOB"; local rc=$?; set -e
  local stopped_at; stopped_at=$(wc -l < "$run/metrics.jsonl")
  [ "$rc" = 75 ] && ok "$launcher: SIGUSR1 to the batch shell: exit 75 after step $stopped_at of 60" \
    || { tail -5 "$run.job1.log"; bad "$launcher: exit code $rc, expected 75"; }
  [ "$stopped_at" -lt 60 ] || bad "$launcher: the run finished before the signal (test inconclusive)"
  [ "$(cat "$W/scontrol.calls" 2>/dev/null)" = "requeue 4242" ] && ok "$launcher: scontrol requeue 4242 called" \
    || bad "$launcher: scontrol calls: '$(cat "$W/scontrol.calls" 2>/dev/null)'"
  grep -q "no checkpoint to resume from" "$run.job1.log" || bad "$launcher: first start did not pass --resume"

  "${JOBENV[@]}" SLURM_RESTART_COUNT=1 "${SBATCH[@]}" > "$run.job2.log" 2>&1 \
    || { tail -5 "$run.job2.log"; bad "$launcher: requeued job failed"; }
  grep -q "resuming from" "$run.job2.log" && ok "$launcher: requeued job resumed ($(grep -o 'resuming from.*' "$run.job2.log" | head -1))" \
    || bad "$launcher: requeued job did not resume"
  [ "$(jq -c -s 'map(.step)' "$run/metrics.jsonl")" = "$(jq -c -s 'map(.step)' "$ref/metrics.jsonl")" ] \
    && ok "$launcher: metrics.jsonl steps 1..60 once" || bad "$launcher: metrics.jsonl steps differ from the reference"
  local d; d=$("$BIN/rlhf_eval" weights-diff --a "$ref" --b "$run" 2>/dev/null | tail -n 1 | jq '.max_abs_diff')
  [ "$d" = 0 ] && ok "$launcher: final weights identical to the uninterrupted run (max |dw| = 0)" \
    || bad "$launcher: max |dw| = $d"
}
scenario local "$W/ref" run
# mpirun inside an "allocation" of 2 tasks: rank 0's 75 must survive mpirun (which reports 1).
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
  scenario mpirun "$W/ref2" run2 SLURM_NTASKS=2 SLURM_NTASKS_PER_NODE=2
[ $fail = 0 ] && echo PASS
exit $fail
