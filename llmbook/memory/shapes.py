"""Shapes every count shares, read from a transformers config: the head size, the
key-value heads, the linear layers of one decoder block. Counts no bytes itself."""

from __future__ import annotations


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


def _get(config, *names):
    for name in names:
        if getattr(config, name, None) is not None:
            return getattr(config, name)
    return None
