"""One plot style for the whole book: readable at phone width, compact PNGs.

Call :func:`use_book_style` once in a chapter's setup cell. Colours for the fields of a
floating-point number are shared so that a sign bit looks the same in every figure.
"""

from __future__ import annotations

#: Colours of a float's fields (colour-blind safe, from the Okabe-Ito palette).
FIELD_COLORS = {"sign": "#D55E00", "exponent": "#0072B2", "mantissa": "#009E73"}

#: One colour per number format, used for lines and bars across chapters.
FORMAT_COLORS = {
    "fp32": "#000000",
    "tf32": "#999999",
    "fp16": "#E69F00",
    "bf16": "#0072B2",
    "fp8 e4m3": "#009E73",
    "fp8 e5m2": "#CC79A7",
    "int8": "#D55E00",
    "nf4": "#56B4E9",
}

BOOK_RC = {
    "figure.figsize": (7.0, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "savefig.bbox": "tight",
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "lines.linewidth": 2.0,
}


def use_book_style() -> None:
    """Apply the book's matplotlib settings and render inline figures as PNG."""
    import matplotlib as mpl

    mpl.rcParams.update(BOOK_RC)
    try:  # inside IPython: PNG output only, so pages stay light
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:  # pragma: no cover - plain Python
        pass
