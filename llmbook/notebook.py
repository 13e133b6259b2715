"""Notebook plumbing that must work both in the book build and in a bare runtime.

:func:`setup` is the one call at the top of every chapter: the book's plot style, quiet
library logs, the requirements the chapter declares, and the environment, printed.

:func:`glue` is myst-nb's ``glue`` when myst-nb is installed (the book build). In a
runtime without it (a fresh Colab), it prints ``name = value`` instead, so a reader can
match the ``{glue:text}`name``` placeholders in the prose with the numbers of their run.

:func:`scratch_dir` gives a page a folder for the files it writes, removed when the
kernel exits, so building the book leaves nothing behind in the temporary directory.

:func:`show_source` prints a function's code on the page, for mechanisms that live in
``llmbook`` because the command-line tools and the calculator use them too.
"""

from __future__ import annotations

import inspect
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

#: Warnings that say nothing to a reader of this book (each with where it comes from).
QUIET_WARNINGS = (
    "IProgress not found",  # tqdm, imported by transformers, outside Jupyter
    ".*inputs will be cast from.*",  # bitsandbytes int8 on bf16 inputs: the book says so
    ".*is_gradient_checkpointing.*",  # raised inside peft's LoRA wrapper (an old name)
)

#: Loggers set to errors only: load reports, accelerate's notes on imaginary GPUs,
#: torchao's notes on the CUDA kernels a CPU build cannot load, and torch's deprecation
#: note on the enums torchao registers.
QUIET_LOGGERS = ("accelerate", "bitsandbytes", "torchao", "torch.utils._pytree")


def setup(**needs: str):
    """Prepare a chapter and say where it runs; returns :class:`llmbook.env.Environment`.

    ``needs`` maps a module a chapter cannot run without to why it needs it, e.g.
    ``setup(peft="the LoRA section attaches an adapter")``: a missing one stops the
    chapter with one sentence saying what to install.
    """
    from .env import detect, require
    from .plotting import use_book_style

    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers
    except ImportError:
        pass
    else:
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    for module, why in needs.items():
        require(module, why)
    use_book_style()
    env = detect(check_network=False)
    print("Running on:", env.summary())
    return env


def glue(name: str, value: Any, display: bool = True) -> None:
    """Record ``value`` under ``name`` for the page's prose (myst-nb's glue, or a printout)."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        print(f"{name} = {value}")
        return
    myst_glue(name, value, display=display)


def show_source(obj: Any) -> None:
    """Print the source code of ``obj`` (a function or class), with where it lives."""
    print(f"# {obj.__module__}.{obj.__qualname__}")
    print(inspect.getsource(obj))


#: The folders :func:`scratch_dir` made: kept alive here until the process exits.
_SCRATCH: list[tempfile.TemporaryDirectory] = []


def scratch_dir(prefix: str = "llmbook-") -> Path:
    """A new empty folder for the checkpoints a page writes, deleted (with everything
    in it) when the Python process exits, as the book's build shuts each kernel down.
    ``tempfile.mkdtemp`` would leave each run's files behind."""
    folder = tempfile.TemporaryDirectory(prefix=prefix)
    _SCRATCH.append(folder)
    return Path(folder.name)
