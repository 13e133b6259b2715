"""bitsandbytes' two CPU paths for 4-bit layers, and the layer shapes both accept.

bitsandbytes 0.50 runs a 4-bit layer (``Linear4bit``, nf4 or fp4) on a CPU in one of two
ways. On a processor whose native library reports AVX512-BF16 (Intel Sapphire Rapids and
later, AMD Zen 4 and later), the first forward pass in eval mode with an input that needs
no gradient **repacks** the layer: the 4-bit codes move into a blocked layout and the
block constants (absmax) become bf16, double quantization undone. Elsewhere (older
CPUs, train mode, CUDA) the stored layout is used as it is. This module says which path a
machine takes (:func:`cpu_4bit_path`), which layer shapes the packed path accepts
(:func:`shape_problem`: ``in_features`` a multiple of the 64-weight quantization block,
``out_features`` a multiple of the 32-row output block), and checks a model before it
crashes in a reshape (:func:`check_4bit_model`).

With the environment variable ``LLMBOOK_STRICT_4BIT=1`` (the test suite and its book
build set it), importing :mod:`llmbook` makes every ``Linear4bit`` created afterwards
check its shape on any machine, so a shape that only the packed path rejects fails on
a machine that lacks the path too.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import sys
from typing import Any

#: Weights per absmax constant (bitsandbytes' default 4-bit block size on every device).
BLOCKSIZE = 64
#: Output rows per block of the packed CPU layout (``block_n`` in bitsandbytes).
PACKED_BLOCK_N = 32
#: Environment variable that turns on the shape check at construction time.
STRICT_ENV = "LLMBOOK_STRICT_4BIT"


class UnsupportedShape(ValueError):
    """A 4-bit layer's shape cannot run on bitsandbytes' packed CPU path; the message says why."""


def cpu_4bit_path() -> str:
    """Which CPU path bitsandbytes takes for 4-bit layers here: ``"packed"``, ``"plain"``
    or ``"no bitsandbytes"`` when it is not installed."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return "no bitsandbytes"
    from bitsandbytes.functional import has_avx512bf16

    return "packed" if has_avx512bf16() else "plain"


def shape_problem(
    in_features: int, out_features: int, blocksize: int = BLOCKSIZE
) -> str | None:
    """Why a 4-bit ``Linear(in_features, out_features)`` cannot take the packed CPU path,
    or None when it can."""
    problems = []
    if in_features % blocksize:
        problems.append(
            f"in_features={in_features} is not a multiple of the {blocksize}-weight block"
        )
    if out_features % PACKED_BLOCK_N:
        problems.append(
            f"out_features={out_features} is not a multiple of {PACKED_BLOCK_N}"
        )
    return " and ".join(problems) or None


def _message(name: str, problem: str) -> str:
    return (
        f"4-bit layer {name}: {problem}, so bitsandbytes' packed CPU path (AVX512-BF16) cannot run it; "
        f"use a multiple of {BLOCKSIZE} for every linear layer's sizes, or run on a GPU."
    )


def quantized_linear_shapes(
    model, skip: tuple[str, ...] = ("lm_head",)
) -> dict[str, tuple[int, int]]:
    """``{name: (in_features, out_features)}`` of the linear layers bitsandbytes would
    quantize in ``model`` (every ``nn.Linear`` and GPT-2 ``Conv1D`` except the output head,
    its default)."""
    import torch
    from transformers.pytorch_utils import (
        Conv1D,
    )  # GPT-2's linear layers, which bitsandbytes quantizes too

    shapes = {}
    for name, m in model.named_modules():
        if name.split(".")[-1] in skip:
            continue
        if isinstance(m, torch.nn.Linear):
            shapes[name] = (m.in_features, m.out_features)
        elif isinstance(m, Conv1D):
            shapes[name] = tuple(
                m.weight.shape
            )  # (in, out): Conv1D stores the transpose
    return shapes


def config_problems(config) -> list[str]:
    """One sentence per linear layer of ``config``'s model that the packed path would
    reject (built on the meta device: no memory, any size)."""
    from .models import meta_model

    model = meta_model(config)
    return [
        _message(n, p)
        for n, (i, o) in quantized_linear_shapes(model).items()
        if (p := shape_problem(i, o))
    ]


def check_4bit_model(model, strict: bool | None = None) -> None:
    """Raise :class:`UnsupportedShape` (one sentence) when a 4-bit layer of ``model``
    cannot take the packed CPU path. By default it checks only where that path exists
    (or under ``LLMBOOK_STRICT_4BIT=1``); ``strict=True`` checks on any machine."""
    if strict is None:
        strict = (
            os.environ.get(STRICT_ENV, "0") not in ("", "0", "false", "False")
            or cpu_4bit_path() == "packed"
        )
    if not strict or importlib.util.find_spec("bitsandbytes") is None:
        return
    import bitsandbytes as bnb

    for name, m in model.named_modules():
        if not isinstance(m, bnb.nn.Linear4bit):
            continue
        blocksize = getattr(m.weight, "blocksize", None) or BLOCKSIZE
        if p := shape_problem(m.in_features, m.out_features, blocksize):
            raise UnsupportedShape(
                _message(name, p).replace(
                    f"multiple of {BLOCKSIZE} for", f"multiple of {blocksize} for"
                )
            )


def quant_constants(model) -> list:
    """Every quantization constant a bitsandbytes model holds, as tensors: int8 row
    scales (``SCB``) and 4-bit block constants (absmax, code book; with double
    quantization also the absmax's own constants and offset). ``get_memory_footprint()``
    leaves these out; count them with :func:`llmbook.measure.tensor_bytes`."""
    found = []
    for module in model.modules():
        w = getattr(module, "weight", None)
        if getattr(w, "SCB", None) is not None:
            found.append(w.SCB)
        qs = getattr(w, "quant_state", None)
        if qs is not None:
            found += [qs.absmax, qs.code]
            if qs.nested:
                found += [qs.state2.absmax, qs.state2.code, qs.offset]
    return found


def quant_bytes(layer) -> dict[str, Any]:
    """The bytes a 4-bit layer holds now: its codes and their constants, with the
    constants' dtype and whether the layer has been repacked for the CPU."""
    qs = layer.weight.quant_state
    parts = {"codes": layer.weight.data.nbytes, "absmax": qs.absmax.nbytes}
    if qs.nested:
        parts["absmax of absmax"] = qs.state2.absmax.nbytes
        parts["code table and offset"] = qs.state2.code.nbytes + qs.offset.nbytes
    return {
        "bytes": parts,
        "total": sum(parts.values()),
        "absmax_dtype": str(qs.absmax.dtype).replace("torch.", ""),
        "packed": bool(getattr(qs, "packing_format_for_cpu", False)),
    }


def pack_like_cpu(layer) -> None:
    """Apply bitsandbytes' own CPU repacking to ``layer`` in place, as the first eval
    forward does on a CPU with AVX512-BF16: shows the result on any machine."""
    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    layer.weight.data, layer.weight.quant_state = _convert_weight_packed_for_cpu(
        layer.weight.data, layer.weight.quant_state
    )


# --- strict mode: a shape check at construction, installed when bitsandbytes loads ---


def _patch(linear4bit_cls) -> None:
    if getattr(linear4bit_cls, "_llmbook_strict", False):
        return
    original = linear4bit_cls.__init__

    @functools.wraps(original)
    def __init__(self, input_features, output_features, *args, **kwargs):
        if problem := shape_problem(input_features, output_features):
            raise UnsupportedShape(
                _message(f"Linear4bit({input_features}, {output_features})", problem)
            )
        original(self, input_features, output_features, *args, **kwargs)

    linear4bit_cls.__init__ = __init__
    linear4bit_cls._llmbook_strict = True


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches ``bitsandbytes.nn.modules.Linear4bit`` right after that module loads."""

    target = "bitsandbytes.nn.modules"

    def find_spec(self, fullname, path, target=None):
        if fullname != self.target:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _patch(module.Linear4bit)

        spec.loader.exec_module = exec_module
        return spec


def install_strict_check() -> None:
    """Make every ``Linear4bit`` created from now on check its shape (any machine) against
    the default 64-weight block (the block size is set later, on the weight; a layer with
    another block size is checked by :func:`check_4bit_model`)."""
    module = sys.modules.get(_PatchOnImport.target)
    if module is not None:
        _patch(module.Linear4bit)
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


def state_dict_after_cpu_forward(weight, seed: int = 0) -> list[dict[str, Any]]:
    """What ``state_dict()`` (which saving calls) does to a layer the CPU has repacked.

    ``Linear4bit._save_to_state_dict`` undoes the packing on the live module, in place, but
    in bitsandbytes 0.50.2 the inverse rebuilds the constants only for double
    quantization: plain nf4 keeps bf16, transposed absmax. For nf4 with and without double
    quantization: the saved absmax's dtype and shape, and the relative error of the layer's
    output afterwards (train mode, then eval mode) against the layer before any of this.
    Where this CPU has no packed path the packing is applied by hand.
    """
    import torch

    torch.manual_seed(seed)
    x = torch.randn(8, weight.shape[1], dtype=torch.bfloat16)
    rows = []
    for double_quant in (False, True):
        with torch.no_grad():
            y_ref = nf4_layer(weight, double_quant).train()(x).float()
            layer = nf4_layer(weight, double_quant)
            layer(x)  # the first eval forward: repacks where the path exists
            by_hand = not quant_bytes(layer)["packed"]
            if by_hand:
                pack_like_cpu(layer)
            absmax = layer.state_dict()["weight.absmax"]
            errors = {
                mode: (
                    (layer.train(mode == "train")(x).float() - y_ref).norm()
                    / y_ref.norm()
                ).item()
                for mode in ("train", "eval")
            }
        rows.append(
            {
                "double_quant": double_quant,
                "packed_by_hand": by_hand,
                "saved_absmax": f"{str(absmax.dtype).replace('torch.', '')} {tuple(absmax.shape)}",
                "train_rel_error": errors["train"],
                "eval_rel_error": errors["eval"],
            }
        )
    return rows


# --- bitsandbytes issue 2078: moving a repacked layer to a GPU ---


def nf4_layer(weight, double_quant: bool = False, compute_dtype=None):
    """A bitsandbytes nf4 ``Linear4bit`` (no bias) holding ``weight``, quantized on the CPU, in eval mode."""
    import bitsandbytes as bnb
    import torch

    out_features, in_features = weight.shape
    layer = bnb.nn.Linear4bit(
        in_features,
        out_features,
        bias=False,
        quant_type="nf4",
        compress_statistics=double_quant,
        compute_dtype=compute_dtype or torch.bfloat16,
    )
    layer.weight = bnb.nn.Params4bit(
        weight.detach().clone(),
        requires_grad=False,
        quant_type="nf4",
        compress_statistics=double_quant,
    )
    return layer.to("cpu").eval()


def move_after_cpu_forward(
    weight, device: str = "cuda", seed: int = 0
) -> dict[str, Any]:
    """Run 4-bit layers once on the CPU, move them to ``device`` two ways, and compare each
    moved layer's output with the same layer quantized and run on ``device`` directly.

    ``module.to(device)`` calls ``Params4bit.to``, which keeps a CPU-packed layout
    (bitsandbytes issue 2078); ``module.cuda()`` calls ``Params4bit.cuda``, which first
    undoes the packing. Each case runs for nf4 with and without double quantization, once
    as this machine's forward pass left the layer (packed only where the packed path
    exists) and once packed by hand. Errors are relative, ``||y - y_ref|| / ||y_ref||``;
    an exception is reported as its one-line text.
    """
    import torch

    torch.manual_seed(seed)
    x = torch.randn(8, weight.shape[1], dtype=torch.bfloat16)
    rows = []
    for double_quant in (False, True):
        with torch.no_grad():
            y_ref = nf4_layer(weight, double_quant).to(device)(x.to(device)).float()
        for by_hand in (False, True):
            row: dict[str, Any] = {
                "double_quant": double_quant,
                "packed_by_hand": by_hand,
            }
            for how in ("to", "cuda"):
                layer = nf4_layer(weight, double_quant)
                with torch.no_grad():
                    layer(
                        x
                    )  # the first eval forward on the CPU: repacks where the path exists
                if by_hand and not quant_bytes(layer)["packed"]:
                    pack_like_cpu(layer)
                row["packed_before_move"] = quant_bytes(layer)["packed"]
                try:
                    moved = layer.to(device) if how == "to" else layer.cuda()
                    with torch.no_grad():
                        y = moved(x.to(device)).float()
                    row[f"{how}_rel_error"], row[f"{how}_error"] = (
                        ((y - y_ref).norm() / y_ref.norm()).item(),
                        None,
                    )
                except Exception as exc:  # noqa: BLE001 - reported, not raised: this is the finding
                    row[f"{how}_rel_error"] = None
                    row[f"{how}_error"] = (
                        f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    )
            rows.append(row)
    return {
        "cpu_path": cpu_4bit_path(),
        "device": device,
        "shape": list(weight.shape),
        "cases": rows,
    }
