"""Data-parallel training over several GPUs as PyTorch runs it: DDP, ZeRO-1
(``ZeroRedundancyOptimizer``) and FSDP2 without and with resharding (ZeRO-2, ZeRO-3),
with CPU offload: each GPU's share of every moment of :mod:`.steps`, the CPU memory that
offload needs, and the bytes each step hands to the collectives. Not counted: NCCL's own
buffers, DeepSpeed's buckets."""

from __future__ import annotations

from typing import Any

from .optimizers import optimizer_state_bytes, optimizer_temporaries
from .steps import PHASES, _layer_numels, step_phases
from .training import RECIPES, breakdown, trainable_numels
from .weights import EstimateError, empty_model, estimate

#: How a data-parallel job spreads its state over GPUs, as PyTorch runs it:
#: ``ddp`` (``DistributedDataParallel``: a full replica each), ``zero1`` (DDP with
#: ``ZeroRedundancyOptimizer``: optimizer states sharded), ``zero2`` (FSDP2's
#: ``fully_shard(reshard_after_forward=False)``: gradients and states sharded, weights
#: sharded between steps but gathered whole from the forward pass to the backward pass)
#: and ``zero3`` (``fully_shard`` with resharding: everything sharded, each layer gathered
#: only while it computes).
SHARDINGS = ("ddp", "zero1", "zero2", "zero3")


#: Parts ZeRO-1 divides among the GPUs: each rank keeps the optimizer's state (and a
#: master copy) of the parameters :func:`zero1_partition` assigns it.
_ZERO1_PARTS = ("optimizer", "master_weights", "optimizer_temporaries")


#: Parts FSDP2 keeps sharded between steps (each GPU a slice of every tensor).
_FSDP_SHARDED = ("optimizer", "master_weights", "weights", "adapter")


#: The moments of a step under FSDP2 (``zero2``, ``zero3``): :data:`PHASES` and, with
#: three layers or more, ``backward next``, the second layer's backward pass, while the
#: first one's gradients are reduced.
FSDP_PHASES = (*PHASES[:4], "backward next", *PHASES[4:])


def sharded_phases(
    config,
    recipe: str = "full",
    gpus: int = 1,
    sharding: str = "ddp",
    offload: bool = False,
    rank: int | None = None,
    **options: Any,
) -> dict:
    """:func:`step_phases` for one of ``gpus`` GPUs training data-parallel, each on its own
    ``batch`` (``options`` as for :func:`breakdown`), spread as ``sharding`` says
    (:data:`SHARDINGS`). Activations, logits and the loss's buffers are per GPU and not
    divided. What each engine holds:

    - ``ddp``: a full replica, and ``gradient_buckets``, DDP's flat buffers that
      all-reduce the gradients, as large as the gradients and kept for the whole run
      (the default ``gradient_as_bucket_view=False``).
    - ``zero1`` (``ZeroRedundancyOptimizer`` over DDP): the same, but each rank keeps the
      optimizer's state, master copy and step temporaries of the whole tensors
      :func:`zero1_partition` assigns it; ``rank`` picks one (default: the rank holding
      the most).
    - ``zero2`` and ``zero3`` (FSDP2's ``fully_shard`` on each decoder layer and on the
      whole model): weights and optimizer states are sharded (a ``1/gpus`` slice of each
      tensor), gradients too once reduced, and the moments are :data:`FSDP_PHASES`.
      ``gathered_weights``: the root module (embeddings, head, final norm; FSDP2 keeps it
      gathered from the forward pass to the backward pass's end) plus the layers
      gathered at that moment. FSDP2 gathers a layer into a flat buffer and copies its
      parameters out of it; in the forward pass it frees the buffer only once the next
      layer has been gathered (``wait_for_unshard``), in the backward pass right after
      the copy, and prefetches the next layer instead. So under ``zero3`` (resharding after forward)
      two layers' worth are gathered while a layer computes, forward or backward; one
      (the last layer's buffer) as the loss is computed; one (the top layer, which the
      root prefetches) during the loss's backward. Under ``zero2`` every layer stays
      gathered from its forward pass to its backward pass, with one buffer more in the
      forward pass.
      ``layer_gradients``: the whole gradients of the layer computing its backward pass
      (in the compute dtype, until its reduce-scatter); ``root_gradients``: the root
      module's whole gradients, reduced only at the backward pass's end;
      ``reduce_scatter_buffers``: the reduce-scatter input of the group reduced last
      (FSDP2's ``reduce_dtype``, fp32; bf16 for ``full-bf16``), alive until the next
      group's reduction; ``gradients``: the shards reduced so far.

    ``offload`` (``zero2`` and ``zero3``: FSDP2's ``CPUOffloadPolicy``) keeps the sharded
    weights, gradients and optimizer states in CPU memory and steps the optimizer there
    (:func:`offloaded_bytes`): the GPU holds what is gathered and computed. Under FSDP2
    the recipe ``full`` means a ``MixedPrecisionPolicy`` with bf16 parameters and fp32
    gradient reduction instead of ``torch.autocast``: the gathered bf16 weights replace
    autocast's copies, and the whole forward pass computes in bf16, so the activations
    are a bf16 model's. ``gpus=1`` with ``ddp`` adds the buckets to :func:`step_phases`.

    Measured on CPU processes with gloo (the book's tests and its sharded-training
    chapter), each moment against the same moment of a real step, leaving out the
    backend's own copies of each message (gloo copies the whole message for every
    all-gather and reduce-scatter; NCCL works in the tensors it is given): weights,
    gradients and optimizer states per process to the byte, the peak within the tests'
    tolerance. Not counted: NCCL's own buffers and the CUDA caching allocator's rounding
    on GPUs; FSDP2's padding of a tensor whose first dimension ``gpus`` does not divide;
    DeepSpeed's buffers (its stage 2 keeps the 16-bit weights whole, where
    FSDP2 keeps them sharded between steps). The layout counted is ``fully_shard`` on
    each decoder layer and on the whole model, the root left with its default
    ``reshard_after_forward``: a root resharded after forward, or wrappers that shard
    the embedding and the head as units of their own (accelerate's), gather them again
    in the backward pass. Under the mixed-precision policy the reduction is in fp32
    only with ``reduce_dtype=torch.float32``, as counted; without it FSDP2 reduces in
    bf16.
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
    if sharding in ("zero2", "zero3"):
        return _fsdp_phases(config, recipe, gpus, sharding, offload, **options)
    phases = step_phases(config, recipe, **options)
    grads = breakdown(config, recipe, **options)["gradients"]
    mine = {}
    if sharding == "zero1":
        mine = _zero1_rank_parts(config, recipe, gpus, rank, **options)
    result = {}
    for moment, parts in phases.items():
        new = dict(parts)
        for part in _ZERO1_PARTS:
            if part in new and part in mine:  # this rank's share of the parts
                new[part] = mine[part]
                if not new[part]:
                    del new[part]
        new["gradient_buckets"] = grads
        result[moment] = new
    return result


def zero1_partition(
    config, recipe: str = "full", gpus: int = 2, lora_rank: int = 16
) -> list[list[int]]:
    """The element counts of the trainable tensors each of ``gpus`` ranks updates under
    ``ZeroRedundancyOptimizer``: it sorts the parameters by size, largest first, and
    gives each to the rank with the fewest elements so far, the lowest rank on a tie
    (``torch/distributed/optim/zero_redundancy_optimizer.py``,
    ``_partition_parameters``). Whole tensors, so the ranks are not equal shares: one
    may hold up to the largest tensor more than ``1/gpus`` of all."""
    numels = trainable_numels(config, recipe, lora_rank)
    ranks: list[list[int]] = [[] for _ in range(gpus)]
    sizes = [0] * gpus
    for numel in sorted(numels, reverse=True):
        least = sizes.index(min(sizes))
        ranks[least].append(numel)
        sizes[least] += numel
    return ranks


def _zero1_rank_parts(config, recipe, gpus, rank, **options) -> dict:
    """ZeRO-1's divided parts (:data:`_ZERO1_PARTS`) on ``rank`` (None: the rank whose
    optimizer state is largest)."""
    ranks = zero1_partition(config, recipe, gpus, options.get("lora_rank", 16))
    optimizer = options.get("optimizer", "adamw")
    width = 2 if recipe == "full-bf16" else 4
    states = [optimizer_state_bytes(r, optimizer, width) for r in ranks]
    if rank is None:
        rank = states.index(max(states))
    if not 0 <= rank < gpus:
        raise EstimateError(f"rank must be from 0 to {gpus - 1}, not {rank}")
    numels = ranks[rank]
    impl = options.get("optimizer_impl", "foreach")
    master = recipe == "full-master"
    return {
        "optimizer": states[rank],
        "master_weights": 4 * sum(numels) if master else 0,
        "optimizer_temporaries": 0
        if master
        else optimizer_temporaries(numels, optimizer, impl, width),
    }


def _fsdp_phases(config, recipe, gpus, sharding, offload, **options) -> dict:
    """:func:`sharded_phases` for FSDP2 (``zero2``, ``zero3``), moment by moment."""
    import torch

    compute = "bf16" if recipe == "full" else None  # MixedPrecisionPolicy, no autocast
    phases = step_phases(config, recipe, _compute=compute, **options)
    layers = config.num_hidden_layers
    n = estimate(config, torch.bfloat16).n_parameters
    layer = _layer_numels(config, "full", 0)
    lora_rank = options.get("lora_rank", 16)
    if recipe in ("lora", "qlora"):  # the frozen base gathered as stored
        whole = breakdown(config, recipe, **options)["weights"]
        trained_layer = _layer_numels(config, recipe, lora_rank)
        trained_root = 0
    else:
        whole = (4 if recipe == "full-fp32" else 2) * n
        trained_layer, trained_root = layer, n - layers * layer
    trained = trainable_numels(config, recipe, lora_rank)
    layer_bytes = whole * layer // n
    root_bytes = whole - layers * layer_bytes
    # the root's gradients in the backward pass: the head's and the final norm's; the
    # input embedding's (or a tied one's own, :func:`step_phases`) come at its end
    root_backward = trained_root
    if trained_root and not getattr(config, "tie_word_embeddings", False):
        root_backward -= config.vocab_size * config.hidden_size
    # gradients: whole in the compute dtype (fp32 for the adapters), sharded in the
    # parameters' dtype (fp32 under the mixed-precision policy), reduced in fp32
    lora = recipe in ("lora", "qlora")
    compute_width = 4 if recipe == "full-fp32" or lora else 2
    shard_width = 2 if recipe in ("full-bf16", "full-master") else 4
    reduce_width = 2 if recipe == "full-bf16" else 4
    state_width = 2 if recipe == "full-bf16" else 4

    def shard(numel: int) -> int:  # gradients reduced so far (in CPU memory: offload)
        return 0 if offload else -(-shard_width * numel // gpus)

    one_layer = _one_layer_activations(config, recipe, compute, phases, **options)
    # layers gathered besides the root. In the forward pass FSDP2 frees a layer's flat
    # all-gather output only once the next layer has been gathered, before that one's
    # copy-out (``wait_for_unshard``); in the backward pass right after its own
    # copy-out, and then prefetches the next layer; it reshards a layer before reducing
    # its gradients (``post_backward``). Each backward moment is
    # the largest of: the layer computing, the layer being reduced, and (zero3) the
    # layer's parameters being copied out of its flat buffer
    if sharding == "zero2":  # every layer stays gathered until its backward pass
        forward = {"layer forward": layers + 1, "forward": layers + 1}
        forward["loss backward"] = layers
        backward = {
            "backward start": (layers, layers - 1),
            "backward next": (layers - 1, layers - 2),
        }
    else:
        forward = {"layer forward": 2, "forward": 1, "loss backward": 1}
        backward = {"backward start": (2, 1), "backward next": (2, 1)}
    backward["backward end"] = (1, 0)
    # layers whose gradients are reduced before each backward moment
    above = {"backward start": 0, "backward next": 1, "backward end": layers - 1}
    layer_reduce = reduce_width * trained_layer
    kept = {}
    for part in _FSDP_SHARDED:
        value = phases["optimizer step"].get(part, 0)
        if value and not offload:
            kept[part] = -(-value // gpus)
    skip = (*_FSDP_SHARDED, "gradients", "optimizer_temporaries", "autocast_cache")
    skip += ("embedding_gradient",)
    result = {}
    for moment in FSDP_PHASES:
        if moment == "backward next" and layers < 3:  # it is the last layer's
            continue
        source = phases["backward start" if moment == "backward next" else moment]
        parts = dict(kept)
        parts.update((k, v) for k, v in source.items() if k not in skip)
        if moment in forward:
            parts["gathered_weights"] = root_bytes + forward[moment] * layer_bytes
        elif moment in backward:  # as the layer computes, or as it is reduced
            computing, reducing = dict(parts), dict(parts)
            if moment == "backward next":
                computing["activations"] = computing.get("activations", 0) - one_layer
            reducing["activations"] = computing.get("activations", 0) - one_layer
            reducing.pop("backward_workspace", None)
            for new, gathered, done in (
                (computing, backward[moment][0], above[moment]),
                (reducing, backward[moment][1], above[moment] + 1),
            ):
                new["gathered_weights"] = root_bytes + gathered * layer_bytes
                new["root_gradients"] = compute_width * root_backward
                new["gradients"] = shard(done * trained_layer)
            if above[moment]:  # the layer reduced last, until the next reduction
                computing["reduce_scatter_buffers"] = layer_reduce
            reducing["layer_gradients"] = compute_width * trained_layer
            reducing["reduce_scatter_buffers"] = layer_reduce
            candidates = [computing, reducing]
            if (
                sharding == "zero3"
            ):  # as it copies its parameters out of the flat buffer
                copying = dict(computing)
                copying.pop("backward_workspace", None)
                copying["gathered_weights"] = root_bytes + 2 * layer_bytes
                candidates.append(copying)
            parts = max(candidates, key=lambda d: sum(d.values()))
        elif moment == "embedding backward":  # the root computes, then is reduced
            root_grads = compute_width * trained_root
            root_grads += source.get("embedding_gradient", 0)
            parts.update(gathered_weights=root_bytes, root_gradients=root_grads)
            parts["gradients"] = shard(layers * trained_layer)
            computing = dict(parts, reduce_scatter_buffers=layer_reduce)
            reducing = dict(parts, reduce_scatter_buffers=reduce_width * trained_root)
            reducing["gradients"] += shard(trained_root)
            reducing["gathered_weights"] = 0  # resharded before it is reduced
            parts = max(computing, reducing, key=lambda d: sum(d.values()))
        elif not offload:  # the optimizer step
            parts["gradients"] = shard(sum(trained))
            if recipe != "full-master":
                parts["optimizer_temporaries"] = optimizer_temporaries(
                    [-(-k // gpus) for k in trained],
                    options.get("optimizer", "adamw"),
                    options.get("optimizer_impl", "foreach"),
                    state_width,
                )
        result[moment] = {k: v for k, v in parts.items() if v}
    return result


def _one_layer_activations(config, recipe, compute, phases, **options) -> int:
    """What one layer keeps for the backward pass (its input alone with checkpointing):
    the backward pass's activations less those of the same model one layer shorter."""
    import copy

    if config.num_hidden_layers < 2:
        return phases["backward start"].get("activations", 0)
    shorter = copy.copy(config)
    shorter.num_hidden_layers = config.num_hidden_layers - 1
    if getattr(config, "layer_types", None) is not None:  # the top layer goes
        shorter.layer_types = list(config.layer_types)[: shorter.num_hidden_layers]
    fewer = step_phases(shorter, recipe, _compute=compute, **options)
    start = phases["backward start"].get("activations", 0)
    return start - fewer["backward start"].get("activations", 0)


#: What CPU offload keeps in CPU memory between steps: the sharded state.
OFFLOADED_PARTS = ("weights", "master_weights", "gradients", "adapter", "optimizer")


def offloaded_bytes(
    config, recipe: str = "full", gpus: int = 1, sharding: str = "zero3", **options: Any
) -> dict:
    """CPU memory that FSDP2's ``CPUOffloadPolicy`` needs for one of ``gpus`` processes,
    by part, in bytes: its shards of :data:`OFFLOADED_PARTS` (the parts
    :func:`sharded_phases` with ``offload=True`` takes off the GPU) and the temporaries
    of the optimizer step it runs there. By default (``foreach=None``) torch picks the
    ``foreach`` step only when every parameter is on a CUDA, XPU, MTIA or PrivateUse1
    device (``torch/optim/optimizer.py``, ``_default_to_fused_or_foreach``), so AdamW over
    CPU shards loops over them (``for-loop``: two copies of the largest shard for a
    moment, :func:`optimizer_temporaries`); ``optimizer_impl`` says otherwise
    (``foreach`` would add a copy of every shard). A host running all ``gpus`` processes
    holds ``gpus`` times this (pinned memory, for the copies to the GPUs). Full
    fine-tuning with fp32 weights and AdamW: 16 bytes per parameter over all processes
    (weights, gradients and two states in fp32), and the temporaries."""
    if sharding not in ("zero2", "zero3"):
        raise EstimateError(
            "offload applies to zero2 and zero3 (FSDP2's CPUOffloadPolicy)"
        )
    options.pop("offload", None)  # what the GPU keeps does not change the shards
    options.setdefault("optimizer_impl", "for-loop")  # torch's default on a CPU
    kept = sharded_phases(config, recipe, gpus, sharding, False, **options)
    kept = kept["optimizer step"]
    return {
        k: v
        for k, v in kept.items()
        if k in OFFLOADED_PARTS or k == "optimizer_temporaries"
    }


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
