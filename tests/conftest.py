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


#: What a new user's shell passes on (everything else, a developer's cache folders,
#: warning filters or verbosity settings among them, is left out): the system's own
#: variables, pip's (its download cache and package index are not the book's), the
#: OpenBLAS settings some processors need, and the tests' strict 4-bit check.
KEPT_VARIABLES = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "TERM",
    "TMPDIR",
    "TZ",
    "USER",
    "LOGNAME",
    "SHELL",
    "CI",
    "LLMBOOK_STRICT_4BIT",
)
KEPT_PREFIXES = ("LC_", "PIP_", "OPENBLAS_", "SSL_", "REQUESTS_CA", "CURL_CA")


def pip_cache_dir() -> str:
    """pip's download cache of this machine (not the book's: kept, so installs stay fast)."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "cache", "dir"],
        capture_output=True,
        text=True,
    ).stdout.strip()


def cold_env(home: Path) -> dict[str, str]:
    """This process's environment as a new user's machine has it: an empty home folder,
    only :data:`KEPT_VARIABLES` (no cache folders, no ``VENV``), offline for the hub."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k in KEPT_VARIABLES or k.startswith(KEPT_PREFIXES)
    }
    env.update(HOME=str(home), HF_HUB_OFFLINE="1", PIP_CACHE_DIR=pip_cache_dir())
    env.pop("PIP_CONFIG_FILE", None)  # a user's pip.conf is not a new user's
    env["PATH"] = os.pathsep.join(
        p
        for p in env.get("PATH", "").split(os.pathsep)
        if not p.startswith(sys.prefix)  # this test venv's bin: the clone makes its own
    )
    return env


def fresh_clone(target: Path) -> Path:
    """The working tree as a clean clone has it: tracked and untracked-not-ignored files
    (so uncommitted work is tested too), nothing that .gitignore leaves out."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        rel = name.decode()
        source = ROOT / rel
        if not source.is_file():  # deleted but not yet committed
            continue
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / rel)
    return target


@dataclass
class Build:
    returncode: int
    log: str
    html: Path
    output: Path  # the build's folder: build.log, the clone, the home, screenshots
    source: Path  # the fresh clone that was built
    home: Path  # the empty home folder the build started with
    rebuild_returncode: int = 1
    rebuild_log: str = ""
    stderr: str = ""  # what the first build wrote to stderr, pip's installs included

    @property
    def executed(self) -> Path:
        """myst-nb's executed notebooks and glue files."""
        return self.source / "_build" / "jupyter_execute"


README_REBUILD = ". .venv/bin/activate && jb build ."


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Build:
    """The whole book built as the README tells a new reader, once per test session.

    A fresh clone of the working tree, an empty home folder (no converted model, font
    cache or Hugging Face cache: see ``cold_env``), then the README's two steps:
    ``bash scripts/build.sh`` (a new ``.venv`` and a from-scratch build) and
    ``. .venv/bin/activate && jb build .`` (a rebuild with nothing changed).

    Set LLMBOOK_BUILD_DIR to keep the build (CI keeps it in artifacts/). While working
    on the site tests, LLMBOOK_REUSE_BUILD=1 reuses a finished build in that folder.
    """
    keep = os.environ.get("LLMBOOK_BUILD_DIR")
    output = Path(keep).resolve() if keep else tmp_path_factory.mktemp("book")
    source, home = output / "clone", output / "home"
    html = source / "_build" / "html"
    if (
        keep
        and os.environ.get("LLMBOOK_REUSE_BUILD")
        and (output / "build.log").exists()
    ):
        log = (output / "build.log").read_text()
        again = output / "rebuild.log"
        errors = output / "build.stderr"
        return Build(
            0 if "Built: open _build/html" in log else 1,
            log,
            html,
            output,
            source,
            home,
            0 if again.exists() and "build succeeded" in again.read_text() else 1,
            again.read_text() if again.exists() else "",
            errors.read_text() if errors.exists() else "",
        )
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    fresh_clone(source)
    env = cold_env(home)
    first = subprocess.run(
        ["bash", "scripts/build.sh"],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    log = first.stdout + first.stderr
    (output / "build.log").write_text(log)
    (output / "build.stderr").write_text(first.stderr)
    build = Build(
        first.returncode, log, html, output, source, home, stderr=first.stderr
    )
    if first.returncode == 0:
        again = subprocess.run(
            ["bash", "-c", README_REBUILD],
            cwd=source,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        build.rebuild_returncode = again.returncode
        build.rebuild_log = again.stdout + again.stderr
        (output / "rebuild.log").write_text(build.rebuild_log)
    return build
