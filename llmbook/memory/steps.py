"""The peak of a training step, moment by moment: what is alive in the forward pass,
the loss's backward, the first and last layer's backward, a tied embedding's backward
and the optimizer step, with the measured transients of the layer being computed and of
the update; the peak is the largest moment (:func:`peak`), and the longest context that
fits a GPU follows from it. Not counted: the CUDA caching allocator's rounding, kernels'
workspaces on a GPU."""

from __future__ import annotations

import re
from typing import Any

from .activations import _compute_mode, _width, training_activation_bytes
from .gpus import usable_bytes
from .kv_cache import kv_cache_bytes, kv_layers
from .optimizers import optimizer_temporaries
from .shapes import _block_linears
from .training import breakdown, trainable_numels
from .weights import empty_model


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
    # attention's scores are the square) between the windows of sliding and chunked
    # layers (a layer that keeps its window stops growing there), so three evaluations
    # per piece give each exactly (from one token on: a recurrent state appears with the
    # first); the peak is the largest moment, and the search costs no more
    windows = set()
    if recipe == "inference" and options.get("kv_keep") == "window":
        windows = {w for _, w in kv_layers(config) if w and w < limit}
    starts = [1] + sorted(w + 1 for w in windows)
    pieces = []  # (first token, each moment's coefficients a + b t + c t^2)
    for first in starts:
        t = (first, first + 1, first + 2)
        samples = [step_phases(config, recipe, context=n, **options) for n in t]
        coefficients = []
        for moment in samples[0]:
            y0, y1, y2 = (sum(s[moment].values()) for s in samples)
            c = (y2 - 2 * y1 + y0) // 2
            b = (y1 - y0) - c * (2 * first + 1)
            coefficients.append((y0 - b * first - c * first**2, b, c))
        pieces.append((first, coefficients))

    def total(tokens: int) -> int:
        _, coefficients = next(p for p in reversed(pieces) if p[0] <= tokens)
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


def step_phases(
    config, recipe: str = "inference", _compute: str | None = None, **options: Any
) -> dict:
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
    - ``optimizer step``: weights, gradients, states and the optimizer's temporaries
      (:func:`optimizer_temporaries`), which depend on how torch's AdamW runs
      (``optimizer_impl``): ``foreach`` (torch's default on a GPU) computes the
      denominator of every tensor at once, one more copy of the trainable parameters in
      the states' dtype; ``for-loop`` (torch's default on a CPU) updates one tensor at a
      time and holds two copies of the largest; ``fused`` holds none. bitsandbytes' 8-bit
      AdamW and SGD with momentum update in place, as do the fused optimizers of Apex and
      DeepSpeed (``full-master``; DeepSpeed's bf16 optimizer also keeps fp32 gradients, 4
      bytes per parameter more). bitsandbytes' CPU 8-bit step dequantizes the states
      (measured: about 8 bytes per parameter more), unlike its GPU kernel: not counted.

    What was measured, and what was not: CPU steps of Llama-style models with SDPA, fp32,
    bf16 and autocast, full fine-tuning, LoRA and QLoRA, 2 to 8 layers. ``full-master``
    was measured with a stand-in for the fused GPU kernels: torch's fused AdamW on each
    fp32 master tensor in turn, its bf16 gradient cast to fp32 one tensor at a time (that
    one fp32 gradient is the stand-in's own, not counted). The layer's working set depends
    on the recipe (:data:`LAYER_WORKSPACE`). On a GPU, which SDPA kernel runs matters:
    with grouped-query attention transformers asks SDPA for ``enable_gqa``, which only the
    flash kernel takes, so fp32 compute and GPUs without it (a T4) may fall back to the
    math kernel, which keeps the scores; count those as ``attention="eager"``.

    ``_compute`` (private) overrides how the recipe computes its activations: FSDP2 with
    a bf16 ``MixedPrecisionPolicy`` runs recipe ``full`` wholly in bf16, no autocast.

    ``out`` also holds the KV cache transformers builds in the forward pass
    (``use_cache``, its default, unless gradient checkpointing turns it off): the keys
    and values the layers save for the backward pass, which stay alive in ``out`` once
    the backward pass has freed them: ``output_cache`` in the backward pass's last layer
    (the layers done), the embedding's backward and the optimizer step,
    ``previous_cache`` in the next forward pass. ``use_cache=False`` (or
    ``model.config.use_cache = False``, as training scripts often set) drops them.

    The logits are counted through the optimizer step because the loop above holds
    ``out`` until the next batch; a loop that keeps only the loss (Hugging Face's
    ``Trainer``) frees them after the forward pass. With gradient accumulation the
    gradients also exist in the forward pass; add them.
    """
    parts = breakdown(config, recipe, **options)
    if recipe == "inference":  # keeping only the windows: decoding (breakdown)
        window = options.get("kv_keep") == "window"
        return {"decoding" if window else "prompt pass": parts}
    width = _width(options.get("dtype", "bfloat16"))
    compute = _compute or _compute_mode(recipe, width)
    if _compute:  # FSDP2's MixedPrecisionPolicy: the whole model computes in bf16
        parts["activations"] = training_activation_bytes(
            config,
            options.get("batch", 1),
            options.get("context", 2048),
            options.get("checkpointing", False),
            _compute,
            attention=options.get("attention", "sdpa"),
        )
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
    if recipe == "full" and compute == "autocast":  # autocast's bf16 weight copies
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
    if recipe != "full-master":  # DeepSpeed's and Apex's fused steps hold none
        temporaries = optimizer_temporaries(
            trainable_numels(config, recipe, rank),
            options.get("optimizer", "adamw"),
            options.get("optimizer_impl", "foreach"),
            2 if recipe == "full-bf16" else 4,
        )

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

    # the KV cache transformers builds in the forward pass (``use_cache``, on unless
    # checkpointing turns it off): the keys and values the layers save for backward,
    # which the loop's ``out`` keeps once the backward pass has freed them
    cache = 0
    if options.get("use_cache", True) and not checkpointing:
        cache = kv_cache_bytes(config, batch, context, 4 if compute == "fp32" else 2)
    layers = config.num_hidden_layers

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
            previous_cache=cache,
        ),
        "forward": moment(
            "forward",
            activations=saved,
            logits_fp32=0 if compute == "fp32" else 4 * tokens_v,
            previous_logits=logits,
            previous_cache=cache,
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
            output_cache=cache * (layers - 1) // layers,  # the layers done
            backward_workspace=workspace,
            dequantized_weight=dequantized,
        ),
        "embedding backward": moment(
            "embedding backward",
            gradients=parts["gradients"],
            embedding_gradient=tied_extra,
            output_cache=cache,
        ),
        "optimizer step": moment(
            "optimizer step",
            gradients=parts["gradients"],
            optimizer_temporaries=temporaries,
            output_cache=cache,
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
