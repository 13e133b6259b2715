"""Run every chapter's code cells as plain Python, each chapter in a fresh process.

A quick check of the chapters on a machine without Jupyter (a bare GPU box, say), and
the engine of the scheduled canaries: the code cells of each notebook run in order in
one namespace, from ``book/``, with matplotlib's non-interactive backend, and no
execution cache. Prints one line per chapter (time, or the failing cell and its error)
and writes a JSON summary. It is not the book build: glued values are printed instead
of rendered (llmbook's glue fallback).

    python scripts/run_chapters_plain.py [--out summary.json] [chapter.ipynb ...]

``--warnings-as-errors`` turns DeprecationWarning and FutureWarning raised by the
chapters' own code or by llmbook into errors: run it against the newest libraries to
learn what will break before it does (the "latest" canary does exactly that).
``--colab`` imports ``google.colab`` first (or a stand-in where it is missing), so each
chapter's Colab-only install cell runs as in Colab.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from llmbook.env import versions  # noqa: E402

#: Makes ``google.colab`` importable where it is missing, with the module spec that
#: libraries probe for (accelerate calls ``importlib.util.find_spec("google.colab")``).
COLAB_STUB = """import importlib.machinery, sys, types
colab = types.ModuleType("google.colab")
colab.__spec__ = importlib.machinery.ModuleSpec("google.colab", None)
sys.modules["google.colab"] = colab"""

RUNNER = r"""
import json, os, sys, time, traceback, warnings
import matplotlib
matplotlib.use("Agg")
if os.environ.get("LLMBOOK_STRICT_WARNINGS"):
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("error", category=category, module=r"(__main__|llmbook(\..*)?)$")
if os.environ.get("LLMBOOK_AS_COLAB"):
    try:
        import google.colab  # noqa: F401  (Google's Colab runtime image has it)
    except ImportError:
        exec(os.environ["LLMBOOK_AS_COLAB"])  # COLAB_STUB
nb = json.load(open(sys.argv[1]))
ns = {"__name__": "__main__"}
for i, cell in enumerate(nb["cells"]):
    if cell["cell_type"] != "code":
        continue
    src = "".join(cell["source"])
    t = time.perf_counter()
    try:
        exec(compile(src, f"{sys.argv[1]}:cell{i}", "exec"), ns)
    except BaseException as e:
        print("CELL-FAILED", i, json.dumps(traceback.format_exc()[-3000:]), flush=True)
        sys.exit(1)
    print("CELL-TIME", i, round(time.perf_counter() - t, 3), flush=True)
"""


def run_chapter(
    path: Path, timeout_s: float, strict: bool = False, colab: bool = False
) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "MPLBACKEND": "Agg",
    }
    if strict:
        env["LLMBOOK_STRICT_WARNINGS"] = "1"
    if colab:
        env["LLMBOOK_AS_COLAB"] = COLAB_STUB
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, str(path.resolve())],
            cwd=ROOT / "book",
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return {
            "chapter": path.name,
            "ok": False,
            "seconds": timeout_s,
            "error": f"timed out after {timeout_s} s",
        }
    seconds = time.perf_counter() - start
    cells = {}
    error = None
    for line in proc.stdout.splitlines():
        if line.startswith("CELL-TIME "):
            _, i, s = line.split()
            cells[int(i)] = float(s)
        elif line.startswith("CELL-FAILED "):
            _, i, tb = line.split(" ", 2)
            error = f"cell {i}: {json.loads(tb)}"
    if proc.returncode and error is None:
        error = proc.stderr[-3000:]
    return {
        "chapter": path.name,
        "ok": proc.returncode == 0,
        "seconds": round(seconds, 2),
        "slowest_cells_s": sorted(cells.items(), key=lambda kv: -kv[1])[:3],
        "error": error,
        "stdout_tail": proc.stdout[-4000:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--timeout-s", type=float, default=300)
    parser.add_argument(
        "--warnings-as-errors",
        action="store_true",
        help="DeprecationWarning/FutureWarning from the chapters' code or llmbook fail the chapter",
    )
    parser.add_argument(
        "--colab", action="store_true", help="run as in Colab (the install cells run)"
    )
    args = parser.parse_args(argv)
    chapters = args.chapters or sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
    results = []
    for path in chapters:
        r = run_chapter(path, args.timeout_s, args.warnings_as_errors, args.colab)
        results.append(r)
        status = "ok" if r["ok"] else "FAILED"
        print(f"{r['chapter']}: {status} in {r['seconds']:.1f} s", flush=True)
        if r["error"]:
            print(
                "   ",
                r["error"].strip().splitlines()[-1] if r["error"].strip() else "",
                flush=True,
            )
        if args.out:
            args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({"versions": versions()}), flush=True)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
