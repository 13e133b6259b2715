"""The KV cache, layer by layer, as transformers keeps it: each attention layer caches
keys and values for the tokens it attends to, full attention every token, a sliding
window or an attention chunk only the last ones once decoding starts, multi-head latent
attention (MLA) one compressed latent and one shared rotary key per token; layers that
share another layer's cache, or have no attention, keep none. Layers that keep a state
of fixed size instead (Mamba, linear attention, short convolutions), alone or beside
attention, are counted as transformers' own cache holds them, read off a forward pass of
the model on the meta device (:func:`state_bytes`); what cannot be read so is refused in
one sentence, not guessed. The cache may be stored in 16 or 32 bits, in fp8, or
quantized to 4 or 2 bits with a full-precision window of recent tokens
(:func:`kv_value_bytes`). Not counted: a paged allocator's unused blocks."""

from __future__ import annotations

from .shapes import _head_dim, _kv_heads
from .weights import EstimateError

#: What a sliding-window or chunked layer keeps (``keep``): ``"all"``, every token of
#: the prompt, which is what transformers' default ``DynamicCache`` holds during the
#: prompt pass and until the first new token (the window it keeps is a view of the whole
#: prompt's keys and values); ``"window"``, only the window, which is what it holds from
#: the first new token on. Serving engines budget more than the window for a prompt:
#: vLLM's hybrid allocator the window plus one scheduled chunk of prompt tokens, and
#: every token when that allocator is off (by default for chunked attention).
KEEPS = ("all", "window")


#: Layer types (transformers' ``layer_types``) whose cache this module counts from
#: the config; a layer of another type is either one of :data:`STATE_TYPES` or refused
#: (a cache of another shape: indexed or compressed sparse attention).
ATTENTION_TYPES = ("full_attention", "sliding_attention", "chunked_attention", "dummy")


#: Layer types that keep a state of fixed size, whatever the number of tokens: the last
#: inputs of a short convolution and, for Mamba and linear attention (Gated DeltaNet),
#: a recurrent state; ``hybrid`` layers (Falcon-H1, Zamba) keep one beside a growing
#: attention cache, ``hybrid_sliding`` beside a window. Counted by :func:`state_bytes`.
STATE_TYPES = ("linear_attention", "conv", "hybrid", "hybrid_sliding")

#: What a reader calls each layer type (transformers names a Mamba layer, too,
#: ``linear_attention``): for tables and the command line.
LAYER_NAMES = {
    "full_attention": "full",
    "sliding_attention": "sliding",
    "chunked_attention": "chunked",
    "dummy": "no cache",
    "linear_attention": "recurrent",
    "conv": "convolution",
    "hybrid": "hybrid",
    "hybrid_sliding": "hybrid sliding",
}

#: Of :data:`STATE_TYPES`, those that also cache keys and values, and the attention
#: they use.
HYBRID_ATTENTION = {"hybrid": "full_attention", "hybrid_sliding": "sliding_attention"}


#: Architectures whose cache is not the config's KV heads: Falcon caches one head
#: (multi-query) or every head (its new decoder architecture broadcasts keys and values
#: before caching them).
UNCOUNTED_MODELS = ("falcon",)


#: Architectures that keep their recurrent state outside transformers' cache layers,
#: so it cannot be read off them.
RECURRENT_MODELS = ("rwkv", "xlstm")


#: How the cache's values may be stored (``kv_quant``): as they are (None), fp8 (one
#: byte a value, a scale per layer), or 4- or 2-bit integers with a scale and a zero
#: point per group of ``kv_group`` values, in the cache's dtype, the most recent
#: ``kv_residual`` tokens kept as they are (transformers' ``QuantizedCache``).
KV_QUANTS = (None, "fp8", "int4", "int2")


def kv_layers(config) -> list[tuple[str, int | None]]:
    """``(layer type, window)`` of each decoder layer, read as transformers reads it
    (``transformers.cache_utils.get_layer_types_and_kwargs``): ``layer_types`` when the
    config has it (layers without attention, or reusing another layer's cache, keep
    none: ``dummy``), else a ``sliding_window`` or ``attention_chunk_size`` on every
    layer; the window in tokens for sliding and chunked layers, else None. Layers this
    module does not count are refused in one sentence."""
    layers = config.num_hidden_layers
    kind = getattr(config, "model_type", "this model")
    if kind in UNCOUNTED_MODELS:
        raise EstimateError(
            f"{kind}'s cache does not follow its KV heads (multi-query or broadcast "
            "heads): its KV cache is not counted"
        )
    if kind in RECURRENT_MODELS:
        raise EstimateError(
            f"{kind} keeps a recurrent state outside transformers' cache: its state is "
            "not counted"
        )
    try:
        from transformers.cache_utils import get_layer_types_and_kwargs

        types, kwargs = get_layer_types_and_kwargs(config)
        windows = [k.get("sliding_window") for k in kwargs]
    except (AttributeError, TypeError, ImportError):  # a config it cannot read
        types, windows = _layers_by_hand(config)
    types = list(types)[:layers]
    if len(types) < layers:
        raise EstimateError(
            f"{kind}'s layer_types names {len(types)} layers, not {layers}"
        )
    unknown = sorted({t for t in types if t not in ATTENTION_TYPES + STATE_TYPES})
    if unknown:
        raise EstimateError(
            f"{kind}'s {', '.join(unknown)} layers cache in a layout the KV cache "
            "estimate does not count"
        )
    return list(zip(types, windows[:layers], strict=True))


def _layers_by_hand(config) -> tuple[list[str], list[int | None]]:
    """:func:`kv_layers`' types and windows as transformers 5.24 derives them, for a
    config its function cannot read."""
    types = getattr(config, "layer_types", None)
    if types is None:
        window = getattr(config, "sliding_window", None)
        chunk = getattr(config, "attention_chunk_size", None)
        kind = "sliding_attention" if window else "chunked_attention"
        types = [
            kind if (window or chunk) else "full_attention"
        ] * config.num_hidden_layers
    modes = getattr(config, "kv_sharing_modes", None) or [None] * len(types)
    types = [
        "dummy" if t in ("moe", "mlp") or m == "reuse" else t
        for t, m in zip(types, modes, strict=False)
    ]
    windows = [
        getattr(config, "sliding_window", None)
        if t == "sliding_attention"
        else getattr(config, "attention_chunk_size", None)
        if t == "chunked_attention"
        else None
        for t in types
    ]
    return types, windows


def kv_widths(config) -> tuple[int, int]:
    """Values a layer caches per token: ``(keys, values)``. Multi-head latent attention
    (a config with ``kv_lora_rank``, DeepSeek-V2/V3's) caches its compressed latent,
    ``kv_lora_rank`` values, and the rotary key all heads share, ``qk_rope_head_dim``;
    other attention ``num_key_value_heads`` heads of ``head_dim`` values for each (the
    values' own ``v_head_dim`` where the config has one)."""
    latent = getattr(config, "kv_lora_rank", None)
    if latent:
        return latent, config.qk_rope_head_dim
    try:
        heads, head = _kv_heads(config), _head_dim(config)
        value_dim = getattr(config, "v_head_dim", None) or head
    except Exception as error:  # per-layer head shapes (Gemma 4) raise on the global
        kind = getattr(config, "model_type", "this model")
        raise EstimateError(
            f"{kind}'s layers have head shapes of their own, which the KV cache "
            "estimate does not count"
        ) from error
    return heads * head, heads * value_dim


def kv_value_bytes(
    tokens: int,
    bytes_per_value: int = 2,
    kv_quant: str | None = None,
    kv_group: int = 64,
    kv_residual: int = 128,
) -> float:
    """Bytes per cached value, averaged over ``tokens`` tokens: ``bytes_per_value``
    stored as it is; fp8 one byte (and a scale per layer); int4 and int2 half and a
    quarter of one, plus a scale and a zero point in ``bytes_per_value`` for every
    ``kv_group`` values, except up to ``kv_residual`` tokens kept as they are.
    transformers' ``QuantizedCache`` quantizes the prompt whole, keeps new tokens as
    they are until ``residual_length`` have gathered, then quantizes them too: the count
    here, ``min(tokens, kv_residual)``, is the most it holds unquantized (measured in the
    block-scaled formats chapter). A count of what is stored: while decoding,
    transformers dequantizes one layer at a time, two more full-precision copies of
    that layer's keys and values for a moment."""
    if kv_quant not in KV_QUANTS:
        choices = ", ".join(str(q) for q in KV_QUANTS)
        raise EstimateError(f"unknown kv_quant {kv_quant!r}; choose one of {choices}")
    if kv_quant is None or tokens == 0:
        return bytes_per_value
    if kv_quant == "fp8":
        return 1
    bits = {"int4": 4, "int2": 2}[kv_quant]
    quantized = bits / 8 + 2 * bytes_per_value / kv_group
    kept = min(tokens, kv_residual)
    return (kept * bytes_per_value + (tokens - kept) * quantized) / tokens


def state_bytes(config, dtype: str = "bfloat16") -> list[int]:
    """Bytes of the fixed-size state each decoder layer keeps for one sequence (0 for a
    layer without one: :data:`STATE_TYPES`), as transformers' own cache holds them:
    the model's class run on the meta device (shapes only: nothing is allocated or
    computed) over a short prompt, then each cache layer's convolution and recurrent
    states read off. The model's ``dtype`` sets theirs, except where its code keeps them
    in fp32 (the recurrent states of Mamba and of Gated DeltaNet in transformers'
    PyTorch path, measured in the tests on the CPU; CUDA kernels such as mamba_ssm's may
    keep another dtype). A model that cannot be read so is refused in one sentence."""
    key = (config.to_json_string(use_diff=False), str(dtype))
    if key not in _STATES:
        _STATES[key] = _read_states(config, dtype)
    return list(_STATES[key])


_STATES: dict[tuple[str, str], tuple[int, ...]] = {}


def _read_states(config, dtype) -> tuple[int, ...]:
    import warnings

    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    kind = getattr(config, "model_type", "this model")
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # "falling back to the PyTorch implementation"
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForCausalLM.from_config(
                config, dtype=getattr(torch, dtype), **_experts(config)
            )
            out = model(input_ids=torch.zeros(1, 8, dtype=torch.long), use_cache=True)
        cache = out.past_key_values
        layers = list(cache.layers)
    except Exception as exc:  # one line for the reader, not a traceback
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise EstimateError(
            f"{kind}'s recurrent state could not be read off transformers' cache on "
            f"the meta device ({why})"
        ) from None
    finally:
        logging.set_verbosity(verbosity)
    if len(layers) != config.num_hidden_layers:
        raise EstimateError(
            f"{kind}'s cache has {len(layers)} layers, not {config.num_hidden_layers}: "
            "its recurrent state is not counted"
        )
    sizes = []
    for layer in layers:
        states = [
            tensor
            for name in ("conv_states", "recurrent_states")
            for tensor in (getattr(layer, name, None) or {}).values()
            if isinstance(tensor, torch.Tensor)
        ]
        sizes.append(sum(t.numel() * t.element_size() for t in states))
    return tuple(sizes)


def _experts(config) -> dict:
    """A mixture of experts on the meta device: ``batched_mm``, the one implementation of
    transformers' experts that runs there in every dtype (its default, ``grouped_mm``,
    takes bf16 only; ``eager`` picks experts by value)."""
    try:
        from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS
    except ImportError:
        return {}
    return (
        {"experts_implementation": "batched_mm"}
        if ("batched_mm" in ALL_EXPERTS_FUNCTIONS)
        else {}
    )


def kv_cache_layers(
    config,
    batch: int,
    tokens: int,
    bytes_per_value: int = 2,
    keep: str = "all",
    state_dtype: str | None = None,
) -> list[dict]:
    """Each decoder layer's cache (:func:`kv_layers`, :func:`kv_widths`): its ``type``,
    the ``tokens`` it keeps, the ``bytes`` of its keys and values for ``batch``
    sequences of ``tokens`` tokens at ``bytes_per_value`` a value, and the bytes of its
    fixed-size ``state`` (:func:`state_bytes`, in the model's ``state_dtype``: by
    default fp32 for a 4-byte cache, else bf16). A sliding or chunked layer keeps every
    token (``keep="all"``) or ``min(tokens, window)`` (``"window"``, :data:`KEEPS`)."""
    if keep not in KEEPS:
        raise EstimateError(f"unknown keep {keep!r}; choose one of {', '.join(KEEPS)}")
    kinds = kv_layers(config)  # refuses what is not counted, first
    attends = [
        kind in HYBRID_ATTENTION or kind in ATTENTION_TYPES and kind != "dummy"
        for kind, _ in kinds
    ]
    keys, values = kv_widths(config) if any(attends) else (0, 0)
    states = [0] * len(kinds)
    if any(kind in STATE_TYPES for kind, _ in kinds):
        dtype = state_dtype or ("float32" if bytes_per_value == 4 else "bfloat16")
        states = state_bytes(config, dtype)
    out = []
    for (kind, window), attend, state in zip(kinds, attends, states, strict=True):
        kept = tokens if attend else 0
        if window and keep == "window":
            kept = min(kept, window)
        size = batch * kept * (keys + values) * bytes_per_value
        out.append(
            dict(type=kind, tokens=kept, bytes=size, state=batch * state * (tokens > 0))
        )
    return out


def kv_cache_bytes(
    config,
    batch: int,
    tokens: int,
    bytes_per_value: int = 2,
    keep: str = "all",
    kv_quant: str | None = None,
    kv_group: int = 64,
    kv_residual: int = 128,
    state_dtype: str | None = None,
) -> int:
    """Bytes of the KV cache for ``batch`` sequences of ``tokens`` tokens: every layer's
    keys and values (:func:`kv_cache_layers`). For a Llama, ``2 x layers x batch x
    tokens x KV heads x head_dim x bytes_per_value``. ``kv_quant`` stores the values in
    fewer bits (:func:`kv_value_bytes`): fp8 as vLLM's ``kv_cache_dtype="fp8"`` or
    transformers' fp8 ``QuantizedCache``; int4 and int2 as transformers'
    ``QuantizedCache``, which takes only models whose layers all use full attention, so
    they are refused for others. Layers with a fixed-size state (:data:`STATE_TYPES`)
    add it as transformers keeps it, in the model's ``state_dtype``, never quantized."""
    dtype = state_dtype or ("float32" if bytes_per_value == 4 else "bfloat16")
    layers = kv_cache_layers(config, batch, tokens, 1, keep, dtype)
    if kv_quant in ("int4", "int2") and any(
        layer["type"] != "full_attention" for layer in layers
    ):
        raise EstimateError(
            "an int4 or int2 cache (transformers' QuantizedCache) takes only models "
            "whose layers all use full attention"
        )
    total = 0.0
    for layer in layers:
        total += layer["state"]
        if layer["tokens"]:
            per_value = kv_value_bytes(
                layer["tokens"], bytes_per_value, kv_quant, kv_group, kv_residual
            )
            total += layer["bytes"] * per_value
    return round(total)
