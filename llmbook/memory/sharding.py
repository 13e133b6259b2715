"""Data-parallel training over several GPUs as PyTorch runs it: DDP, ZeRO-1
(``ZeroRedundancyOptimizer``) and FSDP2 without and with resharding (ZeRO-2, ZeRO-3),
with CPU offload: each GPU's share of every moment of :mod:`.steps`, the CPU memory that
offload needs, and the bytes each step hands to the collectives. Not counted: NCCL's own
buffers, DeepSpeed's buckets."""

from __future__ import annotations

from typing import Any

from .steps import PHASES, _layer_numels, step_phases
from .training import RECIPES, breakdown
from .weights import EstimateError, empty_model, estimate

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
