#!/usr/bin/env bash
# test_hf_parity.sh — tests/gpu/hf_parity.sh on CPU, against transformers itself (every family:
# logits within 1e-4, greedy 32 tokens equal, to-hf bit-identical and loadable by
# AutoModelForCausalLM / AutoModelForSequenceClassification). See that script for the cases.
#
#   bash tests/scripts/test_hf_parity.sh BIN_DIR SOURCE_DIR      (ctest: script.test_hf_parity)
#
# Python: $RLHF_PARITY_PYTHON, else SOURCE_DIR/build/pyenv/bin/python (the venv launch/setup.sh
# makes for the pip torch). transformers, safetensors and numpy are pip-installed into that venv
# when missing (quietly, once); a venv without torch, or a failed install, fails the test with
# the reason. They are references for this test only, never needed by the product.
set -uo pipefail
BIN=${1:?usage: $0 BIN_DIR SOURCE_DIR}
SRC=${2:?usage: $0 BIN_DIR SOURCE_DIR}
PY=${RLHF_PARITY_PYTHON:-$SRC/build/pyenv/bin/python}
[[ -x $PY ]] || { echo "FAIL: no python at $PY (run launch/setup.sh with RLHF_TORCH=pip, or set RLHF_PARITY_PYTHON)"; exit 1; }
# Presence only (find_spec, no import: importing torch + transformers costs seconds, and
# hf_parity.py imports them once, failing with the reason if one is broken).
has() { "$PY" -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))' "$@"; }
has torch || { echo "FAIL: $PY has no torch"; exit 1; }
if ! has transformers safetensors numpy; then
  echo "test_hf_parity: installing transformers, safetensors, numpy into $("$PY" -c 'import sys;print(sys.prefix)')"
  "$PY" -m pip install -q --disable-pip-version-check transformers safetensors numpy >/dev/null 2>&1 ||
    { echo "FAIL: pip install transformers safetensors numpy into $PY failed (no access to PyPI?)"; exit 1; }
  has transformers safetensors numpy ||
    { echo "FAIL: $PY still cannot find transformers/safetensors/numpy"; exit 1; }
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# Our side on CPU only here (the GPU machine runs hf_parity.sh directly, cuda included); one
# Python process does all of it (hf_parity.py all).
PYTHON=$PY CUDA_VISIBLE_DEVICES= exec bash "$SRC/tests/gpu/hf_parity.sh" "$BIN" 1e-4
