"""What a training recipe holds, part by part (:func:`breakdown`): weights, adapters,
gradients, optimizer states, saved activations, autocast's copies, the KV cache of
inference. The recipes (full fine-tuning four ways, LoRA, QLoRA) and the trainable
tensors each one has. The moment-by-moment peak of a step is :mod:`.steps`'s."""

from __future__ import annotations

from .activations import (
    _compute_mode,
    _width,
    autocast_cache_bytes,
    prefill_activation_bytes,
    training_activation_bytes,
)
from .kv_cache import kv_cache_bytes
from .optimizers import OPTIMIZER_IMPLS, optimizer_state_bytes
from .shapes import _block_linears
from .weights import EstimateError, empty_model, estimate

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


def lora_parameters(config, rank: int) -> int:
    """Parameters of a rank-``rank`` LoRA adapter on every projection of every layer."""
    return sum(trainable_numels(config, "lora", rank))


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
    optimizer_impl: str = "foreach",
    kv_dtype=None,
    kv_quant: str | None = None,
    kv_keep: str = "all",
    use_cache: bool = True,
) -> dict[str, int]:
    """Bytes of each part of a job, by recipe; what the web page's calculator shows.

    - ``inference``: weights in ``dtype`` (or quantized), the KV cache of ``batch`` x
      ``context`` tokens and one layer's prompt-pass activations, both in the compute
      dtype. The cache follows the model's layers (:func:`kv_cache_bytes`): ``kv_keep``
      says what sliding-window layers keep: ``"all"``, transformers' cache through the
      prompt pass, the job's peak; ``"window"``, from the first new token on, the job
      then decoding a token at a time (one token's activations: a long prompt needed the
      whole cache while transformers read it). ``kv_dtype`` stores the cache in another
      dtype, ``kv_quant`` in fp8, int4 or int2.
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
    kept in the trained tensors' dtype (bf16 for ``full-bf16``, else fp32);
    ``optimizer_impl`` (:data:`OPTIMIZER_IMPLS`) says how AdamW steps, and ``use_cache``
    whether the model's output keeps a KV cache; both change only the moments of a step
    (:func:`step_phases`), not these parts. Weights are
    exact (:func:`estimate`); activations follow :func:`training_activation_bytes`.
    """
    import torch

    if recipe not in RECIPES:
        raise EstimateError(
            f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}"
        )
    if optimizer_impl not in OPTIMIZER_IMPLS:
        raise EstimateError(
            f"unknown optimizer_impl {optimizer_impl!r}; choose one of "
            + ", ".join(OPTIMIZER_IMPLS)
        )
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    width = _width(dtype)
    if recipe == "inference":
        kv_width = width if kv_dtype is None else _width(kv_dtype)
        states = (
            "float32" if width == 4 else "bfloat16"
        )  # a recurrent state's: the model's
        kv = kv_cache_bytes(
            config, batch, context, kv_width, kv_keep, kv_quant, state_dtype=states
        )
        reading = 1 if kv_keep == "window" else context  # decoding: a token at a time
        return {
            "weights": estimate(config, dtype, quantization, double_quant).total_bytes,
            "kv_cache": kv,
            "activations": prefill_activation_bytes(config, batch, reading, width),
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
