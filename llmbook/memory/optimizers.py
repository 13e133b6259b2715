"""Optimizer states: AdamW (two moments and a step per tensor), bitsandbytes' AdamW8bit
(block-wise 8-bit moments, small tensors in 32 bits, shared code tables) and SGD with
momentum; and the temporaries of the update itself (:func:`optimizer_temporaries`), which
:mod:`.steps` counts at the optimizer step."""

from __future__ import annotations

import math

from .weights import EstimateError

#: Optimizers the estimator counts (``optimizer_state_bytes``).
OPTIMIZERS = ("adamw", "adamw8bit", "sgd")


BNB_OPTIMIZER_BLOCK = 256  # elements per fp32 absmax of an 8-bit optimizer state


BNB_MIN_8BIT_SIZE = 4096  # smaller tensors keep 32-bit states (bitsandbytes' default)


def optimizer_state_bytes(
    numels: list[int], optimizer: str = "adamw", width: int = 4
) -> int:
    """Bytes an optimizer keeps for trainable tensors of ``numels`` elements whose
    parameters are ``width`` bytes wide (its state after the first step):

    - ``adamw`` (``torch.optim.AdamW``): two moments in the parameters' dtype per element
      and a 4-byte fp32 ``step`` per tensor;
    - ``adamw8bit`` (``bitsandbytes.optim.AdamW8bit``): for tensors of at least 4096
      elements, two 1-byte moments per element and one fp32 absmax per block of 256 for
      each; smaller tensors keep two fp32 moments; two 256-entry fp32 code tables shared
      by all tensors; the step is a Python int;
    - ``sgd`` (``torch.optim.SGD`` with momentum): one momentum buffer in the
      parameters' dtype per element.
    """
    if optimizer == "adamw":
        return sum(2 * width * n + 4 for n in numels)
    if optimizer == "sgd":
        return sum(width * n for n in numels)
    if optimizer != "adamw8bit":
        raise EstimateError(
            f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
        )
    total = 2 * 256 * 4 if any(n >= BNB_MIN_8BIT_SIZE for n in numels) else 0
    for n in numels:
        if n >= BNB_MIN_8BIT_SIZE:
            total += 2 * (n + 4 * math.ceil(n / BNB_OPTIMIZER_BLOCK))
        else:
            total += 2 * 4 * n
    return total


#: How torch's AdamW may run its step (``optimizer_impl``): ``foreach`` (its default
#: when every parameter is on a GPU), ``for-loop`` (its default on a CPU, and for tensor
#: types it cannot batch) and ``fused`` (``fused=True``).
OPTIMIZER_IMPLS = ("foreach", "for-loop", "fused")


def optimizer_temporaries(
    numels: list[int], optimizer: str = "adamw", impl: str = "foreach", width: int = 4
) -> int:
    """Bytes the optimizer step allocates for a moment beyond its states, for trainable
    tensors of ``numels`` elements (in the optimizer's order: the model's parameters')
    whose states are ``width`` bytes wide. torch's AdamW (``torch/optim/adam.py``)
    computes ``denom = (exp_avg_sq.sqrt() / c).add_(eps)``: ``foreach`` does it for
    every tensor at once (one copy of all of them; the division is in place);
    ``for-loop`` one tensor at a time, the square root and the quotient both alive for a
    moment while the loop's variable still holds the previous tensor's ``denom`` (the
    largest ``2 n_i + n_(i-1)``); ``fused`` inside its kernel (none). Measured on CPU
    (the book's tests): exactly these, plus the few bytes of the step counters. SGD with
    momentum and bitsandbytes' 8-bit AdamW update in place: none."""
    if impl not in OPTIMIZER_IMPLS:
        raise EstimateError(
            f"unknown optimizer_impl {impl!r}; choose one of {', '.join(OPTIMIZER_IMPLS)}"
        )
    if optimizer != "adamw" or impl == "fused" or not numels:
        return 0
    if impl == "foreach":
        return width * sum(numels)
    # the loop's variable still holds the tensor before's denominator
    return width * max(
        2 * n + (numels[i - 1] if i else 0) for i, n in enumerate(numels)
    )
