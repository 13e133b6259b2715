"""One process of a data-parallel training run: ``torchrun ... -m llmbook.shard_worker SPEC``.

Launched by :func:`llmbook.distributed.run_workers` (a chapter shows :func:`wrap`, the
lines that pick an engine, and reads the results). Every
rank builds the same architecture-faithful Llama (same seed, so the same weights),
wraps it with one of PyTorch's own engines, trains a few AdamW steps on its own slice of
the global batch and writes what it measured to ``<out>/<job>-rank<r>.json``:

- ``param_bytes``, ``grad_bytes``, ``state_bytes``: the bytes of the parameters, the
  gradients (after the last backward pass) and AdamW's states this process holds; for
  a sharded tensor (a ``DTensor``) only its local shard.
- ``peak_bytes``: for each of the last two steps of :data:`MEMORY_STEPS`, the most bytes
  of CPU tensors alive at once during it: the allocator's own records of the steps
  (:func:`llmbook.measure.allocation_levels`) plus what was alive before them
  (parameters, buffers, optimizer states, DDP's gradient buckets), the backend's own
  copies of each message left out (gloo copies every all-gather's and reduce-scatter's
  message; NCCL does not). DDP's buckets and FSDP's gathered layers are in it.
- ``moment_bytes``: for the same steps, the most bytes alive within each moment of
  ``llmbook.memory.sharded_phases`` (:func:`moment_windows`, from marks the layers'
  hooks leave in the profile).
- ``collectives``: every collective the step issued (``c10d`` operators in the
  profiler's trace) with its message size in elements and its dtype's bytes.
- ``backend_calls``: how often the backend's own operations ran in that step.
- ``step_s``: wall time of each step (CPU, gloo over loopback: not a GPU figure);
  ``profiled_steps``: the steps run under the profiler (slower; leave them out).
- on rank 0, ``max_param_diff``: the largest difference between the trained parameters
  (gathered whole) and those of the same model trained in this one process on the whole
  global batch; ``update_rel_diff``: the norm of that difference over the norm of the
  single process's update (how far training moved the parameters).

Strategies (``job["strategy"]``; ``job["optimizer"]`` picks AdamW or SGD, see
:data:`OPTIMIZERS`):

- ``ddp``: ``DistributedDataParallel``, every rank a full replica; gradients averaged
  with all-reduce.
- ``zero1``: DDP plus ``torch.distributed.optim.ZeroRedundancyOptimizer``: each rank
  keeps AdamW's states of its share of the parameters, updates them and broadcasts them.
- ``fsdp-integer``: no training. FSDP2 shards a module holding a ``uint8`` parameter (as
  bitsandbytes stores 4-bit codes) beside a bf16 one, and gathers it back
  (:func:`integer_shards`): each rank's shard, and whether the gathered tensors equal the
  originals.
- ``fsdp``: FSDP2's ``fully_shard`` on each decoder layer and on the whole model;
  ``job["reshard"]`` is ``reshard_after_forward`` (True: ZeRO-3; False: layers stay
  gathered from their forward to their backward, as in ZeRO-2), ``job["bf16"]`` adds a
  ``MixedPrecisionPolicy`` (bf16 compute, fp32 gradient reduction).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

LR = 1e-3
#: The optimizers a job may name (``job["optimizer"]``, default AdamW, the ``foreach``
#: form a GPU uses): SGD's step is proportional to the gradient, so it shows a wrong
#: averaging of the gradients that Adam's normalised step would hide.
OPTIMIZERS = {
    "adamw": dict(lr=LR, foreach=True),
    "sgd": dict(lr=0.1, momentum=0.9, foreach=True),
}


def optimizer_class(job: dict):
    import torch

    name = job.get("optimizer", "adamw")
    return {"adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name], OPTIMIZERS[name]


#: c10d operators and which of their tensor arguments is the whole message: all-reduce
#: and broadcast send their one tensor; all-gather's output and reduce-scatter's input
#: hold every rank's share.
COLLECTIVES = {
    "c10d::allreduce_": ("all_reduce", 0),
    "c10d::broadcast_": ("broadcast", 0),
    "c10d::_allgather_base_": ("all_gather", 0),
    "c10d::_reduce_scatter_base_": ("reduce_scatter", 1),
}
_ITEM_BYTES = {"float": 4, "c10::BFloat16": 2, "c10::Half": 2, "long int": 8, "int": 4}
#: The floating-point ones: DDP also broadcasts a few integers (bucket bookkeeping).
FLOAT_TYPES = ("float", "c10::BFloat16", "c10::Half")


def _numel(dims) -> int:
    while dims and isinstance(dims[0], list):  # a TensorList: its first tensor
        dims = dims[0]
    n = 1
    for d in dims:
        n *= d
    return n


def collectives(trace: dict) -> list[dict]:
    """The collectives in a profiler's Chrome trace: ``{op, numel, dtype, item_bytes}``.

    Read from the trace because it keeps the shapes inside a list of tensors (the
    argument type of ``c10d::allreduce_`` and ``c10d::broadcast_``)."""
    events = trace["traceEvents"]
    # a list of tensors carries no dtype: the backend's own event for it does
    backend = {
        _numel(e["args"]["Input Dims"][0]): e["args"]["Input type"][0]
        for e in events
        if e.get("name", "").startswith("gloo:") and e.get("args", {}).get("Input Dims")
    }
    found = []
    for e in events:
        if e.get("name") not in COLLECTIVES:
            continue
        op, arg = COLLECTIVES[e["name"]]
        numel = _numel(e["args"]["Input Dims"][arg])
        kind = e["args"]["Input type"][arg]
        kind = backend.get(numel, "float") if kind == "TensorList" else kind
        found.append(
            dict(op=op, numel=numel, dtype=kind, item_bytes=_ITEM_BYTES.get(kind, 4))
        )
    return found


def backend_calls(trace: dict) -> dict[str, int]:
    """How many times the step called each of the backend's own operations
    (``gloo:all_reduce``, ...): what carried the collectives."""
    calls: dict[str, int] = {}
    for e in trace["traceEvents"]:
        name = e.get("name", "")
        if name.startswith(("gloo:", "nccl:")) and e.get("ph") == "X":
            calls[name] = calls.get(name, 0) + 1
    return calls


def local_bytes(tensors) -> int:
    """Bytes of ``tensors`` held by this process (a DTensor's local shard)."""
    total = 0
    for t in tensors:
        t = t.to_local() if hasattr(t, "to_local") else t
        total += t.numel() * t.element_size()
    return total


def build_model(config_kwargs: dict):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(**config_kwargs)
    config._attn_implementation = "sdpa"
    return AutoModelForCausalLM.from_config(config)


def batches(spec: dict, rank: int, world: int):
    """This rank's slice of each step's global batch (the same data in every job)."""
    import torch

    g = torch.Generator().manual_seed(1234)
    shape = (spec["steps"], world * spec["batch"], spec["seq"])
    ids = torch.randint(0, spec["config"]["vocab_size"], shape, generator=g)
    return ids[:, rank * spec["batch"] : (rank + 1) * spec["batch"]], ids


def wrap(model, job: dict):
    """``(model, optimizer)`` for ``job``'s strategy (see the module's docstring)."""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as DDP

    strategy = job["strategy"]
    opt, options = optimizer_class(job)
    if strategy == "ddp":
        return DDP(model), opt(model.parameters(), **options)
    if strategy == "zero1":
        optimizer = ZeroRedundancyOptimizer(
            model.parameters(), optimizer_class=opt, **options
        )
        return DDP(model), optimizer
    if strategy != "fsdp":
        raise ValueError(f"unknown strategy {strategy!r}")
    mp = MixedPrecisionPolicy()
    if job.get("bf16"):
        mp = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32
        )
    for layer in model.model.layers:
        fully_shard(layer, reshard_after_forward=job["reshard"], mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    return model, opt(model.parameters(), **options)


def states(optimizer) -> list:
    import torch

    inner = getattr(
        optimizer, "optim", optimizer
    )  # ZeroRedundancyOptimizer's local one
    return [v for s in inner.state.values() for v in s.values() if torch.is_tensor(v)]


def reference(spec: dict, ids, job: dict) -> tuple[list, list]:
    """The parameters before and after the same steps in one process on the whole global
    batch, with ``job``'s optimizer."""
    model = build_model(spec["config"])
    initial = [p.detach().clone() for p in model.parameters()]
    opt, options = optimizer_class(job)
    optimizer = opt(model.parameters(), **options)
    for step_ids in ids:
        model(input_ids=step_ids, labels=step_ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return initial, [p.detach() for p in model.parameters()]


#: The steps whose memory is profiled, together in one profile, once every buffer exists
#: (DDP rebuilds its buckets in the second step): the peaks of the last two, and each
#: moment of both. Two, because an FSDP step's peak moves with the timing of its
#: collectives. The first is profiled only so that what the second frees of it (its
#: logits) is in the records.
MEMORY_STEPS = (2, 3, 4)


def moment_windows(marks: list[tuple[int, str]], layers: int) -> list[dict]:
    """For each step in ``marks`` (``(time_ns, name)``, as :func:`hook_marks` names
    them), the ``(start, end)`` times of each moment of llmbook.memory's
    ``sharded_phases`` and of the whole step (``"step"``)."""
    steps: list[dict] = []
    for t, name in marks:
        if name == "step<":
            steps.append({})
        steps[-1][name] = t
    out = []
    for at in steps:
        top, below = f"bwd{layers - 1}<", f"bwd{max(layers - 2, 0)}<"
        windows = {
            "step": (at["step<"], at["step>"]),
            "layer forward": (
                at[f"fwd{layers - 2}>"] if layers > 1 else at["step<"],
                at[f"fwd{layers - 1}>"],
            ),
            "forward": (at[f"fwd{layers - 1}>"], at["loss"]),
            "loss backward": (at["loss"], at[top]),
            "backward start": (at[top], at[below] if layers > 1 else at["bwd0>"]),
            "backward end": (at["bwd0<"], at["emb<"]),
            "embedding backward": (at["emb<"], at["opt<"]),
            "optimizer step": (at["opt<"], at["opt>"]),
        }
        if layers >= 3:
            windows["backward next"] = (at[below], at[f"bwd{layers - 3}<"])
        out.append(windows)
    return out


def hook_marks(model) -> None:
    """Mark (:func:`llmbook.measure.mark`) each decoder layer's forward and backward
    pass: ``fwd{i}<``, ``fwd{i}>``, ``bwd{i}<``, ``bwd{i}>``; and the input embedding's
    backward pass, ``emb<`` (after the first layer's gradients are reduced)."""
    from llmbook.measure import mark

    for i, layer in enumerate(decoder_layers(model)):
        layer.register_forward_pre_hook(
            lambda m, a, i=i: mark(f"fwd{i}<"), prepend=True
        )
        layer.register_forward_hook(lambda m, a, o, i=i: mark(f"fwd{i}>"))
        layer.register_full_backward_pre_hook(
            lambda m, g, i=i: mark(f"bwd{i}<"), prepend=True
        )
        layer.register_full_backward_hook(lambda m, gi, go, i=i: mark(f"bwd{i}>"))
    embedding = getattr(model, "module", model).model.embed_tokens
    embedding.register_full_backward_pre_hook(lambda m, g: mark("emb<"), prepend=True)


def decoder_layers(model):
    """The decoder layers of a model, wrapped by DDP (``.module``) or not."""
    return getattr(model, "module", model).model.layers


def output_bytes(out) -> int:
    """Bytes a model's output holds: its logits, its loss and the keys and values of the
    KV cache transformers builds in the forward pass (each storage once)."""
    from llmbook.measure import tensor_bytes

    if out is None:
        return 0
    tensors = [out.logits, out.loss]
    for layer in getattr(out.get("cache"), "layers", []):
        tensors += [getattr(layer, "keys", None), getattr(layer, "values", None)]
    return tensor_bytes(*tensors)


def alive_bytes(model, optimizer) -> int:
    """Bytes this process holds between steps that the allocator's records of a step
    cannot see: parameters, buffers, optimizer states and DDP's gradient buckets."""
    alive = local_bytes([*model.parameters(), *model.buffers(), *states(optimizer)])
    if hasattr(model, "_get_ddp_logging_data"):  # the buckets, as DDP reports them
        sizes = str(model._get_ddp_logging_data().get("bucket_sizes", ""))
        alive += sum(int(b) for b in sizes.split(",") if b.strip())
    return alive


def measure_steps(
    model, optimizer, steps, layers: int, held: dict
) -> tuple[list, list]:
    """Run ``steps`` (callables) under one profile: for each step after the first, its
    peak and the peak of each moment (:func:`moment_windows`), in bytes of CPU tensors
    alive, the backend's own copies of messages left out
    (:data:`llmbook.measure.BACKEND_OPERATORS`).

    Each step starts with what the one before it left (parameters, buffers, optimizer
    states, DDP's buckets, the output ``held`` from the last step with its KV cache), so
    the records' running sum restarts at each step's start (``resets`` of
    :func:`llmbook.measure.allocation_levels`): a release the records miss (a tensor
    freed on one of gloo's threads, which the profiler does not follow) does not carry
    into the next step."""
    from llmbook.measure import (
        BACKEND_OPERATORS,
        allocation_levels,
        marks_of,
        profile_memory,
        window_peaks,
    )

    alive = alive_bytes(model, optimizer) + output_bytes(held.get("out"))

    def run():
        for step in steps:
            step()

    prof = profile_memory(run)
    steps = moment_windows(marks_of(prof), layers)
    starts = tuple(windows["step"][0] for windows in steps)
    times, levels = allocation_levels(prof, BACKEND_OPERATORS, starts)
    peaks, moments = [], []
    for windows in steps[1:]:
        found = window_peaks(times, levels, windows)
        peaks.append(alive + found.pop("step"))
        moments.append({k: alive + v for k, v in found.items()})
    return peaks, moments


def integer_shards(job: dict, rank: int, world: int) -> dict:
    """FSDP2's ``fully_shard`` on a module with a ``uint8`` and a bf16 parameter:
    ``local`` (each parameter's local shard: shape and dtype), ``whole`` (its full
    shape), ``gathered_equal`` (the module's all-gather, ``unshard``, restores both)."""
    import torch
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    module = torch.nn.Module()
    codes = torch.randint(0, 256, (64, 32), dtype=torch.uint8)
    module.codes = torch.nn.Parameter(codes, requires_grad=False)
    scales = torch.rand(64, dtype=torch.bfloat16)
    module.absmax = torch.nn.Parameter(scales, requires_grad=False)
    whole = {name: p.detach().clone() for name, p in module.named_parameters()}
    fully_shard(module)
    local = {
        name: [list(p.to_local().shape), str(p.dtype)]
        for name, p in module.named_parameters()
    }
    module.unshard()
    gathered = {n: p.detach().clone() for n, p in module.named_parameters()}
    module.reshard()
    return dict(
        job=job,
        rank=rank,
        world=world,
        local=local,
        whole={name: list(t.shape) for name, t in whole.items()},
        gathered_equal=all(torch.equal(gathered[n], t) for n, t in whole.items()),
    )


def run_job(spec: dict, job: dict, rank: int, world: int, expected) -> dict:
    if job["strategy"] == "fsdp-integer":
        return integer_shards(job, rank, world)
    import torch
    import torch.distributed as dist
    from torch.profiler import ProfilerActivity, profile

    from llmbook.measure import mark

    model, optimizer = wrap(build_model(spec["config"]), job)
    hook_marks(model)
    mine, _ = batches(spec, rank, world)
    grads, losses, step_s, held = 0, [], [], {}

    def step(ids):
        nonlocal grads
        mark("step<")
        held["out"] = model(input_ids=ids, labels=ids)  # kept until the next forward
        mark("loss")
        held["out"].loss.backward()
        grads = local_bytes(p.grad for p in model.parameters() if p.grad is not None)
        mark("opt<")
        optimizer.step()
        mark("opt>")
        optimizer.zero_grad()
        losses.append(held["out"].loss.item())
        mark("step>")

    peaks, moments, issued, backend, profiled = [], [], None, {}, []
    i = 0
    while i < len(mine):
        dist.barrier()
        start = time.perf_counter()
        if i == MEMORY_STEPS[0]:  # once every buffer exists: memory
            profiled.extend(MEMORY_STEPS)
            peaks, moments = measure_steps(
                model,
                optimizer,
                [lambda ids=ids: step(ids) for ids in mine[i : i + len(MEMORY_STEPS)]],
                len(decoder_layers(model)),
                held,
            )
            step_s.extend(
                [(time.perf_counter() - start) / len(MEMORY_STEPS)] * len(MEMORY_STEPS)
            )
            i += len(MEMORY_STEPS)
            continue
        if i == len(mine) - 1:  # the last step: the collectives it issues
            profiled.append(i)
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                step(mine[i])
            trace = Path(spec["out"]) / f"trace-rank{rank}.json"
            prof.export_chrome_trace(str(trace))
            events = json.loads(trace.read_text())
            issued = collectives(events)
            backend = backend_calls(events)
        else:
            step(mine[i])
        step_s.append(time.perf_counter() - start)
        i += 1
    result = dict(
        job=job,
        rank=rank,
        world=world,
        param_bytes=local_bytes(model.parameters()),
        grad_bytes=grads,
        state_bytes=local_bytes(states(optimizer)),
        peak_bytes=peaks,
        moment_bytes=moments,
        collectives=issued,
        backend_calls=backend,
        profiled_steps=profiled,
        losses=losses,
        step_s=step_s,
    )
    full = [
        p.full_tensor() if hasattr(p, "full_tensor") else p for p in model.parameters()
    ]
    if rank == 0:  # against one process: the largest difference, and the difference of
        initial, final = expected[job.get("optimizer", "adamw")]  # the whole update
        diff = [
            (a.detach().float() - b).flatten() for a, b in zip(full, final, strict=True)
        ]
        update = [(b - a).flatten() for a, b in zip(initial, final, strict=True)]
        result["max_param_diff"] = max(d.abs().max().item() for d in diff)
        result["update_rel_diff"] = (
            torch.cat(diff).norm() / torch.cat(update).norm()
        ).item()
    return result


def main(argv: list[str]) -> int:
    import torch
    import torch.distributed as dist

    spec = json.loads(Path(argv[0]).read_text())
    torch.set_num_threads(1)  # several processes share a few cores
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    _, everything = batches(spec, rank, world)
    expected = {}  # on rank 0, the one-process run for each optimizer
    if rank == 0:
        trained = [job for job in spec["jobs"] if job["strategy"] != "fsdp-integer"]
        for name in {job.get("optimizer", "adamw") for job in trained}:
            expected[name] = reference(spec, everything, {"optimizer": name})
    out = Path(spec["out"])
    job = {"name": "setup"}
    try:
        for job in spec["jobs"]:
            result = run_job(spec, job, rank, world, expected)
            path = out / f"{job['name']}-rank{rank}.json"
            path.write_text(json.dumps(result))
        dist.barrier()  # no rank tears gloo down while another is still in a collective
    except Exception as error:  # one line for the launcher's message
        (out / f"error-rank{rank}.txt").write_text(
            f"job {job['name']!r} on rank {rank}: {type(error).__name__}: {error}"[:500]
        )
        raise
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main(sys.argv[1:]))
