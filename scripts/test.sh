#!/usr/bin/env bash
# Set up a virtual environment with the pinned requirements and test tools, then run the
# whole test suite (package units, notebook hygiene, a from-scratch build of the book,
# workflow checks). Extra arguments go to pytest, e.g. `-m "not build"` for the fast part.
#   bash scripts/test.sh             # VENV=.venv by default
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# ipykernel 7 warns on stderr at every kernel start that its loopback TCP is unencrypted:
# noise in the build log, so the venv's kernels log errors only.
mkdir -p "$VENV/etc/ipython"
echo 'c.IPKernelApp.log_level = "ERROR"' >"$VENV/etc/ipython/ipython_kernel_config.py"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt -e .
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
exec "$VENV/bin/python" -m pytest "$@"
