"""The KV cache: keys and values of every layer for every token kept, at a width per
value. Counts the classic layout, each layer caching ``num_key_value_heads`` heads of
``head_dim`` values for every token; it does not count sliding windows, compressed
(MLA) caches or recurrent layers, nor a paged allocator's unused blocks."""

from __future__ import annotations

from .shapes import _head_dim, _kv_heads


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
