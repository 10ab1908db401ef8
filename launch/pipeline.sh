#!/usr/bin/env bash
# pipeline.sh CONFIG_DIR RUN_DIR — prep -> [pretrain] -> SFT -> RM -> PPO -> eval.
#   CONFIG_DIR holds sft.yaml, rm.yaml, ppo.yaml and prep.sh (makes the datasets into $RLHF_DATA);
#   with a pretrain.yaml too, a pretraining stage (sft_train on a token stream) runs first and the
#   SFT stage starts from it (InstructGPT's base model).
#   Stage run directories: RUN_DIR/pretrain, RUN_DIR/sft, RUN_DIR/rm, RUN_DIR/ppo (each with its config.yaml);
#   datasets in RUN_DIR/data; the evaluation in RUN_DIR/eval.json; curves in RUN_DIR/plots/*.png
#   (launch/rlhf_plot).
# Variables: NP (MPI ranks per stage, default 1), BIN (default build/bin; PREFIX/bin when run from
# an installed copy), EXTRA_PRETRAIN /
# EXTRA_SFT / EXTRA_RM / EXTRA_PPO (extra "--set k=v" arguments per stage), RESUME=1 (continue interrupted stages).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -eq 2 ] || { echo "usage: $0 CONFIG_DIR RUN_DIR" >&2; exit 2; }
CONFIG_DIR=$(cd "$1" && pwd)
mkdir -p "$2"
RUN_DIR=$(cd "$2" && pwd)
# Default binaries: the build tree's, else (an installed copy: PREFIX/share/rlhf/launch) PREFIX/bin.
if [ -z "${BIN:-}" ]; then
  BIN=$ROOT/build/bin
  [ -x "$BIN/sft_train" ] || [ ! -x "$ROOT/../../bin/sft_train" ] || BIN=$(cd "$ROOT/../../bin" && pwd)
fi
NP=${NP:-1}
export RLHF_RUN=$RUN_DIR RLHF_DATA=$RUN_DIR/data RLHF_BIN=$BIN RLHF_ROOT=$ROOT
export RLHF_SHARED_DATA=${RLHF_SHARED_DATA:-$(cd "$ROOT/.." && pwd)/shared/data}
mkdir -p "$RLHF_DATA"
for f in sft.yaml rm.yaml ppo.yaml prep.sh; do
  [ -f "$CONFIG_DIR/$f" ] || { echo "pipeline.sh: $CONFIG_DIR/$f is missing" >&2; exit 2; }
done
for b in rlhf_prep sft_train rm_train ppo_train rlhf_eval; do
  [ -x "$BIN/$b" ] || { echo "pipeline.sh: $BIN/$b not built (run launch/setup.sh)" >&2; exit 2; }
done

run() {  # run BINARY ARGS... on NP ranks
  if [ "$NP" -gt 1 ]; then bash "$ROOT/launch/mpirun.sh" "$NP" "$@"; else "$@"; fi
}
RESUME_FLAG=()
[ "${RESUME:-0}" = "1" ] && RESUME_FLAG=(--resume)
t0=$(date +%s)
stamp() { echo "[pipeline $(( $(date +%s) - t0 ))s] $*" >&2; }

stamp "prep: $CONFIG_DIR/prep.sh -> $RLHF_DATA"
bash "$CONFIG_DIR/prep.sh"
SFT_INIT=()
if [ -f "$CONFIG_DIR/pretrain.yaml" ]; then
  stamp "stage 0: pretrain"
  run "$BIN/sft_train" --config "$CONFIG_DIR/pretrain.yaml" --set run.dir="$RUN_DIR/pretrain" ${EXTRA_PRETRAIN:-} "${RESUME_FLAG[@]}"
  SFT_INIT=(--set init="$RUN_DIR/pretrain")
fi
stamp "stage 1: sft"
run "$BIN/sft_train" --config "$CONFIG_DIR/sft.yaml" --set run.dir="$RUN_DIR/sft" "${SFT_INIT[@]}" ${EXTRA_SFT:-} "${RESUME_FLAG[@]}"
stamp "stage 2: rm"
run "$BIN/rm_train" --config "$CONFIG_DIR/rm.yaml" --set run.dir="$RUN_DIR/rm" --set init="$RUN_DIR/sft" ${EXTRA_RM:-} "${RESUME_FLAG[@]}"
stamp "stage 3: ppo"
run "$BIN/ppo_train" --config "$CONFIG_DIR/ppo.yaml" --set run.dir="$RUN_DIR/ppo" --set init="$RUN_DIR/sft" \
  --set ppo.reward_model="$RUN_DIR/rm" ${EXTRA_PPO:-} "${RESUME_FLAG[@]}"
stamp "eval"
# Convention: prep.sh writes ranked_eval.h5 and prompts_eval.h5 (held-out) into $RLHF_DATA.
run "$BIN/rlhf_eval" report --run-dir "$RUN_DIR" --data-dir "$RLHF_DATA" | tail -n 1 > "$RUN_DIR/eval.json.tmp"
mv "$RUN_DIR/eval.json.tmp" "$RUN_DIR/eval.json"
stamp "plots: $RUN_DIR/plots"
"$ROOT/launch/rlhf_plot" "$RUN_DIR" --out "$RUN_DIR/plots" >&2 \
  || echo "pipeline.sh: warning: rlhf_plot failed (python3-matplotlib missing? launch/setup.sh installs it)" >&2
stamp "done: $RUN_DIR/eval.json"
cat "$RUN_DIR/eval.json"
