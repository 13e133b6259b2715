"""A benchmark harness for generation: load time, memory and speed per precision.

The same functions run live in the inference chapter (sized to the hardware found) and
in ``scripts/gpu_inference_bench.py``, which records reference numbers on a GPU.

What is measured, and how:

- **load_s**: wall-clock seconds of ``from_pretrained`` from a local safetensors
  checkpoint, quantization included (the page cache is warm after the first load).
- **weight_bytes**: the bytes of every tensor in the loaded model's state dict
  (parameters, buffers and bitsandbytes' scale tensors), on any device.
- **allocated_bytes** (CUDA only, from :func:`load_measured`): what the allocator holds
  after loading minus before; it also counts what loading left behind, such as the
  cuBLAS workspace that the first int8 or 4-bit quantization kernels create.
- **ttft_s**: time to first token, a ``generate`` call with one new token (the prompt
  pass plus one sampling step).
- **decode_tok_s**: generated tokens per second after the first, from the difference
  between a long and a one-token ``generate``: ``batch * (n - 1) / (t_n - t_1)`` (NaN
  when noise makes the difference negative: generate more tokens).
- **peak_bytes**: the peak memory increase during the long ``generate`` over the
  loaded model (CUDA: allocator statistics; CPU: process RSS, an upper bound).

Times are medians of ``repeats`` calls after a warm-up call; spreads are max - min.
Inputs are random token ids from a seeded generator, so runs are repeatable.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import memory
from .measure import PeakMemory, tensor_bytes, time_call
from .memory import PRESETS

#: Precisions the harness benchmarks, in the order tables show them.
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "nf4")

#: Every bitsandbytes precision the book loads: ``BitsAndBytesConfig`` keyword arguments.
#: The book's one table of them; :func:`load_kwargs` turns a name into ``from_pretrained``
#: arguments. "int8-no-outliers" is plain int8 (threshold 0: no fp16 outlier columns).
QUANTIZED = {
    "int8": {"load_in_8bit": True},
    "int8-no-outliers": {"load_in_8bit": True, "llm_int8_threshold": 0.0},
    "nf4": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
    "nf4-dq": {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
    },
    "fp4": {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4"},
    "fp4-dq": {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "fp4",
        "bnb_4bit_use_double_quant": True,
    },
}
FLOATS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
ALL_PRECISIONS = tuple(FLOATS) + tuple(QUANTIZED)

#: TinyLlama-1.1B's geometry (Llama 2 architecture, grouped-query attention): the
#: model the GPU reference run uses. 1.10B parameters.
TINYLLAMA_1B = dict(PRESETS["TinyLlama-1.1B"], max_position_embeddings=4096)


#: The 16-bit type quantized models compute in, by default: fp16 for int8 (LLM.int8's
#: kernels take fp16 and cast anything else to it), bf16 for the 4-bit types.
DEFAULT_COMPUTE = {
    p: "float16" if p.startswith("int8") else "bfloat16" for p in QUANTIZED
}


def _dtype(name):
    import torch

    return getattr(torch, name) if isinstance(name, str) and name != "auto" else name


def recorded_run(name: str = "gpu_inference_h200.json") -> dict[str, Any]:
    """A recorded GPU run shipped with the package (``llmbook/data``), as a dict."""
    import json
    from importlib.resources import files

    return json.loads(files("llmbook").joinpath("data", name).read_text())


def load_kwargs(precision: str, compute_dtype=None, dtype="compute") -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for ``precision`` (one of :data:`ALL_PRECISIONS`).

    Quantized precisions compute in ``compute_dtype`` (default :data:`DEFAULT_COMPUTE`;
    for 4-bit it becomes ``bnb_4bit_compute_dtype``) and keep their non-quantized tensors
    in ``dtype``: by default the compute dtype; ``"auto"`` keeps the checkpoint's own.
    """
    if precision in FLOATS:
        return {"dtype": _dtype(FLOATS[precision])}
    if precision not in QUANTIZED:
        raise ValueError(
            f"unknown precision {precision!r}; choose one of {ALL_PRECISIONS}"
        )
    from transformers import BitsAndBytesConfig

    compute_dtype = _dtype(compute_dtype or DEFAULT_COMPUTE[precision])
    options = dict(QUANTIZED[precision])
    if "load_in_4bit" in options:
        options["bnb_4bit_compute_dtype"] = compute_dtype
    dtype = compute_dtype if dtype == "compute" else dtype
    return {
        "dtype": _dtype(dtype),
        "quantization_config": BitsAndBytesConfig(**options),
    }


def compute_bytes(precision: str, compute_dtype=None) -> int:
    """Bytes per value of activations and KV cache for a model loaded in ``precision``."""
    import torch

    if precision == "fp32":
        return 4
    if precision in ("bf16", "fp16"):
        return 2
    if precision not in DEFAULT_COMPUTE:
        raise ValueError(
            f"unknown precision {precision!r}; choose one of {ALL_PRECISIONS}"
        )
    return torch.tensor(
        [], dtype=_dtype(compute_dtype or DEFAULT_COMPUTE[precision])
    ).element_size()


def save_checkpoint(
    config, folder: str | Path, dtype=None, seed: int = 0, device: str = "cpu"
) -> Path:
    """Build a random-weight model from ``config`` and save it (safetensors) in ``folder``.

    ``device`` is where the random weights are initialised (a GPU does it much faster).
    """
    import torch
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(folder)
    del model
    return folder


def state_bytes(model) -> int:
    """Bytes of every tensor a model holds: parameters, buffers (including the ones a
    state dict leaves out, such as the rotary embedding's ``inv_freq``) and bitsandbytes'
    quantization constants. Not the state dict: for bitsandbytes it also makes small
    tensors that exist only to be saved (``weight_format``, a packed ``quant_state``)."""
    from .bnb_cpu import quant_constants

    return tensor_bytes(*model.parameters(), *model.buffers(), *quant_constants(model))


def load(folder: str | Path, precision: str, device: str = "cpu"):
    """Load ``folder`` in ``precision`` on ``device``; returns (model, seconds, weight bytes)."""
    model, seconds, weights, _ = load_measured(folder, precision, device)
    return model, seconds, weights


def load_measured(folder: str | Path, precision: str, device: str = "cpu"):
    """Like :func:`load`, plus the CUDA allocator's growth during loading (None on CPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = load_kwargs(precision)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        folder, device_map=device, **kwargs
    ).eval()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    allocated = torch.cuda.memory_allocated() - before if cuda else None
    return model, seconds, state_bytes(model), allocated


def prompt(vocab_size: int, batch: int, length: int, seed: int = 0):
    """Random token ids, shape (batch, length), from a seeded generator (ids 1..vocab-1)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab_size, (batch, length), generator=g)


def generate(model, ids, new_tokens: int):
    """Greedy generation of exactly ``new_tokens`` tokens (no early stop at an end token)."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
        bos_token_id=None,
    )
    with torch.inference_mode():
        return model.generate(
            ids, attention_mask=torch.ones_like(ids), generation_config=config
        )


@dataclass(frozen=True)
class GenerationResult:
    """One generation measurement; times in seconds, memory in bytes."""

    batch: int
    prompt_tokens: int
    new_tokens: int
    ttft_s: float
    ttft_spread_s: float
    total_s: float
    total_spread_s: float
    decode_tok_s: float
    peak_bytes: int
    kv_cache_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_generation(
    model,
    batch: int,
    prompt_tokens: int,
    new_tokens: int,
    repeats: int = 3,
    device: str = "cpu",
    kv_bytes_per_value: int | None = None,
    seed: int = 0,
) -> GenerationResult:
    """Time to first token, decode speed and peak memory of one generation setting.

    ``new_tokens`` must be at least 2 (decode speed is measured after the first token).
    """
    if new_tokens < 2:
        raise ValueError("new_tokens must be at least 2 to measure decoding")
    ids = prompt(model.config.vocab_size, batch, prompt_tokens, seed).to(model.device)
    first = time_call(lambda: generate(model, ids, 1), repeats=repeats, device=device)
    full = time_call(
        lambda: generate(model, ids, new_tokens), repeats=repeats, device=device
    )
    with PeakMemory(device) as mem:
        out = generate(model, ids, new_tokens)
    assert out.shape == (batch, prompt_tokens + new_tokens), out.shape
    decode_s = full.median_s - first.median_s
    if kv_bytes_per_value is None:
        kv_bytes_per_value = next(
            p for p in model.parameters() if p.is_floating_point()
        ).element_size()
    # the cache holds every token but the last generated one
    kv = memory.kv_cache_bytes(
        model.config, batch, prompt_tokens + new_tokens - 1, kv_bytes_per_value
    )
    return GenerationResult(
        batch,
        prompt_tokens,
        new_tokens,
        first.median_s,
        first.spread_s,
        full.median_s,
        full.spread_s,
        batch * (new_tokens - 1) / decode_s if decode_s > 0 else float("nan"),
        mem.peak_bytes,
        kv,
    )


def layer_timeline(model, ids, device: str = "cpu") -> list[dict[str, Any]]:
    """Start and end time (seconds from the forward's start) and device of each decoder layer.

    Hooks on ``model.model.layers`` record the times; on CUDA each hook synchronizes, so
    the timeline shows when each layer really ran. One forward pass of ``ids``. ``device``
    is where the layer's parameters live: ``meta`` for a layer accelerate offloaded (its
    weights wait in CPU RAM or on disk and are copied in before it runs).
    """
    import torch

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    events: list[dict[str, Any]] = []
    t0 = [0.0]
    handles = []
    for i, layer in enumerate(model.model.layers):

        def pre(module, args, kwargs=None, i=i):
            sync()
            events.append(
                {
                    "layer": i,
                    "start_s": time.perf_counter() - t0[0],
                    "device": str(next(module.parameters()).device),
                }
            )

        def post(module, args, output, i=i):
            sync()
            events[-1]["end_s"] = time.perf_counter() - t0[0]

        handles.append(layer.register_forward_pre_hook(pre))
        handles.append(layer.register_forward_hook(post))
    try:
        with torch.inference_mode():
            sync()
            t0[0] = time.perf_counter()
            model(ids.to(model.device))
            sync()
    finally:
        for h in handles:
            h.remove()
    return events


def decode_interval(result: dict[str, Any] | GenerationResult) -> tuple[float, float]:
    """A conservative interval (tokens/s) for a measurement's decode speed.

    Decode speed is ``batch * (n - 1) / (t_n - t_1)`` from the medians of the long and the
    one-token calls. Each median lies within its spread (max - min) of every repeat, so the
    speed lies between the values with both times pushed apart, or together, by their
    spreads. With 3 repeats this is the whole observed range, not a confidence interval:
    an ordering is claimed only where two such intervals do not overlap.
    """
    r = result.as_dict() if isinstance(result, GenerationResult) else result
    tokens = r["batch"] * (r["new_tokens"] - 1)
    slow = r["total_s"] + r["total_spread_s"] - (r["ttft_s"] - r["ttft_spread_s"])
    fast = r["total_s"] - r["total_spread_s"] - (r["ttft_s"] + r["ttft_spread_s"])
    return tokens / slow, (tokens / fast if fast > 0 else float("inf"))


def separated(a: tuple[float, float], b: tuple[float, float]) -> int:
    """+1 if interval ``a`` lies wholly above ``b``, -1 if wholly below, 0 if they overlap."""
    return 1 if a[0] > b[1] else -1 if a[1] < b[0] else 0


def read_bandwidth(nbytes: int, device: str = "cpu", repeats: int = 5) -> float:
    """The fastest rate, in bytes per second, at which ``device`` reads a buffer of
    ``nbytes`` (summed as fp32), best of ``repeats`` after a warm-up. A decoding step
    re-reads that many bytes of weights, so this is the most bandwidth it can get: from
    the memory chips, or from the caches where the buffer fits in them."""
    import torch

    x = torch.ones(max(nbytes // 4, 1 << 16), device=device)
    return x.numel() * 4 / time_call(x.sum, repeats=repeats, device=device).min_s


def matmul_peak(dtype, device: str = "cpu", n: int | None = None, repeats: int = 5):
    """The most FLOP/s an ``n x n`` by ``n x n`` matrix product in ``dtype`` reached on
    ``device``, best of ``repeats`` after a warm-up (n: 1024 on a CPU, 8192 on a GPU):
    the peak a roofline divides by, as this machine and its libraries deliver it."""
    import torch

    n = n or (8192 if device.startswith("cuda") else 1024)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return 2 * n**3 / time_call(lambda: a @ b, repeats=repeats, device=device).min_s
