"""Where a model's shapes come from: a ``config.json`` (a file, a folder, or a hub id,
downloaded when online, else read from the local cache), the book's presets of public
Llama-architecture configs (:data:`PRESETS`, which the web calculator also reads) and of
today's mixture-of-experts and hybrid models (:data:`MODEL_PRESETS`). Counts nothing
itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .weights import EstimateError


def load_config(source: str):
    """A transformers config from a preset's name (:func:`preset_config`), a
    config.json file, a folder holding one, or a hub id."""
    from transformers import AutoConfig

    if source in PRESETS or source in MODEL_PRESETS:
        return preset_config(source)
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
    from huggingface_hub.utils import logging as hub_logging

    verbosity = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()  # its own line about a failed request: ours says it
    try:
        return AutoConfig.from_pretrained(source)
    except Exception as exc:  # network, missing repo, unknown type: one line
        raise EstimateError(
            f"could not load a config for {source!r}: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        hub_logging.set_verbosity(verbosity)


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


#: Today's mixture-of-experts and hybrid models: name: (transformers model type, what
#: their published config.json sets beyond transformers' defaults for that type, the hub
#: id it comes from). Their published shapes: transformers' defaults are these
#: checkpoints' own where nothing is set (its docs name them), and fields that change no
#: byte (``rope_theta``, ``max_position_embeddings``) are left at the defaults. The tests
#: check each total, and each active count its makers publish, within 2%. All in bf16,
#: as published, except DeepSeek-V3/R1 (fp8 with block scales, about half the bf16
#: bytes) and gpt-oss, whose experts ship in MXFP4 (:data:`PUBLISHED_QUANTIZATION`).
MODEL_PRESETS: dict[str, tuple[str, dict[str, Any], str]] = {
    "gpt-oss-20b": (
        "gpt_oss",
        dict(num_hidden_layers=24, num_local_experts=32),
        "openai/gpt-oss-20b",
    ),
    "gpt-oss-120b": ("gpt_oss", {}, "openai/gpt-oss-120b"),
    "Mixtral-8x7B": ("mixtral", {}, "mistralai/Mixtral-8x7B-v0.1"),
    "Qwen3-30B-A3B": (
        "qwen3_moe",
        dict(
            hidden_size=2048,
            intermediate_size=6144,
            num_hidden_layers=48,
            num_attention_heads=32,
            num_key_value_heads=4,
            head_dim=128,
            moe_intermediate_size=768,
            num_experts=128,
            num_experts_per_tok=8,
            vocab_size=151936,
            tie_word_embeddings=False,
            max_position_embeddings=40960,
        ),
        "Qwen/Qwen3-30B-A3B",
    ),
    "DeepSeek-V3": ("deepseek_v3", {}, "deepseek-ai/DeepSeek-V3"),  # and R1's
    "Llama-4-Scout": ("llama4_text", {}, "meta-llama/Llama-4-Scout-17B-16E"),
    "Qwen3-Next-80B-A3B": (
        "qwen3_next",
        dict(intermediate_size=5120),
        "Qwen/Qwen3-Next-80B-A3B-Instruct",
    ),
    "Jamba-v0.1": ("jamba", {}, "ai21labs/Jamba-v0.1"),
}


#: The quantization a preset's published checkpoint is stored in, where transformers
#: loads it so (``estimate(..., quantization=...)``).
PUBLISHED_QUANTIZATION = {"gpt-oss-20b": "mxfp4", "gpt-oss-120b": "mxfp4"}


def preset_config(name: str):
    """The transformers config of a preset: one of :data:`PRESETS` (a ``LlamaConfig``)
    or :data:`MODEL_PRESETS`."""
    from transformers import AutoConfig, LlamaConfig

    if name in PRESETS:
        return LlamaConfig(**PRESETS[name])
    if name not in MODEL_PRESETS:
        names = ", ".join([*PRESETS, *MODEL_PRESETS])
        raise EstimateError(f"no preset {name!r}; the presets are {names}")
    kind, changes, _ = MODEL_PRESETS[name]
    return AutoConfig.for_model(kind, dtype="bfloat16", **changes)
