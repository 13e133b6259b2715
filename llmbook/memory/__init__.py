"""How much memory a model takes to store, run, fine-tune and shard: the book's estimator.

One module per thing counted, each readable alone with its measured constants beside the
code that uses them (a module imports only those listed before it here):

- :mod:`.weights` - stored bytes: parameters, buffers, quantization constants
  (:func:`estimate`, :class:`MemoryEstimate`, :class:`EstimateError`)
- :mod:`.configs` - configs from a file, a folder or the hub (online, else its cache); :data:`PRESETS`
- :mod:`.gpus` - GPUs and what a program can use of them (:func:`usable_bytes`,
  :func:`fits_on`)
- :mod:`.shapes` - head size, key-value heads, a block's linear layers
- :mod:`.kv_cache` - the KV cache layer by layer: full, sliding, chunked, latent (MLA),
  stored in 16/32 bits, fp8, int4 or int2, and the fixed-size states of Mamba, linear
  attention and convolution layers (:func:`kv_cache_bytes`, :func:`state_bytes`)
- :mod:`.activations` - inference and training activations per block family
- :mod:`.optimizers` - optimizer states and the step's temporaries
  (:func:`optimizer_state_bytes`, :func:`optimizer_temporaries`)
- :mod:`.training` - a recipe's parts (:func:`breakdown`, :data:`RECIPES`)
- :mod:`.steps` - a step's moments and its peak (:func:`step_phases`, :func:`peak`,
  :func:`longest_context`)
- :mod:`.sharding` - DDP, ZeRO and FSDP2 over several GPUs moment by moment, offload,
  collectives
- :mod:`.serving` - a serving engine's budget (vLLM's): the KV cache in blocks, the
  requests that fit (:func:`serving_budget`, :func:`requests_that_fit`)
- :mod:`.speed` - a roofline: the least time a prompt pass and a decoding step can take
  on a device, from FLOPs and bytes (:func:`roofline`, :data:`GPU_SPECS`)

Everything public is re-exported here: ``from llmbook import memory;
memory.estimate(...)``. The command line is :mod:`llmbook.cli`
(``python -m llmbook memory ...``, ``python -m llmbook serve ...``).
"""

from .activations import (  # noqa: F401
    ACTIVATION_FAMILIES,
    ATTENTIONS,
    COMPUTE_MODES,
    autocast_cache_bytes,
    prefill_activation_bytes,
    training_activation_bytes,
)
from .configs import (  # noqa: F401
    MODEL_PRESETS,
    PRESETS,
    PUBLISHED_QUANTIZATION,
    load_config,
    preset_config,
)
from .gpus import (  # noqa: F401
    ALLOCATOR_SLACK,
    CUDA_RESERVE_BYTES,
    GPU_SPECS,
    GPUS,
    PCIE_GBPS,
    fits_on,
    usable_bytes,
)
from .kv_cache import (  # noqa: F401
    ATTENTION_TYPES,
    KEEPS,
    KV_QUANTS,
    LAYER_NAMES,
    STATE_TYPES,
    kv_cache_bytes,
    kv_cache_layers,
    kv_layers,
    kv_value_bytes,
    kv_widths,
    state_bytes,
)
from .optimizers import (  # noqa: F401
    BNB_MIN_8BIT_SIZE,
    BNB_OPTIMIZER_BLOCK,
    OPTIMIZER_IMPLS,
    OPTIMIZERS,
    optimizer_state_bytes,
    optimizer_temporaries,
)
from .serving import (  # noqa: F401
    TORCH_TOTAL_GAP_BYTES,
    VLLM_BLOCK_TOKENS,
    VLLM_MAX_SEQS,
    VLLM_NON_TORCH_BYTES,
    VLLM_STEP_TOKENS,
    VLLM_UTILIZATION,
    ServingBudget,
    cache_groups,
    max_concurrency,
    page_bytes,
    request_blocks,
    requests_that_fit,
    serving_budget,
    vllm_max_seqs,
    vllm_step_tokens,
)
from .sharding import (  # noqa: F401
    FSDP_PHASES,
    OFFLOADED_PARTS,
    SHARDINGS,
    collective_bytes,
    offloaded_bytes,
    sharded_phases,
    zero1_partition,
)
from .speed import (  # noqa: F401
    COMPUTE,
    Device,
    StoredWeights,
    attention_flops,
    compute_for,
    forward_flops,
    gpu_device,
    matmul_parameters,
    roofline,
)
from .steps import (  # noqa: F401
    LAYER_WORKSPACE,
    LOSS_BACKWARD_BYTES,
    PHASES,
    largest,
    longest_context,
    longest_contexts,
    peak,
    peak_bytes,
    step_phases,
)
from .training import (  # noqa: F401
    LORA_TARGETS,
    RECIPES,
    breakdown,
    lora_parameters,
    trainable_numels,
)
from .weights import (  # noqa: F401
    BLOCKSIZE_4BIT,
    CODE_4BIT_ENTRIES,
    CODE_8BIT_ENTRIES,
    MX_BLOCK,
    MXFP4_WEIGHTS,
    NESTED_BLOCKSIZE,
    QUANTIZATIONS,
    QUANTO_INT4_GROUP,
    QUANTO_LAYER_BUFFERS,
    WRAPPER_QUANTIZATIONS,
    EstimateError,
    MemoryEstimate,
    TensorBytes,
    active_parameters,
    constants_bytes,
    empty_model,
    estimate,
    expert_bytes,
    format_bytes,
    is_skipped,
    module_group,
    quanto_int4_group,
    skipped_by_default,
    weight_bytes,
)
