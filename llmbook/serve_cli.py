"""``python -m llmbook serve MODEL``: how many requests a GPU serves at once.

Follows vLLM's budget (:mod:`llmbook.memory.serving`): the engine's share of the GPU,
less the weights, the profiling run's activations and the memory outside PyTorch, is cut
into blocks of KV cache; requests hold whole blocks, and those that start with the same
tokens share the full blocks of that prefix. Bad input ends in one line and exit
status 2.
"""

from __future__ import annotations

import json

from .memory.configs import PUBLISHED_QUANTIZATION, load_config
from .memory.gpus import GPUS
from .memory.serving import (
    VLLM_BLOCK_TOKENS,
    VLLM_NON_TORCH_BYTES,
    VLLM_UTILIZATION,
    max_concurrency,
    requests_that_fit,
    serving_budget,
)
from .memory.weights import QUANTIZATIONS, EstimateError
from .units import GIB, MIB

#: vLLM's --kv-cache-dtype values: auto (the model's dtype) or one byte a value.
KV_CACHE_DTYPES = {"auto": None, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}


def _fail(message: str) -> None:
    import sys

    print(
        f"llmbook serve: {message} (see python -m llmbook serve --help)",
        file=sys.stderr,
    )
    raise SystemExit(2)


def _parser():
    import argparse

    from .cli import _dtype_arg, _gpu_arg, add_config_argument

    p = argparse.ArgumentParser(
        prog="python -m llmbook serve", description=main.__doc__
    )
    add_config_argument(p)
    p.add_argument("--gpu", type=_gpu_arg, default=None, help="one GPU; default: all")
    p.add_argument("--dtype", type=_dtype_arg, default="bfloat16", help="the weights'")
    p.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        default=None,
        help="default: none, or the model as published (gpt-oss: mxfp4)",
    )
    p.add_argument("--double-quant", action="store_true", help="nf4's constants too")
    p.add_argument(
        "--kv-cache-dtype",
        choices=KV_CACHE_DTYPES,
        default="auto",
        help="vLLM's --kv-cache-dtype: auto (the model's dtype) or fp8",
    )
    p.add_argument("--prompt", type=int, default=1000, help="tokens per prompt")
    p.add_argument("--answer", type=int, default=500, help="tokens per answer")
    p.add_argument(
        "--shared-prefix",
        type=int,
        default=0,
        help="tokens every prompt starts with (a system prompt), cached once",
    )
    p.add_argument(
        "--utilization",
        type=float,
        default=VLLM_UTILIZATION,
        help="vLLM's --gpu-memory-utilization",
    )
    p.add_argument(
        "--block", type=int, default=VLLM_BLOCK_TOKENS, help="tokens a block"
    )
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel GPUs")
    p.add_argument(
        "--max-num-batched-tokens",
        type=int,
        default=None,
        help="vLLM's; its profiling pass runs this many tokens (default: "
        "vLLM's for `vllm serve` on the GPU)",
    )
    p.add_argument(
        "--max-num-seqs",
        type=int,
        default=None,
        help="vLLM's cap on requests at once (default: vLLM's for the GPU)",
    )
    p.add_argument(
        "--non-torch-gib",
        type=float,
        default=VLLM_NON_TORCH_BYTES / GIB,
        help="memory outside PyTorch during profiling, GiB (default: a "
        "logged figure; your server's log prints its own)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable")
    p.error = _fail
    return p


def answer(config, gpu: str, args) -> dict:
    """The budget on one GPU and the requests that fit, as a dict."""
    quant = args.quantization or PUBLISHED_QUANTIZATION.get(args.config)
    kv = KV_CACHE_DTYPES[args.kv_cache_dtype] or (4 if args.dtype == "float32" else 2)
    budget = serving_budget(
        config,
        gpu,
        args.dtype,
        quant,
        kv,
        args.utilization,
        args.block,
        args.max_num_batched_tokens,
        round(args.non_torch_gib * GIB),
        tensor_parallel=args.tp,
        double_quant=args.double_quant,
    )
    out = {
        "gpu": gpu,
        "budget": budget.__dict__ | {"cache_tokens": budget.cache_tokens},
    }
    if budget.blocks:
        fit = requests_that_fit(
            config,
            budget,
            args.prompt,
            args.answer,
            args.shared_prefix,
            args.max_num_seqs,
        )
        tokens = args.prompt + args.answer
        out |= fit | {"max_concurrency": max_concurrency(config, budget, tokens)}
    else:
        out |= {"requests": 0, "limit": "weights and activations leave no cache"}
    return out


def _print(config, one: dict, args) -> None:
    b = one["budget"]
    g = lambda n: f"{n / GIB:9.2f} GiB"  # noqa: E731
    kv_name = args.kv_cache_dtype if args.kv_cache_dtype != "auto" else args.dtype
    print(
        f"{args.config} on {one['gpu']}"
        + (f" (tensor-parallel over {args.tp})" if args.tp > 1 else "")
        + f", vLLM's budget ({kv_name} cache):"
    )
    print(f"  torch's total          {g(b['total'])}")
    print(f"  engine's share ({args.utilization:g})  {g(b['requested'])}")
    print(f"  - weights              {g(b['weights'])}")
    print(
        f"  - activation peak      {g(b['activations'])}  (a profiling run of "
        f"{b['step_tokens']:,} tokens, modelled)"
    )
    print(f"  - outside PyTorch      {g(b['non_torch'])}")
    if not b["blocks"]:
        print(
            f"  = KV cache             {g(b['kv_cache'])}: no room for a cache, "
            "does NOT fit"
        )
        return
    print(
        f"  = KV cache             {g(b['kv_cache'])}: {b['blocks']:,} blocks of "
        f"{b['block_tokens']} tokens ({b['block_bytes'] / MIB:.3g} MiB each), "
        f"{b['cache_tokens']:,} tokens"
    )
    tokens = args.prompt + args.answer
    shared = (
        (
            f", {args.shared_prefix:,} of them shared by all ({one['shared_blocks']:,} "
            "blocks stored once)"
        )
        if one["shared_blocks"]
        else ""
    )
    print(
        f"requests of {args.prompt:,} + {args.answer:,} tokens{shared}: "
        f"{one['requests']:,} at once, {one['blocks_each']:,} blocks each "
        f"(limit: {one['limit']})"
    )
    print(
        f"  every request at its longest, no prefix shared: {one['max_concurrency']:.2f}x"
        f' (vLLM\'s log prints this as "Maximum concurrency" for max_model_len tokens;'
        f" here {tokens:,})"
    )


def main(argv: list[str] | None = None) -> int:
    """How many requests of a given length one GPU serves at once, and what limits it,
    following vLLM's memory budget (python -m llmbook serve Llama-3-8B --gpu H100)."""
    args = _parser().parse_args(argv)
    from .cli import _quiet_libraries

    _quiet_libraries()
    positive = [args.max_num_batched_tokens, args.max_num_seqs]
    if (
        min(args.prompt, args.block, args.tp) < 1
        or args.answer < 0
        or any(n is not None and n < 1 for n in positive)
    ):
        _fail(
            "--prompt, --block, --tp, --max-num-batched-tokens and --max-num-seqs must "
            "be at least 1, --answer at least 0"
        )
    if args.non_torch_gib < 0:
        _fail("--non-torch-gib must be at least 0")
    if not 0 <= args.shared_prefix <= args.prompt:
        _fail("--shared-prefix must be between 0 and --prompt")
    if not 0 < args.utilization <= 1:
        _fail("--utilization must be in (0, 1]")
    try:
        config = load_config(args.config)
        gpus = [args.gpu] if args.gpu else list(GPUS)
        answers = [answer(config, gpu, args) for gpu in gpus]
    except EstimateError as exc:
        import sys

        print(f"llmbook serve: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answers if not args.gpu else answers[0], indent=2))
    elif args.gpu:
        _print(config, answers[0], args)
    else:
        print(
            f"{args.config}, requests of {args.prompt:,} + {args.answer:,} tokens, "
            "vLLM's default budget on each GPU (--gpu NAME for the parts):"
        )
        for one in answers:
            b = one["budget"]
            print(
                f"  {one['gpu']:10s} {one['requests']:>6,} at once  "
                f"(KV cache {max(b['kv_cache'], 0) / GIB:7.2f} GiB; limit: "
                f"{one['limit']})"
            )
    return 0
