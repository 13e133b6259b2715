"""Mixture-of-experts models: every expert in memory, a few per token.
llmbook.memory.active_parameters against the counts their makers publish, on
transformers' own classes built on the meta device from the published configs."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig, LlamaConfig

from llmbook import cli, memory

# name: (model type, what differs from transformers' defaults, published total and
# active parameters in billions, what the active count includes)
PUBLISHED = {
    "Mixtral-8x7B": ("mixtral", {}, 46.7, 12.9),
    "DeepSeek-V3": ("deepseek_v3", {}, 671, 37),
    "Llama-4-Scout": ("llama4_text", {}, 109, 17),
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_active_parameters_are_the_published_ones(name):
    kind, changes, total, active = PUBLISHED[name]
    config = AutoConfig.for_model(kind, **changes)
    n = memory.estimate(config, "bfloat16").n_parameters
    assert n / 1e9 == pytest.approx(total, rel=0.02)
    assert memory.active_parameters(config) / 1e9 == pytest.approx(active, rel=0.02)


def test_gpt_oss_counts_the_input_embedding_that_openai_leaves_out():
    """gpt-oss-20b: 3.6B active per OpenAI, the input embedding (a lookup) left out."""
    config = AutoConfig.for_model("gpt_oss", num_hidden_layers=24, num_local_experts=32)
    embedding = config.vocab_size * config.hidden_size
    active = memory.active_parameters(config)
    assert (active - embedding) / 1e9 == pytest.approx(3.61, rel=0.01)


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
