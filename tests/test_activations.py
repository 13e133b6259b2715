"""Training memory: llmbook.memory's activation model against what a real step keeps.

Bytes saved for the backward pass are measured exactly with saved_tensors_hooks (each
storage once, parameters left out) on Llama-style models of several shapes, batch sizes,
sequence lengths and precisions, with and without checkpointing; the prediction must be
within 5% (it leaves out a few hundred bytes per token of position and label tensors)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from llmbook.bench import load_kwargs
from llmbook.memory import (
    EstimateError,
    autocast_cache_bytes,
    breakdown,
    training_activation_bytes,
)
from llmbook.pages.ch07 import saved_for_backward

SHAPES = {
    "gqa": dict(
        hidden_size=256,
        intermediate_size=768,
        num_attention_heads=8,
        num_key_value_heads=4,
        vocab_size=4096,
    ),
    "mha": dict(
        hidden_size=192,
        intermediate_size=512,
        num_attention_heads=6,
        num_key_value_heads=6,
        vocab_size=2048,
    ),
    "big-vocab": dict(
        hidden_size=128,
        intermediate_size=384,
        num_attention_heads=4,
        num_key_value_heads=1,
        vocab_size=16384,
    ),
}


def measure(config, compute: str, batch: int, seq: int, checkpointing: bool) -> int:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        config, dtype=torch.bfloat16 if compute == "bf16" else torch.float32
    )
    model.train()
    if checkpointing:  # re-entrant: the checkpointed input goes through autograd, where the hook sees it
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": True}
        )
    ids = torch.randint(0, config.vocab_size, (batch, seq))
    ctx = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if compute == "autocast"
        else contextlib.nullcontext()
    )

    def step():
        with ctx:
            return model(ids, labels=ids).loss

    return saved_for_backward(model, step)[0]


@pytest.mark.parametrize("compute", ["fp32", "bf16", "autocast"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(("layers", "batch", "seq"), [(2, 1, 256), (3, 4, 64)])
def test_activations_within_5_percent_of_a_real_step(
    shape, compute, layers, batch, seq
):
    config = LlamaConfig(
        num_hidden_layers=layers, max_position_embeddings=512, **SHAPES[shape]
    )
    measured = measure(config, compute, batch, seq, checkpointing=False)
    predicted = training_activation_bytes(config, batch, seq, compute=compute)
    if compute == "autocast":  # autocast's bf16 weight copies are saved too
        predicted += autocast_cache_bytes(config)
    assert abs(predicted - measured) / measured < 0.05, (predicted, measured)


@pytest.mark.parametrize("compute", ["fp32", "bf16"])
def test_checkpointing_keeps_each_layers_input(compute):
    """Saved bytes with checkpointing: every layer's input, plus the outside; the one layer
    recomputed at a time during backward is a transient the model adds on top."""
    config = LlamaConfig(
        num_hidden_layers=4, max_position_embeddings=512, **SHAPES["gqa"]
    )
    measured = measure(config, compute, 2, 128, checkpointing=True)
    full = training_activation_bytes(config, 2, 128, compute=compute)
    with_ckpt = training_activation_bytes(
        config, 2, 128, checkpointing=True, compute=compute
    )
    one_layer = training_activation_bytes(
        config, 2, 128, compute=compute
    ) - training_activation_bytes(
        LlamaConfig(**{**config.to_dict(), "num_hidden_layers": 3}),
        2,
        128,
        compute=compute,
    )
    assert abs((with_ckpt - one_layer) - measured) / measured < 0.05, (
        with_ckpt - one_layer,
        measured,
    )
    assert with_ckpt < full / 2


def test_the_old_gpt3_eager_formula_overstates_llama_with_sdpa():
    """At Llama-2-7B scale and 8k tokens, Korthikanti et al.'s s b h (34 + 5 a s / h) per layer
    (GPT-3 block, eager attention) is several times what an SDPA Llama keeps."""
    config = LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
    )
    s, h, a = 8192, 4096, 32
    korthikanti = 32 * s * h * (34 + 5 * a * s / h)
    ours = training_activation_bytes(config, 1, s, compute="bf16")
    assert korthikanti / ours > 5


def test_recipes_count_bytes_per_parameter():
    config = LlamaConfig(**SHAPES["gqa"], num_hidden_layers=2)
    params = list(AutoModelForCausalLM.from_config(config).parameters())
    n, steps = (
        sum(p.numel() for p in params),
        4 * len(params),
    )  # AdamW: an fp32 step each
    full = breakdown(config, "full")
    assert full["weights"] + full["gradients"] + full["optimizer"] == 16 * n + steps
    assert full["autocast_cache"] == autocast_cache_bytes(config)
    plain = breakdown(config, "full-fp32")
    assert plain["weights"] + plain["gradients"] + plain["optimizer"] == 16 * n + steps
    assert plain["activations"] == training_activation_bytes(
        config, 1, 2048, compute="fp32"
    )
    pure = breakdown(config, "full-bf16")
    assert pure["weights"] + pure["gradients"] + pure["optimizer"] == 8 * n + steps
    master = breakdown(config, "full-master")
    parts = sum(v for k, v in master.items() if k != "activations")
    assert parts == 16 * n + steps
    with pytest.raises(EstimateError, match="unknown compute mode"):
        training_activation_bytes(config, 1, 8, compute="fp8")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("base", ["16-bit or fp32", "nf4"])
@pytest.mark.parametrize(("shape", "rank"), [("gqa", 8), ("gqa", 64), ("mha", 16)])
def test_lora_and_qlora_activations_within_5_percent(
    tmp_path, base, shape, rank, dtype
):
    """PEFT adapters on all seven projections over a frozen base (LoRA) or nf4 base
    (QLoRA), computing in bf16 or in fp32."""
    from peft import LoraConfig, get_peft_model

    from llmbook.memory import LORA_TARGETS

    config = LlamaConfig(
        num_hidden_layers=3, max_position_embeddings=512, **SHAPES[shape]
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if base == "nf4":
        model.save_pretrained(tmp_path)
        model = AutoModelForCausalLM.from_pretrained(
            tmp_path, **load_kwargs("nf4-dq", compute_dtype=dtype)
        )
    model = get_peft_model(
        model, LoraConfig(r=rank, target_modules=list(LORA_TARGETS), lora_dropout=0.0)
    ).train()
    ids = torch.randint(0, config.vocab_size, (2, 96))
    measured, _ = saved_for_backward(
        model, lambda: model(input_ids=ids, labels=ids).loss
    )
    compute = "fp32" if dtype == torch.float32 else "bf16"
    predicted = training_activation_bytes(
        config, 2, 96, compute=compute, lora_rank=rank
    )
    assert abs(predicted - measured) / measured < 0.05, (predicted, measured)
    assert (
        breakdown(
            config,
            "qlora" if base == "nf4" else "lora",
            dtype=dtype,
            batch=2,
            context=96,
            lora_rank=rank,
        )["activations"]
        == predicted
    )


@pytest.mark.parametrize("compute", ["fp32", "bf16", "autocast"])
@pytest.mark.parametrize("shape", ["gqa", "mha"])
@pytest.mark.parametrize("seq", [64, 256])
def test_eager_attention_keeps_the_scores(shape, compute, seq):
    """Eager attention keeps each layer's s x s softmax: quadratic in the sequence."""
    config = LlamaConfig(
        num_hidden_layers=2,
        max_position_embeddings=512,
        attn_implementation="eager",
        **SHAPES[shape],
    )
    measured = measure(config, compute, 2, seq, checkpointing=False)
    predicted = training_activation_bytes(
        config, 2, seq, compute=compute, attention="eager"
    )
    if compute == "autocast":
        predicted += autocast_cache_bytes(config)
    assert abs(predicted - measured) / measured < 0.05, (predicted, measured)
    sdpa = training_activation_bytes(config, 2, seq, compute=compute)
    if seq == 256:  # and the sdpa count would miss it by more than the tolerance
        assert abs(sdpa - measured) / measured > 0.05


def test_unknown_attention_is_one_sentence():
    config = LlamaConfig(**SHAPES["gqa"])
    with pytest.raises(EstimateError, match="unknown attention 'flex'"):
        training_activation_bytes(config, 1, 8, attention="flex")


def layernorm_config(family: str, layers: int, hidden: int = 256, inter: int = 768):
    from transformers import GPT2Config, GPTNeoXConfig

    if family == "gpt_neox":
        return GPTNeoXConfig(
            hidden_size=hidden,
            intermediate_size=inter,
            num_attention_heads=8,
            num_hidden_layers=layers,
            vocab_size=4096,
        )
    return GPT2Config(  # dropout off: its masks are not modelled
        n_embd=hidden,
        n_inner=inter,
        n_head=8,
        n_layer=layers,
        vocab_size=4096,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )


@pytest.mark.parametrize("compute", ["fp32", "bf16", "autocast"])
@pytest.mark.parametrize("family", ["gpt_neox", "gpt2"])
@pytest.mark.parametrize(
    ("layers", "batch", "seq", "hidden", "inter"),
    [(2, 1, 256, 256, 768), (3, 4, 64, 256, 768), (2, 2, 128, 128, 1024)],
)
def test_layernorm_blocks_within_5_percent(
    family, compute, layers, batch, seq, hidden, inter
):
    """Two MLP ratios (I = 3h and I = 8h), so the h and I terms are both tested."""
    config = layernorm_config(family, layers, hidden, inter)
    measured = measure(config, compute, batch, seq, checkpointing=False)
    predicted = training_activation_bytes(config, batch, seq, compute=compute)
    if compute == "autocast":
        predicted += autocast_cache_bytes(config)
    assert abs(predicted - measured) / measured < 0.05, (predicted, measured)


def test_dropout_is_refused_in_one_sentence():
    from transformers import GPT2Config

    with pytest.raises(EstimateError, match="dropout .* set them to 0"):
        training_activation_bytes(GPT2Config(n_layer=2), 1, 8)


def test_fp32_lora_at_a_real_models_shape_within_1_percent():
    """SmolLM2-135M's block shape (h 576, I 1536, 9 heads, 3 KV heads), six layers, an fp32
    base: the per-layer term must be right, not just small enough to hide in 5%."""
    from peft import LoraConfig, get_peft_model

    from llmbook.memory import LORA_TARGETS

    config = LlamaConfig(
        hidden_size=576,
        intermediate_size=1536,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=2048,
        num_hidden_layers=6,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model = get_peft_model(
        model, LoraConfig(r=16, target_modules=list(LORA_TARGETS), lora_dropout=0.0)
    ).train()
    ids = torch.randint(0, config.vocab_size, (2, 64))
    measured, _ = saved_for_backward(
        model, lambda: model(input_ids=ids, labels=ids).loss
    )
    predicted = training_activation_bytes(config, 2, 64, compute="fp32", lora_rank=16)
    assert abs(predicted - measured) / measured < 0.01, (predicted, measured)


LLAMA_LIKE_CASES = [  # architecture, its options, batch, seq
    ("mistral", dict(sliding_window=None), 2, 128),
    ("mistral", dict(sliding_window=96), 2, 200),  # the window binds on every layer
    ("qwen2", dict(), 1, 256),  # biases on q, k, v
    # sliding windows on the second and third layers only
    (
        "qwen2",
        dict(use_sliding_window=True, sliding_window=48, max_window_layers=1),
        2,
        96,
    ),
]


@pytest.mark.parametrize("compute", ["fp32", "bf16", "autocast"])
@pytest.mark.parametrize(("kv", "hidden"), [(1, 320), (2, 256)])
@pytest.mark.parametrize(("arch", "options", "batch", "seq"), LLAMA_LIKE_CASES)
def test_llama_like_blocks_within_5_percent(
    arch, options, batch, seq, kv, hidden, compute
):
    """Mistral and Qwen2 blocks are Llama blocks: the same count, plus a sliding window
    shorter than the sequence (keys and values repeated per head, the mask)."""
    from transformers import MistralConfig, Qwen2Config

    shape = dict(
        hidden_size=hidden,
        intermediate_size=864,
        num_attention_heads=hidden // 64 if kv == 1 else 8,
        num_key_value_heads=kv,
        vocab_size=6000,
        num_hidden_layers=3,
    )
    kind = {"mistral": MistralConfig, "qwen2": Qwen2Config}[arch]
    config = kind(**shape, **options)
    measured = measure(config, compute, batch, seq, False)
    expected = training_activation_bytes(config, batch, seq, False, compute)
    if compute == "autocast":  # its cached weight copies are saved for the backward too
        expected += autocast_cache_bytes(config)
    assert expected == pytest.approx(measured, rel=0.05)


def test_other_blocks_are_refused_in_one_sentence():
    from transformers import Qwen3Config

    config = Qwen3Config(
        hidden_size=128,
        intermediate_size=256,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=2,
    )
    with pytest.raises(EstimateError, match="not 'qwen3'") as info:
        training_activation_bytes(config, 1, 16)
    assert "\n" not in str(info.value) and "mistral, qwen2" in str(info.value)


@pytest.mark.parametrize(
    ("arch", "options", "seq", "sliding"),
    [
        ("mistral", dict(sliding_window=64), 64, True),  # keys as long as the window
        ("mistral", dict(sliding_window=64), 63, False),
        # Mistral's attention ignores layer_types: every layer slides
        (
            "mistral",
            dict(sliding_window=64, layer_types=["full_attention"] * 3),
            96,
            True,
        ),
        ("llama", dict(sliding_window=32), 96, False),  # a Llama has no window
    ],
)
def test_when_a_window_binds(arch, options, seq, sliding):
    """A sliding window adds its mask and repeated keys and values once the keys reach
    the window's length, on the layers the architecture slides on."""
    from transformers import AutoConfig

    shape = dict(SHAPES["gqa"], num_hidden_layers=3, **options)
    config = AutoConfig.for_model(arch, **shape)
    measured = measure(config, "fp32", 1, seq, False)
    expected = training_activation_bytes(config, 1, seq, False, "fp32")
    plain = training_activation_bytes(
        LlamaConfig(**SHAPES["gqa"], num_hidden_layers=3), 1, seq, False, "fp32"
    )
    assert expected == pytest.approx(measured, rel=0.02)
    assert (expected > plain) == sliding
