"""Companion package of *LLM Memory & Precision, Question by Question*.

Plumbing and tools that several chapters share:

- :mod:`llmbook.env` - where a notebook runs (CPU/CUDA, Colab, network, versions)
- :mod:`llmbook.models` - architecture-faithful models built from configs
- :mod:`llmbook.measure` - time and peak memory on CPU and CUDA
- :mod:`llmbook.plotting` - the book's plot style and colours
- :mod:`llmbook.notebook` - `glue` that also works where myst-nb is missing (Colab)
- :mod:`llmbook.bnb_cpu` - bitsandbytes' CPU paths for 4-bit layers and the shapes they accept
- :mod:`llmbook.smollm` - the real SmolLM2-135M language model, offline, and the evaluation text
- :mod:`llmbook.quality` - perplexity, KL divergence and top-1 agreement, with intervals

What a chapter teaches is written on the chapter's page, not here.
"""

__version__ = "0.1.0"

import logging as _logging
import os as _os


class _DropKernelsHubNotice(_logging.Filter):
    """bitsandbytes logs, on every AVX512-BF16 CPU, that it could not fetch an optional
    4-bit kernel from the model hub (the `kernels` package); it then uses its own kernel.
    The book runs offline, so the line is noise on its pages; llmbook.env reports the path."""

    def filter(self, record):
        return "kernels-community" not in record.getMessage()


_logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropKernelsHubNotice())

if _os.environ.get("LLMBOOK_STRICT_4BIT", "0") not in (
    "",
    "0",
    "false",
    "False",
):  # tests and their book build: see llmbook.bnb_cpu
    from .bnb_cpu import install_strict_check as _install

    _install()
