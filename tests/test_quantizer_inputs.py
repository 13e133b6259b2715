"""The book's from-scratch quantizers on the inputs real tensors have but tests forget:
an all-zero tensor (a LoRA B matrix at initialisation), an all-zero block inside a
non-zero tensor (zero padding), a constant block, and tiny values. None may give NaN for
finite input, and zeros come back as zeros."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from llmbook.pages import ch03, ch04, ch09, ch12


def with_zero_block(shape=(4, 64), block=(1, slice(None))) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(*shape)
    x[block] = 0
    return x


INPUTS = {
    "all zero": torch.zeros(4, 64),
    "a zero block": with_zero_block(),
    "constant": torch.full((4, 64), 0.75),
    "tiny": torch.full((4, 64), 1e-40).index_fill_(1, torch.tensor([3, 40]), 0.0),
}


@pytest.fixture(autouse=True)
def numpy_warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by zero would print to stderr
        yield


def check(name: str, x: torch.Tensor, x_hat: torch.Tensor, exact_zeros=True):
    assert not torch.isnan(x_hat).any(), f"{name}: NaN"
    if exact_zeros:
        assert torch.all(x_hat[x == 0] == 0), f"{name}: zeros do not come back"


@pytest.mark.parametrize("case", INPUTS)
@pytest.mark.parametrize("bits", [8, 4])
def test_chapter_3_absmax_and_zero_point(case, bits):
    x = INPUTS[case]
    for axis in (None, 1):
        codes, scale = ch03.quantize_absmax(x, bits, axis=axis)
        check(case, x, ch03.dequantize_absmax(codes, scale))
        codes, scale, zero_point = ch03.quantize_zeropoint(x, bits, axis=axis)
        check(case, x, ch03.dequantize_zeropoint(codes, scale, zero_point))


def test_chapter_3_sqnr_of_exact_and_of_silence():
    zeros, ones = torch.zeros(8), torch.ones(8)
    assert ch03.sqnr_db(zeros, zeros) == math.inf
    assert ch03.sqnr_db(ones, ones) == math.inf
    assert ch03.sqnr_db(zeros, ones) == -math.inf
    assert ch03.sqnr_db(ones, ones * 1.1) == pytest.approx(20.0)


@pytest.mark.parametrize("case", INPUTS)
def test_chapter_4_nf4(case):
    x = INPUTS[case]
    codes, absmax = ch04.quantize_nf4(x)
    check(case, x, ch04.dequantize_nf4(codes, absmax, x.shape))
    zero_code = int(ch04.nf4_code_book().abs().argmin())
    assert torch.all(codes.flatten()[(x == 0).flatten()] == zero_code), case


@pytest.mark.parametrize("case", ["all zero", "a zero block", "constant"])
def test_chapter_4_llm_int8(case):
    X = INPUTS[case].half()
    W = with_zero_block((32, 64), (slice(0, 8), slice(None))).half()
    Y = ch04.llm_int8_matmul(X, W)
    reference = X.float() @ W.float().T
    assert not torch.isnan(Y).any()
    assert torch.allclose(
        Y.float(), reference, atol=0.05 * reference.abs().max() + 1e-3
    )
    assert torch.all(Y[:, :8] == 0) and torch.all(Y[(X == 0).all(1)] == 0)


@pytest.mark.parametrize("case", INPUTS)
def test_chapter_9_q4_1(case):
    x = INPUTS[case].reshape(-1, 32).numpy()
    x_hat = ch09.quantize_q4_1(x)
    assert not np.isnan(x_hat).any()
    assert np.all(x_hat[(x == 0).all(1)] == 0)
    assert np.allclose(x_hat[x.max(1) == x.min(1)], x[x.max(1) == x.min(1)], atol=1e-3)


@pytest.mark.parametrize("case", INPUTS)
@pytest.mark.parametrize("rule", ["floor", "rceil"])
@pytest.mark.parametrize("fmt", list(ch12.MX_FORMATS))
def test_chapter_12_mx(case, rule, fmt):
    x = INPUTS[case]
    scale, elements = ch12.quantize_mx(x, fmt, rule=rule)
    check(case, x, ch12.dequantize_mx(scale, elements), exact_zeros=True)


@pytest.mark.parametrize("case", INPUTS)
def test_chapter_12_nvfp4(case):
    x = INPUTS[case]
    tensor_scale, block, elements = ch12.quantize_nvfp4(x)
    x_hat = ch12.dequantize_nvfp4(tensor_scale, block, elements)
    check(case, x, x_hat)
    assert torch.isfinite(block).all() and math.isfinite(float(tensor_scale))
    if case == "constant":
        assert torch.allclose(x_hat, x, rtol=0.07)
