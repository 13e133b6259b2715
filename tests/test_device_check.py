"""The whole-book GPU check: its CPU dry run, and the committed records it produced."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

RECORD = ROOT / "book" / "data" / "device_build.json"
MOVE = ROOT / "llmbook" / "data" / "bnb_move_h200.json"
PROVENANCE = {
    "device",
    "device_name",
    "driver",
    "cuda_runtime",
    "cpu",
    "cpu_features",
    "bnb_cpu_path",
    "versions",
    "python",
    "date",
    "command",
}


@pytest.mark.build
def test_device_check_dry_run_records_a_chapter(tmp_path):
    """On a CPU the script builds chapter 1 alone and writes the same record a GPU run does."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "device_check.sh"), str(tmp_path), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    record = json.loads((tmp_path / "device_build.json").read_text())
    assert PROVENANCE <= set(record["provenance"])
    assert record["build"]["dry_run"] and record["build"]["returncode"] == 0
    assert [c["chapter"] for c in record["chapters"]] == ["01_floating_point.ipynb"]
    assert (
        record["chapters"][0]["result"] == "ok" and record["chapters"][0]["seconds"] > 0
    )
    assert "build succeeded" in (tmp_path / "build.log").read_text()


def test_device_check_reports_a_failing_cell(tmp_path):
    """The failing cell and error are read from myst-nb's execution report."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from device_check import failure_of

    report = tmp_path / "ch.err.log"
    # as myst-nb writes it: the kernel's traceback in colour, after nbclient's own lines
    report.write_text(
        "Traceback (most recent call last):\n  ...\nnbclient.exceptions.CellExecutionError: "
        "An error occurred while executing the following cell:\n------------------\nx = 1\ny = x / 0\n"
        "------------------\n\n\n\x1b[31m---------\x1b[39m\n\x1b[31mZeroDivisionError\x1b[39m"
        "    Traceback (most recent call last)\n\x1b[31mZeroDivisionError\x1b[39m: division by zero\n"
    )
    failure = failure_of(report)
    assert failure == {
        "failing_cell": "x = 1\ny = x / 0",
        "error": "ZeroDivisionError: division by zero",
    }


def test_committed_gpu_records_have_provenance():
    record = json.loads(RECORD.read_text())
    assert (
        PROVENANCE <= set(record["provenance"])
        and record["provenance"]["device"] == "cuda"
    )
    assert record["provenance"]["driver"] and record["provenance"]["cuda_runtime"]
    chapters = [c["chapter"] for c in record["chapters"]]
    assert (
        chapters
        == [p.name for p in sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))][
            : len(chapters)
        ]
    )
    assert record["build"]["whole_book_executed"] == all(
        c["result"] == "ok" for c in record["chapters"]
    )
    move = json.loads(MOVE.read_text())
    assert (
        PROVENANCE <= set(move["provenance"]) and move["provenance"]["device"] == "cuda"
    )
    for case in move["bnb_move_after_cpu_forward"]["cases"]:
        for how in (
            "to",
            "cuda",
        ):  # each way either failed with a message or measured an error
            assert (case[f"{how}_error"] is None) != (case[f"{how}_rel_error"] is None)


def test_the_gpu_peak_check_runs_its_cases_on_a_cpu():
    """The same code the GPU check runs (peak_rows), on the CPU with the profiler's
    measurement and fewer tokens: every case runs, and the prediction is close."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from device_check import peak_rows

    cases = [
        ("full", 4, 1, 128, False),
        ("lora", 4, 1, 128, True),
        ("qlora", 4, 1, 128, False),
    ]
    rows = peak_rows("cpu", cases, layers=2)
    assert [r["recipe"] for r in rows] == ["full", "lora", "qlora"]
    for row in rows:
        assert 0.95 <= row["predicted_over_measured"] <= 1.25, row
