"""The KV cache layer by layer: llmbook.memory.kv_cache_bytes against the cache that
transformers' own model classes hold, to the byte, for every attention layout they ship
(full, sliding windows everywhere or on some layers, chunked attention, multi-head
latent attention); recurrent layers refused in one sentence."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from llmbook import cli, memory
from llmbook.measure import tensor_bytes

KV = ("keys", "values")

SMALL = dict(
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    num_hidden_layers=6,
    vocab_size=300,
)
# each architecture's own layout, small: windows of 16 tokens against prompts of 40
FAMILIES = {
    "llama": dict(),
    "mistral": dict(sliding_window=16),  # every layer
    "qwen2": dict(use_sliding_window=True, sliding_window=16, max_window_layers=2),
    "gemma3_text": dict(sliding_window=16, head_dim=16),  # 5 local : 1 global
    "cohere2": dict(sliding_window=16),  # 3 local : 1 global
    "gpt_oss": dict(
        sliding_window=16, num_local_experts=4, num_experts_per_tok=2, head_dim=16
    ),  # alternating, and experts
    "llama4_text": dict(
        attention_chunk_size=16,
        head_dim=16,
        num_local_experts=2,
        intermediate_size_mlp=128,
    ),  # chunked on 3 layers of 4
    "deepseek_v3": dict(
        num_key_value_heads=4,
        kv_lora_rank=32,
        q_lora_rank=None,
        qk_rope_head_dim=8,
        qk_nope_head_dim=16,
        v_head_dim=16,
        n_routed_experts=4,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        moe_intermediate_size=32,
        n_group=1,
        topk_group=1,
    ),  # multi-head latent attention
}


def storage_bytes(cache) -> int:
    """Bytes of memory the cache's tensors hold (each storage once: a sliding layer's
    window may be a view of a larger tensor)."""
    tensors = [getattr(layer, name, None) for layer in cache.layers for name in KV]
    return tensor_bytes(*tensors)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_cache_transformers_holds_to_the_byte(family):
    """After the prompt pass every attention layer holds the whole prompt (a sliding
    layer's window is a view of it: keep="all"); once tokens are generated a sliding or
    chunked layer holds its window (keep="window")."""
    config = AutoConfig.for_model(family, **{**SMALL, **FAMILIES[family]})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    batch, prompt, new = 2, 40, 3
    ids = torch.randint(0, SMALL["vocab_size"], (batch, prompt))
    with torch.no_grad():
        cache = model(ids, use_cache=True).past_key_values
        after_prompt = storage_bytes(cache)
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new,
            do_sample=False,
            return_dict_in_generate=True,
        )
    decoding = storage_bytes(out.past_key_values)
    tokens = prompt + new - 1  # the last token generated is not cached
    assert after_prompt == memory.kv_cache_bytes(config, batch, prompt, 4)
    assert decoding == memory.kv_cache_bytes(config, batch, tokens, 4, keep="window")
    types = {t for t, _ in memory.kv_layers(config)}
    if family != "llama" and family != "deepseek_v3":  # a window somewhere
        assert decoding < memory.kv_cache_bytes(config, batch, tokens, 4)
        assert types & {"sliding_attention", "chunked_attention"}


def test_mla_caches_one_latent_and_one_rotary_key():
    config = AutoConfig.for_model("deepseek_v3")  # DeepSeek-V3's own dimensions
    assert memory.kv_widths(config) == (512, 64)
    naive = 2 * config.num_key_value_heads * config.head_dim
    per_token = memory.kv_cache_bytes(config, 1, 1, 2)
    assert per_token == 2 * 61 * (512 + 64) and naive > 10 * (512 + 64)


@pytest.mark.parametrize(
    ("family", "why"),
    [
        ("jamba", "recurrent state"),
        ("qwen3_next", "recurrent state"),
        ("falcon_h1", "recurrent state"),
        ("bamba", "recurrent state"),
        ("rwkv", "recurrent state"),
        ("deepseek_v32", "indexed_attention layers cache in a layout"),
        ("gemma4_text", "head shapes of their own"),
        ("falcon", "does not follow its KV heads"),
    ],
)
def test_layouts_not_counted_are_refused_in_one_sentence(family, why):
    config = AutoConfig.for_model(family)
    with pytest.raises(memory.EstimateError, match=why) as info:
        memory.kv_cache_bytes(config, 1, 128)
    assert "\n" not in str(info.value) and family in str(info.value)


def test_keeping_the_window_is_decoding():
    """keep="window" describes the job once it decodes: one token's activations, the
    moment named so; int4 and int2 caches take only full-attention models."""
    config = AutoConfig.for_model("mistral", **{**SMALL, "sliding_window": 16})
    options = dict(batch=2, context=4096)
    (moment,) = memory.step_phases(config, "inference", kv_keep="window", **options)
    assert moment == "decoding"
    (moment,) = memory.step_phases(config, "inference", **options)
    assert moment == "prompt pass"
    parts = memory.breakdown(config, "inference", kv_keep="window", **options)
    assert parts["activations"] == memory.prefill_activation_bytes(config, 2, 1)
    with pytest.raises(memory.EstimateError, match="full attention"):
        memory.kv_cache_bytes(config, 1, 100, kv_quant="int4")


def test_quantized_caches_count_their_groups_and_window():
    """int4 over a 16-bit cache: half a byte a value and a scale and a zero point per 64
    values (4.5 bits), up to the last 128 tokens as they are; fp8 one byte."""
    config = AutoConfig.for_model("llama", **SMALL)
    values = memory.kv_cache_bytes(config, 1, 1, 1)  # values per token
    plain = memory.kv_cache_bytes(config, 1, 10_000, 2)
    assert memory.kv_cache_bytes(config, 1, 10_000, 2, kv_quant="fp8") == plain // 2
    int4 = memory.kv_cache_bytes(config, 1, 10_000, 2, kv_quant="int4")
    assert int4 == round(values * (128 * 2 + (10_000 - 128) * 4.5 / 8))
    short = memory.kv_cache_bytes(config, 1, 100, 2, kv_quant="int2")
    assert short == memory.kv_cache_bytes(config, 1, 100, 2)  # all in the window
    with pytest.raises(memory.EstimateError, match="unknown kv_quant 'int3'"):
        memory.kv_cache_bytes(config, 1, 10, kv_quant="int3")


def test_the_command_line_follows_the_layers(tmp_path, capsys):
    """A gpt-oss config: half its layers slide over 128 tokens; --kv-keep window counts
    only the window for them, and the layout line says so."""
    import json

    config = AutoConfig.for_model("gpt_oss", num_hidden_layers=24)
    config.save_pretrained(tmp_path)
    base = [str(tmp_path), "--recipe", "inference", "--seq", "131072"]
    assert cli.main([*base, "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)["parts"]["kv_cache"]
    assert cli.main([*base, "--json", "--kv-keep", "window"]) == 0
    window = json.loads(capsys.readouterr().out)["parts"]["kv_cache"]
    assert whole == memory.kv_cache_bytes(config, 1, 131072, 2)
    assert window == memory.kv_cache_bytes(config, 1, 131072, 2, keep="window")
    assert window < 0.51 * whole
    assert cli.main([*base, "--kv-keep", "window", "--kv-quant", "fp8"]) == 0
    text = capsys.readouterr().out
    assert "12 sliding (128 tokens), 12 full (131,072 tokens); stored as fp8" in text
    assert "while decoding" in text
