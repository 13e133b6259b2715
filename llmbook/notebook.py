"""Notebook plumbing that must work both in the book build and in a bare runtime.

:func:`glue` is myst-nb's ``glue`` when myst-nb is installed (the book build). In a
runtime without it (a fresh Colab), it prints ``name = value`` instead, so a reader can
match the ``{glue:text}`name``` placeholders in the prose with the numbers of their run.
"""

from __future__ import annotations

from typing import Any


def glue(name: str, value: Any, display: bool = True) -> None:
    """Record ``value`` under ``name`` for the page's prose (myst-nb's glue, or a printout)."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        print(f"{name} = {value}")
        return
    myst_glue(name, value, display=display)
