#!/usr/bin/env bash
# test_tensorboard.sh — run.dir/tb holds every scalar of metrics.jsonl, read back with
# TensorBoard's own reader (EventAccumulator, PyPI tensorboard in launch/pyenv.sh's environment).
#
#   bash tests/scripts/test_tensorboard.sh BIN_DIR SOURCE_DIR      (ctest: script.test_tensorboard)
#
# A tiny SFT stage (1 layer, d_model 32, 6 steps, eval every 2, checkpoint every 2) stops at
# step 4; it is then resumed from the step-2 checkpoint, so steps 3 and 4 were logged twice by
# the two runs: metrics.jsonl and the events files must each hold them once. The reader runs with
# purge_orphaned_data=False (no repair on its side), and every (tag, step) of metrics.jsonl must
# be in the events exactly once with the value as float32, and nothing else. Also checked on the
# same runs: samples.jsonl's held-out examples (3 per evaluation, no repeated step) and train.log
# (timestamped, ranked lines of both runs). A run with run.tensorboard=false writes no tb/, one
# with run.log_level=warn no info line, one with a missing data.train its error into train.log. About 15 s on 2 cores. Skips (skip.sh: ctest skip; a failure under CI=true) only
# when the reference Python environment cannot be made (no PyPI access).
set -euo pipefail
BIN=${1:?usage: $0 BIN_DIR SOURCE_DIR}; SRC=${2:?usage: $0 BIN_DIR SOURCE_DIR}
source "$SRC/tests/scripts/skip.sh"
T=$(mktemp -d /tmp/rlhf_tb.XXXXXX)
trap 'rm -rf "$T"' EXIT
export RLHF_THREADS=1 OMP_NUM_THREADS=1

PY=$(PYENV_PKGS="tensorboard numpy" bash "$SRC/launch/pyenv.sh") \
  || skip "no reference Python environment (launch/pyenv.sh failed)"

"$BIN/rlhf_prep" synth --out "$T/data" --n-sft 64 --n-sft-eval 16 --n-ranked 8 --n-ranked-eval 4 \
  --n-prompts 8 --n-prompts-eval 4 --pretrain-bytes 4000 --pretrain-eval-bytes 2000 2>/dev/null
SFT=("$BIN/sft_train" --config "$SRC/configs/tiny/sft.yaml" --set run.dir="$T/sft"
     --set data.train="$T/data/sft.h5" --set data.eval="$T/data/sft_eval.h5" --set model.n_layer=1
     --set model.d_model=32 --set model.d_ff=64 --set model.n_head=2 --set model.n_kv_head=2
     --set train.global_batch_size=4 --set train.micro_batch_size=4 --set train.max_steps=6
     --set train.warmup_steps=1 --set train.eval_every=2 --set train.eval_batches=1
     --set ckpt.every=2 --set ckpt.keep_last=3)
"${SFT[@]}" --set train.stop_at_step=4 2> "$T/run1.log" || { tail -5 "$T/run1.log"; echo "FAIL run 1"; exit 1; }
sleep 1  # the resumed run's file name carries a later second
"${SFT[@]}" --resume-from "$T/sft/checkpoints/step_00000002" 2> "$T/run2.log" \
  || { tail -5 "$T/run2.log"; echo "FAIL resumed run"; exit 1; }
grep -q "tb: dropped" "$T/run2.log" || { echo "FAIL: the resume did not drop the events after step 2"; exit 1; }

"$PY" - "$T/sft" <<'EOF'
import glob, json, math, struct, sys
from tensorboard.backend.event_processing import event_accumulator as ea
run = sys.argv[1]
files = sorted(glob.glob(run + "/tb/events.out.tfevents.*"))
assert len(files) == 2, f"expected 2 events files (first run, resumed run), found {files}"
acc = ea.EventAccumulator(run + "/tb", size_guidance={ea.SCALARS: 0}, purge_orphaned_data=False)
acc.Reload()
tb = {}
for tag in acc.Tags()["scalars"]:
    for e in acc.Scalars(tag):
        assert (tag, e.step) not in tb, f"duplicate step {e.step} of {tag}"
        tb[(tag, e.step)] = e.value
rows = [json.loads(l) for l in open(run + "/metrics.jsonl")]
steps = [r["step"] for r in rows]
assert steps == list(range(1, 7)), f"metrics.jsonl steps {steps}"
want = {}
for r in rows:
    for k, v in r.items():
        if k != "step" and (isinstance(v, (int, float)) or v is None):
            want[(k, r["step"])] = float(v) if v is not None else float("nan")  # NaN is null in JSON
f32 = lambda x: struct.unpack("f", struct.pack("f", x))[0]
for key, v in want.items():
    assert key in tb, f"{key} of metrics.jsonl missing from the events"
    got = tb[key]
    assert (math.isnan(v) and math.isnan(got)) or got == f32(v), f"{key}: events {got}, metrics.jsonl {v}"
extra = set(tb) - set(want)
assert not extra, f"events not in metrics.jsonl: {sorted(extra)[:5]}"
evals = sorted(s for (k, s) in want if k == "eval_loss")
assert evals == [2, 4, 6], f"eval_loss at steps {evals}"
print(f"ok   {len(want)} scalars ({len({k for k, _ in want})} tags x steps 1..6, eval at 2/4/6) "
      f"identical in {len(files)} events files, no duplicate step")
EOF

# SFT's held-out examples (samples.jsonl): 3 rows at each evaluation (steps 2, 4, 6), once each
# after the resume, with prompt, reference and the greedy continuation.
[ "$(jq -c -s 'map(.step)' "$T/sft/samples.jsonl")" = "[2,2,2,4,4,4,6,6,6]" ] \
  && jq -e -s 'all(.[]; .stage == "sft" and (.prompt | length > 0) and (.reference | length > 0)
                and (.response | strings) and (.length | numbers) and (.eos | type == "boolean"))' "$T/sft/samples.jsonl" >/dev/null \
  && echo "ok   sft samples.jsonl: 3 held-out examples at steps 2, 4, 6" \
  || { echo "FAIL sft samples.jsonl: $(jq -c -s 'map(.step)' "$T/sft/samples.jsonl")"; exit 1; }
# The run log: timestamped lines with the rank and level in run.dir/train.log (both runs appended).
[ "$(grep -c '^[0-9-]* [0-9:.]* \[rank 0\] INFO  # sft_train' "$T/sft/train.log")" = 2 ] \
  && echo "ok   train.log: $(head -1 "$T/sft/train.log" | cut -c1-60)..." \
  || { echo "FAIL train.log: $(head -2 "$T/sft/train.log")"; exit 1; }

"${SFT[@]}" --set run.dir="$T/off" --set run.tensorboard=false --set train.max_steps=1 2> "$T/run3.log" \
  || { tail -5 "$T/run3.log"; echo "FAIL run.tensorboard=false"; exit 1; }
[ ! -e "$T/off/tb" ] || { echo "FAIL: run.tensorboard=false wrote $T/off/tb"; exit 1; }
echo "ok   run.tensorboard=false writes no tb/"
# run.log_level=warn: no info lines on stderr or in train.log.
"${SFT[@]}" --set run.dir="$T/quiet" --set run.log_level=warn --set train.max_steps=1 2> "$T/run4.log" \
  || { tail -5 "$T/run4.log"; echo "FAIL run.log_level=warn"; exit 1; }
! grep -q "INFO" "$T/run4.log" "$T/quiet/train.log" && echo "ok   run.log_level=warn: no info lines" \
  || { echo "FAIL: info lines with run.log_level=warn"; exit 1; }
# A fatal error after start-up reaches train.log too (and still stderr, exit non-zero).
if "${SFT[@]}" --set run.dir="$T/bad" --set data.train="$T/missing.h5" 2> "$T/run5.log"; then
  echo "FAIL: a missing data.train was accepted"; exit 1; fi
grep -q "\[rank 0\] ERROR error: .*missing.h5" "$T/bad/train.log" && grep -q "missing.h5" "$T/run5.log" \
  && echo "ok   fatal error in train.log: $(grep -o 'ERROR error: .*' "$T/bad/train.log" | cut -c1-80)" \
  || { echo "FAIL: the error is not in train.log: $(tail -2 "$T/bad/train.log")"; exit 1; }
echo PASS
