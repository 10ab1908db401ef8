#!/usr/bin/env bash
# test_plot.sh — launch/rlhf_plot draws decodable PNGs of the expected size.
#
#   bash tests/scripts/test_plot.sh BIN_DIR SOURCE_DIR             (ctest: script.test_plot)
#
# A pipeline-shaped run directory with metrics.jsonl for sft, rm and ppo (the keys the trainers
# log, values made up here; ppo with eval_* every 5 steps, a NaN-free gap and a null) is plotted;
# each PNG must decode fully (matplotlib.image.imread, which inflates every row) to
# 1200 x (300 x rows of 3 panels): sft 4 panels -> 600, rm 5 -> 600, ppo 14 -> 1500, overview
# 3 stages -> 900; a directory without metrics is an error naming it. About 5 s. Needs
# python3-matplotlib (launch/setup.sh installs it).
set -euo pipefail
SRC=${2:?usage: $0 BIN_DIR SOURCE_DIR}
T=$(mktemp -d /tmp/rlhf_plot.XXXXXX)
trap 'rm -rf "$T"' EXIT
# Debian's python3, where python3-matplotlib lives (rlhf_plot's interpreter too).
PY=/usr/bin/python3
"$PY" -c 'import matplotlib' 2>/dev/null || { echo "FAIL: python3-matplotlib is not installed (bash launch/setup.sh installs it)"; exit 1; }

"$PY" - "$T/run" <<'EOF2'
import json, math, os, sys
run = sys.argv[1]
def write(stage, rows):
    os.makedirs(f"{run}/{stage}", exist_ok=True)
    with open(f"{run}/{stage}/metrics.jsonl", "w") as f:
        for r in rows: f.write(json.dumps(r) + "\n")
write("sft", [{"step": s, "loss": 3 / s, "lr": 1e-3, "grad_norm": 1 / s, "tokens_per_s": 1000,
               "skipped": False, **({"eval_loss": 3.2 / s, "eval_ppl": math.exp(3.2 / s)} if s % 10 == 0 else {})}
              for s in range(1, 31)])
write("rm", [{"step": s, "loss": 0.7 - s / 100, "lr": 1e-4, "grad_norm": 0.5, "accuracy": 0.5 + s / 100,
              "margin": s / 10, **({"eval_accuracy": 0.6} if s == 20 else {})} for s in range(1, 21)])
write("ppo", [{"step": s, "loss": 0.1, "lr": 2e-4, "grad_norm": 0.3, "critic_grad_norm": 0.2,
               "reward_mean": s / 20, "kl_to_ref": s / 10, "beta": 0.7, "clip_frac": 0.1,
               "value_clip_frac": 0.05, "value_loss": 0.2, "entropy": 1.5, "ptx_loss": 2.0 if s != 7 else None,
               "response_length": 12, "eos_rate": 0.9, "tokens_per_s": 500,
               **({"eval_reward_mean": s / 25, "eval_kl_to_ref": s / 12, "eval_length_mean": 11,
                   "eval_eos_rate": 0.8, "eval_hidden_score": 0.3, "ptx_eval_loss": 2.1} if s % 5 == 0 else {})}
              for s in range(1, 21)])
EOF2
"$SRC/launch/rlhf_plot" "$T/run" > "$T/out.txt"
cat "$T/out.txt"
"$PY" - "$T/run/plots" <<'EOF2'
import sys
import matplotlib.image as mpimg
want = {"sft.png": (600, 1200), "rm.png": (600, 1200), "ppo.png": (1500, 1200), "overview.png": (900, 1200)}
bad = 0
for name, (h, w) in want.items():
    img = mpimg.imread(f"{sys.argv[1]}/{name}")  # full decode
    ok = img.shape[:2] == (h, w) and img.std() > 0.01  # not a blank page
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {img.shape[1]}x{img.shape[0]} (expected {w}x{h}), pixel std {img.std():.3f}")
    bad += not ok
sys.exit(bad)
EOF2
mkdir -p "$T/empty"
if "$SRC/launch/rlhf_plot" "$T/empty" 2> "$T/err.txt"; then echo "FAIL: no metrics accepted"; exit 1; fi
grep -q "no metrics.jsonl in $T/empty" "$T/err.txt" || { echo "FAIL: error does not name the directory: $(cat "$T/err.txt")"; exit 1; }
echo "ok   a directory without metrics: $(cat "$T/err.txt")"
echo PASS
