#!/usr/bin/env bash
# Set up a virtual environment with the pinned requirements and test tools, then run the
# whole test suite (package units, notebook hygiene, a from-scratch build of the book,
# workflow checks). Extra arguments go to pytest, e.g. `-m "not build"` for the fast part.
#   bash scripts/test.sh             # VENV=.venv by default
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt -e .
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
exec "$VENV/bin/python" -m pytest "$@"
