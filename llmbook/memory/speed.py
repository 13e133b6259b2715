"""How fast a model can run at best: a roofline. A forward pass reads bytes from memory
and does arithmetic; it cannot take less than the larger of ``bytes / bandwidth`` and
``FLOPs / peak``. The prompt pass does a lot of arithmetic per byte of weights read (every
prompt token uses each weight once) and is bounded by the arithmetic; a decoding step
reads every weight, and each sequence's KV cache, for one token per sequence, and is
bounded by the bytes until the batch is large. These are bounds, not predictions: kernel
launches, Python and framework overhead, dequantization and imperfect kernels only add
time, and how much is what the book measures beside them.

Counted: the linear layers' multiply-adds (two FLOPs each) for the parameters a token
uses (:func:`matmul_parameters`; the input embedding is a lookup), the
attention's two products over the cached tokens, and the output layer for the tokens
whose logits are computed (the last prompt token, then every new one, as ``generate``
does). Bytes: the weights as stored (:func:`~llmbook.memory.estimate`; for a mixture of
experts the experts a step touches, routing taken as uniform), the KV cache each step
reads, and what a quantized layer's kernel adds (:data:`DEQUANT_EXTRA_BYTES`). Not
counted: activations between layers (small beside the weights at these batches)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .gpus import GPU_SPECS
from .kv_cache import kv_cache_bytes, kv_layers
from .shapes import _head_dim
from .weights import EstimateError, estimate, expert_bytes

#: What a quantized layer's kernel reads and writes beyond its stored weights, in bytes
#: per weight, by how many tokens the layer multiplies at once (bitsandbytes 0.50,
#: ``bitsandbytes/autograd/_functions.py``, ``matmul_4bit``): one token goes through
#: ``gemv_4bit``, which reads the 4-bit codes where they are (nothing added); more tokens
#: dequantize the whole weight to the compute dtype first, writing 2 bytes a weight and
#: reading them back. LLM.int8() (``MatMul8bitLt``) multiplies the int8 weight in place;
#: what it adds is per token (quantizing the activations, the outlier columns in fp16),
#: not per weight.
DEQUANT_EXTRA_BYTES = {"nf4": {1: 0, "more": 4}, "fp4": {1: 0, "more": 4}}


@dataclass(frozen=True)
class Device:
    """What bounds a device: memory ``bandwidth`` (bytes/s) and dense ``peak``
    throughput (FLOP/s) by compute dtype, with where the figures come from."""

    name: str
    bandwidth: float
    peak: dict[str, float]
    source: str = ""


def gpu_device(gpu: str) -> Device:
    """A GPU of :data:`~llmbook.memory.GPU_SPECS` as a :class:`Device`."""
    if gpu not in GPU_SPECS:
        raise EstimateError(
            f"unknown GPU {gpu!r}; choose one of {', '.join(GPU_SPECS)}"
        )
    spec = GPU_SPECS[gpu]
    return Device(gpu, spec["bandwidth"], dict(spec["peak"]), spec["source"])


#: What each way of loading computes its matrix products in, as a key of a device's
#: ``peak``: bitsandbytes' int8 layers multiply int8 by int8 (LLM.int8(), with an fp16
#: part for outliers); its 4-bit layers dequantize to their compute dtype (bf16 here).
COMPUTE = {
    "float32": "fp32",
    "float16": "fp16",
    "bfloat16": "bf16",
    "int8": "int8",
    "nf4": "bf16",
    "fp4": "bf16",
}


def matmul_parameters(config) -> tuple[int, int]:
    """(weights a token multiplies in the decoder layers, those of the output layer):
    every matrix of the model (the transformers class on the meta device) but the input
    embedding, a lookup; of a mixture of experts' stacked experts, the ``k`` of ``E`` a
    token is sent to (as :func:`active_parameters` counts them). Norms and biases add
    no multiply-adds."""
    import torch

    from .weights import empty_model

    model = empty_model(config, torch.bfloat16)
    embedding = model.get_input_embeddings().weight
    head = config.vocab_size * config.hidden_size
    chosen = getattr(config, "num_experts_per_tok", None)
    chosen = chosen or getattr(config, "experts_per_token", None)
    layers = 0
    for module in model.modules():
        experts = chosen and type(module).__name__.endswith("Experts")
        for p in module.parameters(recurse=False):
            if p.dim() < 2 or p is embedding or module is model.get_output_embeddings():
                continue
            layers += (
                p.numel() * min(chosen, p.shape[0]) // p.shape[0]
                if experts
                else p.numel()
            )
    return layers, head


def attention_flops(config, batch: int, tokens: int, past: int) -> int:
    """FLOPs of attention over the cache: four per attended key, head and head
    dimension (the scores, then the weighted values). Causal: new token ``i`` sees
    ``past + i + 1`` keys in a full-attention layer, at most its window in a sliding or
    chunked one; layers without attention (recurrent, convolution) add none here."""
    heads, dim = config.num_attention_heads, _head_dim(config)
    total = 0
    for kind, window in kv_layers(config):
        if kind not in ("full_attention", "sliding_attention", "chunked_attention"):
            continue
        first = past + 1  # keys the first new token sees
        if window and kind != "full_attention" and first + tokens - 1 > window:
            n = max(0, min(tokens, window - first + 1))  # tokens under the window
            seen = n * first + n * (n - 1) // 2 + (tokens - n) * window
        else:
            seen = tokens * first + tokens * (tokens - 1) // 2
        total += 4 * batch * heads * dim * seen
    return total


def forward_flops(config, batch: int, tokens: int, past: int, logits: int) -> int:
    """FLOPs of one forward pass: ``batch`` sequences of ``tokens`` new tokens each,
    after ``past`` cached ones, computing logits for ``logits`` tokens of each: two per
    multiply-add in the linear layers, and :func:`attention_flops`."""
    layers, head = matmul_parameters(config)
    flops = 2 * batch * (tokens * layers + logits * head)
    return flops + attention_flops(config, batch, tokens, past)


@dataclass(frozen=True)
class StoredWeights:
    """What a pass reads of the weights, from :func:`estimate` once: ``total`` stored
    bytes, the routed ``experts``' bytes and their ``chosen`` of ``experts_count`` per
    token, and the ``quantized`` weights' count (for the dequantizing kernels)."""

    total: int
    experts: int
    chosen: int
    experts_count: int
    quantized: int
    quantization: str | None

    @classmethod
    def of(cls, config, dtype=None, quantization: str | None = None) -> StoredWeights:
        est = estimate(config, dtype, quantization)
        experts = expert_bytes(config, dtype, quantization)["experts"]
        k = getattr(config, "num_experts_per_tok", None)
        k = k or getattr(config, "experts_per_token", None) or 0
        e = getattr(config, "num_local_experts", None)
        e = e or getattr(config, "num_experts", None) or 0
        quantized = sum(math.prod(t.shape) for t in est.tensors if t.quantized)
        return cls(est.total_bytes, experts, k, e, quantized, quantization)

    def read(self, tokens: int) -> int:
        """Bytes a pass over ``tokens`` tokens at a time reads: everything for a dense
        model; for a mixture of experts the rest plus the experts the tokens touch,
        ``E (1 - (1 - k/E)^tokens)`` of each layer's ``E`` on average with uniform
        routing; plus what dequantizing kernels add (:data:`DEQUANT_EXTRA_BYTES`)."""
        total = self.total
        if self.experts:
            touched = 1 - (1 - self.chosen / self.experts_count) ** tokens
            total += round(self.experts * (touched - 1))
        extra = DEQUANT_EXTRA_BYTES.get(self.quantization)
        if extra:
            total += self.quantized * extra[1 if tokens == 1 else "more"]
        return total


def roofline(
    config,
    device: Device,
    compute: str,
    batch: int,
    prompt: int,
    context: int | None = None,
    dtype=None,
    quantization: str | None = None,
    kv_bytes: int = 2,
) -> dict:
    """Lower bounds on the prompt pass's time (``ttft_s``) and on a decoding step's
    (``step_s``) at ``context`` tokens (default: the prompt's), on ``device`` computing
    in ``compute`` (a key of its ``peak``), and the tokens per second a step's bound
    allows (``decode_tok_s``, for the batch). Each with what bounds it (``"memory"`` or
    ``"compute"``), the FLOPs and bytes behind it, and ``critical_batch``: the smallest
    power-of-two batch from which decoding at this context is bounded by arithmetic."""
    if compute not in device.peak:
        raise EstimateError(
            f"{device.name} has no {compute} peak; choose one of {', '.join(device.peak)}"
        )
    if min(batch, prompt) < 1:
        raise EstimateError("batch and prompt must be at least 1")
    context = context or prompt
    peak, bw = device.peak[compute], device.bandwidth
    weights = StoredWeights.of(config, dtype, quantization)
    p_flops = forward_flops(config, batch, prompt, 0, 1)
    p_bytes = weights.read(batch * prompt)

    def step(b: int) -> tuple[int, int]:
        nbytes = weights.read(b) + kv_cache_bytes(config, b, context, kv_bytes)
        return forward_flops(config, b, 1, context, 1), nbytes

    s_flops, s_bytes = step(batch)
    critical = next(
        (b for b in (2**i for i in range(20)) if step(b)[0] / peak >= step(b)[1] / bw),
        None,
    )
    ttft = max(p_flops / peak, p_bytes / bw)
    step_s = max(s_flops / peak, s_bytes / bw)
    return dict(
        ttft_s=ttft,
        ttft_bound="compute" if p_flops / peak >= p_bytes / bw else "memory",
        prompt_flops=p_flops,
        prompt_bytes=p_bytes,
        step_s=step_s,
        step_bound="compute" if s_flops / peak >= s_bytes / bw else "memory",
        step_flops=s_flops,
        step_bytes=s_bytes,
        decode_tok_s=batch / step_s,
        critical_batch=critical,
    )
