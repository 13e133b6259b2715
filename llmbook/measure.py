"""Measuring time and memory the same way on CPU and CUDA.

Time: :func:`time_call` runs a function after warm-up several times and reports the
median and spread, synchronising CUDA so that asynchronous kernels are counted.

Memory: :class:`PeakMemory` records the peak during a block. On CUDA it reads the
caching allocator's statistics (bytes held by tensors); on CPU it samples the
process's resident set size (RSS), which also counts the allocator's slack and the
Python heap, so CPU figures are upper bounds with a few MiB of noise.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Callable

import psutil

from .units import GIB, MIB  # noqa: F401  (GIB re-exported for callers)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


@dataclass(frozen=True)
class Timing:
    """Wall-clock times of repeated calls, in seconds."""

    times_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def spread_s(self) -> float:
        """Max minus min, a plain and honest measure of run-to-run noise."""
        return max(self.times_s) - min(self.times_s)

    def __str__(self) -> str:
        return f"{self.median_s * 1e3:.2f} ms median of {len(self.times_s)} (spread {self.spread_s * 1e3:.2f} ms)"


def time_call(
    fn: Callable[[], object], repeats: int = 5, warmup: int = 1, device: str = "cpu"
) -> Timing:
    """Call ``fn`` ``warmup`` times, then time ``repeats`` calls (seconds each)."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return Timing(tuple(times))


class PeakMemory:
    """Context manager: peak memory above the starting point during a block, in bytes.

    >>> with PeakMemory("cpu") as mem:
    ...     buf = bytearray(64 * 1024**2)
    >>> mem.peak_bytes >= 60 * 1024**2
    True

    ``peak_bytes`` is the increase over the level when the block began; ``start_bytes``
    is that level. On CUDA both count tensor bytes held by the caching allocator; on
    CPU both are the process's resident set size, sampled every ``interval_s`` seconds
    and once more at exit (so a short spike between samples can be missed).
    """

    def __init__(self, device: str = "cpu", interval_s: float = 0.002):
        self.device = device
        self.interval_s = interval_s
        self.start_bytes = 0
        self.peak_bytes = 0
        self._max = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = psutil.Process()

    def _rss(self) -> int:
        return self._proc.memory_info().rss

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self._rss())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "PeakMemory":
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start_bytes = torch.cuda.memory_allocated()
        else:
            self.start_bytes = self._max = self._rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated() - self.start_bytes
        else:
            self._max = max(self._max, self._rss())
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            self.peak_bytes = self._max - self.start_bytes

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / MIB


def tensor_bytes(*tensors) -> int:
    """Bytes held by the storages of ``tensors``, each storage counted once.

    Views and tied weights share a storage, so they are not counted twice; tensors on
    the meta device hold nothing and count 0; ``None`` entries are skipped (e.g. the
    ``.grad`` of a frozen parameter); wrapper tensor subclasses count the tensors they
    wrap (see :func:`_plain_tensors`). This is the book's one byte counter.
    """
    seen: dict[tuple[str, int], int] = {}
    for t in _plain_tensors(tensors):
        if t.device.type == "meta":
            continue
        storage = t.untyped_storage()
        seen[(t.device.type, storage.data_ptr())] = storage.nbytes()
    return sum(seen.values())


def _plain_tensors(tensors):
    """The plain tensors that hold the data: a wrapper tensor subclass (torchao's
    ``Int8Tensor``, optimum-quanto's ``WeightQBytesTensor``, ...) reports the storage of
    the *logical* tensor it stands for, so it is replaced by its inner tensors (the
    codes and scales), recursively, through ``__tensor_flatten__``."""
    import torch

    for t in tensors:
        if t is None:
            continue
        if type(t) not in (torch.Tensor, torch.nn.Parameter) and hasattr(
            t, "__tensor_flatten__"
        ):
            names, _ = t.__tensor_flatten__()
            yield from _plain_tensors(getattr(t, name) for name in names)
        else:
            yield t


@contextlib.contextmanager
def quiet_stderr_fd():
    """Send what C/C++ code writes to file descriptor 2 to /dev/null for the block, such
    as the start and stop lines of PyTorch's profiler, which a notebook would show."""
    import os
    import sys

    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(null)
        os.close(saved)


def largest_allocation(fn: Callable[[], object]) -> int:
    """Bytes of the largest single CPU allocation made while running ``fn()``, as
    PyTorch's profiler records it (the profiler's own log lines are silenced)."""
    from torch.profiler import ProfilerActivity, profile

    with quiet_stderr_fd():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    return max((e.cpu_memory_usage for e in prof.events()), default=0)


def tensor_timeline(fn: Callable[[], object]) -> tuple[list[float], list[int]]:
    """Bytes of CPU tensors alive over the run of ``fn()``: ``(seconds, bytes)`` after each
    allocation or release, counting those alive before ``fn`` (the weights, optimizer
    states) from the start.

    From PyTorch's memory profiler, the data behind ``profile.export_memory_timeline``
    (``torch.profiler._memory_profiler``, a private module: its tests in the book pin
    what it reports). It sees every tensor storage, so the peak is exact, unlike the
    process's resident size (:class:`PeakMemory`); on CUDA, read
    ``torch.cuda.max_memory_allocated()`` instead."""
    return timeline_of(profile_memory(fn))


def profile_memory(fn: Callable[[], object]):
    """Run ``fn()`` under PyTorch's profiler with memory recording; the profile (its own
    log lines silenced). :func:`timeline_of` and :func:`allocation_peak` read it.

    Garbage is collected first: a tensor of an earlier, unreachable object (a model in a
    reference cycle) that Python's collector freed during ``fn`` would otherwise count as
    alive from the start."""
    import gc

    from torch.profiler import ProfilerActivity, profile

    gc.collect()
    with quiet_stderr_fd():
        with profile(
            activities=[ProfilerActivity.CPU],
            profile_memory=True,
            record_shapes=True,
            with_stack=True,
        ) as prof:
            fn()
    return prof


def timeline_of(prof) -> tuple[list[float], list[int]]:
    """:func:`tensor_timeline` of a profile made by :func:`profile_memory`. The profiler's
    analysis may fail (an ``AssertionError``) when other threads change tensors in
    place, as FSDP's collectives do: :func:`allocation_peak` then still answers."""
    from torch.profiler._memory_profiler import Action, MemoryProfile

    with quiet_stderr_fd():
        events = MemoryProfile(prof.profiler.kineto_results).timeline
    total, times, levels = 0, [], []
    for t, action, (key, _version), size in events:
        if key.device.type != "cpu":
            continue
        if action in (Action.PREEXISTING, Action.CREATE):
            total += size
        elif action == Action.DESTROY:  # each event carries its own allocation's size
            total -= size
        else:
            continue
        times.append(None if action == Action.PREEXISTING else t)  # no time of its own
        levels.append(total)
    first = sum(t is None for t in times)  # those alive before: one starting point
    times, levels = times[max(first - 1, 0) :], levels[max(first - 1, 0) :]
    start = min((t for t in times if t is not None), default=0)
    return [0.0 if t is None else (t - start) / 1e9 for t in times], levels


def allocation_peak(prof) -> int:
    """The most bytes allocated during a profile (:func:`profile_memory`) beyond what was
    alive when it started: the running sum of the allocator's own records, in time order.
    Needs no analysis of the tensors, so it works where :func:`timeline_of` fails; add the
    bytes alive at the start (which it cannot see) for the peak."""
    from torch._C._profiler import _EventType
    from torch.profiler._memory_profiler import OpTree

    records = sorted(
        (e.start_time_ns, e.typed[1].alloc_size)
        for e in OpTree(prof.profiler.kineto_results).dfs()
        if e.typed[0] == _EventType.Allocation and e.typed[1].device.type == "cpu"
    )
    level, top = 0, 0
    for _, change in records:
        level += change
        top = max(top, level)
    return top


#: Operators whose own allocations :func:`allocation_levels` can leave out: the
#: collectives' backends. gloo copies the whole message of every all-gather and
#: reduce-scatter on CPU; NCCL works in the tensors it is given.
BACKEND_OPERATORS = ("c10d::", "gloo:")


def allocation_levels(
    prof, exclude: tuple[str, ...] = (), resets: tuple[int, ...] = ()
) -> tuple[list[int], list[int]]:
    """``(times_ns, bytes)``: the running sum of the CPU allocator's records in a profile
    (:func:`profile_memory`), from 0 at its start, after each allocation or release.
    Add the bytes alive at the start for the level.

    - ``exclude``: leave out the allocations made inside an operator whose name starts
      with one of these (and their releases).
    - A release the records miss (one made on a thread the profiler does not follow,
      such as a collective backend's) is inferred when the allocator hands out the same
      address again: the earlier block was released by then.
    - ``resets``: times (ns) at which the sum restarts from 0, when the caller knows
      what is alive (the start of each training step). What the records held then is
      taken as part of what is alive: its recorded release still lowers the sum, the
      reuse of its address does not (a release missed before the reset)."""
    from torch._C._profiler import _EventType
    from torch.profiler._memory_profiler import OpTree

    def inside(event) -> bool:
        parent = event.parent
        while parent is not None:
            if parent.name.startswith(exclude):
                return True
            parent = parent.parent
        return False

    records = sorted(
        (e.start_time_ns, e.typed[1].alloc_size, e.typed[1].ptr, e)
        for e in OpTree(prof.profiler.kineto_results).dfs()
        if e.typed[0] == _EventType.Allocation and e.typed[1].device.type == "cpu"
    )
    records += [(t, None, None, None) for t in resets]
    records.sort(key=lambda r: (r[0], r[1] is not None))
    left_out: set[int] = set()
    live: dict[int, int] = {}
    before: dict[int, int] = {}  # what the records held at the last reset
    level, times, levels = 0, [], []
    for t, change, ptr, event in records:
        if change is None:  # a reset
            before.update(live)
            live.clear()
            level = 0
        elif change > 0 and exclude and inside(event):
            left_out.add(ptr)
            continue
        elif change < 0 and ptr in left_out:
            left_out.discard(ptr)
            continue
        elif change > 0:
            if ptr in live:  # its release went unrecorded: it came before
                level -= live.pop(ptr)
            before.pop(ptr, None)
            live[ptr] = change
            level += change
        elif ptr in live:
            level -= live.pop(ptr)
        elif ptr in before:
            level -= before.pop(ptr)
        else:  # made before the profile: part of what was alive at its start
            level += change
        times.append(t)
        levels.append(level)
    return times, levels


#: What :func:`mark` names its profiler events with.
MARK = "llmbook.mark "


def mark(name: str) -> None:
    """Record an instant named ``name`` in the running profile (:func:`marks_of`)."""
    from torch.profiler import record_function

    with record_function(MARK + name):
        pass


def marks_of(prof) -> list[tuple[int, str]]:
    """``(time_ns, name)`` of each :func:`mark` in a profile, in time order."""
    from torch.profiler._memory_profiler import OpTree

    return sorted(
        (e.start_time_ns, e.name[len(MARK) :])
        for e in OpTree(prof.profiler.kineto_results).dfs()
        if e.name.startswith(MARK)
    )


def window_peaks(
    times: list[int], levels: list[int], windows: dict[str, tuple[int, int]]
) -> dict[str, int]:
    """The highest level (:func:`allocation_levels`) within each ``(start, end)`` window
    of times, counting the level the window opens at."""
    import bisect

    out = {}
    for name, (start, end) in windows.items():
        i = bisect.bisect_right(times, start)
        top = levels[i - 1] if i else 0
        for level in levels[i : bisect.bisect_left(times, end)]:
            top = max(top, level)
        out[name] = top
    return out


def peak_tensor_bytes(fn: Callable[[], object]) -> int:
    """The most bytes of CPU tensors alive at once while ``fn()`` runs, including those
    alive before it (:func:`tensor_timeline`)."""
    return max(tensor_timeline(fn)[1], default=0)
