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
