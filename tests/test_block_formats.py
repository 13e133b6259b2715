"""Chapter 12's formats, written from scratch on the page, against the references.

The small floats (FP4 E2M1, FP6 E3M2/E2M3, E8M0) decode and round as ``ml_dtypes`` and
torch do; MX block scaling and NVFP4 give torchao's scale and element codes bit for bit;
a small GPT-OSS model stored in gpt-oss's MXFP4 layout is what ``llmbook.memory``
predicts, in the file and once transformers has dequantized it.
"""

from __future__ import annotations

import json
import math

import ml_dtypes
import numpy as np
import pytest
import torch

from llmbook import memory
from llmbook.measure import tensor_bytes
from llmbook.pages.ch01 import decode
from llmbook.pages.ch12 import (
    GPT_OSS_20B,
    ML_DTYPE,
    MX_BLOCK,
    MX_FORMATS,
    SMALL_GPT_OSS,
    TORCHAO_ELEMENT,
    dequantize_mx,
    dequantize_nvfp4,
    element_codes,
    mxfp4_state_dict,
    quantize_mx,
    quantize_nvfp4,
    round_to_float,
)

SMALL = {  # exponent bits, mantissa bits, ml_dtypes type
    "E2M1": (2, 1, ml_dtypes.float4_e2m1fn),
    "E3M2": (3, 2, ml_dtypes.float6_e3m2fn),
    "E2M3": (2, 3, ml_dtypes.float6_e2m3fn),
}


def awkward_data(seed: int = 0) -> torch.Tensor:
    """Rows of 128 values over forty binades, with an all-zero block, a block whose
    maximum is an exact power of two, exact ties and a lone outlier."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(48, 128, generator=g)
    x *= torch.exp2(torch.randint(-20, 20, (48, 1), generator=g)).float()
    x[0, :32] = 0.0
    x[1, :32] = torch.linspace(-1, 1, 32)  # maximum exactly 1 = 2**0
    x[2, :32] = torch.arange(32) / 4  # quarters: ties in every small format
    x[3, 5] = 1e4  # an outlier in one block
    return x.contiguous()


@pytest.mark.parametrize("name", SMALL)
def test_every_code_decodes_as_ml_dtypes_does(name):
    e, m, ref = SMALL[name]
    width = 1 + e + m
    codes = np.arange(2**width, dtype=np.uint8)
    ours = [decode(format(c, f"0{width}b"), e, m, False, nan=False) for c in codes]
    assert np.array_equal(ours, codes.view(ref).astype(np.float64))


def test_nan_false_only_changes_the_all_ones_pattern():
    """chapter 1's e4m3fn reading is unchanged; nan=False makes its NaN a number."""
    assert math.isnan(decode("01111111", 4, 3, ieee_special=False))
    assert decode("01111111", 4, 3, ieee_special=False, nan=False) == 480.0
    assert decode("01111110", 4, 3, ieee_special=False) == 448.0


def test_e8m0_is_a_power_of_two_and_255_is_nan():
    codes = np.arange(256, dtype=np.uint8)
    values = torch.from_numpy(codes).view(torch.float8_e8m0fnu).double().numpy()
    assert np.array_equal(values[:255], 2.0 ** (codes[:255].astype(np.float64) - 127))
    assert math.isnan(values[255])
    assert np.array_equal(
        values, codes.view(ml_dtypes.float8_e8m0fnu).astype(np.float64), equal_nan=True
    )


@pytest.mark.parametrize("name", SMALL)
def test_round_to_float_is_round_to_nearest_even_with_saturation(name):
    e, m, ref = SMALL[name]
    largest = float(ml_dtypes.finfo(ref).max)
    g = torch.Generator().manual_seed(1)
    x = torch.cat(
        [
            torch.randn(50_000, generator=g) * largest / 2,
            torch.arange(-256, 257) / 16,  # exact ties
            torch.tensor([largest * 1.2, -largest * 9, 1e-9, -0.0, 0.0]),
        ]
    )
    ours = round_to_float(x, e, m, largest)
    theirs = torch.from_numpy(x.numpy().astype(ref).astype(np.float32))
    assert torch.equal(ours, theirs)


def test_round_to_float_is_torch_e4m3_cast():
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(2)) * 300
    assert torch.equal(
        round_to_float(x, 4, 3, 448.0), x.to(torch.float8_e4m3fn).float()
    )


def torchao_mx(x: torch.Tensor, fmt: str, rule: str = "floor"):
    from torchao.prototype.mx_formats import ScaleCalculationMode
    from torchao.prototype.mx_formats.mx_tensor import to_dtype, to_mx

    mode = {"floor": ScaleCalculationMode.FLOOR, "rceil": ScaleCalculationMode.RCEIL}
    scale, data = to_mx(x, TORCHAO_ELEMENT[fmt], MX_BLOCK, mode[rule])
    codes = data.view(torch.uint8).numpy()
    if fmt == "MXFP4 E2M1":
        codes = np.stack([codes & 0x0F, codes >> 4], -1).reshape(x.shape)
    values = to_dtype(data, scale, TORCHAO_ELEMENT[fmt], MX_BLOCK, torch.float32)
    return scale.view(torch.uint8), codes, values


@pytest.mark.parametrize("rule", ["floor", "rceil"])
@pytest.mark.parametrize("fmt", list(MX_FORMATS))
def test_mx_scales_and_codes_equal_torchao(fmt, rule):
    x = awkward_data()
    if (
        rule == "rceil"
    ):  # torchao divides an all-zero block's elements by 1, not 2**-126
        x[0, :32] = 1.0
    scale, elements = quantize_mx(x, fmt, rule=rule)
    their_scale, their_codes, their_values = torchao_mx(x, fmt, rule)
    assert torch.equal(scale, their_scale)
    assert np.array_equal(element_codes(elements, fmt), their_codes)
    assert torch.equal(dequantize_mx(scale, elements), their_values)


def test_mx_scale_is_the_blocks_power_of_two_over_the_formats():
    """A block whose largest magnitude is 5: 2**2 over E2M1's 2**2, so scale 1 (127)."""
    x = torch.zeros(1, 32)
    x[0, 3] = 5.0
    scale, elements = quantize_mx(x, "MXFP4 E2M1")
    assert scale.item() == 127 and elements[0, 3].item() == 4.0  # 5 is a tie: to even
    x[0, 3] = 7.5  # beyond 6: clipped
    assert quantize_mx(x, "MXFP4 E2M1")[1][0, 3].item() == 6.0
    scale, elements = quantize_mx(x, "MXFP4 E2M1", rule="rceil")  # 7.5 / 6 -> 2**1
    assert (
        scale.item() == 128 and elements[0, 3].item() == 4.0
    )  # 3.75 -> 4, no clipping


def test_nvfp4_equals_torchao():
    from torchao.prototype.mx_formats.nvfp4_tensor import (
        nvfp4_quantize,
        per_tensor_amax_to_scale,
    )

    x = awkward_data(3)
    x[0, :32] = 1.0  # no all-zero block: torchao divides by the clamped block scale
    tensor_scale, block, elements = quantize_nvfp4(x)
    theirs_tensor = per_tensor_amax_to_scale(x.abs().amax())
    theirs_block, packed = nvfp4_quantize(x, 16, theirs_tensor)
    codes = packed.view(torch.uint8).numpy()
    codes = np.stack([codes & 0x0F, codes >> 4], -1).reshape(x.shape)
    assert torch.equal(tensor_scale, theirs_tensor)
    assert torch.equal(block, theirs_block.float())
    assert np.array_equal(element_codes(elements, "MXFP4 E2M1"), codes)
    from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor

    theirs = NVFP4Tensor.to_nvfp4(x, per_tensor_scale=theirs_tensor)
    ours = dequantize_nvfp4(tensor_scale, block, elements)
    assert torch.equal(ours, theirs.dequantize(torch.float32))


def test_format_tables_agree_with_ml_dtypes():
    """The chapter's table of MX element formats: widths and largest values."""
    assert set(ML_DTYPE) == set(MX_FORMATS) == set(TORCHAO_ELEMENT)
    for fmt, (e, m, largest) in MX_FORMATS.items():
        info = ml_dtypes.finfo(ML_DTYPE[fmt])
        assert (info.nexp, info.nmant, float(info.max)) == (e, m, largest), fmt


@pytest.fixture(scope="module")
def small_gpt_oss(tmp_path_factory):
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, GptOssConfig

    config = GptOssConfig(**SMALL_GPT_OSS, dtype="bfloat16")
    torch.manual_seed(0)
    original = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    folder = tmp_path_factory.mktemp("mxfp4")
    state = mxfp4_state_dict(original)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    saved = config.to_dict() | {"quantization_config": {"quant_method": "mxfp4"}}
    (folder / "config.json").write_text(json.dumps(saved))
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    return config, original, state, loaded


def test_mxfp4_checkpoint_and_its_dequantized_load_are_as_estimated(small_gpt_oss):
    config, _, state, loaded = small_gpt_oss
    est = memory.estimate(config, torch.bfloat16, "mxfp4")
    buffers = sum(t.nbytes for t in est.tensors if t.group == "buffers")
    assert tensor_bytes(*state.values()) == est.total_bytes - buffers
    blocks = [k for k in state if k.endswith("_blocks")]
    assert len(blocks) == 2 * config.num_hidden_layers
    assert all(state[k].dtype == torch.uint8 for k in state if k.endswith("_scales"))
    in_memory = tensor_bytes(*loaded.parameters(), *loaded.buffers())
    assert in_memory == memory.estimate(config, torch.bfloat16).total_bytes


def test_transformers_dequantizes_our_mxfp4_values(small_gpt_oss):
    _, original, _, loaded = small_gpt_oss
    for i, layer in enumerate(original.model.layers):
        for name in ("gate_up_proj", "down_proj"):
            W = getattr(layer.mlp.experts, name).transpose(1, 2).float().contiguous()
            ours = dequantize_mx(*quantize_mx(W, "MXFP4 E2M1")).transpose(1, 2)
            theirs = getattr(loaded.model.layers[i].mlp.experts, name)
            assert theirs.dtype == torch.bfloat16
            assert torch.equal(ours.bfloat16(), theirs.data)


def test_mxfp4_estimate_quantizes_only_the_experts():
    from transformers import GptOssConfig

    layers = ["full_attention"] * GPT_OSS_20B["num_hidden_layers"]
    config = GptOssConfig(**GPT_OSS_20B, layer_types=layers)
    mx = memory.estimate(config, torch.bfloat16, "mxfp4")
    bf16 = memory.estimate(config, torch.bfloat16)
    experts = [t for t in mx.tensors if t.quantized]
    assert {t.name.rsplit(".", 1)[-1] for t in experts} == {"gate_up_proj", "down_proj"}
    expert_numel = sum(math.prod(t.shape) for t in experts)
    saved = expert_numel * 2 - expert_numel * (4 + 8 / 32) / 8
    assert bf16.total_bytes - mx.total_bytes == saved
