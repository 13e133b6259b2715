"""The peak of a job: llmbook.memory.step_phases / peak against torch's memory profiler.

A training step on CPU is profiled with llmbook.measure.tensor_timeline, which sees every
tensor storage as it is created and freed, so its peak is exact. The prediction must be
within 5% at shapes where each moment of the step is the largest: the loss's backward
(vocabulary-heavy), a layer's backward (hidden-heavy with LoRA or checkpointing), the
forward pass's last layer (LoRA in 16 bits without checkpointing), the tied
embedding's backward, the optimizer step (torch's foreach AdamW, the GPU default).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from test_activations import SHAPES as ACTIVATION_SHAPES
from transformers import AutoModelForCausalLM, LlamaConfig

from llmbook import memory
from llmbook.measure import peak_tensor_bytes, tensor_timeline

SHAPES = {
    "big-vocab": ACTIVATION_SHAPES["big-vocab"],  # the loss dominates
    "wide": dict(
        hidden_size=512,
        intermediate_size=1536,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=1024,
    ),
    "mid": dict(
        hidden_size=256,
        intermediate_size=768,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=4096,
    ),
    "tall": dict(  # a wide MLP and a small vocabulary: the layers dominate
        hidden_size=384,
        intermediate_size=2048,
        num_attention_heads=6,
        num_key_value_heads=2,
        vocab_size=512,
    ),
}


def measured_peak(config, recipe, optimizer, batch, seq, checkpointing, rank=8):
    """The peak of the second training step (the first creates the optimizer's state)."""
    torch.manual_seed(0)
    dtype = torch.float32 if recipe in ("full", "full-fp32") else torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).train()
    if recipe == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=rank, target_modules=list(memory.LORA_TARGETS))
        model = get_peft_model(model, lora).train()
    return profiled_peak(
        model, optimizer, batch, seq, checkpointing, autocast=recipe == "full"
    )


def profiled_peak(model, optimizer, batch, seq, checkpointing, autocast=False):
    """The peak of a model's second training step (the first creates the optimizer's
    state), in the loop step_phases assumes: `out` kept until the next forward returns.
    ``optimizer``: "adamw", "sgd", or a callable that makes one from the parameters."""
    if checkpointing:
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    params = [p for p in model.parameters() if p.requires_grad]
    if callable(optimizer):
        opt = optimizer(params)
    elif optimizer == "adamw":  # foreach: what torch picks on a GPU
        opt = torch.optim.AdamW(params, foreach=True)
    else:
        opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9, foreach=True)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq))
    held = {}

    def step():
        half = torch.autocast("cpu", torch.bfloat16) if autocast else None
        with half or contextlib.nullcontext():
            held["out"] = model(input_ids=ids, labels=ids)
        held["out"].loss.backward()
        opt.step()
        opt.zero_grad()

    step()
    return peak_tensor_bytes(step)


CASES = [  # shape, recipe, optimizer, layers, batch, seq, checkpointing, tied, moment
    ("big-vocab", "full", "adamw", 2, 2, 256, False, False, "loss backward"),
    ("big-vocab", "full-fp32", "adamw", 2, 2, 256, True, False, "loss backward"),
    ("mid", "full-bf16", "adamw", 4, 2, 256, False, False, "loss backward"),
    ("big-vocab", "lora", "adamw", 2, 2, 256, True, False, "loss backward"),
    ("wide", "full", "adamw", 2, 1, 64, False, False, "optimizer step"),
    ("mid", "full-bf16", "adamw", 2, 1, 64, True, False, "optimizer step"),
    ("wide", "full-fp32", "sgd", 2, 2, 256, True, False, "backward end"),
    ("mid", "full-fp32", "sgd", 4, 2, 256, True, False, "backward end"),
    ("mid", "full-fp32", "sgd", 8, 1, 256, True, False, "backward end"),
    ("mid", "lora", "adamw", 8, 2, 256, False, False, "loss backward"),
    ("wide", "lora", "adamw", 2, 2, 256, True, False, "backward start"),
    ("mid", "full-bf16", "sgd", 2, 1, 64, True, True, "embedding backward"),
    ("wide", "full", "sgd", 2, 1, 64, True, True, "embedding backward"),
]


@pytest.mark.parametrize(
    (
        "shape",
        "recipe",
        "optimizer",
        "layers",
        "batch",
        "seq",
        "ckpt",
        "tied",
        "moment",
    ),
    CASES,
)
def test_peak_within_5_percent_of_a_real_step(
    shape, recipe, optimizer, layers, batch, seq, ckpt, tied, moment
):
    config = LlamaConfig(
        num_hidden_layers=layers, tie_word_embeddings=tied, **SHAPES[shape]
    )
    measured = measured_peak(config, recipe, optimizer, batch, seq, ckpt)
    dtype = "float32" if recipe in ("full", "full-fp32") else "bfloat16"
    name, parts = memory.peak(
        config,
        recipe,
        dtype=dtype,
        batch=batch,
        context=seq,
        checkpointing=ckpt,
        optimizer=optimizer,
        lora_rank=8,
    )
    assert name == moment
    assert sum(parts.values()) == pytest.approx(measured, rel=0.05)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize(("batch", "seq"), [(1, 64), (4, 512)])
def test_prompt_pass_within_5_percent(shape, dtype, batch, seq):
    """Inference: weights, the KV cache and one layer's working set, as generate() runs
    the prompt (its first token)."""
    config = LlamaConfig(
        num_hidden_layers=2, max_position_embeddings=1024, **SHAPES[shape]
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    ids = torch.randint(0, config.vocab_size, (batch, seq))

    def prompt():
        with torch.no_grad():
            model.eval().generate(ids, max_new_tokens=1, do_sample=False)

    prompt()
    measured = peak_tensor_bytes(prompt)
    name, parts = memory.peak(config, dtype=dtype, batch=batch, context=seq)
    assert name == "prompt pass"
    assert sum(parts.values()) == pytest.approx(measured, rel=0.05)


def test_tensor_timeline_counts_by_hand():
    """Float32 tensors (4 bytes a value) created and freed in order: the level after each
    event, counting a tensor made before the call from the start because the call uses it."""
    kept = torch.zeros(100)

    def fn():
        a = torch.ones(100) + kept  # ones(100), then the sum; the ones are freed
        b = torch.ones(300)
        del a
        c = torch.ones(50)
        return b, c

    seconds, levels = tensor_timeline(fn)
    assert levels[:7] == [400, 800, 1200, 800, 2000, 1600, 1800]
    assert max(levels) == 2000 and seconds == sorted(seconds)


ADAPTER_CASES = [  # recipe, shape, dtype, batch, seq, checkpointing, moment
    ("qlora", "big-vocab", "bfloat16", 2, 256, True, "loss backward"),
    ("qlora", "wide", "bfloat16", 2, 256, True, "backward start"),
    # measured: the forward pass's last layer ahead of the backward's first by 1%
    ("qlora", "tall", "bfloat16", 2, 256, False, "layer forward"),
    ("qlora", "tall", "float32", 2, 256, True, "backward start"),
    ("qlora", "wide", "float32", 2, 256, False, "backward start"),
    ("lora", "tall", "bfloat16", 2, 256, False, "layer forward"),
    # the loss's backward within 1% of the forward's last layer and the previous
    # step's KV cache
    ("lora", "wide", "bfloat16", 1, 512, False, "layer forward"),
    ("lora", "tall", "float32", 2, 256, True, "backward start"),
]


@pytest.mark.parametrize(
    ("recipe", "shape", "dtype", "batch", "seq", "ckpt", "moment"), ADAPTER_CASES
)
def test_adapter_peak_within_5_percent(
    recipe, shape, dtype, batch, seq, ckpt, moment, tmp_path
):
    """LoRA and QLoRA (nf4 with double quantization), computing in bf16 or fp32, at
    shapes where each of their moments wins: the loss's backward, the backward pass's
    first layer (recomputed under checkpointing) and, for LoRA computing in 16 bits
    without checkpointing, the forward pass's last layer. The moment checked is the
    predicted one; the 5% bound holds the total."""
    from peft import LoraConfig, get_peft_model

    from llmbook.bench import load_kwargs

    config = LlamaConfig(num_hidden_layers=2, **SHAPES[shape])
    torch.manual_seed(0)
    compute = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_config(config, dtype=compute)
    if recipe == "qlora":
        model.save_pretrained(tmp_path)
        kwargs = load_kwargs("nf4-dq", compute_dtype=compute)
        model = AutoModelForCausalLM.from_pretrained(tmp_path, **kwargs)
    lora = LoraConfig(r=8, target_modules=list(memory.LORA_TARGETS))
    model = get_peft_model(model, lora).train()
    measured = profiled_peak(model, "adamw", batch, seq, ckpt)
    name, parts = memory.peak(
        config,
        recipe,
        dtype=dtype,
        double_quant=True,
        batch=batch,
        context=seq,
        checkpointing=ckpt,
        lora_rank=8,
    )
    assert name == moment
    assert sum(parts.values()) == pytest.approx(measured, rel=0.05)


class MasterWeightsAdamW:
    """16-bit weights trained through fp32 master copies, one tensor at a time: torch's
    fused AdamW on each master, its 16-bit gradient cast to fp32 just before, the master
    copied back into the weight."""

    def __init__(self, params):
        self.params = params
        self.masters = [p.detach().float() for p in params]
        self.optimizers = [torch.optim.AdamW([m], fused=True) for m in self.masters]

    @torch.no_grad()
    def step(self):
        for p, master, optimizer in zip(
            self.params, self.masters, self.optimizers, strict=True
        ):
            master.grad, p.grad = p.grad.float(), None
            optimizer.step()
            master.grad = None
            p.copy_(master)

    def zero_grad(self):
        """Nothing left to clear: step() already set every gradient to None."""


@pytest.mark.parametrize(
    ("shape", "layers", "batch", "seq", "ckpt", "tied", "moment"),
    [
        ("big-vocab", 2, 2, 256, True, False, "loss backward"),
        ("mid", 4, 2, 256, False, False, "loss backward"),
        ("wide", 2, 2, 256, True, False, "backward end"),
        ("mid", 2, 1, 64, True, True, "embedding backward"),
    ],
)
def test_master_weights_peak_within_5_percent(
    shape, layers, batch, seq, ckpt, tied, moment
):
    """full-master: bf16 weights and gradients, an fp32 master copy and fp32 AdamW
    states. Apex's and DeepSpeed's fused GPU kernels update each master tensor in place
    from its 16-bit gradient; the stand-in here runs torch's fused AdamW on one master
    tensor at a time, its gradient cast to fp32 just before (a transient of one tensor
    that the kernels do not have), then copies the master back into the bf16 weight."""
    config = LlamaConfig(
        num_hidden_layers=layers, tie_word_embeddings=tied, **SHAPES[shape]
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).train()
    params = [p for p in model.parameters() if p.requires_grad]
    measured = profiled_peak(model, MasterWeightsAdamW, batch, seq, ckpt)
    name, parts = memory.peak(
        config,
        "full-master",
        dtype="bfloat16",
        batch=batch,
        context=seq,
        checkpointing=ckpt,
    )
    assert name == moment
    assert parts["master_weights"] == 4 * sum(p.numel() for p in params)
    assert sum(parts.values()) == pytest.approx(measured, rel=0.05)


IMPL_CASES = [  # shape, recipe, layers, batch, seq, checkpointing
    ("wide", "full", 2, 1, 64, False),
    ("mid", "full-bf16", 2, 1, 64, True),
    ("tall", "full-fp32", 3, 1, 72, True),
]


def test_the_outputs_kv_cache_through_the_step():
    """transformers builds a KV cache in the forward pass even in training; the loop's
    ``out`` keeps it after the backward pass, so the optimizer step holds it: a shape
    with wide keys and values (every head its own) and a narrow MLP shows it."""
    config = LlamaConfig(
        hidden_size=256,
        intermediate_size=256,
        num_attention_heads=8,
        num_key_value_heads=8,
        num_hidden_layers=4,
        vocab_size=256,
    )
    peaks = {}
    for use_cache in (True, False):
        config.use_cache = use_cache
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).train()
        measured = profiled_peak(model, "adamw", 1, 64, False)
        name, parts = memory.peak(
            config, "full-fp32", dtype="float32", context=64, use_cache=use_cache
        )
        assert name == "optimizer step"
        assert sum(parts.values()) == pytest.approx(measured, rel=0.01)
        peaks[use_cache] = measured
    cache = memory.kv_cache_bytes(config, 1, 64, 4)
    assert peaks[True] - peaks[False] == pytest.approx(cache, rel=0.01)


@pytest.mark.parametrize("impl", memory.OPTIMIZER_IMPLS)
@pytest.mark.parametrize(
    ("shape", "recipe", "layers", "batch", "seq", "ckpt"), IMPL_CASES
)
def test_each_adamw_implementation_at_its_step(
    shape, recipe, layers, batch, seq, ckpt, impl
):
    """Shapes where foreach AdamW's step is the peak: with each implementation the step
    holds what optimizer_temporaries says, and the peak follows (foreach: the step;
    for-loop and fused: less, so another moment may win). torch's own default on this
    CPU, AdamW(params), is the for-loop."""
    config = LlamaConfig(num_hidden_layers=layers, **SHAPES[shape])
    options = dict(batch=batch, context=seq, checkpointing=ckpt, optimizer_impl=impl)
    dtype = "float32" if recipe in ("full", "full-fp32") else "bfloat16"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        config, dtype=getattr(torch, dtype)
    ).train()
    kwargs = {"foreach": dict(foreach=True), "for-loop": {}, "fused": dict(fused=True)}

    def adamw(params):
        return torch.optim.AdamW(params, **kwargs[impl])

    measured = profiled_peak(model, adamw, batch, seq, ckpt, autocast=recipe == "full")
    name, parts = memory.peak(config, recipe, dtype=dtype, **options)
    if impl == "foreach":
        assert name == "optimizer step"
    assert sum(parts.values()) == pytest.approx(measured, rel=0.01), name


@pytest.mark.parametrize(
    ("arch", "options", "recipe", "seq", "moment"),
    [
        ("qwen2", dict(tie_word_embeddings=True), "full", 64, "optimizer step"),
        ("mistral", dict(sliding_window=64), "full-bf16", 256, "loss backward"),
        ("qwen2", dict(use_sliding_window=True, sliding_window=64), "lora", 256, None),
    ],
)
def test_llama_like_peaks_within_5_percent(arch, options, recipe, seq, moment):
    """Mistral (a sliding window on every layer) and Qwen2 (biases on q, k, v; tied
    embeddings) through a whole step."""
    from transformers import MistralConfig, Qwen2Config

    kind = {"mistral": MistralConfig, "qwen2": Qwen2Config}[arch]
    config = kind(num_hidden_layers=2, **SHAPES["mid"], **options)
    measured = measured_peak(config, recipe, "adamw", 2, seq, False)
    dtype = "float32" if recipe in ("full", "full-fp32") else "bfloat16"
    name, parts = memory.peak(
        config, recipe, dtype=dtype, batch=2, context=seq, lora_rank=8
    )
    assert moment is None or name == moment
    assert sum(parts.values()) == pytest.approx(measured, rel=0.05)
