"""Chapter 14's quantizers (llmbook.pages.ch14), on shapes and data the chapter does not
use: GPTQ against brute force, AWQ's search against rounding, the k-quant bytes against
the gguf package's decoders, the Hadamard matrices and the rotation against the model's
own logits."""

from __future__ import annotations

from itertools import product

import numpy as np
import pytest
import torch

from llmbook.pages.ch14 import (
    awq_scales,
    dequantize_q4_k,
    dequantize_q6_k,
    gptq,
    grid_of,
    hadamard,
    quantize_q4_k,
    quantize_q6_k,
    rotate,
    round_to,
    rtn,
)


def output_error(w, w_hat, H):
    d = (w - w_hat).double()
    return float(torch.einsum("...ri,...ij,...rj->", d, H.double(), d))


def correlated(seed, tokens, cols, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(tokens, cols, generator=g, dtype=dtype)
    X = X @ torch.randn(cols, cols, generator=g, dtype=dtype) / cols**0.5
    X[:, 0] *= 8  # one channel with large inputs
    return X


def tiny_case(seed):
    """Output errors of rounding, GPTQ and the best of all codes on a 1 x 5 layer."""
    X = correlated(seed, 50, 5)
    H = X.T @ X / len(X)
    w = torch.randn(1, 5, generator=torch.Generator().manual_seed(100 + seed)).double()
    scale, zero = grid_of(w, bits=3, group=5)
    levels = ((torch.arange(-4, 4) - zero.item()) * scale.item()).double()
    every = torch.tensor(list(product(levels.tolist(), repeat=5)), dtype=torch.float64)
    d = every - w
    best = float(torch.einsum("ni,ij,nj->n", d, H, d).min())
    greedy = output_error(w, gptq(w, H, bits=3, group=5, damp=0), H)
    return output_error(w, rtn(w, 3, 5), H), greedy, best


def test_gptq_is_greedy_usually_better_than_rounding_never_better_than_the_best():
    cases = [tiny_case(seed) for seed in range(12)]
    assert all(best - 1e-12 <= greedy for _, greedy, best in cases)
    # not a theorem: an update can push a later weight past the grid's end (clipped)
    wins = sum(greedy < rounding for rounding, greedy, _ in cases)
    assert wins >= 8, cases


def naive_gptq(w, H, bits, group, act_order, damp=0.01):
    """GPTQ as the optimal brain surgeon writes it: one column at a time, the explicit
    inverse Hessian, the quantized column eliminated from it after each step."""
    w, cols = w.clone(), w.shape[1]
    scale, zero = grid_of(w, bits, group)
    scale, zero = scale.repeat_interleave(group, 1), zero.repeat_interleave(group, 1)
    order = torch.diag(H).argsort(descending=True) if act_order else torch.arange(cols)
    Hinv = torch.linalg.inv(
        H + damp * torch.diag(H).mean() * torch.eye(cols, dtype=H.dtype)
    )
    q, left = torch.zeros_like(w), list(order.tolist())
    for c in order.tolist():
        left.remove(c)
        q[:, c] = round_to(w[:, c], scale[:, c], zero[:, c], bits)
        err = (w[:, c] - q[:, c]) / Hinv[c, c]
        w[:, left] -= err[:, None] * Hinv[c, left][None, :]
        Hinv = Hinv - Hinv[:, c : c + 1] @ Hinv[c : c + 1, :] / Hinv[c, c]
    return q


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_with_lazy_blocks_equals_the_column_by_column_surgeon(act_order):
    cols = 40
    X = correlated(11, 200, cols)
    H = X.T @ X / len(X)
    w = torch.randn(6, cols, generator=torch.Generator().manual_seed(12)).double()
    fast = gptq(w, H, bits=3, group=8, block=8, act_order=act_order)
    assert torch.equal(fast, naive_gptq(w, H, 3, 8, act_order))
    assert not torch.equal(fast, rtn(w, 3, 8))  # the updates did something


def test_gptq_first_update_is_the_least_squares_refit():
    X = correlated(3, 40, 6)
    H = X.T @ X / len(X)
    w = torch.randn(1, 6, generator=torch.Generator().manual_seed(7)).double()
    Hinv = torch.linalg.inv(H)
    q0 = rtn(w, 3, 6)[0, 0]
    obs = w[0, 1:] - (w[0, 0] - q0) / Hinv[0, 0] * Hinv[0, 1:]
    refit = torch.linalg.lstsq(X[:, 1:], X @ w[0] - X[:, 0] * q0).solution
    assert torch.allclose(obs, refit)


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_stays_on_the_grid_and_beats_rounding(act_order):
    rows, cols, group = 48, 192, 64
    X = correlated(1, 400, cols, torch.float32)
    H = X.T @ X / len(X)
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(2)) * 0.05
    q = gptq(w, H, act_order=act_order)
    scale, zero = grid_of(w)
    codes = q.reshape(rows, -1, group) / scale[..., None] + zero[..., None]
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    assert codes.min() >= -8 and codes.max() <= 7
    assert output_error(w, q, H) < 0.8 * output_error(w, rtn(w), H)


def test_gptq_on_a_stack_equals_one_layer_at_a_time():
    cols = 128
    Xs = [correlated(s, 300, cols, torch.float32) for s in (4, 5)]
    H = torch.stack([X.T @ X / len(X) for X in Xs])
    w = torch.randn(2, 32, cols, generator=torch.Generator().manual_seed(9)) * 0.05
    both = gptq(w, H, act_order=True)
    for i in range(2):
        alone = gptq(w[i], H[i], act_order=True)
        assert (both[i] != alone).float().mean() < 1e-3


def test_round_to_is_rtn_on_the_grid():
    w = torch.randn(16, 128, generator=torch.Generator().manual_seed(0))
    scale, zero = grid_of(w, 4, 64)
    per_weight = round_to(
        w, scale.repeat_interleave(64, -1), zero.repeat_interleave(64, -1)
    )
    assert torch.equal(per_weight, rtn(w, 4, 64))


def test_awq_search_never_does_worse_than_rounding_on_its_sample():
    cols = 192
    X = correlated(6, 256, cols, torch.float32).abs() * torch.linspace(0.1, 3, cols)
    stats = {"X": X, "abs": X.abs().mean(0)}
    w = torch.randn(64, cols, generator=torch.Generator().manual_seed(1)) * 0.05
    s, alpha = awq_scales(w, stats)
    err_awq = float((X @ (rtn(w * s) / s).T - X @ w.T).pow(2).mean())
    err_rtn = float((X @ rtn(w).T - X @ w.T).pow(2).mean())
    assert err_awq <= err_rtn + 1e-9 and 0 <= alpha <= 1
    assert s.argmax() == stats["abs"].argmax() or alpha == 0  # the loudest channel


KQUANTS = [
    ("Q4_K", quantize_q4_k, dequantize_q4_k, 144),
    ("Q6_K", quantize_q6_k, dequantize_q6_k, 210),
]


@pytest.mark.parametrize("kind,encode,decode,nbytes", KQUANTS, ids=lambda k: str(k))
@pytest.mark.parametrize("rows,blocks,seed", [(1, 1, 0), (7, 3, 1), (33, 2, 2)])
def test_k_quants_decode_bit_for_bit_with_gguf(
    kind, encode, decode, nbytes, rows, blocks, seed
):
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    rng = np.random.default_rng(seed)
    x = (rng.standard_t(4, size=(rows, 256 * blocks)) * 0.03).astype(np.float32)
    x[0, :32] = 0  # an all-zero block
    x[-1, 32:64] = 0.25  # a constant block
    b = encode(x)
    assert b.shape == (rows, blocks * nbytes) and b.dtype == np.uint8
    theirs = dequantize(b, GGMLQuantizationType[kind])
    ours = decode(b.reshape(-1, nbytes)).reshape(x.shape)
    assert np.array_equal(ours, theirs)
    assert np.isfinite(ours).all() and (ours[0, :32] == 0).all()
    bound = {"Q4_K": 0.12, "Q6_K": 0.03}[kind]  # relative error on heavy-tailed weights
    assert np.linalg.norm(ours - x) / np.linalg.norm(x) < bound


def test_the_importance_matrix_lowers_the_weighted_error():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((64, 512)) * 0.02).astype(np.float32)
    imatrix = np.where(rng.random(512) < 0.1, 50.0, 0.1).astype(np.float32)

    def weighted(b):
        return float(
            (
                imatrix
                * (dequantize_q4_k(b.reshape(-1, 144)).reshape(x.shape) - x) ** 2
            ).sum()
        )

    assert weighted(quantize_q4_k(x, imatrix)) < 0.9 * weighted(quantize_q4_k(x))


@pytest.mark.parametrize("n", [1, 2, 12, 24, 48, 144, 192, 576, 1536])
def test_hadamard_is_orthogonal_with_equal_magnitudes(n):
    H = hadamard(n)
    assert torch.allclose(H @ H.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(H.abs(), torch.full((n, n), n**-0.5, dtype=torch.float64))


@pytest.mark.parametrize("n", [20, 36, 576 * 5])
def test_hadamard_refuses_sizes_it_cannot_build(n):
    with pytest.raises(ValueError, match="no Hadamard matrix"):
        hadamard(n)


def test_rotation_keeps_a_llama_models_outputs():
    from llmbook.models import build, tiny_config

    config = tiny_config(
        "llama",
        hidden_size=192,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    model = build(config, dtype=torch.float32)
    with torch.no_grad():  # norms that are not all ones, so folding them matters
        for m in model.modules():
            if "RMSNorm" in type(m).__name__:
                m.weight.uniform_(0.5, 2.0)
    ids = torch.randint(
        0, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0)
    )
    rotated = rotate(model, hadamard(192))
    with torch.no_grad():
        a, b = model(ids).logits, rotated(ids).logits
    assert torch.allclose(a, b, atol=1e-4 * float(a.abs().max()))
    first = rotated.model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(first, model.model.layers[0].self_attn.q_proj.weight)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_text_chunks_says_when_the_text_is_too_short():
    from llmbook import smollm

    class Words:  # a tokenizer stand-in: one token per character
        def __call__(self, text, return_tensors):
            class Out:
                input_ids = torch.arange(len(text))[None]

            return Out()

    chunks = smollm.text_chunks(Words(), "x" * 100, 3, 10)
    assert chunks.shape == (3, 10) and chunks[0, 0] == 0 and chunks[-1, -1] == 99
    with pytest.raises(ValueError, match="the text has 100 tokens, fewer than 20 x 10"):
        smollm.text_chunks(Words(), "x" * 100, 20, 10)
