#!/usr/bin/env bash
# The whole book on a GPU machine, once, recorded (see scripts/device_check.py).
#
#   bash scripts/device_check.sh [OUT_DIR]          # default OUT_DIR: artifacts/device_check
#   bash scripts/device_check.sh OUT_DIR --dry-run  # CPU: chapter 1 only (the tests run this)
#
# Uses the Python in $PYTHON (default: $VENV/bin/python, VENV=.venv, when it exists, else python3),
# which must have the book's requirements (requirements.txt) and llmbook importable.
# On a machine without internet, install the pinned wheels first, e.g.
#   python3 -m pip install --no-index --no-deps --target /tmp/site wheels/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
# Writes OUT_DIR/device_build.json (GPU, driver, CUDA, versions, each chapter's time and
# result, the failing cell and error if any, date, command) and OUT_DIR/build.log.
# Commit the record as book/data/device_build.json: the Build report shows it.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-artifacts/device_check}
shift || true
if [ -z "${PYTHON:-}" ]; then
  VENV=${VENV:-.venv}
  if [ -x "$VENV/bin/python" ]; then PYTHON=$VENV/bin/python; else PYTHON=python3; fi
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$PYTHON" scripts/device_check.py --out "$OUT" "$@"
