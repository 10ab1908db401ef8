#!/usr/bin/env bash
# test_layering.sh — the include rule of docs/ARCHITECTURE.md, enforced.
#
#   bash tests/scripts/test_layering.sh BIN_DIR SOURCE_DIR    (ctest: script.test_layering)
#
# Every `#include "x/y.h"` under src/ must point at the same layer or one the table below lets
# it use. Layers (lower first):  core ← dist, tokenizer, data, task, chat ← model ← io ← train
# ← sft, rm, ppo, dpo ← tools (chat: the chat-template engine, used by tools). The stages never
# include one another, the common layers include no stage (a stage reaches common code through its
# StageSpec, common/train/stage_spec.h), and tools/serve includes no stage. The test also checks
# itself: it adds forbidden includes to a copy of the tree and expects each to be caught.
set -euo pipefail
SRC_ROOT=${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

# layer -> the layers it may include besides itself
declare -A ALLOWED=(
  [core]=""
  [dist]="core"
  [tokenizer]="core"
  [data]="core"
  [task]="core"
  [chat]="core tokenizer"
  [model]="core dist tokenizer data"
  [io]="core dist tokenizer data model"
  [train]="core dist tokenizer data task model io"
  [sft]="core dist tokenizer data task chat model io train"
  [rm]="core dist tokenizer data task chat model io train"
  [ppo]="core dist tokenizer data task chat model io train"
  [dpo]="core dist tokenizer data task chat model io train"
  [tools]="core dist tokenizer data task chat model io train sft rm ppo dpo"
)

# Folders held to less than their layer allows: folder -> layers it may NOT include. rlhf_serve
# serves any reward model and knows nothing of PPO (the query framing is common/tokenizer's).
declare -A FORBIDDEN=(
  [tools/serve]="ppo sft rm dpo"
)

# The layer of a path relative to src/: common/<layer>/..., or <stage>/..., or tools/...
layer_of() {
  case "$1" in
    common/*/*) local r=${1#common/}; echo "${r%%/*}" ;;
    common/*) echo "common-flat" ;;
    *) echo "${1%%/*}" ;;
  esac
}

# check_tree DIR: prints every violation, returns 1 if any.
check_tree() {
  local src=$1 bad=0 f rel from inc to
  while IFS= read -r f; do
    rel=${f#"$src"/}
    from=$(layer_of "$rel")
    if [ -z "${ALLOWED[$from]+x}" ]; then
      echo "layering: $rel is in no known layer ('$from'): put it under a layer folder" >&2
      bad=1; continue
    fi
    while IFS= read -r inc; do
      to=$(layer_of "$inc")
      for folder in "${!FORBIDDEN[@]}"; do
        if [[ "$rel" == "$folder"/* && " ${FORBIDDEN[$folder]} " == *" $to "* ]]; then
          echo "layering: src/$rel includes \"$inc\": src/$folder may not include layer '$to'" >&2
          bad=1
        fi
      done
      [ "$to" = "$from" ] && continue
      if [[ " ${ALLOWED[$from]} " != *" $to "* ]]; then
        echo "layering: src/$rel includes \"$inc\": layer '$from' may not include layer '$to'" \
             "(allowed: ${ALLOWED[$from]:-none})" >&2
        bad=1
      fi
    done < <(sed -n 's|^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*|\1|p' "$f")
  done < <(find "$src" -name '*.h' -o -name '*.cpp' -o -name '*.cu' | sort)
  return $bad
}

check_tree "$SRC_ROOT/src"
echo "layering: src/ follows the include rule"

# Self-check: forbidden includes planted in a copy of the tree must each be caught: a stage header
# in the model layer, a stage in the common layer (here the training layer), a PPO header in
# rlhf_serve.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for probe in "common/model/model.h:ppo/ppo_loss.h:layer 'model' may not include layer 'ppo'" \
             "common/train/config.h:ppo/ppo_config.h:layer 'train' may not include layer 'ppo'" \
             "tools/serve/rm_server.h:ppo/reward/remote.h:src/tools/serve may not include layer 'ppo'"; do
  IFS=: read -r file inc want <<<"$probe"
  rm -rf "$tmp/src"; cp -r "$SRC_ROOT/src" "$tmp/src"
  echo "#include \"$inc\"" >> "$tmp/src/$file"
  if check_tree "$tmp/src" 2>"$tmp/err"; then
    echo "layering: self-check FAILED: $file including $inc was not caught" >&2
    exit 1
  fi
  grep -q "$want" "$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
  echo "layering: self-check ok ($file -> $inc is rejected)"
done
