"""GPUs readers rent and what a program can use of them: the total ``nvidia-smi``
reports, less the driver's reserve and the CUDA context, less a share kept for the caching
allocator. Not counted: other processes on the GPU, NCCL's buffers, fragmentation beyond
that share."""

from __future__ import annotations

from ..units import GIB
from .weights import EstimateError

#: GPUs readers rent, with the total memory ``nvidia-smi`` reports (MiB) and where that
#: reading comes from. Marketing sizes are decimal gigabytes of the raw memory chips; a
#: program sees less (see :func:`usable_bytes`).
GPUS: dict[str, tuple[int, str]] = {
    "T4": (
        15360,
        "nvidia-smi (Colab's free GPU), modal-labs/modal-client pull request 2797",
    ),
    "L4": (23034, "nvidia-smi, modal-labs/modal-client pull request 2797"),
    "A10": (23028, "nvidia-smi, modal-labs/modal-client pull request 2797"),
    "RTX 4090": (24564, "nvidia-smi, RLinf/RLinf issue 255"),
    "RTX 3090": (24576, "nvidia-smi, noonghunna/club-3090 issue 741"),
    "RTX 5090": (32607, "nvidia-smi, noonghunna/club-3090 issue 741"),
    "A100 40GB": (40960, "nvidia-smi, modal-labs/modal-client pull request 2797"),
    "L40S": (46068, "nvidia-smi, modal-labs/modal-client pull request 2797"),
    "H100 80GB": (81559, "nvidia-smi, modal-labs/modal-client pull request 2797"),
    "A100 80GB": (81920, "nvidia-smi, modal-labs/modal-client pull request 2797"),
    "H200": (
        143771,
        "nvidia-smi on this book's GPU machine, 2026-11-28 (book/data/device_build.json)",
    ),
    "B200": (183359, "nvidia-smi, NVIDIA/TensorRT-LLM issue 10278"),
    "MI300X": (  # AMD: ROCm's PyTorch uses the same torch.cuda API and allocator
        196592,
        "rocm-smi 'VRAM Total Memory (B): 206141652992', ROCm/legacy-rocm-build issue 4750",
    ),
}


#: What a program cannot allocate of that total: the driver's own reserve (torch's
#: ``total_memory`` is already about 250 MiB under nvidia-smi's total on a T4 and 615 MiB
#: on the H200 this book ran on) plus the CUDA context (a few hundred MiB): 1 GiB in all.
CUDA_RESERVE_BYTES = GIB


#: The share of the rest kept free for the caching allocator's rounding and fragmentation.
ALLOCATOR_SLACK = 0.05


def usable_bytes(gpu: str) -> int:
    """Bytes a PyTorch program can plan to fill on ``gpu`` (a key of :data:`GPUS`):
    nvidia-smi's total, less :data:`CUDA_RESERVE_BYTES`, less :data:`ALLOCATOR_SLACK`."""
    try:
        total_mib = GPUS[gpu][0]
    except KeyError:
        raise EstimateError(
            f"unknown GPU {gpu!r}; choose one of {', '.join(GPUS)}"
        ) from None
    return int((total_mib * 1024**2 - CUDA_RESERVE_BYTES) * (1 - ALLOCATOR_SLACK))


def fits_on(total_bytes: int) -> list[str]:
    """The GPUs of :data:`GPUS` whose usable memory holds ``total_bytes``."""
    return [gpu for gpu in GPUS if total_bytes <= usable_bytes(gpu)]


#: A PCIe x16 link's bandwidth per direction before protocol overhead, in GB/s (the
#: PCI-SIG's 16 and 32 GT/s with 128b/130b encoding): no copy from CPU to GPU memory
#: beats it, so bytes over it give a floor on the time.
PCIE_GBPS = {"PCIe 4.0 x16": 31.5, "PCIe 5.0 x16": 63.0}


#: Each GPU's memory bandwidth (bytes/s) and dense peak throughput (FLOP/s; int8 in
#: OP/s) by compute type, from its maker's data sheet or whitepaper, for the roofline
#: (:mod:`.speed`). Dense: where a sheet prints a figure "with sparsity" (footnoted), half
#: of it. GeForce cards: fp16/bf16/fp8 with FP32 accumulate, as frameworks multiply.
#: ``kind`` says how the figure was read: ``vendor`` (the maker's page), ``copy`` (the
#: maker's table reproduced exactly elsewhere), ``quoted`` (a repository quoting the
#: sheet, with its address). A type a GPU lacks, or that no vendor source gave, is left
#: out. H100 and H200: the SXM boards (H100 PCIe: 2.0 TB/s, three quarters the peaks).
#: A bound may only err low: where sources differ, the higher figure is taken.
#: One chip, one table: the H100 and H200 (SXM) share Hopper's peaks, the A100 boards
#: Ampere's; they differ in memory.
_HOPPER = dict(
    fp32=67e12, tf32=494.5e12, bf16=989.5e12, fp16=989.5e12, fp8=1979e12, int8=1979e12
)
_A100 = dict(fp32=19.5e12, tf32=156e12, bf16=312e12, fp16=312e12, int8=624e12)
GPU_SPECS: dict[str, dict] = {
    "T4": dict(
        bandwidth=320e9,
        peak=dict(fp32=8.1e12, fp16=65e12, int8=130e12),
        kind="quoted",
        source="nvidia.com t4-tensor-core-datasheet-951643.pdf (its 300 GB/s rounds "
        "down 256-bit GDDR6 at 10 Gb/s: 320)",
    ),
    "L4": dict(
        bandwidth=300e9,
        peak=dict(
            fp32=30.3e12,
            tf32=60e12,
            bf16=121e12,
            fp16=121e12,
            fp8=242.5e12,
            int8=242.5e12,
        ),
        kind="quoted",
        source="nvidia.com/en-us/data-center/l4 (sparse figures halved)",
    ),
    "A10": dict(
        bandwidth=600e9,
        peak=dict(fp32=31.2e12, tf32=62.5e12, bf16=125e12, int8=250e12),
        kind="quoted",
        source="resources.nvidia.com a10-datasheet-nvidia",
    ),
    "RTX 4090": dict(
        bandwidth=1008e9,
        peak=dict(
            fp32=82.6e12,
            tf32=82.6e12,
            bf16=165.2e12,
            fp16=165.2e12,
            fp8=330.3e12,
            int8=660.6e12,
        ),
        kind="copy",
        source="NVIDIA Ada GPU architecture whitepaper v2.02, appendix A",
    ),
    "RTX 3090": dict(
        bandwidth=936e9,
        peak=dict(fp32=35.6e12, bf16=71e12, fp16=71e12),
        kind="quoted",
        source="NVIDIA Ampere GA102 GPU architecture whitepaper",
    ),
    "RTX 5090": dict(
        bandwidth=1792e9,
        peak=dict(bf16=209.5e12, fp8=419e12, fp4=1676e12),
        kind="quoted",
        source="NVIDIA RTX Blackwell GPU architecture whitepaper, table 3",
    ),
    "A100 40GB": dict(
        bandwidth=1555e9,
        peak=_A100,
        kind="vendor",
        source="developer.nvidia.com/blog/nvidia-ampere-architecture-in-depth, table 3",
    ),
    "L40S": dict(
        bandwidth=864e9,
        peak=dict(
            fp32=91.6e12,
            tf32=183e12,
            bf16=362.05e12,
            fp16=362.05e12,
            fp8=733e12,
            int8=733e12,
        ),
        kind="copy",
        source="NVIDIA L40S data sheet",
    ),
    "H100 80GB": dict(
        bandwidth=3.35e12,
        peak=_HOPPER,
        kind="quoted",
        source="nvidia.com/en-us/data-center/h100 (SXM; sparse figures halved)",
    ),
    "A100 80GB": dict(
        bandwidth=2039e9,
        peak=_A100,
        kind="quoted",
        source="nvidia.com a100-80gb-datasheet-update (SXM)",
    ),
    "H200": dict(
        bandwidth=4.8e12,
        peak=_HOPPER,
        kind="quoted",
        source="nvidia.com/en-us/data-center/h200 (SXM; sparse figures halved)",
    ),
    "B200": dict(
        bandwidth=7.7e12,
        peak=dict(
            fp32=75e12,
            tf32=1100e12,
            bf16=2250e12,
            fp16=2250e12,
            fp8=4500e12,
            int8=4500e12,
            fp4=9000e12,
        ),
        kind="quoted",
        source="NVIDIA HGX B200 data sheet (sparse figures halved)",
    ),
    "MI300X": dict(
        bandwidth=5.3e12,
        peak=dict(
            fp32=163.4e12,
            tf32=653.7e12,
            bf16=1307.4e12,
            fp16=1307.4e12,
            fp8=2614.9e12,
            int8=2614.9e12,
        ),
        kind="vendor",
        source="rocm.docs.amd.com conceptual/gpu-arch/mi300",
    ),
}
