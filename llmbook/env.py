"""Where is this notebook running? Hardware, precision support, Colab, network, versions.

Every chapter calls :func:`detect` once in its setup cell and sizes its experiments to
what it finds. Nothing here assumes a GPU, a network or a particular library version.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import socket
import sys
from dataclasses import asdict, dataclass, field

import psutil

from .errors import MissingRequirement  # noqa: F401  (re-exported: llmbook.env.MissingRequirement)
from .units import GIB

#: Libraries whose versions a chapter reports, in this order.
REPORTED_PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "bitsandbytes",
    "peft",
    "numpy",
)


#: CPU features that decide which kernels torch and bitsandbytes run (bf16/fp16 speed,
#: bitsandbytes' packed 4-bit path), reported in every chapter's environment line.
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16")


@dataclass(frozen=True)
class Environment:
    """A snapshot of the machine a chapter runs on.

    ``cpu_memory_gib`` and ``gpu_memory_gib`` are in GiB (2**30 bytes).
    """

    device: str  # "cuda" or "cpu"
    device_name: str
    cpu_name: str
    cpu_cores: int
    cpu_memory_gib: float
    gpu_memory_gib: float | None
    cuda_capability: tuple[int, int] | None
    native_bf16: bool
    native_fp16: bool
    in_colab: bool
    online: bool
    in_ci: bool = False
    versions: dict[str, str | None] = field(default_factory=dict)
    python: str = ""
    date: str = ""
    cpu_features: tuple[str, ...] = ()  # the subset of CPU_FEATURES this processor has
    bnb_cpu_path: str = (
        ""  # bitsandbytes' CPU path for 4-bit layers: packed, plain or absent
    )

    @property
    def is_gpu(self) -> bool:
        return self.device == "cuda"

    def summary(self) -> str:
        """One line saying what ran where, for the top of every chapter."""
        place = (
            "Colab" if self.in_colab else "GitHub Actions" if self.in_ci else "local"
        )
        cpu = f"{self.cpu_name}, {self.cpu_cores} cores ({', '.join(self.cpu_features) or 'no AVX2'})"
        if self.is_gpu:
            hw = f"GPU {self.device_name} ({self.gpu_memory_gib:.0f} GiB) | CPU {cpu}"
        else:
            hw = f"CPU only: {cpu}"
        if self.bnb_cpu_path:
            hw += f" | bitsandbytes CPU 4-bit path: {self.bnb_cpu_path}"
        net = "online" if self.online else "offline"
        libs = ", ".join(f"{k} {v}" for k, v in self.versions.items() if v)
        return f"{hw} | {place}, {net}, {self.date} | {libs}"

    def as_dict(self) -> dict:
        return asdict(self)


def package_version(name: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(names: tuple[str, ...] = REPORTED_PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (None for a missing one)."""
    return {n: package_version(n) for n in names}


def in_colab() -> bool:
    """True inside a Google Colab runtime (the book's install cells use the same test)."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def is_online(
    host: str = "huggingface.co", port: int = 443, timeout_s: float = 1.5
) -> bool:
    """Whether the model hub answers a TCP connection within ``timeout_s`` seconds.

    ``HF_HUB_OFFLINE=1`` forces False without touching the network.
    """
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def detect(check_network: bool = True) -> Environment:
    """Inspect the machine: device, memory, native half-precision support, Colab, network.

    ``native_bf16``/``native_fp16`` mean hardware support, not emulation: a T4 reports
    ``native_bf16=False`` even though torch can emulate bf16 on it. On CPU, fp16 is
    treated as native only when the processor has AVX512-FP16 or AMX-FP16.
    """
    import torch

    cores = os.cpu_count() or 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    cpu_gib = psutil.virtual_memory().total / GIB
    flags = _cpu_flags()
    common = dict(
        cpu_features=tuple(f for f in CPU_FEATURES if f in flags),
        bnb_cpu_path=_bnb_cpu_path(),
    )
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        cap = torch.cuda.get_device_capability(0)
        return Environment(
            device="cuda",
            device_name=props.name,
            cpu_name=cpu_name(),
            cpu_cores=cores,
            cpu_memory_gib=cpu_gib,
            gpu_memory_gib=props.total_memory / GIB,
            cuda_capability=cap,
            native_bf16=torch.cuda.is_bf16_supported(including_emulation=False),
            native_fp16=cap >= (5, 3),
            in_colab=in_colab(),
            online=is_online() if check_network else False,
            in_ci=os.environ.get("GITHUB_ACTIONS") == "true",
            versions=versions(),
            python=platform.python_version(),
            date=_dt.date.today().isoformat(),
            **common,
        )
    return Environment(
        device="cpu",
        device_name=cpu_name(),
        cpu_name=cpu_name(),
        cpu_cores=cores,
        cpu_memory_gib=cpu_gib,
        gpu_memory_gib=None,
        cuda_capability=None,
        native_bf16=bool(flags & {"avx512_bf16", "amx_bf16"}),
        native_fp16=bool(flags & {"avx512_fp16", "amx_fp16"}),
        in_colab=in_colab(),
        online=is_online() if check_network else False,
        in_ci=os.environ.get("GITHUB_ACTIONS") == "true",
        versions=versions(),
        python=platform.python_version(),
        date=_dt.date.today().isoformat(),
        **common,
    )


def _bnb_cpu_path() -> str:
    """ "packed" or "plain" (see :mod:`llmbook.bnb_cpu`), or "" without bitsandbytes."""
    from .bnb_cpu import cpu_4bit_path

    path = cpu_4bit_path()
    return "" if path == "no bitsandbytes" else path


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def require(module: str, why: str, install: str | None = None) -> None:
    """Stop a chapter politely when ``module`` cannot be imported.

    Raises :class:`MissingRequirement` with one sentence saying what to install.
    """
    import importlib.util

    if importlib.util.find_spec(module) is None:
        hint = install or f"pip install {module}"
        raise MissingRequirement(
            f"This section needs {module} ({why}): run `{hint}` and re-run the notebook."
        )


def driver_version() -> str | None:
    """The NVIDIA driver's version from ``nvidia-smi``, or None where there is none."""
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0] if out.returncode == 0 and lines else None


def provenance(command: str) -> dict:
    """Where and with what a recorded measurement was made: device, driver, CUDA, CPU
    (features, bitsandbytes' CPU path), versions, UTC time and the command that made it."""
    import torch

    env = detect(check_network=False)
    return {
        "device": env.device,
        "device_name": env.device_name,
        "gpu_memory_gib": env.gpu_memory_gib,
        "cuda_capability": env.cuda_capability,
        "driver": driver_version() if env.is_gpu else None,
        "cuda_runtime": torch.version.cuda,
        "cpu": env.cpu_name,
        "cpu_cores": env.cpu_cores,
        "cpu_features": list(env.cpu_features),
        "bnb_cpu_path": env.bnb_cpu_path,
        "versions": env.versions,
        "python": env.python,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
    }


def main(argv: list[str] | None = None) -> int:
    """``llmbook-env``: print one line describing this machine (``--json`` for all fields)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="llmbook-env", description=main.__doc__)
    parser.add_argument("--json", action="store_true", help="print every field as JSON")
    parser.add_argument("--offline", action="store_true", help="skip the network check")
    args = parser.parse_args(argv)
    try:
        env = detect(check_network=not args.offline)
    except ImportError as exc:
        print(
            f"llmbook-env: {exc.name or 'torch'} is not installed; install the book's requirements first."
        )
        return 1
    print(json.dumps(env.as_dict(), indent=2) if args.json else env.summary())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
