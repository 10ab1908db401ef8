#!/usr/bin/env bash
# test_layering.sh — the include rule of docs/ARCHITECTURE.md, enforced.
#
#   bash tests/scripts/test_layering.sh BIN_DIR SOURCE_DIR    (ctest: script.test_layering)
#
# Every `#include "x/y.h"` under src/ must point at the same layer or one the table below lets
# it use. Layers (lower first):  core ← dist, tokenizer, data, task, chat ← model ← io ← train
# ← sft, rm, ppo, dpo ← tools (chat: the chat-template engine, used by tools). The stages never include one another. The test also checks itself: it
# adds a forbidden include to a copy of the tree and expects the check to fail.
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

# Self-check: a stage header included from the model layer must be caught.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp -r "$SRC_ROOT/src" "$tmp/src"
echo '#include "ppo/ppo_loss.h"' >> "$tmp/src/common/model/model.h"
if check_tree "$tmp/src" 2>"$tmp/err"; then
  echo "layering: self-check FAILED: a forbidden include (model -> ppo) was not caught" >&2
  exit 1
fi
grep -q "layer 'model' may not include layer 'ppo'" "$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
echo "layering: self-check ok (a model -> ppo include is rejected)"
