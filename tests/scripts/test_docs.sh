#!/usr/bin/env bash
# test_docs.sh — the documentation keeps up with the code.
#
#   bash tests/scripts/test_docs.sh BIN_DIR SOURCE_DIR [CONFIG_MD]    (ctest: script.test_docs)
#
# 1. Config keys: every key path of the config schema — the first string argument of each
#    add_int / add_double / add_string / add_bool / add_enum call in
#    SOURCE_DIR/src/common/train/config.cpp, e.g. "train.learning_rate" — must appear in
#    docs/CONFIG.md as a code span (`train.learning_rate`). Fewer than 40 extracted keys is a
#    failure, and so is any other add_*(f, "key", ...) call the extraction does not know (a new
#    field kind), so a broken extraction cannot pass. CONFIG_MD (default
#    SOURCE_DIR/docs/CONFIG.md) checks another copy of the page.
# 2. Links: every relative Markdown link target `](path)` in README.md, docs/*.md and
#    docs/journal/*.md must name an existing file or directory of the repository ("#fragment"
#    ignored; http:, https:, mailto: and pure "#anchor" links are not checked).
# 3. Self-check: a copy of CONFIG.md without one key, and a page with a broken link, must fail.
# BIN_DIR is not used (the script tests share one calling convention). Needs only bash, grep, sed.
set -euo pipefail
SRC=${2:?usage: $0 BIN_DIR SOURCE_DIR [CONFIG_MD]}
SRC=$(cd "$SRC" && pwd)
CONFIG_MD=${3:-$SRC/docs/CONFIG.md}
SCHEMA=$SRC/src/common/train/config.cpp
MIN_KEYS=40

[ -f "$SCHEMA" ] || { echo "FAIL: $SCHEMA not found"; exit 1; }
[ -f "$CONFIG_MD" ] || { echo "FAIL: $CONFIG_MD not found"; exit 1; }

# The schema's key paths, one per line, in schema order.
schema_keys() {
  { grep -oE 'add_(int|double|string|bool|enum)\([^,()]*,[[:space:]]*"[^"]+"' "$SCHEMA" || true; } \
    | sed -E 's/.*"([^"]+)"$/\1/'
}
# Every add_<anything>(x, "key" call: must all be of the kinds above.
all_add_calls() {
  grep -oE 'add_[A-Za-z0-9_]+\([^,()]*,[[:space:]]*"[^"]+"' "$SCHEMA" || true
}

# check_keys CONFIG_MD: names every key missing from the page; returns 1 if any is.
check_keys() {
  local page=$1 key missing=0
  while IFS= read -r key; do
    if ! grep -qF -- "\`$key\`" "$page"; then
      echo "docs: config key \`$key\` is not documented in $page" >&2
      missing=1
    fi
  done < <(schema_keys)
  return $missing
}

# check_links FILE...: names every relative link target that does not exist; returns 1 if any.
check_links() {
  local bad=0 f dir target path
  for f in "$@"; do
    dir=$(dirname "$f")
    while IFS= read -r target; do
      target=${target#"]("}; target=${target%")"}
      target=${target%% *}                       # drop an optional "title"
      case "$target" in
        http://*|https://*|mailto:*|'#'*|'') continue ;;
      esac
      path=${target%%#*}
      if [ ! -e "$dir/$path" ]; then
        echo "docs: ${f#"$SRC"/} links to '$target', but $path does not exist" >&2
        bad=1
      fi
    done < <(grep -oE '\]\([^)[:space:]]+( "[^"]*")?\)' "$f" || true)
  done
  return $bad
}

fail=0
n_keys=$(schema_keys | wc -l)
if [ "$n_keys" -lt "$MIN_KEYS" ]; then
  echo "FAIL: only $n_keys config keys extracted from $SCHEMA (expected >= $MIN_KEYS): the" \
       "extraction no longer matches the schema's add_* calls" >&2
  fail=1
fi
unknown=$(all_add_calls | grep -vE '^add_(int|double|string|bool|enum)\(' || true)
if [ -n "$unknown" ]; then
  echo "FAIL: schema calls this test does not extract (teach schema_keys the new kind):" >&2
  echo "$unknown" | sed 's/^/  /' >&2
  fail=1
fi
if check_keys "$CONFIG_MD"; then
  echo "docs: all $n_keys config keys of the schema are in ${CONFIG_MD#"$SRC"/}"
else
  echo "FAIL: config keys missing from ${CONFIG_MD#"$SRC"/} (see above)" >&2
  fail=1
fi

pages=("$SRC/README.md" "$SRC"/docs/*.md)
[ -d "$SRC/docs/journal" ] && pages+=("$SRC"/docs/journal/*.md)
if check_links "${pages[@]}"; then
  echo "docs: every relative link in ${#pages[@]} Markdown pages resolves"
else
  echo "FAIL: broken relative links (see above)" >&2
  fail=1
fi

# Self-check: both checks must catch a planted fault.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2016  # the backticks are literal Markdown
grep -vF '`train.learning_rate`' "$CONFIG_MD" > "$tmp/CONFIG.md" || true
# shellcheck disable=SC2016
if check_keys "$tmp/CONFIG.md" 2>"$tmp/err"; then
  echo "FAIL: self-check: a CONFIG.md without train.learning_rate passed" >&2; fail=1
elif ! grep -q '`train.learning_rate` is not documented' "$tmp/err"; then
  cat "$tmp/err" >&2; echo "FAIL: self-check: the missing key was not named" >&2; fail=1
else
  echo "docs: self-check ok (a CONFIG.md without \`train.learning_rate\` is rejected)"
fi
printf 'See [the map](no/such/file.md) and [ok](CONFIG.md#run).\n' > "$tmp/page.md"
if check_links "$tmp/page.md" 2>"$tmp/err"; then
  echo "FAIL: self-check: a broken link passed" >&2; fail=1
elif ! grep -q "no/such/file.md" "$tmp/err" || grep -q "CONFIG.md#run" "$tmp/err"; then
  cat "$tmp/err" >&2; echo "FAIL: self-check: wrong link reported" >&2; fail=1
else
  echo "docs: self-check ok (a broken link is rejected)"
fi
exit $fail
