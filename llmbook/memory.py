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
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .units import GB, GIB

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
    from .models import meta_model

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
    if dtype is None:
        dtype = (
            getattr(config, "dtype", None)
            or getattr(config, "torch_dtype", None)
            or torch.float32
        )
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


def load_config(source: str):
    """A transformers config from a config.json file, a folder holding one, or a hub id."""
    from transformers import AutoConfig

    path = Path(source)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise EstimateError(f"no such config file: {path}")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EstimateError(f"{path} is not valid JSON ({exc})") from None
        if not isinstance(data, dict) or "model_type" not in data:
            raise EstimateError(
                f"{path} has no 'model_type': is it a transformers config.json?"
            )
        model_type = data.pop("model_type")
        try:
            return AutoConfig.for_model(model_type, **data)
        except (ValueError, KeyError) as exc:
            raise EstimateError(
                f"unknown model type {model_type!r} in {path} ({str(exc).splitlines()[0]})"
            ) from None
    try:
        return AutoConfig.from_pretrained(source)
    except (
        Exception
    ) as exc:  # network, missing repo, unknown type: one line for the user
        raise EstimateError(
            f"could not load a config for {source!r}: {str(exc).splitlines()[0]}"
        ) from None


def format_bytes(n: int) -> str:
    """Bytes in GiB (binary) and GB (decimal), the two units people mix up."""
    return f"{n / GIB:.3f} GiB ({n / GB:.3f} GB, {n:,} bytes)"


#: Spellings of dtypes the CLI accepts, to torch's names.
DTYPE_ALIASES = {
    "fp32": "float32",
    "float32": "float32",
    "f32": "float32",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "f16": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
}


def _dtype_arg(value: str) -> str:
    import argparse

    try:
        return DTYPE_ALIASES[value.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown dtype {value!r}; use one of {', '.join(DTYPE_ALIASES)}"
        ) from None


def _gpu_arg(value: str) -> str:
    import argparse

    matches = [g for g in GPUS if g.lower() == value.lower()] or [
        g for g in GPUS if g.lower().startswith(value.lower())
    ]
    if len(matches) != 1:
        raise argparse.ArgumentTypeError(
            f"unknown or ambiguous GPU {value!r}; use one of {', '.join(GPUS)}"
        )
    return matches[0]


def main(argv: list[str] | None = None) -> int:
    """``python -m llmbook memory CONFIG``: bytes of a model as stored, by module group; with
    ``--recipe``, the whole job (inference, full fine-tuning, LoRA, QLoRA) and where it fits."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m llmbook memory", description=main.__doc__
    )
    parser.add_argument(
        "config", help="a config.json, a folder holding one, or a hub id (online)"
    )
    parser.add_argument(
        "--dtype",
        default=None,
        type=_dtype_arg,
        help="dtype of the unquantized tensors: fp32, fp16, bf16 (or float32, ...); default: "
        "the config's, else float32 (with --recipe: bf16; the full recipes fix their own)",
    )
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default=None)
    parser.add_argument(
        "--double-quant",
        action="store_true",
        help="4-bit double quantization of the constants",
    )
    parser.add_argument(
        "--recipe",
        choices=RECIPES,
        default=None,
        help="estimate a whole job, not only the weights",
    )
    parser.add_argument(
        "--batch", type=int, default=1, help="sequences per step (with --recipe)"
    )
    parser.add_argument(
        "--seq", type=int, default=2048, help="tokens per sequence (with --recipe)"
    )
    parser.add_argument(
        "--checkpointing",
        action="store_true",
        help="gradient checkpointing (training recipes)",
    )
    parser.add_argument(
        "--lora-rank", type=int, default=16, help="LoRA rank (lora, qlora)"
    )
    parser.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="adamw",
        help="training recipes: torch AdamW, bitsandbytes AdamW8bit, SGD with momentum",
    )
    parser.add_argument(
        "--attention",
        choices=ATTENTIONS,
        default="sdpa",
        help="training recipes: SDPA/FlashAttention (linear in tokens) or eager (quadratic)",
    )
    parser.add_argument(
        "--gpus",
        type=int,
        default=1,
        help="training on this many GPUs, data-parallel, each with --batch sequences",
    )
    parser.add_argument(
        "--sharding",
        choices=SHARDINGS,
        default=None,
        help="how --gpus share the job: DDP, ZeRO-1, FSDP2 without/with resharding "
        "(zero2/zero3); default ddp when --gpus > 1",
    )
    parser.add_argument(
        "--gpu",
        type=_gpu_arg,
        default=None,
        help=f"say whether the job fits on this GPU: {', '.join(GPUS)} (case and the size may be left out)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print a machine-readable breakdown"
    )
    args = parser.parse_args(argv)
    if min(args.batch, args.seq, args.lora_rank, args.gpus) < 1:
        print(
            "llmbook memory: --batch, --seq, --lora-rank and --gpus must be positive whole numbers"
        )
        return 2
    if (args.gpus > 1 or args.sharding) and args.recipe in (None, "inference"):
        print("llmbook memory: --gpus and --sharding apply to a training --recipe")
        return 2
    try:
        config = load_config(args.config)
        if args.recipe:
            return _print_job(config, args)
        est = estimate(config, args.dtype, args.quantization, args.double_quant)
    except EstimateError as exc:
        print(f"llmbook memory: {exc}")
        return 2
    if args.json:
        print(json.dumps(est.as_dict(), indent=2))
        return 0
    q = est.quantization or "none"
    print(
        f"{est.model_type}: {est.n_parameters:,} parameters, dtype {est.dtype}, quantization {q}"
        + (" (double)" if est.double_quant else "")
    )
    for group, g in sorted(est.by_group().items(), key=lambda kv: -kv[1]["bytes"]):
        print(
            f"  {group:11s} {g['parameters']:>15,} params {g['bytes'] / GIB:10.3f} GiB"
            + (
                f"  + {g['constants_bytes'] / GIB:.3f} GiB constants"
                if g["constants_bytes"]
                else ""
            )
        )
    wrapper = est.quantization in WRAPPER_QUANTIZATIONS
    meter = "the unquantized size: this format's weights are wrapper tensors"
    print(
        f"  footprint   {format_bytes(est.footprint_bytes)}  (= get_memory_footprint()"
        + (f", {meter})" if wrapper else ")")
    )
    if est.constants_bytes:
        print(
            f"  constants   {format_bytes(est.constants_bytes)}  "
            + (
                "(scales, zero points)"
                if wrapper
                else "(not in get_memory_footprint())"
            )
        )
    print(
        f"  total       {format_bytes(est.total_bytes)}"
        + ("  (what the tensors hold)" if wrapper else "")
    )
    if args.gpu:
        print(
            _fits_line(est.total_bytes, args.gpu)
            + " (weights alone; add --recipe for a whole job)"
        )
    return 0


def _fits_line(total: int, gpu: str) -> str:
    usable = usable_bytes(gpu)
    verdict = "fits" if total <= usable else "does NOT fit"
    return (
        f"  {gpu}: {verdict} ({total / GIB:.2f} GiB needed, {usable / GIB:.2f} GiB usable of "
        f"{GPUS[gpu][0]:,} MiB)"
    )


def _print_job(config, args) -> int:
    dtype = args.dtype or "bfloat16"
    parts = breakdown(
        config,
        args.recipe,
        dtype,
        args.quantization,
        args.double_quant,
        args.batch,
        args.seq,
        args.checkpointing,
        args.lora_rank,
        args.optimizer,
        args.attention,
    )
    options = dict(
        dtype=dtype,
        quantization=args.quantization,
        double_quant=args.double_quant,
        batch=args.batch,
        context=args.seq,
        checkpointing=args.checkpointing,
        lora_rank=args.lora_rank,
        optimizer=args.optimizer,
        attention=args.attention,
    )
    sharding = args.sharding or ("ddp" if args.gpus > 1 else None)
    if sharding:
        phases = sharded_phases(config, args.recipe, args.gpus, sharding, **options)
        moment, live = largest(phases)
    else:
        moment, live = peak(config, args.recipe, **options)
    total = sum(live.values())
    if args.json:
        print(
            json.dumps(
                {
                    "recipe": args.recipe,
                    "dtype": dtype,
                    "batch": args.batch,
                    "seq": args.seq,
                    "optimizer": args.optimizer,
                    "attention": args.attention,
                    "gpus": args.gpus,
                    "sharding": sharding,
                    "parts": parts,
                    "peak_moment": moment,
                    "peak_parts": live,
                    "peak_bytes": total,
                    "fits_on": fits_on(total),
                },
                indent=2,
            )
        )
        return 0
    print(
        f"{args.recipe}, {dtype}, batch {args.batch} x {args.seq} tokens"
        + (", checkpointing" if args.checkpointing else "")
        + (f", {args.optimizer}" if args.recipe != "inference" else "")
        + (f", {sharding} on {args.gpus} GPUs (per GPU below)" if sharding else "")
    )
    if args.recipe != "inference":
        print(
            "parts (never all alive at once in training"
            + ("; the whole job, before sharding)" if sharding else ")")
        )
    for part, n in parts.items():
        print(f"  {part:15s} {n / GIB:10.3f} GiB")
    if args.recipe != "inference":
        print(
            f"peak, during the {moment}: the parts alive then"
            + (" on each GPU" if sharding else "")
        )
        for part, n in live.items():
            print(f"  {part:21s} {n / GIB:10.3f} GiB")
    print(
        f"  {'peak' if args.recipe != 'inference' else 'total':15s} {format_bytes(total)}"
    )
    if args.gpu:
        print(_fits_line(total, args.gpu))
    else:
        print(f"  fits on: {', '.join(fits_on(total)) or 'none of the GPUs listed'}")
    return 0


# --- the whole job: weights plus what inference or training adds ---------------------

#: What the memory calculator (the web page and :func:`breakdown`) can estimate:
#: inference; full fine-tuning with ``torch.autocast`` (fp32 weights), in plain fp32, with
#: a model held in bf16 throughout, or with 16-bit weights and an fp32 master copy
#: (DeepSpeed, Apex); LoRA and QLoRA.
RECIPES = (
    "inference",
    "full",
    "full-fp32",
    "full-bf16",
    "full-master",
    "lora",
    "qlora",
)
#: Linear layers a LoRA adapter is attached to (all of a Llama block's projections).
LORA_TARGETS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)

#: Public Llama-architecture configs (``LlamaConfig`` keyword arguments) for presets.
PRESETS: dict[str, dict[str, Any]] = {
    "TinyLlama-1.1B": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        vocab_size=32000,
        tie_word_embeddings=False,
    ),
    "Llama-3.2-1B": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=True,
    ),
    "Llama-2-7B": dict(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
        tie_word_embeddings=False,
    ),
    "Mistral-7B": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=32000,
        tie_word_embeddings=False,
    ),
    "Llama-3-8B": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=False,
    ),
    "Llama-2-13B": dict(
        hidden_size=5120,
        intermediate_size=13824,
        num_hidden_layers=40,
        num_attention_heads=40,
        num_key_value_heads=40,
        vocab_size=32000,
        tie_word_embeddings=False,
    ),
    "Llama-2-70B": dict(
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        vocab_size=32000,
        tie_word_embeddings=False,
    ),
}


#: GPUs readers rent, with the total memory ``nvidia-smi`` reports (MiB) and where that
#: reading comes from. Marketing sizes are decimal gigabytes of the raw memory chips; a
#: program sees less (see :func:`usable_bytes`).
GPUS: dict[str, tuple[int, str]] = {
    "T4": (
        15360,
        "nvidia-smi (Colab's free GPU), modal-labs/modal-client pull request 2797",
    ),
    "L4": (23034, "nvidia-smi, modal-labs/modal-client pull request 2797"),
    "A10": (23028, "nvidia-smi, modal-labs/modal-client pull request 2797"),
    "RTX 4090": (24564, "nvidia-smi, RLinf/RLinf issue 255"),
    "RTX 3090": (24576, "nvidia-smi, noonghunna/club-3090 issue 741"),
    "RTX 5090": (32607, "nvidia-smi, noonghunna/club-3090 issue 741"),
    "A100 40GB": (40960, "nvidia-smi, modal-labs/modal-client pull request 2797"),
    "L40S": (46068, "nvidia-smi, modal-labs/modal-client pull request 2797"),
    "H100 80GB": (81559, "nvidia-smi, modal-labs/modal-client pull request 2797"),
    "A100 80GB": (81920, "nvidia-smi, modal-labs/modal-client pull request 2797"),
    "H200": (
        143771,
        "nvidia-smi on this book's GPU machine, 2026-11-28 (book/data/device_build.json)",
    ),
    "B200": (183359, "nvidia-smi, NVIDIA/TensorRT-LLM issue 10278"),
    "MI300X": (  # AMD: ROCm's PyTorch uses the same torch.cuda API and allocator
        196592,
        "rocm-smi 'VRAM Total Memory (B): 206141652992', ROCm/legacy-rocm-build issue 4750",
    ),
}
#: What a program cannot allocate of that total: the driver's own reserve (torch's
#: ``total_memory`` is already about 250 MiB under nvidia-smi's total on a T4 and 615 MiB
#: on the H200 this book ran on) plus the CUDA context (a few hundred MiB): 1 GiB in all.
CUDA_RESERVE_BYTES = GIB
#: The share of the rest kept free for the caching allocator's rounding and fragmentation.
ALLOCATOR_SLACK = 0.05


def usable_bytes(gpu: str) -> int:
    """Bytes a PyTorch program can plan to fill on ``gpu`` (a key of :data:`GPUS`):
    nvidia-smi's total, less :data:`CUDA_RESERVE_BYTES`, less :data:`ALLOCATOR_SLACK`."""
    try:
        total_mib = GPUS[gpu][0]
    except KeyError:
        raise EstimateError(
            f"unknown GPU {gpu!r}; choose one of {', '.join(GPUS)}"
        ) from None
    return int((total_mib * 1024**2 - CUDA_RESERVE_BYTES) * (1 - ALLOCATOR_SLACK))


def longest_context(
    config, gpu: str, recipe: str, limit: int = 131072, **options: Any
) -> int:
    """The most tokens per sequence for which the peak (:func:`peak_bytes`, ``recipe``,
    ``options``) fits in :func:`usable_bytes` of ``gpu``, up to ``limit``; 0 when not
    even one does."""
    return longest_contexts(config, [gpu], recipe, limit, **options)[gpu]


def longest_contexts(
    config, gpus: list[str], recipe: str, limit: int = 131072, **options: Any
) -> dict[str, int]:
    """:func:`longest_context` for each of ``gpus``, computing the job's bytes once."""
    # each moment of the step is a polynomial of degree <= 2 in the tokens (eager
    # attention's scores are the square), so three evaluations give each exactly; the
    # peak is the largest of them, and the search costs no more
    samples = [step_phases(config, recipe, context=t, **options) for t in (0, 1, 2)]
    coefficients = []
    for moment in samples[0]:
        t0, t1, t2 = (sum(s[moment].values()) for s in samples)
        c2 = (t2 - 2 * t1 + t0) // 2
        coefficients.append((t0, t1 - t0 - c2, c2))

    def total(tokens: int) -> int:
        return max(a + b * tokens + c * tokens**2 for a, b, c in coefficients)

    out = {}
    for gpu in gpus:
        budget = usable_bytes(gpu)
        if total(1) > budget:
            out[gpu] = 0
            continue
        low, high = 1, limit  # total() grows with tokens: bisect for the last that fits
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if total(mid) <= budget else (low, mid - 1)
        out[gpu] = low
    return out


def fits_on(total_bytes: int) -> list[str]:
    """The GPUs of :data:`GPUS` whose usable memory holds ``total_bytes``."""
    return [gpu for gpu in GPUS if total_bytes <= usable_bytes(gpu)]


def _head_dim(config) -> int:
    return (
        getattr(config, "head_dim", None)
        or config.hidden_size // config.num_attention_heads
    )


def _kv_heads(config) -> int:
    return getattr(config, "num_key_value_heads", None) or config.num_attention_heads


def _block_linears(config) -> list[tuple[int, int]]:
    """(in, out) features of a Llama block's seven projections: q, k, v, o, gate, up, down."""
    h, inter, hd = config.hidden_size, config.intermediate_size, _head_dim(config)
    q, kv = config.num_attention_heads * hd, _kv_heads(config) * hd
    return [(h, q), (h, kv), (h, kv), (q, h), (h, inter), (h, inter), (inter, h)]


def kv_cache_bytes(config, batch: int, tokens: int, bytes_per_value: int = 2) -> int:
    """Bytes of a full KV cache: keys and values, every layer, every token."""
    return (
        2
        * config.num_hidden_layers
        * batch
        * tokens
        * _kv_heads(config)
        * _head_dim(config)
        * bytes_per_value
    )


def prefill_activation_bytes(
    config, batch: int, seq: int, bytes_per_value: int = 2
) -> int:
    """One layer's working set in the prompt pass (layers run one at a time; SDPA keeps no
    seq x seq matrix): residual in and out, queries, keys and values, the MLP's gate, up and
    activated tensors."""
    h, inter = config.hidden_size, config.intermediate_size
    return batch * seq * (5 * h + 3 * inter) * bytes_per_value


#: How a training step computes, for the activations it keeps: plain fp32, a model held
#: in 16 bits ("bf16", fp16 alike), or ``torch.autocast`` to bf16 over fp32 weights.
COMPUTE_MODES = ("fp32", "bf16", "autocast")
#: Attention implementations the activation count knows: PyTorch's SDPA (measured with
#: its CPU flash-attention kernel, which keeps no score matrix) and the eager code that
#: forms the scores.
ATTENTIONS = ("sdpa", "eager")


def training_activation_bytes(
    config,
    batch: int,
    seq: int,
    checkpointing: bool = False,
    compute: str = "autocast",
    lora_rank: int | None = None,
    attention: str = "sdpa",
    _per_layer_only: bool = False,
) -> int:
    """Bytes autograd keeps for the backward pass of a Llama-style model (RMSNorm, SwiGLU
    MLP, rotary attention through PyTorch's SDPA, which keeps no seq x seq matrix), all
    layers, plus the final norm and the loss. GPT-NeoX and GPT-2 blocks (LayerNorm, GELU)
    are counted too, measured the same way: per layer and token ``8h + 2I`` (NeoX) or
    ``10h + 5I`` (GPT-2, whose tanh GELU keeps its intermediates) values and ``4 + a``
    fp32 statistics; under autocast ``2h`` or ``4h`` bytes more; outside the layers
    ``8h``, ``4h`` or ``6h`` bytes (fp32, bf16, autocast) plus the loss's ``4V``; with
    dropout set to 0 (its masks are not modelled: the function says so). Measured on CPU (torch's CPU kernels, including its
    flash-attention path for SDPA; which SDPA kernel a GPU picks was not measured) with
    ``saved_tensors_hooks`` (the tests check it within 5% at several shapes); per token:

    - each layer keeps ``8h + 4I + 2 kv hd`` wide values (each of its two RMSNorms keeps
      its input, its normalised value and its output; attention keeps the query and its
      output, which is also the output projection's input; the keys and values at their
      own size, since SDPA takes them unexpanded when there is no padding mask; the MLP's
      gate, up, SiLU and product) and ``2 + a`` floats (each norm's statistic, the
      attention's log-sum-exp per head). In fp32 all are 4 bytes; a 16-bit model keeps the
      wide values in 2 bytes plus ``4h`` bytes of fp32 copies (its norms compute in fp32);
      autocast keeps ``10h`` bytes more (its fp32 residual stream and norms);
    - outside the layers: the final norm (``12h``, ``8h`` or ``10h`` bytes) and the loss's
      fp32 log-softmax of the logits, ``4 V`` bytes, which dominates with a large vocabulary.

    This is what the backward pass needs, not the step's peak: a training loop that holds
    the model's output keeps the logits too (``V`` values per token in the compute dtype),
    the loss makes a transient fp32 copy of them, and the optimizer step allocates
    temporaries of its own. With a padded batch (an attention mask), SDPA gets keys and
    values repeated to all heads (``2 a hd`` instead of ``2 kv hd``).

    With ``attention="eager"`` (transformers' own attention code, or any that forms the
    scores), each layer also keeps the softmax of the ``s x s`` scores per head: in fp32
    (4 bytes), plus its cast to the compute dtype in a 16-bit model or under autocast (6
    bytes in all), so ``a s`` values per token, growing with the sequence; it keeps keys
    and values repeated to all ``a`` heads and no log-sum-exp. Measured the same way.

    With gradient checkpointing each layer keeps only its input (fp32 under autocast) and
    one layer at a time is recomputed in full. Autocast's cached 16-bit weight copies are
    not activations: see :func:`autocast_cache_bytes`.

    With ``lora_rank`` (PEFT adapters of that rank on all seven projections, over a frozen
    16-bit or 4-bit base), each layer keeps ``16h + 2I + 28r`` bytes per token more,
    measured: PEFT runs the adapters in fp32, keeping fp32 copies of their inputs and each
    adapter's rank-``r`` intermediate (7 x 4 bytes per rank). A frozen nf4 base keeps the
    same bytes as a frozen 16-bit one. Over an fp32 base (``compute="fp32"``, nf4 with fp32
    compute alike) no copies are made and the frozen norms keep less: ``28r - 8h`` bytes per
    layer and token, and ``12h`` bytes less outside the layers.
    """
    if compute not in COMPUTE_MODES:
        raise EstimateError(
            f"unknown compute mode {compute!r}; choose one of {', '.join(COMPUTE_MODES)}"
        )
    if attention not in ATTENTIONS:
        raise EstimateError(
            f"unknown attention {attention!r}; choose one of {', '.join(ATTENTIONS)}"
        )
    family = _block_family(config, attention, lora_rank)
    h, layers, heads = (
        _get(config, "hidden_size", "n_embd"),
        _get(config, "num_hidden_layers", "n_layer"),
        _get(config, "num_attention_heads", "n_head"),
    )
    inter = _get(config, "intermediate_size", "n_inner") or 4 * h
    eager = attention == "eager"
    if family == "llama":
        kv_saved = (
            heads if eager else _kv_heads(config)
        )  # eager repeats K and V per head
        wide = 8 * h + 4 * inter + 2 * kv_saved * _head_dim(config)
        stats = 2 + (0 if eager else heads)  # SDPA keeps a log-sum-exp per head
        upcast, autocast_extra = (
            4 * h,
            10 * h,
        )  # RMSNorm's fp32 copies; autocast's fp32 stream
        outside = {"fp32": 12 * h, "bf16": 8 * h, "autocast": 10 * h}[compute]
    else:  # LayerNorm blocks: two statistics per norm, a log-sum-exp per head
        wide = 8 * h + 2 * inter if family == "gpt_neox" else 10 * h + 5 * inter
        stats = 4 + heads
        upcast, autocast_extra = 0, 2 * h if family == "gpt_neox" else 4 * h
        outside = {"fp32": 8 * h, "bf16": 4 * h, "autocast": 6 * h}[compute]
    scores = heads * seq * (4 if compute == "fp32" else 6) if eager else 0
    if compute == "fp32":
        per_layer, layer_input = 4 * (wide + stats) + scores, 4 * h
    else:
        per_layer = 2 * wide + upcast + 4 * stats + scores
        per_layer += autocast_extra if compute == "autocast" else 0
        layer_input = 4 * h if compute == "autocast" else 2 * h
    outside += 4 * config.vocab_size
    if lora_rank and compute == "fp32":
        per_layer += 28 * lora_rank - 8 * h
        outside -= 12 * h
    elif lora_rank:
        per_layer += 16 * h + 2 * inter + 28 * lora_rank
    per_token = (
        layers * layer_input + per_layer if checkpointing else layers * per_layer
    )
    if _per_layer_only:
        return batch * seq * per_layer
    return batch * seq * (per_token + outside)


#: Block families whose activations were measured: Llama (RMSNorm, SwiGLU, rotary,
#: grouped-query attention), GPT-NeoX (LayerNorm, GELU, parallel residual) and GPT-2
#: (LayerNorm, the tanh-approximated GELU, which keeps five values per MLP unit).
ACTIVATION_FAMILIES = ("llama", "gpt_neox", "gpt2")
_DROPOUTS = (
    "attention_dropout",
    "hidden_dropout",
    "attn_pdrop",
    "resid_pdrop",
    "embd_pdrop",
)


def _get(config, *names):
    for name in names:
        if getattr(config, name, None) is not None:
            return getattr(config, name)
    return None


def _block_family(config, attention: str, lora_rank) -> str:
    """The measured family of ``config``'s blocks, or one sentence saying what is not."""
    family = getattr(config, "model_type", "llama")
    if family not in ACTIVATION_FAMILIES:
        raise EstimateError(
            f"training activations are measured for {', '.join(ACTIVATION_FAMILIES)} "
            f"blocks, not {family!r}"
        )
    dropout = [n for n in _DROPOUTS if (getattr(config, n, 0) or 0) > 0]
    if dropout:
        raise EstimateError(
            f"dropout ({', '.join(dropout)}) keeps masks that are not modelled: "
            "set them to 0, as fine-tuning recipes usually do"
        )
    if family == "gpt_neox" and not getattr(config, "use_parallel_residual", True):
        raise EstimateError(
            "GPT-NeoX blocks are measured with use_parallel_residual=True"
        )
    if family != "llama" and (attention == "eager" or lora_rank):
        raise EstimateError(
            f"eager attention and LoRA adapters are measured on Llama blocks, not {family!r}"
        )
    return family


def autocast_cache_bytes(config) -> int:
    """Bytes of the bf16 copies ``torch.autocast`` makes of every matmul weight (the
    blocks' projections and the output head) and keeps for the backward pass."""
    if (
        getattr(config, "model_type", "llama") != "llama"
    ):  # any architecture: from its modules
        import torch

        model = empty_model(config, torch.float32)
        return 2 * sum(
            m.weight.numel()
            for m in model.modules()
            if type(m).__name__ in ("Linear", "Conv1D")
        )
    block = sum(d_in * d_out for d_in, d_out in _block_linears(config))
    return 2 * (
        config.num_hidden_layers * block + config.vocab_size * config.hidden_size
    )


def lora_parameters(config, rank: int) -> int:
    """Parameters of a rank-``rank`` LoRA adapter on every projection of every layer."""
    return sum(trainable_numels(config, "lora", rank))


#: Optimizers the estimator counts (``optimizer_state_bytes``).
OPTIMIZERS = ("adamw", "adamw8bit", "sgd")
BNB_OPTIMIZER_BLOCK = 256  # elements per fp32 absmax of an 8-bit optimizer state
BNB_MIN_8BIT_SIZE = 4096  # smaller tensors keep 32-bit states (bitsandbytes' default)


def trainable_numels(config, recipe: str, lora_rank: int = 16) -> list[int]:
    """Element counts of the tensors a recipe trains: every parameter tensor of the
    model (tied weights once) for the full recipes, the LoRA ``A`` (r x in) and ``B``
    (out x r) matrices of every projection for ``lora`` and ``qlora``."""
    if recipe in ("lora", "qlora"):
        per_layer = [
            n
            for d_in, d_out in _block_linears(config)
            for n in (lora_rank * d_in, d_out * lora_rank)
        ]
        return per_layer * config.num_hidden_layers
    import torch

    model = empty_model(config, torch.bfloat16)
    return [p.numel() for p in model.parameters()]  # parameters() lists a tied one once


def optimizer_state_bytes(
    numels: list[int], optimizer: str = "adamw", width: int = 4
) -> int:
    """Bytes an optimizer keeps for trainable tensors of ``numels`` elements whose
    parameters are ``width`` bytes wide (its state after the first step):

    - ``adamw`` (``torch.optim.AdamW``): two moments in the parameters' dtype per element
      and a 4-byte fp32 ``step`` per tensor;
    - ``adamw8bit`` (``bitsandbytes.optim.AdamW8bit``): for tensors of at least 4096
      elements, two 1-byte moments per element and one fp32 absmax per block of 256 for
      each; smaller tensors keep two fp32 moments; two 256-entry fp32 code tables shared
      by all tensors; the step is a Python int;
    - ``sgd`` (``torch.optim.SGD`` with momentum): one momentum buffer in the
      parameters' dtype per element.
    """
    if optimizer == "adamw":
        return sum(2 * width * n + 4 for n in numels)
    if optimizer == "sgd":
        return sum(width * n for n in numels)
    if optimizer != "adamw8bit":
        raise EstimateError(
            f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
        )
    total = 2 * 256 * 4 if any(n >= BNB_MIN_8BIT_SIZE for n in numels) else 0
    for n in numels:
        if n >= BNB_MIN_8BIT_SIZE:
            total += 2 * (n + 4 * math.ceil(n / BNB_OPTIMIZER_BLOCK))
        else:
            total += 2 * 4 * n
    return total


def breakdown(
    config,
    recipe: str = "inference",
    dtype="bfloat16",
    quantization: str | None = None,
    double_quant: bool = False,
    batch: int = 1,
    context: int = 2048,
    checkpointing: bool = False,
    lora_rank: int = 16,
    optimizer: str = "adamw",
    attention: str = "sdpa",
) -> dict[str, int]:
    """Bytes of each part of a job, by recipe; what the web page's calculator shows.

    - ``inference``: weights in ``dtype`` (or quantized), the KV cache of ``batch`` x
      ``context`` tokens and one layer's prompt-pass activations, both in the compute dtype.
    - ``full``: ``torch.autocast`` to bf16 over fp32 weights with AdamW: fp32 weights and
      gradients, two fp32 moments, autocast's bf16 weight copies, activations (18 bytes
      per parameter before activations).
    - ``full-fp32``: plain fp32 training with AdamW, no autocast (16 bytes per parameter).
    - ``full-bf16``: the model held in bf16, AdamW's moments in bf16 too (8 bytes per
      parameter).
    - ``full-master``: 16-bit weights and gradients, an fp32 master copy and fp32 moments,
      as DeepSpeed and Apex keep them (16 bytes per parameter).
    - ``lora``: frozen base in ``dtype``, an fp32 adapter with its gradients and Adam
      moments (16 bytes per adapter parameter), activations of a model in ``dtype`` with
      adapters (computing in fp32 when ``dtype`` is fp32, else in 16 bits).
    - ``qlora``: the same with an nf4 base (``double_quant`` applies); ``dtype`` is the
      compute dtype and that of the unquantized parts.

    ``attention`` ("sdpa" or "eager") applies to the training recipes' activations.
    The optimizer's state follows :func:`optimizer_state_bytes` (``optimizer``: "adamw",
    "adamw8bit" or "sgd" with momentum) over the tensors :func:`trainable_numels` lists,
    kept in the trained tensors' dtype (bf16 for ``full-bf16``, else fp32). Weights are
    exact (:func:`estimate`); activations follow :func:`training_activation_bytes`.
    """
    import torch

    if recipe not in RECIPES:
        raise EstimateError(
            f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}"
        )
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    width = _width(dtype)
    if recipe == "inference":
        return {
            "weights": estimate(config, dtype, quantization, double_quant).total_bytes,
            "kv_cache": kv_cache_bytes(config, batch, context, width),
            "activations": prefill_activation_bytes(config, batch, context, width),
        }
    compute = _compute_mode(recipe, width)
    if recipe.startswith("full"):
        n = estimate(config, torch.bfloat16).n_parameters
        activations = training_activation_bytes(
            config, batch, context, checkpointing, compute, attention=attention
        )
        state_width = 2 if recipe == "full-bf16" else 4
        states = optimizer_state_bytes(
            trainable_numels(config, recipe), optimizer, state_width
        )
        if recipe in ("full-fp32", "full-bf16"):  # weights, gradients, states alike
            return {
                "weights": state_width * n,
                "gradients": state_width * n,
                "optimizer": states,
                "activations": activations,
            }
        if recipe == "full":
            return {
                "weights": 4 * n,
                "gradients": 4 * n,
                "optimizer": states,
                "autocast_cache": autocast_cache_bytes(config),
                "activations": activations,
            }
        return {
            "weights": 2 * n,
            "gradients": 2 * n,
            "master_weights": 4 * n,
            "optimizer": states,
            "activations": activations,
        }
    activations = training_activation_bytes(
        config, batch, context, checkpointing, compute, lora_rank, attention
    )
    base = estimate(
        config, dtype, "nf4" if recipe == "qlora" else None, double_quant
    ).total_bytes
    p = lora_parameters(config, lora_rank)
    return {
        "weights": base,
        "adapter": 4 * p,
        "gradients": 4 * p,
        "optimizer": optimizer_state_bytes(
            trainable_numels(config, recipe, lora_rank), optimizer, 4
        ),
        "activations": activations,
    }


def _width(dtype) -> int:
    """Bytes per value of ``dtype`` (a torch dtype or its name)."""
    import torch

    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    return torch.tensor([], dtype=dtype).element_size()


def _compute_mode(recipe: str, width: int) -> str:
    """How a training recipe computes (:data:`COMPUTE_MODES`); ``width``: its dtype's bytes."""
    if recipe == "full":
        return "autocast"
    if recipe == "full-fp32" or (recipe in ("lora", "qlora") and width == 4):
        return "fp32"
    return "bf16"


# --- the peak: what is alive at each moment of a step ------------------------------

#: Bytes per token and vocabulary entry that the loss's backward holds for a moment: the
#: fp32 gradients of the log-softmax's output and of its input (measured: 8, in fp32, bf16
#: and under autocast).
LOSS_BACKWARD_BYTES = 8
#: What a training step holds in the layer it is working on, beyond that layer's saved
#: activations, as a share of them: in the backward pass, the gradients of its
#: intermediates (``backward``); with checkpointing, the forward pass's transients while
#: the backward pass recomputes the layer (``recompute``; the larger of the two is
#: counted there); in the forward pass, those transients as the last layer is computed
#: (``forward``). Measured on CPU with torch's memory profiler, full fine-tuning on
#: Llama-style models of 2 to 8 layers, the adapters on 2-layer ones (hidden sizes 256 to
#: 512, MLPs 3 to 5.3 times wider, batches of 1 and 2, 64 to 512 tokens, rank 8 on all
#: seven projections); the table rounds the measured shares up:
#:
#: - full fine-tuning: 0.4 to 0.7 in the backward pass; the forward pass's transients
#:   (0.26 to 0.52 recomputing; not measured without checkpointing) stay below it;
#: - LoRA computing in 16 bits without autocast: peft adds the fp32 adapters' output to
#:   the 16-bit base output, so the adapters' output, its scaled copy and the sum are fp32
#:   tensors of the projection's output size: 0.41 to 0.64 recomputing, 0.24 to 0.40 in
#:   the forward pass, 0.15 to 0.19 in the backward pass without checkpointing, which
#:   therefore peaks at the forward pass's last layer when nothing else is larger (under
#:   autocast the adapters compute in 16 bits and hold less);
#: - QLoRA computing in 16 bits: peft's bitsandbytes layer casts the adapters' output to
#:   the compute dtype before the sum; beyond one projection dequantized (counted apart),
#:   0.08 to 0.18 recomputing, at most 0.08 in the forward pass, 0.03 to 0.10 in the
#:   backward pass (where the forward pass's last layer won, it was by 1%);
#: - computing in fp32 the gradients weigh more against the activations: LoRA 0.33 to
#:   0.39 in the backward pass, 0.22 to 0.23 recomputing, 0.15 to 0.17 in the forward
#:   pass; QLoRA 0.17 to 0.25, 0.09 to 0.12 and 0.01. Only the backward shares decide a
#:   peak there.
LAYER_WORKSPACE = {
    "full": {"backward": 0.5, "recompute": 0.4, "forward": 0.4},
    "lora": {"backward": 0.2, "recompute": 0.5, "forward": 0.35},
    "lora-fp32": {"backward": 0.35, "recompute": 0.25, "forward": 0.2},
    "qlora": {"backward": 0.1, "recompute": 0.15, "forward": 0.08},
    "qlora-fp32": {"backward": 0.2, "recompute": 0.15, "forward": 0.05},
}
#: The moments of a training step :func:`step_phases` counts, in order.
PHASES = (
    "layer forward",
    "forward",
    "loss backward",
    "backward start",
    "backward end",
    "embedding backward",
    "optimizer step",
)


def step_phases(config, recipe: str = "inference", **options: Any) -> dict:
    """The parts alive at each moment of a job (``options`` as for :func:`breakdown`),
    as ``{moment: {part: bytes}}``; the largest total is the job's peak (:func:`peak`).

    Inference has one moment, the prompt pass: :func:`breakdown`'s parts. A training step
    (the default loop ``out = model(**batch); out.loss.backward(); optimizer.step();
    optimizer.zero_grad()``, one batch per step) has seven, measured on CPU with torch's
    memory profiler at several shapes (the book's tests hold the largest within 5%):

    - ``layer forward``, as the forward pass computes its last layer: weights and
      optimizer states, the activations saved so far (with checkpointing, the layers'
      inputs), autocast's copies of the layers' weights, the layer's transients
      (:data:`LAYER_WORKSPACE`'s ``forward`` share), under QLoRA one projection
      dequantized, and the previous step's logits. The peak when the layer's forward
      transients outweigh its backward pass's, as with LoRA computing in 16 bits without
      checkpointing.
    - ``forward``, as the loss is computed: weights and optimizer states (kept between
      steps), the saved activations, autocast's weight copies, the logits the loop keeps
      (``V`` values per token in the compute dtype), the previous step's logits (``out``
      is replaced only when the forward pass returns) and, for 16-bit logits, the loss's
      fp32 copy of them (``4 V`` bytes per token). Gradients do not exist yet:
      ``zero_grad()`` sets them to ``None``.
    - ``loss backward``: the same, but autocast keeps only the copies autograd saved (the
      head's alone with checkpointing) and the loss's backward holds
      :data:`LOSS_BACKWARD_BYTES` per token and vocabulary entry instead of the fp32 copy:
      the peak whenever the vocabulary is large against the model.
    - ``backward start``, at the first layer it reaches (the top one): the head's gradient
      (full fine-tuning), every layer's activations but the loss's log-softmax (freed), the
      layer's working set (:data:`LAYER_WORKSPACE`: the gradients of its intermediates
      or, with checkpointing, the transients of its recomputation, whichever is larger),
      under QLoRA one projection dequantized to the compute dtype.
    - ``backward end``, at its last layer: every gradient but that layer's (and the input
      embedding's, computed after it, when it is not tied to the head), the layer's
      activations (recomputed with checkpointing) and its working set
      (:data:`LAYER_WORKSPACE`), autocast's copies of that layer's weights;
      under QLoRA, one projection dequantized to the compute dtype.
    - ``embedding backward``: every gradient, and with embeddings tied to the head the
      input embedding's own gradient, computed apart and added to the head's (measured:
      two more embedding-sized tensors in the gradients' dtype, the gradient and the sum
      it makes; one under autocast).
    - ``optimizer step``: weights, gradients, states and the optimizer's temporaries:
      torch's AdamW on a GPU defaults to its ``foreach`` implementation, which computes
      the denominator of every tensor at once (one more copy of the trainable parameters,
      in the states' dtype; ``fused=True`` avoids it); bitsandbytes' 8-bit AdamW and SGD
      with momentum update in place, as do the fused optimizers of Apex and DeepSpeed
      (``full-master``; DeepSpeed's bf16 optimizer also keeps fp32 gradients, 4 bytes per
      parameter more). On a CPU, torch's default loops over tensors and holds a few of
      them instead; bitsandbytes' CPU 8-bit step dequantizes the states (measured: about
      8 bytes per parameter more), unlike its GPU kernel.

    What was measured, and what was not: CPU steps of Llama-style models with SDPA, fp32,
    bf16 and autocast, full fine-tuning, LoRA and QLoRA, 2 to 8 layers. ``full-master``
    was measured with a stand-in for the fused GPU kernels: torch's fused AdamW on each
    fp32 master tensor in turn, its bf16 gradient cast to fp32 one tensor at a time (that
    one fp32 gradient is the stand-in's own, not counted). The layer's working set depends
    on the recipe (:data:`LAYER_WORKSPACE`). On a GPU, which SDPA kernel runs matters:
    with grouped-query attention transformers asks SDPA for ``enable_gqa``, which only the
    flash kernel takes, so fp32 compute and GPUs without it (a T4) may fall back to the
    math kernel, which keeps the scores; count those as ``attention="eager"``.

    The logits are counted through the optimizer step because the loop above holds
    ``out`` until the next batch; a loop that keeps only the loss (Hugging Face's
    ``Trainer``) frees them after the forward pass. With gradient accumulation the
    gradients also exist in the forward pass; add them.
    """
    parts = breakdown(config, recipe, **options)
    if recipe == "inference":
        return {"prompt pass": parts}
    width = _width(options.get("dtype", "bfloat16"))
    compute = _compute_mode(recipe, width)
    batch, context = options.get("batch", 1), options.get("context", 2048)
    checkpointing = options.get("checkpointing", False)
    rank = options.get("lora_rank", 16)
    lora = recipe in ("lora", "qlora")
    tokens_v = batch * context * config.vocab_size
    logits = tokens_v * (4 if compute == "fp32" else 2)
    layer = training_activation_bytes(
        config,
        batch,
        context,
        False,
        compute,
        rank if lora else None,
        options.get("attention", "sdpa"),
        _per_layer_only=True,
    )
    transient = ("gradients", "activations", "autocast_cache")  # moment by moment
    kept = {k: v for k, v in parts.items() if k not in transient}
    saved = parts["activations"] - (layer if checkpointing else 0)
    # the last layer's gradients, and an untied input embedding's (computed after it)
    late_numels = _layer_numels(config, recipe, rank)
    if recipe.startswith("full") and not getattr(config, "tie_word_embeddings", False):
        late_numels += config.vocab_size * config.hidden_size
    grad_width = 2 if recipe in ("full-bf16", "full-master") else 4
    cast = {}
    if recipe == "full":  # autocast's bf16 weight copies
        head = 2 * config.vocab_size * config.hidden_size
        one_layer = (parts["autocast_cache"] - head) // config.num_hidden_layers
        cast = {
            "forward": parts["autocast_cache"],
            "loss backward": head if checkpointing else parts["autocast_cache"],
            "backward start": one_layer
            if checkpointing
            else parts["autocast_cache"] - head,
            "layer forward": parts["autocast_cache"] - head,  # every layer's, cached
            "backward end": one_layer,
        }
    temporaries = 0
    if options.get("optimizer", "adamw") == "adamw" and recipe != "full-master":
        numels = sum(trainable_numels(config, recipe, rank))
        temporaries = (2 if recipe == "full-bf16" else 4) * numels

    tied_extra = 0
    if recipe.startswith("full") and getattr(config, "tie_word_embeddings", False):
        # the input embedding's own gradient and the sum it is added into, a new tensor
        # (measured); under autocast only the embedding's own fp32 gradient
        copies = 1 if recipe == "full" else 2
        tied_extra = copies * grad_width * config.vocab_size * config.hidden_size
    share = LAYER_WORKSPACE[_workspace_kind(recipe, compute)]
    workspace = int(
        max(share["backward"], share["recompute"] if checkpointing else 0) * layer
    )
    forward_workspace = int(share["forward"] * layer)
    dequantized = 0
    if recipe == "qlora":  # bitsandbytes dequantizes one projection at a time
        dequantized = width * max(a * b for a, b in _block_linears(config))

    def moment(name: str, **more: int) -> dict[str, int]:
        extra = {"autocast_cache": cast.get(name, 0), "logits": logits, **more}
        return {**kept, **{k: v for k, v in extra.items() if v}}

    return {
        "layer forward": moment(
            "layer forward",
            activations=saved - 4 * tokens_v,
            forward_workspace=forward_workspace,
            dequantized_weight=dequantized,
            logits=0,  # this step's do not exist yet
            previous_logits=logits,
        ),
        "forward": moment(
            "forward",
            activations=saved,
            logits_fp32=0 if compute == "fp32" else 4 * tokens_v,
            previous_logits=logits,
        ),
        "loss backward": moment(
            "loss backward",
            activations=saved,
            loss_backward=LOSS_BACKWARD_BYTES * tokens_v,
        ),
        "backward start": moment(
            "backward start",
            gradients=grad_width * config.vocab_size * config.hidden_size
            if recipe.startswith("full")
            else 0,
            activations=parts["activations"] - 4 * tokens_v,
            backward_workspace=workspace,
            dequantized_weight=dequantized,
        ),
        "backward end": moment(
            "backward end",
            gradients=parts["gradients"] - grad_width * late_numels,
            activations=layer,
            backward_workspace=workspace,
            dequantized_weight=dequantized,
        ),
        "embedding backward": moment(
            "embedding backward",
            gradients=parts["gradients"],
            embedding_gradient=tied_extra,
        ),
        "optimizer step": moment(
            "optimizer step",
            gradients=parts["gradients"],
            optimizer_temporaries=temporaries,
        ),
    }


def _workspace_kind(recipe: str, compute: str) -> str:
    """The row of :data:`LAYER_WORKSPACE` a recipe computing in ``compute`` uses."""
    if recipe in ("lora", "qlora"):
        return recipe + ("-fp32" if compute == "fp32" else "")
    return "full"


def _layer_numels(config, recipe: str, rank: int) -> int:
    """Elements one decoder layer trains: its adapters, or all its parameters."""
    if recipe in ("lora", "qlora"):
        return sum(trainable_numels(config, recipe, rank)) // config.num_hidden_layers
    import torch

    model = empty_model(config, torch.bfloat16)
    first = re.compile(r"\.(layers|h)\.0\.")
    return sum(p.numel() for n, p in model.named_parameters() if first.search(n))


def largest(phases: dict) -> tuple[str, dict]:
    """The moment of ``phases`` (``{moment: {part: bytes}}``) that holds the most, and
    its parts."""
    moment = max(phases, key=lambda name: sum(phases[name].values()))
    return moment, phases[moment]


def peak(config, recipe: str = "inference", **options: Any) -> tuple[str, dict]:
    """The moment of :func:`step_phases` that holds the most, and its parts."""
    return largest(step_phases(config, recipe, **options))


def peak_bytes(config, recipe: str = "inference", **options: Any) -> int:
    """The job's peak in bytes: the total of :func:`peak`'s moment."""
    return sum(peak(config, recipe, **options)[1].values())


# --- data parallelism: what each of several GPUs holds ------------------------------

#: How a data-parallel job spreads its state over GPUs, as PyTorch runs it:
#: ``ddp`` (``DistributedDataParallel``: a full replica each), ``zero1`` (DDP with
#: ``ZeroRedundancyOptimizer``: optimizer states sharded), ``zero2`` (FSDP2's
#: ``fully_shard(reshard_after_forward=False)``: gradients and states sharded, weights
#: sharded between steps but gathered whole from the forward pass to the backward pass)
#: and ``zero3`` (``fully_shard`` with resharding: everything sharded, each layer gathered
#: only while it computes).
SHARDINGS = ("ddp", "zero1", "zero2", "zero3")
_SHARDED_PARTS = {
    "ddp": (),
    "zero1": ("optimizer", "master_weights", "optimizer_temporaries"),
    "zero2": (
        "optimizer",
        "master_weights",
        "optimizer_temporaries",
        "gradients",
        "embedding_gradient",
        "weights",
        "adapter",
    ),
}
_SHARDED_PARTS["zero3"] = _SHARDED_PARTS["zero2"]
#: Layers FSDP2 holds gathered at once under ``zero3``: the one computing and the next,
#: whose all-gather it starts early (prefetching).
GATHERED_LAYERS = 2


def sharded_phases(
    config,
    recipe: str = "full",
    gpus: int = 1,
    sharding: str = "ddp",
    offload: bool = False,
    **options: Any,
) -> dict:
    """:func:`step_phases` for one of ``gpus`` GPUs training data-parallel, each on its own
    ``batch`` (``options`` as for :func:`breakdown`), spread as ``sharding`` says
    (:data:`SHARDINGS`). Sharded parts are divided by ``gpus``; what each engine adds:

    - ``ddp`` and ``zero1``: ``gradient_buckets``, DDP's flat buffers that all-reduce the
      gradients, as large as the gradients and kept for the whole run (the default
      ``gradient_as_bucket_view=False``).
    - ``zero2``: ``gathered_weights``, the whole model in the compute dtype from the first
      layer's forward pass to the backward pass's end (and its shard besides).
    - ``zero3``: ``gathered_weights``, the root module (embeddings, head, final norm; FSDP2
      does not reshard it after the forward pass) and :data:`GATHERED_LAYERS` layers.
    - ``zero2`` and ``zero3``, full fine-tuning: ``reduce_scatter_buffers``, what FSDP2
      holds as it reduces a group's gradients: a layer's during the backward pass, the
      root module's (embeddings, head, final norm) at its end. The fp32 reduce-scatter
      input, and the 16-bit gradients it is cast from when the compute is in 16 bits.

    ``offload`` (``zero2`` and ``zero3``: FSDP2's ``CPUOffloadPolicy``) keeps the sharded
    weights, gradients and optimizer states in CPU memory and steps the optimizer there:
    the GPU holds what is gathered and computed. Under FSDP2 (``zero2``, ``zero3``) the
    recipe ``full`` means a ``MixedPrecisionPolicy`` with bf16 parameters and fp32
    gradient reduction instead of ``torch.autocast``: the gathered bf16 weights replace
    autocast's copies. Activations, logits and the loss's
    buffers are per GPU and not divided. ``gpus=1`` with ``ddp`` adds the buckets to
    :func:`step_phases`; the single-process numbers are :func:`step_phases`' own.

    Measured on CPU processes with gloo (the book's tests and its sharded-training
    chapter): weights and gradients per process to the byte, optimizer states within
    0.1%, each process's peak within 10% (the peak of one job moves by a few percent from
    run to run with the timing of the asynchronous collectives). Not counted: NCCL's own
    buffers and the CUDA caching allocator's rounding on GPUs, DeepSpeed's buffers (its
    stage 2 keeps the 16-bit weights whole, where FSDP2 keeps them sharded between
    steps), and the embedding's extra reduction when FSDP2 wraps a tied embedding.
    """
    if sharding not in SHARDINGS:
        raise EstimateError(
            f"unknown sharding {sharding!r}; choose one of {', '.join(SHARDINGS)}"
        )
    if recipe not in RECIPES or recipe == "inference":
        raise EstimateError(f"sharding applies to training recipes, not {recipe!r}")
    if gpus < 1:
        raise EstimateError(f"gpus must be at least 1, not {gpus}")
    if offload and sharding not in ("zero2", "zero3"):
        raise EstimateError(
            "offload applies to zero2 and zero3 (FSDP2's CPUOffloadPolicy)"
        )
    phases = step_phases(config, recipe, **options)
    sharded = _SHARDED_PARTS[sharding]
    grads = breakdown(config, recipe, **options)["gradients"]
    gathered = _gathered_bytes(config, recipe, sharding, **options)
    holds_gathered = PHASES[: PHASES.index("embedding backward") + 1]
    reducing = {
        "backward start": _reduce_bytes(config, recipe, sharding, "layer"),
        "backward end": _reduce_bytes(config, recipe, sharding, "layer"),
        "embedding backward": _reduce_bytes(config, recipe, sharding, "root"),
    }
    result = {}
    for moment, parts in phases.items():
        new = {k: -(-v // gpus) if k in sharded else v for k, v in parts.items()}
        if offload:  # the shards live in CPU memory
            new = {k: v for k, v in new.items() if k not in sharded}
        if sharding in ("ddp", "zero1"):
            new["gradient_buckets"] = grads
        elif moment in holds_gathered:
            new.pop("autocast_cache", None)
            new["gathered_weights"] = gathered
            if reducing.get(moment):
                new["reduce_scatter_buffers"] = reducing[moment]
        else:
            new.pop("autocast_cache", None)
        result[moment] = new
    return result


#: What CPU offload keeps in CPU memory: the sharded state between steps. Not foreach
#: AdamW's copies (``optimizer_temporaries``): by default (``foreach=None``) torch picks the
#: ``foreach`` step only when every parameter is on a CUDA, XPU, MTIA or PrivateUse1
#: device (``torch/optim/optimizer.py``, ``_default_to_fused_or_foreach``), so AdamW over
#: CPU shards loops over them one at a time (``foreach=True`` would add the copies back).
OFFLOADED_PARTS = ("weights", "master_weights", "gradients", "adapter", "optimizer")


def offloaded_bytes(
    config, recipe: str = "full", gpus: int = 1, sharding: str = "zero3", **options: Any
) -> dict:
    """CPU memory that FSDP2's ``CPUOffloadPolicy`` needs for one of ``gpus`` processes:
    its shards of :data:`OFFLOADED_PARTS` (the parts :func:`sharded_phases` with
    ``offload=True`` takes off the GPU), by part, in bytes. A host running all ``gpus``
    processes holds ``gpus`` times this (pinned memory, for the copies to the GPUs).
    Full fine-tuning with fp32 weights and AdamW: 16 bytes per parameter over all
    processes (weights, gradients and two states in fp32)."""
    if sharding not in ("zero2", "zero3"):
        raise EstimateError(
            "offload applies to zero2 and zero3 (FSDP2's CPUOffloadPolicy)"
        )
    options.pop("offload", None)  # what the GPU keeps does not change the shards
    kept = sharded_phases(config, recipe, gpus, sharding, False, **options)
    kept = kept["optimizer step"]
    return {k: v for k, v in kept.items() if k in OFFLOADED_PARTS}


def _reduce_bytes(config, recipe: str, sharding: str, group: str) -> int:
    """Bytes FSDP2 holds while it reduces one group's gradients (``group``: "layer" or
    "root", the embeddings, head and final norm): the fp32 reduce-scatter input and, when
    the gradients are computed in 16 bits, those gradients beside it (measured on CPU:
    computing in fp32, the group's whole gradients were not alive beside the input).
    Full fine-tuning only: LoRA's frozen base has no gradients to reduce."""
    if sharding not in ("zero2", "zero3") or not recipe.startswith("full"):
        return 0
    import torch

    layer = _layer_numels(config, "full", 0)
    numel = layer
    if group == "root":
        numel = estimate(config, torch.bfloat16).n_parameters
        numel -= config.num_hidden_layers * layer
    return (0 if recipe == "full-fp32" else 2) * numel + 4 * numel


def _gathered_bytes(config, recipe: str, sharding: str, **options: Any) -> int:
    """Bytes of weights FSDP2 holds gathered at once (see :func:`sharded_phases`): the
    whole model under ``zero2``, the root and :data:`GATHERED_LAYERS` layers under
    ``zero3``; in the compute dtype (fp32 for ``full-fp32``, else 16 bits), or as stored
    for LoRA's frozen base."""
    import torch

    if sharding not in ("zero2", "zero3"):
        return 0
    n = estimate(config, torch.bfloat16).n_parameters
    if recipe in ("lora", "qlora"):
        whole = breakdown(config, recipe, **options)["weights"]
    else:
        whole = (4 if recipe == "full-fp32" else 2) * n
    if sharding == "zero2":
        return whole
    layer = _layer_numels(config, "full", 0)
    kept = n - (config.num_hidden_layers - GATHERED_LAYERS) * layer
    return whole * kept // n


def collective_bytes(config, recipe: str = "full-fp32", sharding: str = "ddp") -> dict:
    """Bytes of the messages one training step hands to each kind of collective, per GPU:
    the size of the tensor each call reduces, broadcasts or gathers whole (what
    ``torch.distributed`` is asked to move, before the algorithm splits it).

    - ``ddp``: one all-reduce of every gradient, and a broadcast of the model's buffers
      from the first rank before each forward pass (``broadcast_buffers=True``, the
      default; a Llama's buffers are its rotary frequencies, a few hundred bytes).
    - ``zero1`` (``ZeroRedundancyOptimizer`` over DDP): the same, then each rank
      broadcasts the parameters it updated.
    - ``zero2``: one all-gather of the parameters (in the compute dtype: 16 bits except
      for ``full-fp32``) and one reduce-scatter of the gradients (fp32: FSDP2's
      ``reduce_dtype``).
    - ``zero3``: the same, but every layer is gathered again for its backward pass; the
      root module (embeddings, head, final norm) is not, as FSDP2 keeps it gathered.

    Full fine-tuning recipes only (LoRA's frozen base is not reduced). How many bytes
    cross the wire depends on the algorithm: a ring all-reduce of ``B`` bytes on ``n``
    GPUs sends ``2 B (n-1)/n`` from each; an all-gather or a reduce-scatter ``B (n-1)/n``.
    """
    import torch

    if sharding not in SHARDINGS:
        raise EstimateError(
            f"unknown sharding {sharding!r}; choose one of {', '.join(SHARDINGS)}"
        )
    if not recipe.startswith("full"):
        raise EstimateError(f"collective_bytes counts full fine-tuning, not {recipe!r}")
    n = estimate(config, torch.bfloat16).n_parameters
    grad_width = 2 if recipe in ("full-bf16", "full-master") else 4
    param_width = 4 if recipe == "full-fp32" else 2
    if sharding in ("ddp", "zero1"):
        buffers = sum(
            b.numel() * b.element_size()
            for b in empty_model(config, torch.float32).buffers()
        )
        out = {"all_reduce": grad_width * n, "broadcast": buffers}
        if sharding == "zero1":
            out["broadcast"] += (2 if recipe == "full-bf16" else 4) * n
        return out
    gathered = n
    if sharding == "zero3":
        root = n - config.num_hidden_layers * _layer_numels(config, "full", 0)
        gathered = 2 * n - root
    return {"all_gather": param_width * gathered, "reduce_scatter": 4 * n}
