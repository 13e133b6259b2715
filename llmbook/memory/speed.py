"""How fast a model can run at best: a roofline. A forward pass reads bytes from memory
and does arithmetic; it cannot take less than the larger of ``bytes / bandwidth`` and
``FLOPs / peak``. Which one binds depends on the pass's arithmetic intensity (FLOPs per
byte) against the device's ridge point (``peak / bandwidth``): each token in flight does
two FLOPs per weight it multiplies, so a pass over few tokens (a decoding step, a short
prompt) is bounded by the bytes, one over many tokens by the arithmetic. These are
bounds, not predictions: kernel launches, Python and framework overhead, dequantization
and imperfect kernels only add time, and the book measures how much beside them.

Counted: the matrices' multiply-adds (two FLOPs each) for the weights a token uses
(:func:`matmul_parameters`; the input embedding is a lookup), the attention's two
products over the keys each new token sees, and the output layer for the tokens whose
logits are computed (the last prompt token, then every new one, as ``generate`` does).
Bytes: the weights as stored (:func:`~llmbook.memory.estimate`) but the input
embedding, of which a pass reads only its tokens' rows; for a mixture of experts the
experts a pass is expected to touch with uniform routing (an expectation: skewed routing
touches fewer); and the KV cache a decoding step reads. Not counted, as it only adds
time: activations between layers, and what quantized kernels do beyond reading their
codes (bitsandbytes 0.50 multiplies 4-bit weights with fused kernels for few tokens and
dequantizes to a 16-bit copy only for many, often in cache)."""

from __future__ import annotations

from dataclasses import dataclass

from .gpus import GPU_SPECS
from .kv_cache import kv_cache_bytes, kv_layers
from .shapes import _head_dim
from .weights import EstimateError, estimate, expert_bytes


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


#: What each way of loading multiplies in, as a key of a device's ``peak``: bitsandbytes'
#: int8 layers multiply int8 by int8 (LLM.int8(); outlier columns in fp16); its 4-bit
#: layers, gpt-oss's MXFP4 experts and weight-only wrappers multiply in bf16. A device
#: without that key is bounded by its fastest peak (:func:`compute_for`).
COMPUTE = {
    "float32": "fp32",
    "float16": "fp16",
    "bfloat16": "bf16",
    "int8": "int8",
    "nf4": "bf16",
    "fp4": "bf16",
    "mxfp4": "bf16",
}


def compute_for(device: Device, dtype: str, quantization: str | None = None) -> str:
    """The ``peak`` key a job computing in ``dtype`` (or ``quantization``'s kernels)
    is bounded by on ``device``: :data:`COMPUTE`'s, or, for a type the device's sheet
    does not list or a quantization not in :data:`COMPUTE`, its fastest (a time bound
    may only err low)."""
    key = COMPUTE.get(quantization or str(dtype).replace("torch.", ""))
    if key in device.peak:
        return key
    return max(device.peak, key=device.peak.get)


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
            share = min(chosen, p.shape[0]) / p.shape[0] if experts else 1
            layers += round(p.numel() * share)
    return layers, head


def _chunked_seen(past: int, tokens: int, chunk: int) -> int:
    """Keys new tokens ``past .. past + tokens - 1`` see in chunked attention: token
    ``p`` sees ``p mod chunk + 1``."""

    def upto(n: int) -> int:  # sum of (p mod chunk + 1) for p < n
        q, r = divmod(n, chunk)
        return q * chunk * (chunk + 1) // 2 + r * (r + 1) // 2

    return upto(past + tokens) - upto(past)


def attention_flops(config, batch: int, tokens: int, past: int) -> int:
    """FLOPs of attention over the cache: four per attended key, head and head
    dimension (the scores, then the weighted values). Causal: new token ``i`` sees
    ``past + i + 1`` keys in a full-attention layer, at most its window in a sliding
    one, those of its own chunk in a chunked one; layers without attention (recurrent,
    convolution) add none here."""
    heads, dim = config.num_attention_heads, _head_dim(config)
    total = 0
    for kind, window in kv_layers(config):
        first = past + 1  # keys the first new token sees
        if kind == "chunked_attention" and window:
            seen = _chunked_seen(past, tokens, window)
        elif kind == "sliding_attention" and window and first + tokens - 1 > window:
            n = max(0, min(tokens, window - first + 1))  # tokens under the window
            seen = n * first + n * (n - 1) // 2 + (tokens - n) * window
        elif kind in ("full_attention", "sliding_attention", "chunked_attention"):
            seen = tokens * first + tokens * (tokens - 1) // 2
        else:
            continue
        total += 4 * batch * heads * dim * seen
    return total


def forward_flops(
    config, batch: int, tokens: int, past: int, logits: int, params=None
) -> int:
    """FLOPs of one forward pass: ``batch`` sequences of ``tokens`` new tokens each,
    after ``past`` cached ones, computing logits for ``logits`` tokens of each: two per
    multiply-add in the matrices (``params``: :func:`matmul_parameters`, computed if not
    given), and :func:`attention_flops`."""
    layers, head = params or matmul_parameters(config)
    flops = 2 * batch * (tokens * layers + logits * head)
    return flops + attention_flops(config, batch, tokens, past)


@dataclass(frozen=True)
class StoredWeights:
    """What a pass reads of the weights, from :func:`estimate` once: the stored bytes
    but the input embedding's (``total``; a lookup reads ``row`` bytes a token), and
    the routed ``experts``' bytes with their ``chosen`` of ``experts_count``."""

    total: int
    row: int
    experts: int
    chosen: int
    experts_count: int

    @classmethod
    def of(
        cls, config, dtype=None, quantization=None, double_quant=False
    ) -> StoredWeights:
        est = estimate(config, dtype, quantization, double_quant)
        tied = getattr(config, "tie_word_embeddings", False)
        lookup = [t for t in est.tensors if t.group == "embeddings"]
        skipped = 0 if tied else sum(t.nbytes + t.constants_bytes for t in lookup)
        row = sum(t.nbytes for t in lookup) // config.vocab_size
        experts = expert_bytes(config, dtype, quantization, double_quant)["experts"]
        k = getattr(config, "num_experts_per_tok", None)
        k = k or getattr(config, "experts_per_token", None) or 0
        e = getattr(config, "num_local_experts", None)
        e = e or getattr(config, "num_experts", None) or 0
        return cls(est.total_bytes - skipped, row, experts, k, e)

    def read(self, tokens: int) -> int:
        """Bytes a pass over ``tokens`` tokens reads: the weights once, their
        embedding rows, and, of a mixture of experts' routed experts, the share
        ``1 - (1 - k/E)^tokens`` of each layer's that uniform routing is expected to
        touch."""
        total = self.total + tokens * self.row
        if self.experts:
            touched = 1 - (1 - self.chosen / self.experts_count) ** tokens
            total += round(self.experts * (touched - 1))
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
    kv_quant: str | None = None,
    double_quant: bool = False,
) -> dict:
    """Lower bounds on the prompt pass's time (``ttft_s``) and on a decoding step's
    (``step_s``) at ``context`` tokens (default: the prompt's), on ``device`` computing
    in ``compute`` (a key of its ``peak``; :func:`compute_for` picks it), and the tokens
    per second a step's bound allows (``decode_tok_s``, for the batch). Each with what
    bounds it (``"memory"`` or ``"compute"``) and the FLOPs and bytes behind it; the
    device's ``ridge`` (FLOPs per byte where the two bounds meet) and
    ``critical_batch``: the smallest power-of-two batch at which a decoding step at
    this context is bounded by arithmetic (None: never, the cache's bytes grow as fast).
    The cache is read as decoding keeps it: sliding layers their window; ``kv_bytes``
    a value, or ``kv_quant`` (:func:`kv_cache_bytes`)."""
    if compute not in device.peak:
        raise EstimateError(
            f"{device.name} has no {compute} peak; choose one of {', '.join(device.peak)}"
        )
    if min(batch, prompt) < 1:
        raise EstimateError("batch and prompt must be at least 1")
    context = context or prompt
    peak, bw = device.peak[compute], device.bandwidth
    weights = StoredWeights.of(config, dtype, quantization, double_quant)
    params = matmul_parameters(config)
    p_flops = forward_flops(config, batch, prompt, 0, 1, params)
    p_bytes = weights.read(batch * prompt)

    def step(b: int) -> tuple[int, int]:
        cache = kv_cache_bytes(config, b, context, kv_bytes, "window", kv_quant)
        return forward_flops(config, b, 1, context, 1, params), weights.read(b) + cache

    s_flops, s_bytes = step(batch)
    critical = None
    for b in (2**i for i in range(20)):
        flops, nbytes = step(b)
        if flops / peak >= nbytes / bw:
            critical = b
            break
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
        ridge=peak / bw,
    )
