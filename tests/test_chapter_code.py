"""The mechanisms the chapters teach are written on their pages; test that code itself.

The definitions come from the pages' ``# @save`` cells, which scripts/sync_notebooks.py
writes into ``llmbook.pages`` (a test fails while that module is stale), so a test fails
when the page's code changes behaviour.
"""

from __future__ import annotations

import math

import pytest
import torch

from llmbook.pages import ch01, ch03, ch04, ch07

# --- chapter 3: quantizers -------------------------------------------------------------

Q = vars(ch03)


def test_absmax_reproduces_the_notes_example():
    codes, scale = Q["quantize_absmax"](torch.tensor([2.1, 3.1, 2.5, 3.7, 3.3]))
    assert round(1 / scale.item(), 4) == 34.3243
    assert codes.tolist() == [72, 106, 86, 127, 113]
    restored = Q["dequantize_absmax"](codes, scale)
    assert [round(v, 4) for v in restored.tolist()] == [
        2.0976,
        3.0882,
        2.5055,
        3.7,
        3.2921,
    ]


def test_absmax_hand_case_4_bit():
    codes, scale = Q["quantize_absmax"](torch.tensor([-1.2, 0.0, 0.5, 2.0]), bits=4)
    assert scale.item() == pytest.approx(2 / 7)
    assert codes.tolist() == [-4, 0, 2, 7]  # -4.2 and 1.75 round to -4 and 2
    codes, _ = Q["quantize_absmax"](torch.tensor([-2.5, 0.5, 1.5, 127.0]))
    assert codes.tolist() == [-2, 0, 2, 127]  # exact ties go to the even code


def test_zeropoint_hand_cases():
    codes, scale, zp = Q["quantize_zeropoint"](
        torch.tensor([0.0, 1.0, 2.0, 3.0]), bits=2
    )
    assert scale.item() == 1.0 and zp.item() == -2 and codes.tolist() == [-2, -1, 0, 1]
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0])
    codes, scale, zp = Q["quantize_zeropoint"](x)
    assert scale.item() == pytest.approx(3 / 255) and zp.item() == -128 + 85
    assert Q["dequantize_zeropoint"](codes, scale, zp)[1].item() == 0.0  # zero is exact


def test_zeropoint_of_positive_data_starts_at_qmin():
    codes, scale, zp = Q["quantize_zeropoint"](torch.tensor([2.1, 3.1, 2.5, 3.7, 3.3]))
    assert zp.item() == -128 and codes.max().item() == 127
    assert scale.item() == pytest.approx(3.7 / 255)


DATA = {
    "normal": lambda g: torch.randn(64, 96, generator=g),
    "skewed": lambda g: torch.nn.functional.gelu(torch.randn(64, 96, generator=g)),
    "positive": lambda g: torch.rand(64, 96, generator=g) + 1,
    "negative": lambda g: -torch.rand(64, 96, generator=g) * 5,
    "outlier": lambda g: torch.randn(64, 96, generator=g).index_put_(
        (torch.tensor([3]), torch.tensor([7])), torch.tensor(80.0)
    ),
    "constant": lambda g: torch.full((64, 96), 0.25),
    "zeros": lambda g: torch.zeros(64, 96),
}


@pytest.mark.parametrize("data", sorted(DATA))
@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("axis", [None, 1])
def test_round_trip_is_within_half_a_step(data, bits, axis):
    x = DATA[data](torch.Generator().manual_seed(bits))
    codes, scale = Q["quantize_absmax"](x, bits, axis)
    qmax = 2 ** (bits - 1) - 1
    assert codes.abs().max() <= qmax
    err = (Q["dequantize_absmax"](codes, scale) - x).abs()
    assert (err <= scale / 2 * (1 + 1e-5) + 1e-7).all()
    codes, scale, zp = Q["quantize_zeropoint"](x, bits, axis)
    assert codes.min() >= -(2 ** (bits - 1)) and codes.max() <= qmax
    assert ((zp >= -(2 ** (bits - 1))) & (zp <= qmax)).all(), (
        "the zero point fits the integer type"
    )
    err = (Q["dequantize_zeropoint"](codes, scale, zp) - x).abs()
    assert (err <= scale / 2 * (1 + 1e-5) + 1e-7).all()


def test_sqnr_of_a_known_noise_level():
    x = torch.ones(1000)
    assert Q["sqnr_db"](x, x + 0.1) == pytest.approx(20.0)


# --- chapter 1: bits and rounding ------------------------------------------------------

F = vars(ch01)


@pytest.mark.parametrize(
    "bits, e, m, value",
    [
        ("0" + "01111111" + "0" * 23, 8, 23, 1.0),
        ("1" + "10000000" + "1" + "0" * 22, 8, 23, -3.0),
        ("0" + "00000" + "0000000001", 5, 10, 2.0**-24),  # smallest fp16 subnormal
        ("0" + "11110" + "1111111111", 5, 10, 65504.0),  # largest fp16
        ("0" + "11111" + "0000000000", 5, 10, math.inf),
    ],
)
def test_decode_known_bit_patterns(bits, e, m, value):
    assert F["decode"](bits, e, m) == value


def test_decode_e4m3fn_has_no_infinity():
    assert F["decode"]("0" + "1111" + "110", 4, 3, ieee_special=False) == 448.0
    assert math.isnan(F["decode"]("0" + "1111" + "111", 4, 3, ieee_special=False))


def test_to_bits_matches_the_ieee_layout():
    assert F["to_bits"](1.0, torch.float16) == "0011110000000000"
    assert F["to_bits"](-2.5, torch.bfloat16) == "1100000000100000"


def test_hand_written_rounding_matches_torch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, generator=g) * torch.exp(
        torch.randn(200_000, generator=g) * 5
    )
    ties = (
        (torch.randint(-(2**15), 2**15, (1000,), generator=g) * 2**16 + 2**15)
        .to(torch.int32)
        .view(torch.float32)
    )
    x = torch.cat([x, ties[torch.isfinite(ties)]])
    ours = F["fp32_to_bf16_round_nearest_even"](x).view(torch.int16)
    assert torch.equal(ours, x.to(torch.bfloat16).view(torch.int16))
    assert torch.equal(F["round_mantissa"](x, 7), x.to(torch.bfloat16).float())
    truncated = F["fp32_to_bf16_truncate"](x).float()
    assert (truncated.abs() <= x.abs()).all()


# --- chapter 4: LLM.int8() and NF4 ------------------------------------------------------

bnb = pytest.importorskip("bitsandbytes")
L = vars(ch04)


def test_llm_int8_by_hand():
    # values whose int8 codes are exact: the product is exact
    X = torch.tensor([[1.0, -1.0], [0.5, 0.5]]).half()
    W = torch.tensor([[1.0, -1.0], [-4.0, 4.0]]).half()
    assert L["llm_int8_matmul"](X, W).tolist() == [[2.0, -8.0], [0.0, 0.0]]
    # 0.5 of a row with absmax 1 is 63.5 steps: rounds to the even 64
    Y = L["llm_int8_matmul"](
        torch.tensor([[1.0, 0.5]]).half(), torch.tensor([[1.0, 1.0]]).half()
    )
    assert Y.item() == torch.tensor((127 * 127 + 64 * 127) / 127**2).half().item()


def test_llm_int8_sends_outlier_columns_through_fp16():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(32, 64, generator=g)
    X[:, 5] = 40.0
    W = torch.randn(48, 64, generator=g) * 0.05
    reference = X @ W.T
    Y = L["llm_int8_matmul"](X.half(), W.half())
    plain = L["llm_int8_matmul"](X.half(), W.half(), threshold=float("inf"))

    def err(y):
        return ((y.float() - reference).norm() / reference.norm()).item()

    assert err(Y) < err(plain) / 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_llm_int8_matches_bitsandbytes(seed):
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(40, 96, generator=g)
    X[:, [3, 50]] *= 15
    W = torch.randn(80, 96, generator=g) * 0.05
    ours = L["llm_int8_matmul"](X.half(), W.half()).float()
    with torch.no_grad():
        theirs = L["bnb_linear8bit"](W.half())(X.half()).float()
    cols = (X.half().abs() >= 6).any(0)
    outlier_part = X[:, cols] @ W[:, cols].T
    step = (
        torch.finfo(torch.float16).eps * (2 * theirs.abs() + outlier_part.abs())
        + 2**-24
    )
    assert ((ours - theirs).abs() <= step).all()


def test_nf4_code_book_matches_bitsandbytes_and_is_symmetric_enough():
    import bitsandbytes.functional as bnbF

    book = L["nf4_code_book"]()
    assert torch.allclose(book, bnbF.get_4bit_type("nf4", device="cpu"), atol=1e-6)
    assert (
        book.numel() == 16
        and book[0] == -1
        and book[-1] == 1
        and (book == 0).sum() == 1
    )
    assert (book[1:] > book[:-1]).all()


def test_nf4_round_trip_picks_the_nearest_code():
    g = torch.Generator().manual_seed(3)
    W = torch.randn(16, 64, generator=g)
    codes, absmax = L["quantize_nf4"](W)
    back = L["dequantize_nf4"](codes, absmax, W.shape)
    book = L["nf4_code_book"]()
    gaps = (book[1:] - book[:-1]).max()
    assert (
        (W - back).abs() <= gaps / 2 * absmax.repeat_interleave(1, 0).max() + 1e-6
    ).all()
    # the block's largest magnitude is exact (it maps to +-1)
    blocks, back_blocks = W.reshape(-1, 64), back.reshape(-1, 64)
    i = blocks.abs().argmax(dim=1)
    assert torch.allclose(
        back_blocks.gather(1, i[:, None]), blocks.gather(1, i[:, None])
    )


# --- chapter 6: bytes saved for backward -----------------------------------------------

S = ch07.saved_for_backward


def test_saved_for_backward_hand_cases():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
    )
    assert S(mlp, lambda: mlp(torch.randn(3, 4)).sum())[0] == 3 * (4 + 8) * 4
    # a product of two tensors that need gradients saves both; parameters are not counted
    a, b = torch.randn(5, requires_grad=True), torch.randn(5, requires_grad=True)
    assert S(torch.nn.Module(), lambda: (a * b).sum())[0] == 2 * 5 * 4
    layer = torch.nn.Linear(6, 6, bias=False)
    assert (
        S(layer, lambda: layer(torch.randn(2, 6, dtype=torch.float32)).sum())[0]
        == 2 * 6 * 4
    )


def test_saved_for_backward_counts_shared_storage_once():
    x = torch.randn(10, requires_grad=True)
    nbytes, _ = S(
        torch.nn.Module(), lambda: (x * x).sum()
    )  # x saved twice, one storage
    assert nbytes == 10 * 4
