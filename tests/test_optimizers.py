"""Optimizer states: llmbook.memory's count against what real optimizers hold, to the byte.

Each case builds a small Llama, runs one step and counts every tensor of the optimizer's
state (each storage once: bitsandbytes shares its code tables between tensors)."""

from __future__ import annotations

import pytest
import torch

from llmbook.measure import tensor_bytes
from llmbook.memory import (
    LORA_TARGETS,
    OPTIMIZER_IMPLS,
    OPTIMIZERS,
    EstimateError,
    optimizer_state_bytes,
    optimizer_temporaries,
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


def adamw_of(impl: str, params):
    """torch's AdamW run as ``impl`` (llmbook.memory.OPTIMIZER_IMPLS)."""
    kwargs = {"foreach": dict(foreach=True), "for-loop": dict(foreach=False)}
    return torch.optim.AdamW(params, **kwargs.get(impl, dict(fused=True)))


@pytest.mark.parametrize("impl", OPTIMIZER_IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_step_temporaries_are_what_each_implementation_allocates(impl, dtype):
    """The second step of AdamW over tensors of unequal sizes: everything it holds
    beyond parameters, gradients and the two moments is its temporaries, plus the
    4-byte step counters it replaces (one per tensor)."""
    from llmbook.measure import peak_tensor_bytes

    torch.manual_seed(0)
    shapes = [(1000, 300), (500, 100), (2000,), (700, 700)]
    params = [torch.nn.Parameter(torch.randn(*s, dtype=dtype)) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer = adamw_of(impl, params)
    optimizer.step()  # creates the states
    held = 4 * tensor_bytes(*params)  # parameters, gradients, two moments
    extra = peak_tensor_bytes(optimizer.step) - held
    numels = [p.numel() for p in params]
    want = optimizer_temporaries(numels, "adamw", impl, params[0].element_size())
    assert want <= extra <= want + 64, (impl, extra, want)  # and the step counters
    if impl != "fused":
        assert want > 0


def test_torchs_cpu_default_is_the_for_loop():
    params = [torch.nn.Parameter(torch.randn(300, 300)) for _ in range(2)]
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer = torch.optim.AdamW(params)
    optimizer.step()
    from llmbook.measure import peak_tensor_bytes

    extra = peak_tensor_bytes(optimizer.step) - 4 * tensor_bytes(*params)
    want = optimizer_temporaries([p.numel() for p in params], "adamw", "for-loop")
    assert want <= extra <= want + 64  # and the step counters


def test_unknown_optimizer_impl_is_one_sentence():
    with pytest.raises(EstimateError, match="unknown optimizer_impl 'vectorised'"):
        optimizer_temporaries([10], "adamw", "vectorised")


def test_cli_counts_how_adamw_steps(tmp_path, capsys):
    """The command line's --optimizer-impl reaches the peak (the optimizer step, at a
    short context): foreach holds a copy of every trained tensor, the for-loop two of
    the largest and the one before it, fused none."""
    import json

    from transformers import LlamaConfig

    from llmbook import cli
    from llmbook.memory import PRESETS

    preset = PRESETS["Llama-3-8B"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", **preset}))
    found = {}
    for impl in OPTIMIZER_IMPLS:
        args = [str(path), "--recipe", "full-bf16", "--seq", "64", "--json"]
        assert cli.main([*args, "--optimizer-impl", impl]) == 0
        job = json.loads(capsys.readouterr().out)
        assert job["optimizer_impl"] == impl
        # fused: with no temporaries the step ties the embedding's backward
        if impl != "fused":
            assert job["peak_moment"] == "optimizer step"
        found[impl] = job["peak_parts"].get("optimizer_temporaries", 0)
    numels = trainable_numels(LlamaConfig(**preset), "full-bf16")
    want = {i: optimizer_temporaries(numels, "adamw", i, 2) for i in OPTIMIZER_IMPLS}
    assert found == want and want["foreach"] > want["for-loop"] > want["fused"] == 0
