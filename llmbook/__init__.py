"""Companion package of *LLM Memory & Precision, Question by Question*.

Plumbing and tools that several chapters share:

- :mod:`llmbook.env` - where a notebook runs (CPU/CUDA, Colab, network, versions)
- :mod:`llmbook.models` - architecture-faithful models built from configs
- :mod:`llmbook.measure` - time and peak memory on CPU and CUDA
- :mod:`llmbook.plotting` - the book's plot style and colours
- :mod:`llmbook.notebook` - `glue` that also works where myst-nb is missing (Colab)

What a chapter teaches is written on the chapter's page, not here.
"""

__version__ = "0.1.0"
