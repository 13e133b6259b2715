"""Where a model's shapes come from: a ``config.json`` (a file, a folder, or a hub id,
downloaded when online, else read from the local cache) and the book's presets of public Llama-architecture
configs. Counts nothing itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .weights import EstimateError


def load_config(source: str):
    """A transformers config from a config.json file, a folder holding one, or a hub id."""
    from transformers import AutoConfig

    path = Path(source)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise EstimateError(f"no such config file: {path}")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EstimateError(f"{path} is not valid JSON ({exc})") from None
        if not isinstance(data, dict) or "model_type" not in data:
            raise EstimateError(
                f"{path} has no 'model_type': is it a transformers config.json?"
            )
        model_type = data.pop("model_type")
        from transformers import PretrainedConfig

        # transformers writes an infinite float as {"__float__": "Infinity"}
        data = PretrainedConfig._decode_special_floats(data)
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        if model_type not in CONFIG_MAPPING:
            raise EstimateError(f"unknown model type {model_type!r} in {path}")
        try:
            return AutoConfig.for_model(model_type, **data)
        except Exception as exc:  # unknown type, a field transformers rejects: one line
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()
            raise EstimateError(
                f"transformers cannot read {path} as a {model_type!r} config ({why})"
            ) from None
    try:
        return AutoConfig.from_pretrained(source)
    except (
        Exception
    ) as exc:  # network, missing repo, unknown type: one line for the user
        raise EstimateError(
            f"could not load a config for {source!r}: {str(exc).splitlines()[0]}"
        ) from None


#: Public Llama-architecture configs (``LlamaConfig`` keyword arguments) for presets.
PRESETS: dict[str, dict[str, Any]] = {
    "TinyLlama-1.1B": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        vocab_size=32000,
        tie_word_embeddings=False,
    ),
    "Llama-3.2-1B": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=True,
    ),
    "Llama-2-7B": dict(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
        tie_word_embeddings=False,
    ),
    "Mistral-7B": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=32000,
        tie_word_embeddings=False,
    ),
    "Llama-3-8B": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=False,
    ),
    "Llama-2-13B": dict(
        hidden_size=5120,
        intermediate_size=13824,
        num_hidden_layers=40,
        num_attention_heads=40,
        num_key_value_heads=40,
        vocab_size=32000,
        tie_word_embeddings=False,
    ),
    "Llama-2-70B": dict(
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        vocab_size=32000,
        tie_word_embeddings=False,
    ),
}
