"""Activations: what the prompt pass of inference holds at once, and what a training
step saves for its backward pass, per block family (Llama, GPT-NeoX, GPT-2), measured on
CPU with ``saved_tensors_hooks``; and autocast's cached 16-bit weight copies. Not counted
here: the transients of the layer being computed (:mod:`.steps`), the logits and the
loss's buffers (:mod:`.steps`)."""

from __future__ import annotations

from .shapes import _block_linears, _get, _head_dim, _kv_heads
from .weights import EstimateError, empty_model


def prefill_activation_bytes(
    config, batch: int, seq: int, bytes_per_value: int = 2
) -> int:
    """One layer's working set in the prompt pass (layers run one at a time; SDPA keeps no
    seq x seq matrix): residual in and out, queries, keys and values, the MLP's gate, up and
    activated tensors. For a mixture of experts a lower bound: transformers gives each of
    the ``k`` experts a token is sent to its own copy of it."""
    h, inter = config.hidden_size, getattr(config, "intermediate_size", None)
    if not inter:
        kind = getattr(config, "model_type", "this model")
        raise EstimateError(
            f"{kind} has no MLP width (intermediate_size): its prompt-pass activations "
            "are not counted"
        )
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

    Mistral and Qwen2 blocks are Llama blocks (:data:`LLAMA_LIKE`). A layer whose
    sliding window is shorter than the sequence gives SDPA a mask instead of its causal
    flag, and keeps, per token, ``2 (a - kv) hd`` values more (keys and values repeated
    to every head, a copy unless there is one KV head) and ``s`` values of the mask, in
    the compute dtype (measured on Mistral and Qwen2 configs with windows of 32 to 256
    at 64 to 512 tokens, with 1, 2 and all KV heads).

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
    sliding = _sliding_layers(config, seq)
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
    masked = 0  # per sliding layer and token: SDPA with a mask (keys, values, mask)
    if sliding and not eager:  # transformers' repeat_kv copies unless one KV head
        kv = _kv_heads(config)
        masked = (2 * (heads - kv) * _head_dim(config) if kv > 1 else 0) + seq
        masked *= 4 if compute == "fp32" else 2
    outside += 4 * config.vocab_size
    if lora_rank and compute == "fp32":
        per_layer += 28 * lora_rank - 8 * h
        outside -= 12 * h
    elif lora_rank:
        per_layer += 16 * h + 2 * inter + 28 * lora_rank
    per_token = (
        layers * layer_input + per_layer + masked
        if checkpointing  # one layer recomputed at a time: a sliding one, if any
        else layers * per_layer + sliding * masked
    )
    if _per_layer_only:  # the largest layer's
        return batch * seq * (per_layer + masked)
    return batch * seq * (per_token + outside)


#: Block families whose activations were measured: Llama (RMSNorm, SwiGLU, rotary,
#: grouped-query attention), GPT-NeoX (LayerNorm, GELU, parallel residual) and GPT-2
#: (LayerNorm, the tanh-approximated GELU, which keeps five values per MLP unit).
ACTIVATION_FAMILIES = ("llama", "gpt_neox", "gpt2")


#: Architectures whose block is a Llama block, with the differences measured: Mistral
#: (a sliding window on every layer, when ``sliding_window`` is set) and Qwen2 (biases
#: on the query, key and value projections, which keep nothing more; sliding layers
#: where ``layer_types`` says so). Counted as ``llama``.
LLAMA_LIKE = ("llama", "mistral", "qwen2")


_DROPOUTS = (
    "attention_dropout",
    "hidden_dropout",
    "attn_pdrop",
    "resid_pdrop",
    "embd_pdrop",
)


def _block_family(config, attention: str, lora_rank) -> str:
    """The measured family of ``config``'s blocks, or one sentence saying what is not."""
    family = getattr(config, "model_type", "llama")
    family = "llama" if family in LLAMA_LIKE else family
    if family not in ACTIVATION_FAMILIES:
        known = ", ".join((*LLAMA_LIKE, *ACTIVATION_FAMILIES[1:]))
        raise EstimateError(
            f"training activations are measured for {known} blocks, not {family!r}"
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


def _sliding_layers(config, seq: int) -> int:
    """How many layers attend through a sliding window no longer than ``seq`` tokens
    (transformers passes SDPA a mask once the keys reach the window): every layer of a
    Mistral (its attention ignores ``layer_types``), the layers ``layer_types`` names
    ``sliding_attention`` in a Qwen2; none in a Llama, whose attention has no window."""
    window = getattr(config, "sliding_window", None)
    kind = getattr(config, "model_type", "")
    if not window or window > seq or kind == "llama":  # a Llama has no window
        return 0  # (transformers masks once the keys reach the window's length)
    types = getattr(config, "layer_types", None)
    if types is None or kind == "mistral":  # Mistral slides on every layer
        return config.num_hidden_layers
    return sum(t == "sliding_attention" for t in types[: config.num_hidden_layers])


def autocast_cache_bytes(config) -> int:
    """Bytes of the bf16 copies ``torch.autocast`` makes of every matmul weight (the
    blocks' projections and the output head) and keeps for the backward pass."""
    if getattr(config, "model_type", "llama") != "llama":  # from its modules
        import torch

        model = empty_model(config, torch.float32)
        return 2 * sum(
            m.weight.numel() + (0 if m.bias is None else m.bias.numel())
            for m in model.modules()
            if type(m).__name__ in ("Linear", "Conv1D")
        )
    block = sum(d_in * d_out for d_in, d_out in _block_linears(config))
    return 2 * (
        config.num_hidden_layers * block + config.vocab_size * config.hidden_size
    )


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
