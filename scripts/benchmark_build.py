#!/usr/bin/env python3
"""Measure the book's build budgets and record them for the Build report.

Runs, in a fresh output folder:
1. a cold build (empty execution cache: every chapter executes),
2. a rebuild with nothing changed (nothing should execute),
and records wall time and the peak resident memory of the whole process tree (Sphinx
plus the notebook kernels), plus each chapter's execution time from the cache; and
3. the estimator's command line on a 70B model (the whole step, sharded: the longest
   path through llmbook.memory), best of three.

    python scripts/benchmark_build.py            # writes book/data/build_benchmarks.json
    python scripts/benchmark_build.py --cli-only # re-measures only step 3 in that file

A benchmark, not a test: the numbers depend on the machine and on what else runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from llmbook.env import detect  # noqa: E402
from llmbook.units import GIB  # noqa: E402

OUT = ROOT / "book" / "data" / "build_benchmarks.json"


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def timed_build(output: Path) -> tuple[float, int, str]:
    """Wall seconds, peak tree RSS in bytes, and the log of one `jb build`."""
    jb = str(Path(sys.executable).parent / "jb")
    cmd = [
        jb,
        "build",
        str(ROOT),
        "--path-output",
        str(output),
        "-n",
        "-W",
        "--keep-going",
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    ps, peak, log = psutil.Process(proc.pid), [0], []

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(ps))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for line in proc.stdout:  # type: ignore[union-attr]
        log.append(line)
    proc.wait()
    sampler.join()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stdout.write("".join(log[-60:]))
        raise SystemExit(
            f"benchmark_build: the build failed (exit {proc.returncode}); fix it first."
        )
    return seconds, peak[0], "".join(log)


def chapter_times(cache_dir: Path) -> list[dict]:
    from jupyter_cache import get_cache

    rows = []
    for record in get_cache(str(cache_dir)).list_cache_records():
        rows.append(
            {
                "chapter": Path(record.uri).name,
                "seconds": round(record.data.get("execution_seconds", 0.0), 1),
            }
        )
    return sorted(rows, key=lambda r: r["chapter"])


CLI_WHAT = "python -m llmbook memory (Llama-2-70B, full, 8 GPUs, ZeRO-3, 4096 tokens)"
CLI_BUDGET_S = 5


def timed_cli() -> dict:
    """The CLI on the Llama-2-70B preset, best of three: wall time and peak memory."""
    from llmbook.memory import PRESETS

    with tempfile.TemporaryDirectory(prefix="llmbook-cli-") as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps(dict(PRESETS["Llama-2-70B"], model_type="llama")))
        command = [sys.executable, "-m", "llmbook", "memory", str(config)]
        command += ["--recipe", "full", "--gpus", "8", "--sharding", "zero3"]
        command += ["--seq", "4096", "--checkpointing"]
        best, peak = float("inf"), 0
        for _ in range(3):
            start = time.perf_counter()
            child = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=ROOT)
            _, status, usage = os.wait4(
                child.pid, 0
            )  # this child's own peak, not the builds'
            child.returncode = os.waitstatus_to_exitcode(status)
            best = min(best, time.perf_counter() - start)
            peak = max(peak, usage.ru_maxrss * 1024)  # KiB on Linux
            if child.returncode:
                raise SystemExit(f"benchmark_build: {' '.join(command)} failed")
    return {
        "what": CLI_WHAT,
        "seconds": round(best, 2),
        "peak_rss_gib": round(peak / GIB, 2),
        "budget": f"{CLI_BUDGET_S} s",
    }


def cli_only() -> int:
    result = json.loads(OUT.read_text())
    cli = timed_cli()
    result["runs"] = [r for r in result["runs"] if r["what"] != CLI_WHAT] + [cli]
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(cli, indent=2))
    return 0 if cli["seconds"] <= CLI_BUDGET_S else 1


def main() -> int:
    if sys.argv[1:] == ["--cli-only"]:
        return cli_only()
    env = detect(check_network=False)
    with tempfile.TemporaryDirectory(prefix="llmbook-bench-") as tmp:
        out = Path(tmp)
        cold_s, cold_peak, cold_log = timed_build(out)
        warm_s, warm_peak, warm_log = timed_build(out)
        chapters = chapter_times(out / "_build" / ".jupyter_cache")
    executed_again = warm_log.count("Executing notebook")
    result = {
        "date": dt.date.today().isoformat(),
        "machine": f"{env.cpu_name}, {env.cpu_cores} cores, {env.cpu_memory_gib:.0f} GiB"
        + (f", GPU {env.device_name}" if env.is_gpu else ", no GPU"),
        "versions": ", ".join(f"{k} {v}" for k, v in env.versions.items() if v),
        "command": "python scripts/benchmark_build.py",
        "runs": [
            {
                "what": "cold (every chapter executes)",
                "seconds": round(cold_s, 1),
                "peak_rss_gib": round(cold_peak / GIB, 2),
                "budget": "12 min, 6 GiB",
            },
            {
                "what": f"no change (chapters executed: {executed_again})",
                "seconds": round(warm_s, 1),
                "peak_rss_gib": round(warm_peak / GIB, 2),
                "budget": "30 s",
            },
            timed_cli(),
        ],
        "chapters": chapters,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    over = [c["chapter"] for c in chapters if c["seconds"] > 120]
    over_budget = result["runs"][-1]["seconds"] > CLI_BUDGET_S
    if cold_s > 720 or warm_s > 30 or cold_peak > 6 * GIB or over or executed_again:
        over_budget = True
    if over_budget:
        print(f"benchmark_build: over budget (chapters over 2 min: {over or 'none'}).")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
