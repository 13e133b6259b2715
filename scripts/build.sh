#!/usr/bin/env bash
# Set up a virtual environment with the pinned requirements, then build the site into
# _build/html with warnings as errors. Extra arguments go to `jb build`.
#   bash scripts/build.sh            # VENV=.venv by default
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# ipykernel 7 warns on stderr at every kernel start that its loopback TCP is unencrypted:
# noise in the build log, so the venv's kernels log errors only.
mkdir -p "$VENV/etc/ipython"
echo 'c.IPKernelApp.log_level = "ERROR"' >"$VENV/etc/ipython/ipython_kernel_config.py"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt -e .
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
if ! "$VENV/bin/jb" build . -n -W --keep-going "$@"; then
  # myst-nb prints a failing cell's traceback above; repeat any execution reports here.
  for report in _build/html/reports/*.err.log _build/html/reports/**/*.err.log; do
    [ -f "$report" ] && { echo "=== $report"; cat "$report"; }
  done
  echo "The build failed: see the traceback or warning above." >&2
  exit 1
fi
echo "Built: open _build/html/index.html"
