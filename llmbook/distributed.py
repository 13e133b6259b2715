"""Running a data-parallel job on several local processes from a notebook.

:func:`run_workers` launches ``torchrun`` (PyTorch's own launcher) on this machine with
the gloo backend over the loopback interface, waits at most ``timeout_s`` and, whatever
happens (an error in a rank, a timeout, an interrupted cell), kills every process it
started before returning or raising. Each rank runs :mod:`llmbook.shard_worker` and
writes what it measured to a JSON file, which this module reads back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path


class WorkersFailed(RuntimeError):
    """A multi-process run that failed or ran out of time; the message says which."""


def _environment(threads: int) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    # glibc maps every block over 64 KiB on its own (a fixed threshold, not one that
    # grows as blocks are freed), so a block gloo frees on its own thread, a release
    # torch's profiler does not see, has its address handed out again and
    # llmbook.measure.allocation_levels infers the release
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    if Path("/sys/class/net/lo").exists():  # Linux: keep gloo on the loopback device
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    return env


def run_workers(spec: dict, nproc: int, timeout_s: float = 300) -> list[dict]:
    """Run ``spec``'s jobs on ``nproc`` local processes; each job's per-rank results.

    ``spec`` is what :mod:`llmbook.shard_worker` reads: ``config`` (LlamaConfig keyword
    arguments), ``jobs`` (each a ``name``, a ``strategy`` and its options), ``steps``,
    ``batch`` (sequences per rank per step) and ``seq`` (tokens per sequence). Returns
    one dict per job and rank, in job order then rank order.
    """
    with tempfile.TemporaryDirectory(prefix="llmbook-dist-") as out:
        path = Path(out) / "spec.json"
        path.write_text(json.dumps({**spec, "out": out}))
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "llmbook.shard_worker",
            str(path),
        ]
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_environment(1),
            start_new_session=True,  # its own process group: killed as one below
        )
        try:
            log, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise WorkersFailed(
                f"{nproc} processes did not finish within {timeout_s:.0f} s and were stopped"
            ) from None
        finally:  # also on an error or an interrupted cell: leave nothing behind
            _kill(proc)
        if proc.returncode != 0:
            errors = sorted(Path(out).glob("error-rank*.txt"))
            why = errors[0].read_text() if errors else log.strip().splitlines()[-1:]
            raise WorkersFailed(
                f"torchrun with {nproc} processes exited with {proc.returncode}: {why}"
            )
        return [
            json.loads((Path(out) / f"{job['name']}-rank{rank}.json").read_text())
            for job in spec["jobs"]
            for rank in range(nproc)
        ]


def _kill(proc: subprocess.Popen) -> None:
    """Stop ``proc`` and every process under it: torchrun starts each rank in a session
    of its own, so its process group alone would leave the ranks running."""
    import psutil

    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(True)]
    except psutil.NoSuchProcess:
        family = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)
    proc.wait()


def message_bytes(result: dict) -> dict[str, int]:
    """Bytes one rank handed to each kind of collective in its profiled step, counting
    floating-point messages only (DDP also broadcasts a few integers, its bookkeeping)."""
    from .shard_worker import FLOAT_TYPES

    totals: dict[str, int] = {}
    for c in result["collectives"]:
        if c["dtype"] in FLOAT_TYPES:
            totals[c["op"]] = totals.get(c["op"], 0) + c["numel"] * c["item_bytes"]
    return totals
