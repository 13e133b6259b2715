"""``python -m llmbook memory CONFIG ...``: the estimator's command line.

Reads a config (a preset's name, a ``config.json`` file, a folder holding one, or a hub
id: downloaded when online, else from the local cache), then prints the stored bytes
(:func:`llmbook.memory.estimate`) or, with ``--recipe``, the peak of a training step on
one or several GPUs and which GPUs it fits.
Bad input ends in one line and exit status 2.
"""

from __future__ import annotations

import json

from .memory.activations import ATTENTIONS
from .memory.configs import MODEL_PRESETS, PRESETS, load_config
from .memory.gpus import GPUS, PCIE_GBPS, fits_on, usable_bytes
from .memory.kv_cache import KEEPS, KV_QUANTS, LAYER_NAMES, kv_cache_layers
from .memory.optimizers import OPTIMIZER_IMPLS, OPTIMIZERS
from .memory.sharding import SHARDINGS, sharded_phases
from .memory.steps import largest, peak
from .memory.training import RECIPES, breakdown
from .memory.weights import (
    QUANTIZATIONS,
    WRAPPER_QUANTIZATIONS,
    EstimateError,
    active_parameters,
    estimate,
    expert_bytes,
    format_bytes,
)
from .units import GIB, KIB, MIB

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


def _one_line_error(message: str) -> None:
    """argparse's error (on stderr, where argparse writes it) as one line, exit status 2."""
    import sys

    print(
        f"llmbook memory: {message} (see python -m llmbook memory --help)",
        file=sys.stderr,
    )
    raise SystemExit(2)


def _quiet_libraries() -> None:
    """Nothing on stderr when the answer is right: transformers imports torchao's
    quantizer as it builds any model, and torchao logs the CUDA kernels a CPU build
    cannot load, and torch its deprecation note on the enums torchao registers
    (the loggers chapters silence too: :data:`llmbook.notebook.QUIET_LOGGERS`)."""
    import logging

    import torch  # noqa: F401  its logging setup first, then our levels

    from .notebook import QUIET_LOGGERS

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def add_config_argument(parser) -> None:
    """The model argument both commands take (``memory``, ``serve``)."""
    parser.add_argument(
        "config",
        help="a preset (" + ", ".join([*PRESETS, *MODEL_PRESETS]) + "), a config.json, "
        "a folder holding one, or a hub id (online)",
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m llmbook memory CONFIG``: bytes of a model as stored, by module group; with
    ``--recipe``, the whole job (inference, full fine-tuning, LoRA, QLoRA) and where it fits."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m llmbook memory", description=main.__doc__
    )
    add_config_argument(parser)
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
        "--kv-dtype",
        type=_dtype_arg,
        default=None,
        help="inference: the KV cache's dtype (default: the compute dtype)",
    )
    parser.add_argument(
        "--kv-quant",
        choices=[q for q in KV_QUANTS if q],
        default=None,
        help="inference: the KV cache in fp8, or int4/int2 (groups of 64, up to 128 "
        "tokens kept as they are; full-attention models only)",
    )
    parser.add_argument(
        "--kv-keep",
        choices=KEEPS,
        default="all",
        help="inference: what sliding-window layers keep: all (transformers' cache through "
        "the prompt pass, the peak) or window (decoding, from the first new token on: "
        "the activations are then one token's)",
    )
    parser.add_argument(
        "--offload-experts",
        action="store_true",
        help="inference, a mixture of experts: its routed experts in CPU memory "
        "(device_map 'cpu' for each mlp.experts); the GPU's part, and what each new "
        "token copies over the bus",
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
        "--optimizer-impl",
        choices=OPTIMIZER_IMPLS,
        default="foreach",
        help="how torch's AdamW steps: foreach (its default on a GPU: a copy of every "
        "trained tensor for a moment), for-loop (its default on a CPU), fused (none)",
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
    parser.error = _one_line_error  # argparse would print its whole usage first
    args = parser.parse_args(argv)
    _quiet_libraries()
    if min(args.batch, args.seq, args.lora_rank, args.gpus) < 1:
        print(
            "llmbook memory: --batch, --seq, --lora-rank and --gpus must be positive whole numbers"
        )
        return 2
    if (args.gpus > 1 or args.sharding) and args.recipe in (None, "inference"):
        print("llmbook memory: --gpus and --sharding apply to a training --recipe")
        return 2
    inference_only = {
        "--offload-experts": args.offload_experts,
        "--kv-quant": args.kv_quant,
        "--kv-dtype": args.kv_dtype,
        "--kv-keep": args.kv_keep != "all",
    }
    stray = [flag for flag, given in inference_only.items() if given]
    if stray and args.recipe != "inference":
        print(f"llmbook memory: {', '.join(stray)} go with --recipe inference")
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
        print(
            json.dumps(
                {**est.as_dict(), "active_parameters": active_parameters(config)},
                indent=2,
            )
        )
        return 0
    q = est.quantization or "none"
    print(
        f"{est.model_type}: {est.n_parameters:,} parameters{_active(config, est)}, dtype {est.dtype}, quantization {q}"
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


def _kv_layout(config, args) -> str:
    """One line: which layers keep how many tokens in the KV cache, and which keep a
    state of fixed size instead or beside it."""
    dtype = "float32" if (args.dtype or "bfloat16") == "float32" else "bfloat16"
    layers = kv_cache_layers(config, args.batch, args.seq, 1, args.kv_keep, dtype)
    counts: dict[tuple[str, int, int], int] = {}
    for layer in layers:
        key = (LAYER_NAMES[layer["type"]], layer["tokens"], layer["state"])
        counts[key] = counts.get(key, 0) + 1
    kinds = ", ".join(
        f"{n} {kind} ("
        + " and ".join(
            [f"{kept:,} tokens"] * (kept > 0 or not state)
            + [f"a {_size(state)} state"] * (state > 0)
        )
        + ")"
        for (kind, kept, state), n in counts.items()
    )
    store = args.kv_dtype or args.dtype or "bfloat16"
    if args.kv_quant == "fp8":
        store = "fp8"
    elif args.kv_quant:
        store = f"{args.kv_quant}, up to 128 tokens a layer in {store}"
    when = ", while decoding" if args.kv_keep == "window" else ""
    return f"(KV cache: {kinds}; stored as {store}{when})"


def _size(n: int) -> str:
    """A size in the unit that suits it (KiB, MiB or GiB), for a line of text."""
    for unit, name in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if n >= unit:
            return f"{n / unit:.3g} {name}"
    return f"{n} bytes"


def _optimizer_name(args) -> str:
    """The optimizer as the job line names it: AdamW with how it steps."""
    if args.optimizer != "adamw" or args.recipe == "full-master":
        return args.optimizer
    return f"adamw ({args.optimizer_impl})"


def _active(config, est) -> str:
    """For a mixture of experts: how many parameters a token passes through."""
    active = active_parameters(config)
    return "" if active == est.n_parameters else f" ({active:,} active per token)"


def _fits_line(total: int, gpu: str) -> str:
    usable = usable_bytes(gpu)
    verdict = "fits" if total <= usable else "does NOT fit"
    return (
        f"  {gpu}: {verdict} ({total / GIB:.2f} GiB needed, {usable / GIB:.2f} GiB usable of "
        f"{GPUS[gpu][0]:,} MiB)"
    )


def _offload_lines(offload: dict) -> str:
    """What offloading the experts does: the GPU keeps one layer's, every forward pass
    copies them all (llmbook.memory.expert_bytes)."""
    experts, layer, active = (
        offload[k] for k in ("experts", "largest_layer", "active")
    )
    floors = ", ".join(
        f"{experts / (gbps * 1e9):.2f} s on {link}" for link, gbps in PCIE_GBPS.items()
    )
    return (
        f"  experts offloaded to CPU memory: {_size(experts)} there, {_size(layer)} (one "
        "layer's) on the GPU while that layer runs\n"
        f"  each forward pass (each new token) copies all {_size(experts)} to the GPU: at "
        f"least {floors}\n"
        f"  (computing the experts on the CPU instead, as llama.cpp's --cpu-moe does, "
        f"reads the {_size(active)} a token uses from CPU memory)"
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
        args.optimizer_impl,
        args.kv_dtype,
        args.kv_quant,
        args.kv_keep,
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
        optimizer_impl=args.optimizer_impl,
        kv_dtype=args.kv_dtype,
        kv_quant=args.kv_quant,
        kv_keep=args.kv_keep,
    )
    sharding = args.sharding or ("ddp" if args.gpus > 1 else None)
    if sharding:
        phases = sharded_phases(config, args.recipe, args.gpus, sharding, **options)
        moment, live = largest(phases)
    else:
        moment, live = peak(config, args.recipe, **options)
    total = sum(live.values())
    offload = None
    if args.offload_experts:
        offload = expert_bytes(config, dtype, args.quantization, args.double_quant)
        if not offload["experts"]:
            raise EstimateError(f"{config.model_type} has no routed experts to offload")
        total += offload["largest_layer"] - offload["experts"]  # the GPU's part
    if args.json:
        print(
            json.dumps(
                {
                    "recipe": args.recipe,
                    "dtype": dtype,
                    "batch": args.batch,
                    "seq": args.seq,
                    "optimizer": args.optimizer,
                    "optimizer_impl": args.optimizer_impl,
                    "kv_dtype": args.kv_dtype,
                    "kv_quant": args.kv_quant,
                    "kv_keep": args.kv_keep,
                    "attention": args.attention,
                    "gpus": args.gpus,
                    "sharding": sharding,
                    "parts": parts,
                    "peak_moment": moment,
                    "peak_parts": live,
                    "peak_bytes": total,
                    "fits_on": fits_on(total),
                    "offloaded_experts": offload,
                    "roofline": None
                    if offload or args.recipe != "inference"
                    else _speeds(
                        config, args, [args.gpu] if args.gpu else fits_on(total)
                    ),
                },
                indent=2,
            )
        )
        return 0
    print(
        f"{args.recipe}, {dtype}, batch {args.batch} x {args.seq} tokens"
        + (", checkpointing" if args.checkpointing else "")
        + (f", {_optimizer_name(args)}" if args.recipe != "inference" else "")
        + (f", {sharding} on {args.gpus} GPUs (per GPU below)" if sharding else "")
    )
    if args.recipe != "inference":
        print(
            "parts (never all alive at once in training"
            + ("; the whole job, before sharding)" if sharding else ")")
        )
    if args.recipe == "full" and sharding in ("zero2", "zero3"):
        print(
            "  (under FSDP2 the autocast recipe means MixedPrecisionPolicy(param_dtype="
            "bf16, reduce_dtype=fp32): no autocast copies, bf16 activations at the peak)"
        )
    for part, n in parts.items():
        print(f"  {part:15s} {n / GIB:10.3f} GiB")
    if args.recipe == "inference":
        print("  " + _kv_layout(config, args))
    if args.recipe != "inference":
        print(
            f"peak, during the {moment}: the parts alive then"
            + (" on each GPU" if sharding else "")
        )
        for part, n in live.items():
            print(f"  {part:21s} {n / GIB:10.3f} GiB")
    if offload:
        print(_offload_lines(offload))
    label = (
        "peak" if args.recipe != "inference" else "on the GPU" if offload else "total"
    )
    print(f"  {label:15s} {format_bytes(total)}")
    if args.gpu:
        print(_fits_line(total, args.gpu))
    else:
        print(f"  fits on: {', '.join(fits_on(total)) or 'none of the GPUs listed'}")
    if args.recipe == "inference" and not offload:
        print(_speed_lines(config, args, [args.gpu] if args.gpu else fits_on(total)))
    return 0


def _speeds(config, args, gpus: list[str]) -> dict[str, dict]:
    """The roofline's bounds for this inference job on each of ``gpus``."""
    from .memory.speed import compute_for, gpu_device, roofline

    dtype = args.dtype or "bfloat16"
    width = 4 if (args.kv_dtype or dtype) == "float32" else 2
    out = {}
    for gpu in gpus:
        device = gpu_device(gpu)
        use = compute_for(device, dtype, args.quantization)
        bounds = roofline(
            config,
            device,
            use,
            args.batch,
            args.seq,
            None,
            dtype,
            args.quantization,
            width,
            args.kv_quant,
            args.double_quant,
        )
        out[gpu] = bounds | {"compute": use}
    return out


def _speed_lines(config, args, gpus: list[str]) -> str:
    """At best, on each GPU: the prompt pass's and a decoding step's bounds."""
    lines = [
        f"at best (a roofline: bounds from each GPU's data sheet, not predictions; "
        f"the prompt of {args.seq:,} tokens, then decoding at that context):"
    ]
    for gpu, b in _speeds(config, args, gpus).items():
        lines.append(
            f"  {gpu:10s} first token >= {b['ttft_s'] * 1e3:8.2f} ms ({b['ttft_bound']}), "
            f"decoding <= {b['decode_tok_s']:9,.0f} tokens/s for the batch "
            f"({b['step_bound']}-bound, {b['compute']})"
        )
    return "\n".join(lines)
