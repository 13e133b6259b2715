"""Mixture-of-experts models: every expert in memory, a few per token.
llmbook.memory.active_parameters against the counts their makers publish, on
transformers' own classes built on the meta device from the published configs."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig, LlamaConfig

from llmbook import cli, memory

# preset: the total and active parameters its makers publish, in billions (None where
# they publish only a rounded "A3B"), and whether their active count leaves out the
# input embedding (a lookup), as OpenAI's does
PUBLISHED = {
    "gpt-oss-20b": (20.9, 3.61, True),
    "gpt-oss-120b": (116.8, 5.13, True),
    "Mixtral-8x7B": (46.7, 12.9, False),
    "Qwen3-30B-A3B": (30.5, 3.3, False),
    "DeepSeek-V3": (671, 37, False),
    "Llama-4-Scout": (109, 17, False),
    "Qwen3-Next-80B-A3B": (80, None, False),
    "Jamba-v0.1": (52, 12, False),
}


def test_every_preset_is_checked():
    assert set(PUBLISHED) == set(memory.MODEL_PRESETS)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_presets_have_the_published_parameter_counts(name):
    total, active, without_embedding = PUBLISHED[name]
    config = memory.preset_config(name)
    assert config.model_type == memory.MODEL_PRESETS[name][0]
    n = memory.estimate(config, "bfloat16").n_parameters
    assert n / 1e9 == pytest.approx(total, rel=0.02)
    counted = memory.active_parameters(config)
    if without_embedding:
        counted -= config.vocab_size * config.hidden_size
    if active is not None:
        assert counted / 1e9 == pytest.approx(active, rel=0.02)
    assert counted < n


def test_a_preset_by_name_on_the_command_line(capsys):
    """gpt-oss-20b as published: bf16, experts in MXFP4, about 13 GiB."""
    assert cli.main(["gpt-oss-20b", "--quantization", "mxfp4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    config = memory.preset_config("gpt-oss-20b")
    assert out["total_bytes"] == memory.estimate(config, None, "mxfp4").total_bytes
    assert 12 < out["total_bytes"] / 2**30 < 14
    assert cli.main(["gpt-oss-21b"]) == 2
    said = capsys.readouterr().out
    assert "gpt-oss-21b" in said and "\n" not in said.strip()


def test_a_dense_model_is_active_whole_and_the_command_line_says_so(tmp_path, capsys):
    dense = LlamaConfig(**memory.PRESETS["Llama-3-8B"])
    assert memory.active_parameters(dense) == memory.estimate(dense).n_parameters
    config = AutoConfig.for_model("mixtral")
    config.save_pretrained(tmp_path)
    assert cli.main([str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["active_parameters"] == memory.active_parameters(config)
    assert cli.main([str(tmp_path)]) == 0
    assert "active per token" in capsys.readouterr().out


@pytest.mark.parametrize("precision", ["int8", "nf4"])
def test_bitsandbytes_leaves_the_experts_in_16_bits(tmp_path, precision):
    """transformers 5 stores a layer's experts as stacked parameters, not nn.Linear
    modules, and bitsandbytes replaces only nn.Linear: loaded in int8 or nf4, a Mixtral's
    attention is quantized and its experts stay bf16. The estimate counts it so, to the
    byte of get_memory_footprint()."""
    import warnings

    import torch
    from transformers import AutoModelForCausalLM

    from llmbook.bench import load_kwargs

    small = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2)
    config = AutoConfig.for_model(
        "mixtral",
        **small,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=1000,
        num_local_experts=4,
    )
    AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(
        tmp_path
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(
            tmp_path, device_map="cpu", **load_kwargs(precision, "bfloat16")
        )
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    experts = [name for name in dtypes if ".experts." in name]
    assert experts and all(dtypes[name] == torch.bfloat16 for name in experts)
    assert dtypes["model.layers.0.self_attn.q_proj.weight"] in (torch.int8, torch.uint8)
    est = memory.estimate(config, torch.bfloat16, precision)
    assert est.footprint_bytes == model.get_memory_footprint()


def test_offloading_the_experts_keeps_one_layers_on_the_gpu(capsys):
    """Mixtral-8x7B in bf16: its routed experts are 32 layers x 8 experts x 3 matrices of
    4096 x 14336; a token uses 2 of 8. Offloaded, the GPU keeps the rest and one layer's
    experts, and each forward pass copies them all."""
    config = memory.preset_config("Mixtral-8x7B")
    one_layer = 8 * 3 * 4096 * 14336 * 2
    offload = memory.expert_bytes(config, "bfloat16")
    assert offload == {
        "experts": 32 * one_layer,
        "largest_layer": one_layer,
        "active": 32 * one_layer // 4,
    }
    dense = memory.preset_config("Llama-3-8B")
    assert memory.expert_bytes(dense) == {"experts": 0, "largest_layer": 0, "active": 0}
    base = ["Mixtral-8x7B", "--recipe", "inference", "--seq", "4096", "--json"]
    assert cli.main(base) == 0
    whole = json.loads(capsys.readouterr().out)
    assert cli.main([*base, "--offload-experts"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["offloaded_experts"] == offload
    assert out["peak_bytes"] == whole["peak_bytes"] - 31 * one_layer
    assert cli.main(base[:-1] + ["--offload-experts"]) == 0
    text = capsys.readouterr().out
    assert "copies all 84 GiB to the GPU" in text and "2.86 s on PCIe 4.0 x16" in text
    assert cli.main(["Llama-3-8B", "--recipe", "inference", "--offload-experts"]) == 2
    assert "no routed experts" in capsys.readouterr().out
