#!/usr/bin/env bash
# pyenv.sh — the Python environment holding the *reference* packages that some tests compare
# against (Hugging Face tokenizers / transformers; TensorBoard's event reader). The product never
# needs Python.
#
#   PY=$(bash launch/pyenv.sh)      ensure the environment, print its python (the only stdout line)
#
# Uses PYENV_DIR (default build/pyenv, the same virtual environment launch/setup.sh creates for
# RLHF_TORCH=pip): created with `python3 -m venv` when missing (apt-get installs python3-venv
# when python3 cannot create one). Then only the packages of PYENV_PKGS (default: tokenizers
# transformers safetensors numpy jinja2 tensorboard) that are not importable are pip-installed from PyPI, so a
# second call only checks (well under a second). Concurrent calls are serialised with flock.
# Variables: PYENV_DIR, PYENV_PKGS (pip requirement specifiers; module name = the part before
# any version specifier, lower-cased, '-' -> '_').
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYENV_DIR=${PYENV_DIR:-$ROOT/build/pyenv}
export -n PYENV_DIR  # the pyenv version manager's python3 shim reads (and cd's into) PYENV_DIR
read -r -a PKGS <<< "${PYENV_PKGS:-tokenizers transformers safetensors numpy jinja2 tensorboard}"
PY=$PYENV_DIR/bin/python

die() { echo "pyenv.sh: error: $*" >&2; exit 1; }

mkdir -p "$(dirname "$PYENV_DIR")"
if command -v flock >/dev/null; then
  exec 9>"$PYENV_DIR.lock"
  flock 9
fi

if [ ! -x "$PY" ]; then
  command -v python3 >/dev/null || die "python3 is missing (apt-get install python3 python3-venv)"
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    echo "pyenv.sh: installing python3-venv" >&2
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        $SUDO apt-get install -y -qq --no-install-recommends python3-venv; } >/dev/null 2>&1 \
      || die "python3 cannot create a virtual environment (install python3-venv)"
  fi
  echo "pyenv.sh: creating $PYENV_DIR" >&2
  python3 -m venv "$PYENV_DIR" || die "cannot create $PYENV_DIR"
fi

# Which requirements have no importable module (find_spec: no import, so this check is fast).
mapfile -t missing < <("$PY" - "${PKGS[@]}" <<'EOF'
import importlib.util, re, sys
for req in sys.argv[1:]:
    mod = re.split(r"[<>=!~\[;@ ]", req, maxsplit=1)[0].lower().replace("-", "_")
    if importlib.util.find_spec(mod) is None:
        print(req)
EOF
)
if [ ${#missing[@]} -gt 0 ]; then
  echo "pyenv.sh: pip install ${missing[*]} into $PYENV_DIR" >&2
  "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore "${missing[@]}" >&2 \
    || die "pip install ${missing[*]} failed (no access to PyPI?)"
fi
echo "$PY"
