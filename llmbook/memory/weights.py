"""How many bytes a model takes, counted the way transformers and bitsandbytes store it.

The estimate instantiates the architecture on the meta device (shapes and dtypes, no
storage), decides which modules bitsandbytes would quantize with the same rules as
transformers, and adds up, tensor by tensor:

- unquantized parameters and buffers: ``numel x bytes of their dtype``;
- int8 (LLM.int8) weights: 1 byte per element, plus one fp32 scale per output row
  (``SCB``);
- 4-bit (nf4/fp4) weights: 2 elements per byte, plus one fp32 ``absmax`` per block of 64
  elements and a 16-entry fp32 code book per layer; with double quantization the absmax
  values are themselves stored in 8 bits, with one fp32 constant per 256 of them, a
  256-entry fp32 code book and an fp32 offset per layer.

``footprint_bytes`` is what ``model.get_memory_footprint()`` reports (parameters and
buffers); ``constants_bytes`` is what it leaves out (the quantization constants above);
``total_bytes`` is both. Byte counts are exact for the stored tensors; the CUDA context
and the allocator's rounding come on top on a GPU.

This module counts a model's *stored* bytes (weights, buffers, quantization constants).
It does not count what running the model adds: the KV cache (:mod:`.kv_cache`),
activations (:mod:`.activations`), or a training step's gradients and optimizer states
(:mod:`.training`, :mod:`.steps`).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..units import GB, GIB

#: Other backends' weight-only formats, counted exactly for models loaded in fp32 or
#: bf16 (tests compare each with the tensors a loaded model holds). Their weights are
#: wrapper tensor subclasses, and ``get_memory_footprint()`` reports the *unquantized*
#: size for them (:attr:`TensorBytes.meter_bytes`).
#:
#: - torchao-int8 (``Int8WeightOnlyConfig``, and ``Int8DynamicActivationInt8WeightConfig``,
#:   which stores the same): int8 codes, an fp32 scale and an int8 zero point per row;
#: - torchao-fp8 (``Float8WeightOnlyConfig``): float8_e4m3fn codes, an fp32 scale per row;
#: - quanto-int8 / quanto-int4 (``QuantoConfig(weights=...)``): int8 codes and a scale per
#:   row in the model's dtype / 4-bit codes two per byte with a scale and a shift per
#:   group (:func:`quanto_int4_group`) in the model's dtype; each layer also gets two
#:   fp32 scalar buffers.
WRAPPER_QUANTIZATIONS = ("torchao-int8", "torchao-fp8", "quanto-int8", "quanto-int4")
#: Every quantization :func:`estimate` counts: bitsandbytes' int8, nf4 and fp4, the
#: wrapper formats above, and
#:
#: - mxfp4 (a pre-quantized checkpoint with ``quantization_config: mxfp4``, as gpt-oss
#:   ships): the experts' weights of a mixture-of-experts block (``GptOssExperts``:
#:   ``gate_up_proj`` and ``down_proj``) as FP4 E2M1 codes two per byte, with one E8M0
#:   scale byte per block of :data:`MX_BLOCK` along the input dimension; everything else
#:   in the model's dtype. Without MXFP4 kernels transformers dequantizes them to bf16 on
#:   load: estimate that with ``quantization=None`` and bf16.
QUANTIZATIONS = ("int8", "nf4", "fp4", *WRAPPER_QUANTIZATIONS, "mxfp4")
MX_BLOCK = 32  # elements sharing one E8M0 scale in the OCP MX formats


MXFP4_WEIGHTS = ("experts.gate_up_proj", "experts.down_proj")


QUANTO_INT4_GROUP = 128


QUANTO_LAYER_BUFFERS = 8  # input_scale and output_scale, fp32 scalars


BLOCKSIZE_4BIT = 64  # elements per absmax constant (bitsandbytes' default for weights)


NESTED_BLOCKSIZE = 256  # absmax values per fp32 constant under double quantization


CODE_4BIT_ENTRIES = 16  # nf4/fp4 code book, fp32


CODE_8BIT_ENTRIES = 256  # code book of the double-quantized absmax, fp32


class EstimateError(ValueError):
    """A config that cannot be estimated; the message is one sentence for the user."""


@dataclass(frozen=True)
class TensorBytes:
    """One stored tensor: where it lives, how it is stored, how many bytes it takes."""

    name: str
    group: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    quantized: bool = False
    constants_bytes: int = 0
    #: what ``get_memory_footprint()`` counts for it, where that differs from ``nbytes``
    #: (wrapper tensor subclasses report the size of the tensor they stand for)
    meter_bytes: int | None = None


@dataclass
class MemoryEstimate:
    """The bytes of a model's parameters and buffers as stored, and of its quantization constants."""

    model_type: str
    dtype: str
    quantization: str | None
    double_quant: bool
    n_parameters: int
    tensors: list[TensorBytes] = field(default_factory=list)

    @property
    def footprint_bytes(self) -> int:
        """What ``get_memory_footprint()`` reports: parameters and buffers as it sees
        them (for bitsandbytes the stored bytes without the constants; for the
        :data:`WRAPPER_QUANTIZATIONS` the unquantized size)."""
        return sum(
            t.nbytes if t.meter_bytes is None else t.meter_bytes for t in self.tensors
        )

    @property
    def constants_bytes(self) -> int:
        """Quantization constants (int8 row scales, 4-bit block absmax, code books)."""
        return sum(t.constants_bytes for t in self.tensors)

    @property
    def total_bytes(self) -> int:
        """Every byte the tensors hold: stored weights, other tensors and constants."""
        return sum(t.nbytes + t.constants_bytes for t in self.tensors)

    def by_group(self) -> dict[str, dict[str, int]]:
        """Parameters, bytes and quantization constants per module group."""
        groups: dict[str, dict[str, int]] = {}
        for t in self.tensors:
            g = groups.setdefault(
                t.group, {"parameters": 0, "bytes": 0, "constants_bytes": 0}
            )
            if t.group != "buffers":
                g["parameters"] += math.prod(t.shape)
            g["bytes"] += t.nbytes
            g["constants_bytes"] += t.constants_bytes
        return groups

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("tensors")
        d.update(
            footprint_bytes=self.footprint_bytes,
            constants_bytes=self.constants_bytes,
            total_bytes=self.total_bytes,
            groups=self.by_group(),
        )
        return d


def module_group(name: str) -> str:
    """Which part of a transformer a parameter belongs to, from its name."""
    n = name.lower()
    if re.search(r"(lm_head|embed_out|output_layer)", n):
        return "head"
    if re.search(
        r"(embed|wte|wpe|word_embeddings|position_embeddings|tok_embeddings)", n
    ):
        return "embeddings"
    if re.search(r"(norm|ln_|\.ln\b|layernorm|ln_f)", n):
        return "norms"
    if re.search(
        r"(attn|attention|q_proj|k_proj|v_proj|o_proj|qkv|query|key|value)", n
    ):
        return "attention"
    if re.search(
        r"(mlp|fc_in|fc_out|fc1|fc2|gate_proj|up_proj|down_proj|dense_h_to_4h|dense_4h_to_h|c_fc|ffn)",
        n,
    ):
        return "mlp"
    return "other"


def skipped_by_default(model) -> list[str]:
    """Modules transformers keeps unquantized unless told otherwise.

    The output embedding (``lm_head``), every tied weight (a tied ``lm_head`` shares its
    storage with the input embedding), and the module holding the last parameter.
    """
    skips = {
        k for pair in getattr(model, "all_tied_weights_keys", {}).items() for k in pair
    }
    skips.add(list(model.named_parameters())[-1][0])
    out = model.get_output_embeddings()
    skips |= {
        name
        for name, module in model.named_modules()
        if out is not None and module is out
    }
    skips |= set(getattr(model, "_keep_in_fp32_modules", None) or [])
    return sorted(k.removesuffix(".weight") for k in skips)


def is_skipped(module_name: str, patterns: list[str]) -> bool:
    """Whether a pattern names this module: a prefix up to a dot, a regex, or a suffix."""
    boundary = r"(?:(?<=\.)|(?=\.|$))"
    return any(
        re.match(rf"(?:{p}){boundary}", module_name) or module_name.endswith(p)
        for p in patterns
    )


def _quantizable(module) -> bool:
    import torch.nn as nn
    from transformers.pytorch_utils import Conv1D

    return type(module) is nn.Linear or isinstance(module, Conv1D)


def weight_bytes(numel: int, quantization: str | None, dtype_bytes: int) -> int:
    """Bytes of a weight tensor as stored: int8 1 per element, 4-bit 2 elements per byte."""
    if quantization in ("int8", "torchao-int8", "torchao-fp8", "quanto-int8"):
        return numel
    if quantization in ("nf4", "fp4", "quanto-int4", "mxfp4"):
        return (numel + 1) // 2
    return numel * dtype_bytes


def constants_bytes(
    numel: int,
    out_features: int,
    quantization: str | None,
    double_quant: bool = False,
    dtype_bytes: int = 4,
) -> int:
    """Bytes of the quantization constants of one weight (for bitsandbytes, what the
    footprint leaves out); ``dtype_bytes`` is the width of the model's dtype, which
    optimum-quanto's scales take."""
    if quantization == "int8":
        return 4 * out_features  # SCB: one fp32 absmax per output row
    if quantization == "torchao-int8":
        return (4 + 1) * out_features  # fp32 scale + int8 zero point per row
    if quantization == "torchao-fp8":
        return 4 * out_features
    if quantization == "mxfp4":
        return numel // MX_BLOCK  # one E8M0 byte per block
    if quantization == "quanto-int8":
        return dtype_bytes * out_features + QUANTO_LAYER_BUFFERS
    if quantization == "quanto-int4":
        group = quanto_int4_group(numel // out_features)
        groups = out_features if group is None else numel // group
        return 2 * dtype_bytes * groups + QUANTO_LAYER_BUFFERS  # scale and shift
    if quantization in ("nf4", "fp4"):
        blocks = math.ceil(numel / BLOCKSIZE_4BIT)
        code = 4 * CODE_4BIT_ENTRIES
        if not double_quant:
            return 4 * blocks + code
        nested = math.ceil(blocks / NESTED_BLOCKSIZE)
        return blocks + 4 * nested + 4 * CODE_8BIT_ENTRIES + 4 + code  # + fp32 offset
    return 0


def quanto_int4_group(in_features: int) -> int | None:
    """optimum-quanto's group size for a 4-bit weight with ``in_features`` columns: 128,
    else the largest of 96, 64, 32 that divides it; None (one group per row) when none
    does or the row is no longer than 128 (``QModuleMixin.__init__``)."""
    group = QUANTO_INT4_GROUP
    if in_features <= group:
        return None
    while in_features % group and group > 32:
        group -= 32
    return group if in_features % group == 0 else None


_STORED_AS = {
    "int8": "int8",
    "nf4": "uint8 (4-bit pairs)",
    "fp4": "uint8 (4-bit pairs)",
    "torchao-int8": "int8",
    "torchao-fp8": "float8_e4m3fn",
    "quanto-int8": "int8",
    "quanto-int4": "uint8 (4-bit pairs)",
    "mxfp4": "uint8 (FP4 E2M1 pairs)",
}


def _meter_bytes(quantization: str, unquantized: int) -> int | None:
    if quantization not in WRAPPER_QUANTIZATIONS:
        return None
    buffers = QUANTO_LAYER_BUFFERS if quantization.startswith("quanto") else 0
    return unquantized + buffers


def empty_model(config, dtype):
    """:func:`llmbook.models.meta_model`, with one clear error for an unknown architecture.

    The last few are kept (keyed by the config's JSON and the dtype): a meta model holds
    no data, and a search over sequence lengths asks for the same one many times. Callers
    only read it."""
    from ..models import meta_model

    key = (config.to_json_string(), str(dtype))
    if key not in _EMPTY_MODELS:
        try:
            model = meta_model(config, dtype)
        except ValueError as exc:
            raise EstimateError(
                f"transformers has no causal-LM class for model type {config.model_type!r}: {exc}"
            ) from None
        while len(_EMPTY_MODELS) >= 8:
            _EMPTY_MODELS.pop(next(iter(_EMPTY_MODELS)))
        _EMPTY_MODELS[key] = model
    return _EMPTY_MODELS[key]


_EMPTY_MODELS: dict[tuple[str, str], Any] = {}


def active_parameters(config) -> int:
    """Parameters a token passes through: all of them for a dense model; for a mixture
    of experts, all but the routed experts it is not sent to. transformers stacks each
    layer's routed experts in one module (its class name ends in ``Experts``), first
    dimension the expert, and the router picks ``num_experts_per_tok`` of them
    (``experts_per_token`` in gpt-oss), so ``1 - k/E`` of each such tensor is idle for
    the token. Shared experts, attention, norms and the embeddings count whole (some
    published counts leave the input embedding out, a lookup: gpt-oss-20b's 3.6B). All
    the experts stay in memory: :func:`estimate` counts them."""
    import torch

    model = empty_model(config, torch.bfloat16)
    total = sum(p.numel() for p in model.parameters())
    chosen = getattr(config, "num_experts_per_tok", None)
    chosen = chosen or getattr(config, "experts_per_token", None)
    idle = 0
    for module in model.modules():
        if chosen and type(module).__name__.endswith("Experts"):
            for p in module.parameters(recurse=False):
                experts = p.shape[0]
                idle += p.numel() // experts * (experts - min(chosen, experts))
    return total - idle


def expert_bytes(
    config, dtype=None, quantization: str | None = None, double_quant: bool = False
) -> dict[str, int]:
    """Where a mixture of experts' routed experts sit in :func:`estimate`'s count, for
    offloading them: ``experts``, the stored bytes of every routed expert (with their
    quantization constants); ``largest_layer``, one layer's; ``active``, what one token
    uses of them (``k/E`` of each layer's). All zero for a dense model.

    Offloaded with accelerate (a ``device_map`` that puts each ``mlp.experts`` on
    ``"cpu"``, as transformers' ``from_pretrained`` builds it), a module on the CPU runs
    on the GPU: ``dispatch_model`` gives it an ``AlignDevicesHook`` with ``offload=True``,
    which copies all its weights to the GPU before each forward pass and drops them
    after. So the GPU holds one layer's experts at a time, and every forward pass (each
    new token while decoding) copies ``experts`` bytes over the bus, not only the
    ``active`` ones. Engines that compute the experts on the CPU instead (llama.cpp's
    ``--cpu-moe``) read ``active`` bytes from CPU memory per token."""
    import torch

    model = empty_model(config, torch.bfloat16)
    chosen = getattr(config, "num_experts_per_tok", None)
    chosen = chosen or getattr(config, "experts_per_token", None)
    modules = {}  # name: (experts, chosen)
    for name, module in model.named_modules():
        if chosen and type(module).__name__.endswith("Experts"):
            first = next(module.parameters(recurse=False), None)
            if first is not None:
                modules[name + "."] = first.shape[0]
    est = estimate(config, dtype, quantization, double_quant)
    layers: dict[str, int] = {}
    active = 0.0
    for tensor in est.tensors:
        prefix = next((m for m in modules if tensor.name.startswith(m)), None)
        if prefix is None:
            continue
        stored = tensor.nbytes + tensor.constants_bytes
        layers[prefix] = layers.get(prefix, 0) + stored
        active += stored * min(chosen, modules[prefix]) / modules[prefix]
    return {
        "experts": sum(layers.values()),
        "largest_layer": max(layers.values(), default=0),
        "active": round(active),
    }


def estimate(
    config,
    dtype=None,
    quantization: str | None = None,
    double_quant: bool = False,
    skip_modules: list[str] | None = None,
) -> MemoryEstimate:
    """Bytes of a causal LM built from ``config`` as transformers/bitsandbytes store it.

    ``dtype``: of the unquantized tensors; default the config's own dtype (what
    ``from_pretrained`` uses by default in transformers 5), else float32.
    ``quantization``: None, "int8", "nf4" or "fp4" (``BitsAndBytesConfig``), or one of
    :data:`WRAPPER_QUANTIZATIONS` (torchao, optimum-quanto).
    ``skip_modules``: like ``llm_int8_skip_modules``, it *replaces* the default list
    (``lm_head``, tied weights), so name those too if they should stay unquantized.
    """
    import torch

    if quantization not in (None, *QUANTIZATIONS):
        raise EstimateError(
            f"unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}"
        )
    if quantization == "mxfp4" and getattr(config, "model_type", None) != "gpt_oss":
        raise EstimateError(
            "transformers loads MXFP4 checkpoints for gpt-oss's experts only "
            f"(its Mxfp4GptOssExperts), not {getattr(config, 'model_type', 'this model')}"
        )
    if dtype is None:
        # transformers 5 reads a config.json's "torch_dtype" into ``dtype``; the old
        # attribute only warns that it is deprecated
        dtype = getattr(config, "dtype", None) or torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    model = empty_model(config, dtype)
    skips = skipped_by_default(model) if skip_modules is None else list(skip_modules)

    quantized_weights: dict[str, tuple[int, str | None]] = {}
    if quantization == "mxfp4":  # only the experts' weights, not the linear layers
        quantized_weights = {
            name: (p.shape[-1], quantization)
            for name, p in model.named_parameters()
            if name.endswith(MXFP4_WEIGHTS)
        }
    elif quantization:
        for name, module in model.named_modules():
            if _quantizable(module) and not is_skipped(name, skips):
                weight = module.weight
                out_features = (
                    weight.shape[1]
                    if type(module).__name__ == "Conv1D"
                    else weight.shape[0]
                )
                quantized_weights[f"{name}.weight"] = (out_features, quantization)

    tensors = []
    for name, p in model.named_parameters():  # tied parameters appear once
        numel, width = p.numel(), p.element_size()
        if name in quantized_weights:
            out_features, q = quantized_weights[name]
            tensors.append(
                TensorBytes(
                    name,
                    module_group(name),
                    tuple(p.shape),
                    _STORED_AS[q],
                    weight_bytes(numel, q, width),
                    True,
                    constants_bytes(numel, out_features, q, double_quant, width),
                    _meter_bytes(q, numel * width),
                )
            )
        else:
            tensors.append(
                TensorBytes(
                    name,
                    module_group(name),
                    tuple(p.shape),
                    str(p.dtype).removeprefix("torch."),
                    numel * width,
                )
            )
    for name, b in model.named_buffers():
        tensors.append(
            TensorBytes(
                name,
                "buffers",
                tuple(b.shape),
                str(b.dtype).removeprefix("torch."),
                b.numel() * b.element_size(),
            )
        )
    return MemoryEstimate(
        model_type=config.model_type,
        dtype=str(dtype).removeprefix("torch."),
        quantization=quantization,
        double_quant=bool(double_quant and quantization in ("nf4", "fp4")),
        n_parameters=sum(p.numel() for p in model.parameters()),
        tensors=tensors,
    )


def format_bytes(n: int) -> str:
    """Bytes in GiB (binary) and GB (decimal), the two units people mix up."""
    return f"{n / GIB:.3f} GiB ({n / GB:.3f} GB, {n:,} bytes)"
