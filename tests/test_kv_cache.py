"""The KV cache layer by layer: llmbook.memory.kv_cache_bytes against the cache that
transformers' own model classes hold, to the byte, for every attention layout they ship
(full, sliding windows everywhere or on some layers, chunked attention, multi-head
latent attention, and the fixed-size states of hybrid and recurrent layers); what
cannot be counted is refused in one sentence."""

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


# layers with a state of fixed size, alone or beside attention (6 layers, small)
HYBRIDS = {
    "qwen3_next": dict(  # Gated DeltaNet and attention alternating, experts
        linear_num_value_heads=4,
        linear_num_key_heads=2,
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        head_dim=16,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        shared_expert_intermediate_size=32,
        full_attention_interval=2,
        layer_types=None,
    ),
    "jamba": dict(  # Mamba and attention alternating, experts
        attn_layer_period=2,
        attn_layer_offset=1,
        expert_layer_period=2,
        expert_layer_offset=1,
        num_experts=2,
        mamba_d_state=8,
        mamba_dt_rank=8,
        use_mamba_kernels=False,
    ),
    "falcon_h1": dict(  # Mamba-2 beside attention in every layer
        mamba_d_ssm=64, mamba_n_heads=4, mamba_d_head=16, mamba_d_state=8, head_dim=16
    ),
    "bamba": dict(  # Mamba-2 and attention on layers 1 and 3
        attn_layer_indices=[1, 3], mamba_n_heads=4, mamba_d_head=32, mamba_d_state=8
    ),
    "lfm2": dict(full_attn_idxs=[1, 3], layer_types=None, block_ff_dim=128),  # convs
    "mamba2": dict(num_heads=4, head_dim=32, state_size=8, n_groups=1),  # no attention
}


def storage_bytes(cache) -> int:
    """Bytes of memory the cache's tensors hold (each storage once: a sliding layer's
    window may be a view of a larger tensor), its fixed-size states included."""
    tensors = [getattr(layer, name, None) for layer in cache.layers for name in KV]
    for layer in cache.layers:
        for name in ("conv_states", "recurrent_states"):
            tensors += list((getattr(layer, name, None) or {}).values())
    return tensor_bytes(*[t for t in tensors if isinstance(t, torch.Tensor)])


def prompt_then_decode(config, dtype=torch.float32, batch=2, prompt=40, new=3):
    """The cache's bytes after the prompt pass and after ``new`` tokens generated."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    ids = torch.randint(0, SMALL["vocab_size"], (batch, prompt))
    with torch.no_grad():
        after_prompt = storage_bytes(model(ids, use_cache=True).past_key_values)
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new,
            do_sample=False,
            return_dict_in_generate=True,
        )
    return after_prompt, storage_bytes(out.past_key_values)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_cache_transformers_holds_to_the_byte(family):
    """After the prompt pass every attention layer holds the whole prompt (a sliding
    layer's window is a view of it: keep="all"); once tokens are generated a sliding or
    chunked layer holds its window (keep="window")."""
    config = AutoConfig.for_model(family, **{**SMALL, **FAMILIES[family]})
    batch, prompt, new = 2, 40, 3
    after_prompt, decoding = prompt_then_decode(config, batch=batch, prompt=prompt)
    tokens = prompt + new - 1  # the last token generated is not cached
    assert after_prompt == memory.kv_cache_bytes(config, batch, prompt, 4)
    assert decoding == memory.kv_cache_bytes(config, batch, tokens, 4, keep="window")
    types = {t for t, _ in memory.kv_layers(config)}
    if family != "llama" and family != "deepseek_v3":  # a window somewhere
        assert decoding < memory.kv_cache_bytes(config, batch, tokens, 4)
        assert types & {"sliding_attention", "chunked_attention"}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("family", list(HYBRIDS))
def test_hybrid_layers_states_to_the_byte(family, dtype):
    """Mamba, Mamba-2, Gated DeltaNet and short-convolution layers keep a state of fixed
    size (its recurrent part in fp32 even in a bf16 model), attention layers their
    growing cache: the count, read off the meta device, against a real run's."""
    config = AutoConfig.for_model(family, **{**SMALL, **HYBRIDS[family]})
    width = dtype.itemsize
    after_prompt, decoding = prompt_then_decode(config, dtype)
    assert after_prompt == memory.kv_cache_bytes(config, 2, 40, width)
    assert decoding == memory.kv_cache_bytes(config, 2, 42, width)
    layers = memory.kv_cache_layers(config, 2, 40, width)
    assert any(layer["state"] > 0 and layer["tokens"] == 0 for layer in layers) or (
        family == "falcon_h1"  # both in every layer
        and all(layer["state"] > 0 and layer["tokens"] == 40 for layer in layers)
    )
    # a state does not grow with the tokens; attention's cache does
    longer = memory.kv_cache_layers(config, 2, 4000, width)
    assert [layer["state"] for layer in longer] == [layer["state"] for layer in layers]


def test_a_hybrid_at_full_size_is_mostly_its_attention_layers():
    """Qwen3-Next-80B-A3B (transformers' default config): 36 Gated DeltaNet layers keep
    2 MiB each (32 heads of 128 x 128 fp32, and a 4-token convolution over 8,192
    channels in bf16), whatever the length; 12 attention layers 2 KV heads of 256."""
    config = AutoConfig.for_model("qwen3_next")
    states = memory.state_bytes(config, "bfloat16")
    linear = [s for s in states if s]
    kinds = [kind for kind, _ in memory.kv_layers(config)]
    assert kinds.count("linear_attention") == len(linear) == 36 and set(linear) == {
        32 * 128 * 128 * 4 + 8192 * 4 * 2
    }
    tokens = 131072
    attention = 12 * tokens * 2 * 2 * 256 * 2
    assert memory.kv_cache_bytes(config, 1, tokens) == attention + sum(linear)


def test_mla_caches_one_latent_and_one_rotary_key():
    config = AutoConfig.for_model("deepseek_v3")  # DeepSeek-V3's own dimensions
    assert memory.kv_widths(config) == (512, 64)
    naive = 2 * config.num_key_value_heads * config.head_dim
    per_token = memory.kv_cache_bytes(config, 1, 1, 2)
    assert per_token == 2 * 61 * (512 + 64) and naive > 10 * (512 + 64)


@pytest.mark.parametrize(
    ("family", "why"),
    [
        ("bamba", "could not be read off transformers' cache"),  # no attention layer
        ("minimax", "cache has 31 layers, not 32"),  # linear attention outside it
        ("rwkv", "recurrent state outside transformers' cache"),
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


def test_the_command_line_shows_hybrid_states(tmp_path, capsys):
    """Falcon-H1's config as transformers saves it (an infinite float written as
    {"__float__": "Infinity"}): read back, both caches in every layer, one line each."""
    import json

    config = AutoConfig.for_model("falcon_h1", **{**SMALL, **HYBRIDS["falcon_h1"]})
    config.save_pretrained(tmp_path)
    assert "Infinity" in (tmp_path / "config.json").read_text()
    base = [str(tmp_path), "--recipe", "inference", "--seq", "1000", "--dtype", "bf16"]
    assert cli.main([*base, "--json"]) == 0
    parts = json.loads(capsys.readouterr().out)["parts"]
    assert parts["kv_cache"] == memory.kv_cache_bytes(config, 1, 1000, 2)
    assert cli.main(base) == 0
    assert "6 hybrid (1,000 tokens and a 2.62 KiB state)" in capsys.readouterr().out
    (tmp_path / "config.json").write_text('{"model_type": "mamba2", "num_heads": 0.5}')
    assert cli.main([str(tmp_path)]) == 2
    said = capsys.readouterr().out.strip()
    assert "cannot read" in said and "mamba2" in said and "\n" not in said
