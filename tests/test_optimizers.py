"""Optimizer states: llmbook.memory's count against what real optimizers hold, to the byte.

Each case builds a small Llama, runs one step and counts every tensor of the optimizer's
state (each storage once: bitsandbytes shares its code tables between tensors)."""

from __future__ import annotations

import pytest
import torch

from llmbook.measure import tensor_bytes
from llmbook.memory import (
    LORA_TARGETS,
    OPTIMIZERS,
    EstimateError,
    optimizer_state_bytes,
    trainable_numels,
)
from llmbook.models import build, tiny_config

bnb = pytest.importorskip("bitsandbytes")
# hidden 512 and rank 8 put LoRA's A matrices exactly at bitsandbytes' 4096-element
# threshold for 8-bit states; the norms and small B matrices stay 32-bit
CONFIG = dict(
    hidden_size=512, intermediate_size=1024, num_hidden_layers=2, vocab_size=1024
)


def make_optimizer(name: str, params):
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3)
    if name == "adamw8bit":
        return bnb.optim.AdamW8bit(params, lr=1e-3)
    return torch.optim.SGD(params, lr=1e-2, momentum=0.9)


def state_bytes_after_one_step(model, name: str) -> int:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(name, params)
    ids = torch.randint(0, CONFIG["vocab_size"], (2, 16))
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    states = [
        t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)
    ]
    return tensor_bytes(*states)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_full_fine_tuning_states_to_the_byte(name, dtype):
    config = tiny_config("llama", **CONFIG)
    model = build(config, dtype=dtype).train()
    width = torch.tensor([], dtype=dtype).element_size()
    predicted = optimizer_state_bytes(trainable_numels(config, "full"), name, width)
    assert state_bytes_after_one_step(model, name) == predicted


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_lora_adapter_states_to_the_byte(name):
    from peft import LoraConfig, get_peft_model

    config = tiny_config("llama", **CONFIG)
    base = build(config, dtype=torch.bfloat16)
    lora = LoraConfig(r=8, target_modules=list(LORA_TARGETS), lora_dropout=0.0)
    model = get_peft_model(base, lora).train()
    predicted = optimizer_state_bytes(trainable_numels(config, "lora", 8), name, 4)
    assert state_bytes_after_one_step(model, name) == predicted


def test_eight_bit_states_are_a_quarter_of_adamw_for_big_tensors():
    n = 4096 * 4096
    ratio = optimizer_state_bytes([n], "adamw8bit") / optimizer_state_bytes(
        [n], "adamw"
    )
    assert 0.25 < ratio < 0.26  # 2 bytes + 8/256 of absmax against 8 bytes per element


def test_unknown_optimizer_is_one_sentence():
    with pytest.raises(EstimateError, match="unknown optimizer 'lion'"):
        optimizer_state_bytes([10], "lion")


def test_cli_counts_the_chosen_optimizer(tmp_path):
    import json
    import subprocess
    import sys

    from transformers import LlamaConfig

    from llmbook.memory import PRESETS, breakdown

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", **PRESETS["Llama-2-7B"]}))
    cmd = [sys.executable, "-m", "llmbook", "memory", str(path), "--recipe", "full"]
    out = subprocess.run(
        [*cmd, "--optimizer", "adamw8bit", "--json"], capture_output=True, text=True
    )
    parts = json.loads(out.stdout)["parts"]
    expected = breakdown(
        LlamaConfig(**PRESETS["Llama-2-7B"]), "full", optimizer="adamw8bit"
    )
    assert parts["optimizer"] == expected["optimizer"]
    assert (
        parts["optimizer"]
        < breakdown(LlamaConfig(**PRESETS["Llama-2-7B"]), "full")["optimizer"] / 3
    )
