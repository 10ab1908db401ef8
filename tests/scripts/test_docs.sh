#!/usr/bin/env bash
# test_docs.sh — the documentation keeps up with the code.
#
#   bash tests/scripts/test_docs.sh BIN_DIR SOURCE_DIR [CONFIG_MD]    (ctest: script.test_docs)
#
# 1. Config keys: every key path of the config schema — the first argument of each add_int /
#    add_double / add_string / add_bool / add_enum call in SOURCE_DIR/src/common/train/config.cpp
#    (every stage's keys) and src/<stage>/<stage>_config.cpp (a stage's own), e.g.
#    "train.learning_rate" — must appear in docs/CONFIG.md as a code span
#    (`train.learning_rate`). Fewer than 40 extracted keys is a failure, and so is any other
#    add_*("key", ...) call the extraction does not know (a new field kind), so a broken
#    extraction cannot pass. CONFIG_MD (default SOURCE_DIR/docs/CONFIG.md) checks another copy.
# 2. Links: every relative Markdown link target `](path)` in README.md, docs/*.md and
#    docs/journal/*.md must name an existing file or directory of the repository ("#fragment"
#    ignored; http:, https:, mailto: and pure "#anchor" links are not checked).
# 3. Citations in docs/ARCHITECTURE.md: every code span naming a source file (`x.cpp`, `x.h`,
#    `ppo/ppo_step.h`, `tests/scripts/test_e2e.sh`, ...) must name an existing file (a path
#    relative to the repository, src/ or tests/, or a bare name found anywhere under src/,
#    tests/, bench/, launch/), and every code span calling a function (`name(...)` or `name()`)
#    or naming a member (`Scope::name`) must name a function defined or declared under src/ (the
#    name followed by "(", and the scope as a word).
# 4. Claims that something is missing: every "not there yet", "not yet" or "no ... yet" in
#    README.md, docs/*.md (not the dated journal) and configs/**/*.yaml must be listed in YET_OK
#    below with why it still holds; any other fails (the README said chat templates were "not
#    there yet" long after they worked, issue 33).
# 5. Self-check: a copy of CONFIG.md without one key, a page with a broken link, an
#    ARCHITECTURE.md citing a missing file and a missing function, and a page claiming a
#    working feature is "not there yet" must fail.
# BIN_DIR is not used (the script tests share one calling convention). Needs only bash, grep, sed.
set -euo pipefail
SRC=${2:?usage: $0 BIN_DIR SOURCE_DIR [CONFIG_MD]}
SRC=$(cd "$SRC" && pwd)
CONFIG_MD=${3:-$SRC/docs/CONFIG.md}
SCHEMA=("$SRC/src/common/train/config.cpp" "$SRC"/src/*/*_config.cpp)
MIN_KEYS=40

for f in "${SCHEMA[@]}"; do [ -f "$f" ] || { echo "FAIL: $f not found"; exit 1; }; done
[ -f "$CONFIG_MD" ] || { echo "FAIL: $CONFIG_MD not found"; exit 1; }

# The schema's key paths, one per line, in schema order.
schema_keys() {
  { grep -ohE 'add_(int|double|string|bool|enum)\([[:space:]]*"[^"]+"' "${SCHEMA[@]}" || true; } \
    | sed -E 's/.*"([^"]+)"$/\1/'
}
# Every add_<anything>("key" call: must all be of the kinds above.
all_add_calls() {
  grep -ohE 'add_[A-Za-z0-9_]+\([[:space:]]*"[^"]+"' "${SCHEMA[@]}" || true
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

# check_citations PAGE: names every cited file or function that does not exist; returns 1 if any.
check_citations() {
  local page=$1 bad=0 span name
  while IFS= read -r span; do
    span=${span#\`}; span=${span%\`}
    case "$span" in .*|*' '*|*'*'*) continue ;; esac   # ".cpp", globs, phrases
    if [[ "$span" == */* ]]; then
      [ -e "$SRC/$span" ] || [ -e "$SRC/src/$span" ] || [ -e "$SRC/tests/$span" ] || {
        echo "docs: ${page#"$SRC"/} cites \`$span\`, which does not exist" >&2; bad=1; }
    elif [ -z "$(find "$SRC/src" "$SRC/tests" "$SRC/bench" "$SRC/launch" -name "$span" -print -quit)" ]; then
      echo "docs: ${page#"$SRC"/} cites \`$span\`, found nowhere under src/ tests/ bench/ launch/" >&2; bad=1
    fi
  done < <(grep -oE '`[A-Za-z0-9_./-]+\.(h|cpp|cu|sh|py)`' "$page" || true)
  local scope fn found
  while IFS= read -r name; do  # name( or Scope::name( (a call), Scope::name` (a member)
    fn=${name%[(\`]}; fn=${fn##*::}; scope=${name%"${name##*::}"}; scope=${scope%::}; scope=${scope##*::}
    if [[ "$name" == *'(' ]]; then
      grep -rqE "(^|[^A-Za-z0-9_])$fn\(" "$SRC/src" && found=1 || found=0
    else
      grep -rqw "$fn" "$SRC/src" && found=1 || found=0
    fi
    if [ "$found" = 0 ] || { [ -n "$scope" ] && ! grep -rqw "$scope" "$SRC/src"; }; then
      echo "docs: ${page#"$SRC"/} cites \`${name%[(\`]}\`, which nothing under src/ defines" >&2; bad=1
    fi
  done < <({ grep -oE '`([A-Za-z_][A-Za-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*\(' "$page"
              grep -oE '`([A-Za-z_][A-Za-z0-9_]*::)+[A-Za-z_][A-Za-z0-9_]*`' "$page"; } 2>/dev/null \
             | sed -E 's/^`//' | sort -u)
  return $bad
}

# FILE|PHRASE|why the claim still holds (FILE relative to the repository).
YET_OK=(
  "docs/ARCHITECTURE.md|no GPU run yet|tests/gpu/hf_parity.sh has not run on a GPU: bench/gpu/results holds no parity run"
  "docs/DATA.md|no template yet|a model without a chat template (trained from scratch), not a missing feature"
  "docs/DISTRIBUTED.md|no checkpoint yet|a run that has not checkpointed, not a missing feature"
)
# check_yet FILE...: names every unlisted "yet" claim; returns 1 if any.
check_yet() {
  local bad=0 f rel line phrase entry listed
  for f in "$@"; do
    rel=${f#"$SRC"/}
    while IFS= read -r line; do
      phrase=$(grep -oiE 'not there yet|not yet|no [^.;:,()]{0,40} yet' <<<"$line" | head -n 1)
      listed=0
      for entry in "${YET_OK[@]}"; do
        [ "${entry%%|*}" = "$rel" ] || continue
        entry=${entry#*|}
        entry=${entry%%|*}; [[ "${phrase,,}" == "${entry,,}" ]] && listed=1
      done
      [ $listed = 1 ] || { echo "docs: $rel says '$phrase': is it still missing? fix the text, or list it in YET_OK with why" >&2; bad=1; }
    done < <(grep -hiE 'not there yet|not yet|no [^.;:,()]{0,40} yet' "$f" || true)
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

yet_pages=("$SRC/README.md" "$SRC"/docs/*.md)
while IFS= read -r f; do yet_pages+=("$f"); done < <(find "$SRC/configs" -name '*.yaml' | sort)
if check_yet "${yet_pages[@]}"; then
  echo "docs: every 'not yet' claim in ${#yet_pages[@]} pages and configs is listed with its reason"
else
  echo "FAIL: unlisted 'not yet' claims (see above)" >&2
  fail=1
fi

ARCH=$SRC/docs/ARCHITECTURE.md
if check_citations "$ARCH"; then
  echo "docs: every file and function ${ARCH#"$SRC"/} cites exists"
else
  echo "FAIL: ${ARCH#"$SRC"/} cites what does not exist (see above)" >&2
  fail=1
fi

# Self-check: every check must catch a planted fault.
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
{ cat "$ARCH"; printf 'See `src/ppo/no_such_file.cpp`, `no_such_function_xyz(cfg)` and `NoSuchClassXyz::update()`.\n'; } > "$tmp/ARCH.md"
if check_citations "$tmp/ARCH.md" 2>"$tmp/err"; then
  echo "FAIL: self-check: a missing file and function passed" >&2; fail=1
elif ! grep -q "no_such_file.cpp" "$tmp/err" || ! grep -q "no_such_function_xyz" "$tmp/err" \
     || ! grep -q "NoSuchClassXyz::update" "$tmp/err" || [ "$(wc -l < "$tmp/err")" != 3 ]; then
  cat "$tmp/err" >&2; echo "FAIL: self-check: wrong citations reported" >&2; fail=1
else
  echo "docs: self-check ok (a cited missing file and function are rejected)"
fi
printf 'LoRA is not there yet.\n' > "$tmp/README.md"
if (SRC=$tmp; check_yet "$tmp/README.md") 2>"$tmp/err"; then
  echo "FAIL: self-check: an unlisted 'not there yet' passed" >&2; fail=1
elif ! grep -q "README.md says 'not there yet'" "$tmp/err"; then
  cat "$tmp/err" >&2; echo "FAIL: self-check: wrong 'yet' report" >&2; fail=1
else
  echo "docs: self-check ok (an unlisted 'not there yet' is rejected)"
fi
exit $fail
