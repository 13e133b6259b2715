"""Shared fixtures: the repository's layout and one from-scratch build of the book."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# Every 4-bit layer the tests, the scripts they run and the book build they make create
# must fit bitsandbytes' packed CPU path, on any machine (llmbook.bnb_cpu). Set before
# llmbook is imported; subprocesses and notebook kernels inherit it.
os.environ["LLMBOOK_STRICT_4BIT"] = "1"
JB = str(Path(sys.executable).parent / "jb")


def toc_files(root: Path = ROOT) -> list[str]:
    """Every file named in _toc.yml (root first), without extension."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    walk(toc.get("chapters", []))
    return files


def chapter_notebooks(root: Path = ROOT) -> list[Path]:
    return sorted((root / "book").glob("*.ipynb"))


def load_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def scratch_notebook(code: str) -> str:
    """A one-code-cell notebook (JSON text) for scratch books in the tests."""
    return json.dumps(
        {
            "cells": [
                {
                    "cell_type": "markdown",
                    "id": "c0",
                    "metadata": {},
                    "source": ["# A chapter\n"],
                },
                {
                    "cell_type": "code",
                    "id": "c1",
                    "metadata": {},
                    "execution_count": None,
                    "outputs": [],
                    "source": [code],
                },
            ],
            "metadata": {
                "kernelspec": {
                    "name": "python3",
                    "display_name": "Python 3",
                    "language": "python",
                }
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


def run_jb(
    source: Path, output: Path, *extra: str, timeout: int = 1800
) -> subprocess.CompletedProcess:
    """Build the book at ``source`` into ``output`` with warnings as errors."""
    return subprocess.run(
        [
            JB,
            "build",
            str(source),
            "--path-output",
            str(output),
            "-n",
            "-W",
            "--keep-going",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@dataclass
class Build:
    returncode: int
    log: str
    html: Path
    output: Path


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Build:
    """The whole book, built from scratch (empty execution cache) once per test session.

    Set LLMBOOK_BUILD_DIR to keep the build (CI uploads it as an artifact). While working
    on the site tests, LLMBOOK_REUSE_BUILD=1 reuses a finished build in that folder.
    """
    keep = os.environ.get("LLMBOOK_BUILD_DIR")
    output = Path(keep).resolve() if keep else tmp_path_factory.mktemp("book")
    if (
        keep
        and os.environ.get("LLMBOOK_REUSE_BUILD")
        and (output / "build.log").exists()
    ):
        log = (output / "build.log").read_text()
        return Build(
            0 if "build succeeded" in log else 1,
            log,
            output / "_build" / "html",
            output,
        )
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    result = run_jb(ROOT, output)
    log = result.stdout + result.stderr
    (output / "build.log").write_text(log)
    return Build(result.returncode, log, output / "_build" / "html", output)
