#!/usr/bin/env bash
# test_install.sh — `cmake --install` gives a working installation (LICENSE, binaries, launch
# scripts, configs) and every binary answers --version with the version and git commit.
#
#   bash tests/scripts/test_install.sh BIN_DIR SOURCE_DIR          (ctest: script.test_install)
#
# Installs the build tree BIN_DIR/.. into a temporary prefix, then from there only: --version of
# the seven executables ("NAME X.Y.Z (git COMMIT)", the same commit for all), rlhf_prep synth, a
# 3-step SFT stage with the installed configs/tiny/sft.yaml, and `rlhf_eval ppl` on its checkpoint.
# About 10 s on 2 cores.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" install "$@"
T=$W
BUILD=$(cd "$BIN/.." && pwd)

cmake --install "$BUILD" --prefix "$T/prefix" > "$T/install.log" 2>&1 || { tail -5 "$T/install.log"; echo "FAIL cmake --install"; exit 1; }
P=$T/prefix
for f in bin/librlhf_spm.so share/rlhf/LICENSE share/rlhf/launch/pipeline.sh share/rlhf/launch/slurm.sbatch \
         share/rlhf/configs/tiny/sft.yaml; do
  [ -e "$P/$f" ] || bad "$f not installed"
done
commits=()
for b in sft_train rm_train ppo_train dpo_train rlhf_prep rlhf_eval rlhf_convert rlhf_serve; do
  v=$("$P/bin/$b" --version 2>&1) || bad "$b --version exited non-zero: $v"
  [[ "$v" =~ ^$b\ [0-9]+\.[0-9]+\.[0-9]+\ \(git\ [^\)]+\)$ ]] || bad "$b --version: '$v'"
  commits+=("${v##* }")
done
[ "$(printf '%s\n' "${commits[@]}" | sort -u | wc -l)" = 1 ] && ok "--version of all eight: $("$P/bin/sft_train" --version)" \
  || bad "different commits: ${commits[*]}"

cd "$T"  # nothing from the source or build tree below
"$P/bin/rlhf_prep" synth --out "$T/data" --n-sft 32 --n-sft-eval 8 --n-ranked 8 --n-ranked-eval 4 \
  --n-prompts 8 --n-prompts-eval 4 --pretrain-bytes 4000 --pretrain-eval-bytes 1000 2>/dev/null || bad "installed rlhf_prep synth"
"$P/bin/sft_train" --config "$P/share/rlhf/configs/tiny/sft.yaml" --set run.dir="$T/sft" \
  --set data.train="$T/data/sft.h5" --set data.eval="$T/data/sft_eval.h5" --set model.n_layer=1 \
  --set model.d_model=32 --set model.d_ff=64 --set model.n_head=2 --set model.n_kv_head=2 \
  --set train.max_steps=3 --set train.global_batch_size=4 --set train.micro_batch_size=4 \
  --set train.eval_every=0 --set ckpt.every=0 2> "$T/sft.log" || { tail -3 "$T/sft.log"; bad "installed sft_train"; }
[ "$(jq -s 'length' "$T/sft/metrics.jsonl" 2>/dev/null)" = 3 ] && jq -e '.complete' "$T/sft/summary.json" >/dev/null \
  && ok "installed sft_train ran 3 steps to a complete summary" || bad "installed sft_train run incomplete"
ppl=$("$P/bin/rlhf_eval" ppl --checkpoint "$T/sft" --data "$T/data/sft_eval.h5" 2>/dev/null | tail -n 1 | jq '.perplexity')
awk -v p="$ppl" 'BEGIN {exit !(p > 1)}' && ok "installed rlhf_eval ppl = $ppl" || bad "installed rlhf_eval ppl: '$ppl'"
[ $fail = 0 ] && echo PASS
exit $fail
