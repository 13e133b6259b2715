"""Serving: what an engine leaves of a GPU for the KV cache, how it cuts that into
blocks, and how many requests the blocks hold at once. The budget follows vLLM's V1
engine as its source computes it (late-2025 main; the files are named where each constant
is defined); the blocks follow its KV-cache manager. A paged cache gives each request
whole blocks of ``block_tokens`` tokens, only as its tokens arrive, and requests that
start with the same tokens share the full blocks of that prefix (prefix caching)."""

from __future__ import annotations

from dataclasses import dataclass

from ..units import GIB, MIB
from .activations import prefill_activation_bytes
from .gpus import GPUS
from .kv_cache import kv_layers, kv_widths
from .weights import EstimateError, estimate

#: vLLM's defaults (``vllm/config/cache.py``: ``gpu_memory_utilization`` 0.9; the block
#: size is set to 16 on CUDA in ``vllm/platforms/cuda.py``; newer releases raise the
#: utilization to 0.92).
VLLM_UTILIZATION = 0.9
VLLM_BLOCK_TOKENS = 16

#: vLLM's default token budget of one step, which is also how many tokens its profiling
#: run pushes through the model (``vllm/engine/arg_utils.py``, ``_set_default_args``):
#: for ``vllm serve`` 2048 on GPUs under 70 GiB and on A100s, 8192 on larger ones; for
#: the offline ``LLM`` class 8192 and 16384. The most requests a step holds
#: (``max_num_seqs``) is 256 and 1024 likewise.
VLLM_STEP_TOKENS = {"serve": (2048, 8192), "LLM": (8192, 16384)}
VLLM_MAX_SEQS = (256, 1024)

#: What vLLM calls ``total_gpu_memory`` (``torch.cuda.mem_get_info()``'s total) is less
#: than nvidia-smi's total: by 438 MiB on an H100 80GB (79.22 GiB in vLLM pull request
#: 10511's log against 81559 MiB) and 615 MiB on this book's H200. 512 MiB is taken off.
TORCH_TOTAL_GAP_BYTES = 512 * MIB

#: Memory outside PyTorch's allocator that appears while vLLM profiles (cuBLAS and
#: attention workspaces; NCCL's buffers under tensor parallelism): 1.79 GiB for
#: Llama-3-8B on one H100 in pull request 10511's log (0.20 GiB in pull request 14447's).
#: The larger reading is the default. It does not make the estimate safe: an early V1
#: log on an L40S (pull request 17122) left 3.7 GiB less cache than this budget does.
VLLM_NON_TORCH_BYTES = round(1.79 * GIB)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _big(gpu: str) -> bool:
    """vLLM's larger defaults: a GPU of 70 GiB or more that is not an A100."""
    return GPUS[gpu][0] * MIB >= 70 * GIB and not gpu.startswith("A100")


def vllm_step_tokens(gpu: str, entry: str = "serve") -> int:
    """vLLM's default ``max_num_batched_tokens`` on ``gpu`` for ``entry`` ("serve" or
    "LLM", :data:`VLLM_STEP_TOKENS`)."""
    return VLLM_STEP_TOKENS[entry][_big(gpu)]


def vllm_max_seqs(gpu: str) -> int:
    """vLLM's default ``max_num_seqs`` on ``gpu`` (:data:`VLLM_MAX_SEQS`)."""
    return VLLM_MAX_SEQS[_big(gpu)]


def cache_groups(config) -> list[tuple[str, int | None, int]]:
    """The layers that cache keys and values, grouped as vLLM's hybrid allocator groups
    them: ``(type, window, layers)`` per group, every group with the same number of
    layers. One kind of layer makes one group; 12 sliding and 12 full layers make two
    groups of 12; 20 sliding and 10 full make three of 10. Layer mixes that do not divide
    evenly (vLLM pads them), chunked attention and fixed-size states are refused in one
    line."""
    kinds: dict[tuple[str, int | None], int] = {}
    for kind, window in kv_layers(config):
        if kind == "dummy":
            continue
        if kind not in ("full_attention", "sliding_attention"):
            name = getattr(config, "model_type", "this model")
            raise EstimateError(
                f"{name}'s {kind} layers: vLLM's budget for them is not modelled "
                "(full and sliding-window attention are)"
            )
        kinds[kind, window] = kinds.get((kind, window), 0) + 1
    size = min(kinds.values())
    if any(n % size for n in kinds.values()):
        name = getattr(config, "model_type", "this model")
        raise EstimateError(
            f"{name}'s layer mix {sorted(kinds.values())} does not split into equal "
            "groups (vLLM pads them): not modelled"
        )
    return [(k, w, size) for (k, w), n in kinds.items() for _ in range(n // size)]


def page_bytes(config, block_tokens: int = VLLM_BLOCK_TOKENS, kv_bytes: int = 2) -> int:
    """Bytes of one layer's block: ``block_tokens`` tokens of keys and values at
    ``kv_bytes`` a value (``2 x block x KV heads x head_dim x bytes``; for multi-head
    latent attention one latent and one rotary key per token, no factor 2), as vLLM's
    ``AttentionSpec.page_size_bytes`` (``vllm/v1/kv_cache_interface.py``)."""
    keys, values = kv_widths(config)
    return block_tokens * (keys + values) * kv_bytes


def request_blocks(
    config,
    tokens: int,
    block_tokens: int = VLLM_BLOCK_TOKENS,
    step_tokens: int = 2048,
) -> int:
    """Blocks (one per group of layers) that one request of ``tokens`` tokens holds at
    most: ``ceil(tokens / block)`` in a full-attention group; in a sliding-window group
    the window less one plus one step's tokens, and one block more, as vLLM's
    ``max_memory_usage_bytes`` charges them (its log's "Maximum concurrency")."""
    total = 0
    for kind, window, _ in cache_groups(config):
        if kind == "sliding_attention":
            kept = min(window - 1 + step_tokens, tokens)
            total += _cdiv(kept, block_tokens) + 1
        else:
            total += _cdiv(tokens, block_tokens)
    return total


@dataclass(frozen=True)
class ServingBudget:
    """How vLLM splits one GPU: bytes of each part, and the KV cache in blocks."""

    gpu: str
    total: int  #: torch's view of the GPU's memory (vLLM's ``total_gpu_memory``)
    requested: int  #: ``total x gpu_memory_utilization``
    weights: int
    activations: int  #: the profiling run's peak, modelled (one step's tokens)
    non_torch: int
    cuda_graphs: int  #: subtracted only where the engine estimates them first
    kv_cache: int  #: what is left, cut into blocks
    blocks: int  #: per layer: ``kv_cache // page // layers per group``
    block_tokens: int
    groups: int
    block_bytes: int  #: one block in every layer of a group
    step_tokens: int

    @property
    def cache_tokens(self) -> int:
        """The log's "GPU KV cache size: N tokens": ``blocks // groups x block``."""
        return self.blocks // self.groups * self.block_tokens


def serving_budget(
    config,
    gpu: str,
    dtype=None,
    quantization: str | None = None,
    kv_bytes: int = 2,
    utilization: float = VLLM_UTILIZATION,
    block_tokens: int = VLLM_BLOCK_TOKENS,
    step_tokens: int | None = None,
    non_torch_bytes: int = VLLM_NON_TORCH_BYTES,
    cuda_graph_bytes: int = 0,
    tensor_parallel: int = 1,
    double_quant: bool = False,
) -> ServingBudget:
    """vLLM's KV-cache budget on one ``gpu`` (``vllm/v1/worker/gpu_worker.py``,
    ``determine_available_memory``): ``total x utilization`` less the weights, the
    activation peak of a profiling run of ``step_tokens`` tokens (modelled here with
    :func:`prefill_activation_bytes`), the memory outside PyTorch that appeared meanwhile
    and, where the engine estimates them before the cache (newer releases), CUDA graphs;
    then ``blocks = available // page // layers per group``
    (``vllm/v1/core/kv_cache_utils.py``, ``get_num_blocks``). Under tensor parallelism
    each GPU holds ``1 / tensor_parallel`` of the weights and of the KV heads.
    ``dtype``, ``quantization`` and ``double_quant`` are :func:`estimate`'s."""
    if gpu not in GPUS:
        raise EstimateError(f"unknown GPU {gpu!r}; choose one of {', '.join(GPUS)}")
    if not 0 < utilization <= 1:
        raise EstimateError(f"utilization must be in (0, 1], not {utilization}")
    if block_tokens < 1 or tensor_parallel < 1 or kv_bytes not in (1, 2, 4):
        raise EstimateError("block size and GPUs at least 1; 1, 2 or 4 bytes a value")
    step = step_tokens or vllm_step_tokens(gpu)
    total = GPUS[gpu][0] * MIB - TORCH_TOTAL_GAP_BYTES
    requested = int(total * utilization)
    weights = estimate(config, dtype, quantization, double_quant).total_bytes
    weights //= tensor_parallel
    act_bytes = 4 if str(dtype).endswith("float32") else 2
    activations = (
        prefill_activation_bytes(config, 1, step, act_bytes) // tensor_parallel
    )
    groups = cache_groups(config)
    per_group = groups[0][2]
    page = page_bytes(config, block_tokens, kv_bytes) // tensor_parallel
    kv = requested - weights - activations - non_torch_bytes - cuda_graph_bytes
    blocks = max(kv, 0) // page // per_group
    return ServingBudget(
        gpu=gpu,
        total=total,
        requested=requested,
        weights=weights,
        activations=activations,
        non_torch=non_torch_bytes,
        cuda_graphs=cuda_graph_bytes,
        kv_cache=kv,
        blocks=blocks,
        block_tokens=block_tokens,
        groups=len(groups),
        block_bytes=page * per_group,
        step_tokens=step,
    )


def max_concurrency(config, budget: ServingBudget, tokens: int) -> float:
    """The log's "Maximum concurrency for N tokens per request": the blocks over what
    one request of ``tokens`` tokens holds at most (:func:`request_blocks`)."""
    need = request_blocks(config, tokens, budget.block_tokens, budget.step_tokens)
    return budget.blocks / need


def requests_that_fit(
    config,
    budget: ServingBudget,
    prompt: int,
    answer: int,
    shared_prefix: int = 0,
    max_seqs: int | None = None,
) -> dict:
    """How many requests of ``prompt`` + ``answer`` tokens decode at once, each holding
    its blocks to the end (all at their longest at once, and sliding-window layers
    charged as vLLM's "Maximum concurrency" charges them: a worst case), when every prompt starts with the same ``shared_prefix``
    tokens (a system prompt) that prefix caching stores once: its full blocks are shared,
    the partly filled one is each request's own. Returns ``requests``, the cache's share
    each takes (``blocks_each``, ``shared_blocks``) and ``limit``: "KV cache" or
    "max_num_seqs" (the most requests a step holds; vLLM's default for the GPU)."""
    max_seqs = max_seqs or vllm_max_seqs(budget.gpu)
    if prompt < 1 or answer < 0 or not 0 <= shared_prefix <= prompt:
        raise EstimateError(
            "prompt at least 1, answer at least 0, prefix within prompt"
        )
    tokens = prompt + answer
    shared = 0
    if shared_prefix >= budget.block_tokens:
        groups = cache_groups(config)
        if any(kind != "full_attention" for kind, _, _ in groups):
            raise EstimateError("prefix sharing is modelled for full attention only")
        shared = shared_prefix // budget.block_tokens * len(groups)
    need = request_blocks(config, tokens, budget.block_tokens, budget.step_tokens)
    each = need - shared
    fit = max(budget.blocks - shared, 0) // each if budget.blocks >= need else 0
    limit = "max_num_seqs" if fit > max_seqs else "KV cache"
    return dict(
        requests=min(fit, max_seqs),
        blocks_each=each,
        shared_blocks=shared,
        limit=limit,
        cache_tokens_used=min(fit, max_seqs) * tokens,
    )
