#!/usr/bin/env bash
# pipeline.sh CONFIG_DIR RUN_DIR — prep -> [pretrain] -> SFT -> RM -> PPO -> eval.
#   CONFIG_DIR holds sft.yaml, rm.yaml, ppo.yaml and prep.sh (makes the datasets into $RLHF_DATA);
#   with a pretrain.yaml too, a pretraining stage (sft_train on a token stream) runs first and the
#   SFT stage starts from it (InstructGPT's base model).
#   DPO=1 with a dpo.yaml in CONFIG_DIR: also SFT -> DPO (dpo_train, RUN_DIR/dpo, from RUN_DIR/sft on
#   the ranked data), run after PPO, and RUN_DIR/eval_dpo.json (`rlhf_eval compare` of DPO against SFT
#   on the held-out prompts under the RM; hidden scores on the embedded task). Default DPO=0: unchanged.
#   Stage run directories: RUN_DIR/pretrain, RUN_DIR/sft, RUN_DIR/rm, RUN_DIR/ppo (each with its config.yaml);
#   datasets in RUN_DIR/data; the evaluation in RUN_DIR/eval.json; curves in RUN_DIR/plots/*.png
#   (launch/rlhf_plot).
# Variables: NP (MPI ranks per stage, default 1), BIN (default build/bin; PREFIX/bin when run from
# an installed copy), EXTRA_PRETRAIN /
# EXTRA_SFT / EXTRA_RM / EXTRA_PPO / EXTRA_DPO (extra "--set k=v" arguments per stage), RESUME=1 (continue
# interrupted stages), DPO=1 (see above), EVAL_DPO (extra rlhf_eval compare flags, e.g. --max-new-tokens 40).
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
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # OpenMP threads sleep at barriers (common/core/process.h)
mkdir -p "$RLHF_DATA"
for f in sft.yaml rm.yaml ppo.yaml prep.sh; do
  [ -f "$CONFIG_DIR/$f" ] || { echo "pipeline.sh: $CONFIG_DIR/$f is missing" >&2; exit 2; }
done
DPO=${DPO:-0}
[ "$DPO" = 0 ] || [ -f "$CONFIG_DIR/dpo.yaml" ] || { echo "pipeline.sh: DPO=$DPO but $CONFIG_DIR/dpo.yaml is missing" >&2; exit 2; }
BINARIES=(rlhf_prep sft_train rm_train ppo_train rlhf_eval)
[ "$DPO" = 0 ] || BINARIES+=(dpo_train)
for b in "${BINARIES[@]}"; do
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
if [ "$DPO" != 0 ]; then
  stamp "stage 3b: dpo (from sft)"
  run "$BIN/dpo_train" --config "$CONFIG_DIR/dpo.yaml" --set run.dir="$RUN_DIR/dpo" --set init="$RUN_DIR/sft" \
    ${EXTRA_DPO:-} "${RESUME_FLAG[@]}"
fi
stamp "eval"
# Convention: prep.sh writes ranked_eval.h5 and prompts_eval.h5 (held-out) into $RLHF_DATA.
run "$BIN/rlhf_eval" report --run-dir "$RUN_DIR" --data-dir "$RLHF_DATA" | tail -n 1 > "$RUN_DIR/eval.json.tmp"
mv "$RUN_DIR/eval.json.tmp" "$RUN_DIR/eval.json"
if [ "$DPO" != 0 ]; then
  stamp "eval: dpo vs sft"
  run "$BIN/rlhf_eval" compare --a "$RUN_DIR/dpo" --b "$RUN_DIR/sft" --reward-model "$RUN_DIR/rm" \
    --prompts "$RLHF_DATA/prompts_eval.h5" ${EVAL_DPO:-} | tail -n 1 > "$RUN_DIR/eval_dpo.json.tmp"
  mv "$RUN_DIR/eval_dpo.json.tmp" "$RUN_DIR/eval_dpo.json"
fi
stamp "plots: $RUN_DIR/plots"
"$ROOT/launch/rlhf_plot" "$RUN_DIR" --out "$RUN_DIR/plots" >&2 \
  || echo "pipeline.sh: warning: rlhf_plot failed (python3-matplotlib missing? launch/setup.sh installs it)" >&2
stamp "done: $RUN_DIR/eval.json"
cat "$RUN_DIR/eval.json"
