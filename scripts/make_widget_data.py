"""Generate the web widgets' data from Python, the one source of truth.

- ``book/_static/widgets/presets.js``: the memory calculator's preset architectures
  (``llmbook.memory.PRESETS``), loaded by the site.
- ``tests/js/vectors.json``: test vectors the JavaScript must reproduce exactly: bit
  patterns, stored values and neighbours of many values in fp32, fp16, bf16, fp8, fp4
  e2m1 and e8m0 (computed exactly, and checked against NumPy and ml_dtypes), blocks of
  32 through the MX formats (chapter 12's quantizer), absmax int8 and NF4 codes
  (checked against bitsandbytes' own quantizer), and memory breakdowns of many configs
  (``llmbook.memory.breakdown``).

Both files are byte-identical on any CPU: see "machine independence" below for each
corner where a library's bits could depend on the machine and the rule chosen for it.

    python scripts/make_widget_data.py          # rewrite both files
    python scripts/make_widget_data.py --check  # exit 1 if either is out of date
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import sys
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import ml_dtypes
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESETS_JS = ROOT / "book" / "_static" / "widgets" / "presets.js"
VECTORS = ROOT / "tests" / "js" / "vectors.json"

# ------------------------------------------------------------------ machine independence
# Both files must come out byte-identical on any CPU. So nothing written to them is a
# result whose bits a library may compute differently by SIMD path, flush-to-zero mode or
# NaN convention. Every corner, and what is done about it:
#
# - Stored values and bit patterns are computed here with exact rational arithmetic
#   (Fraction, round half to even), never with a float operation; NumPy (fp32, fp16) and
#   ml_dtypes (bf16, fp8) are still asked, value by value, and the script refuses to write
#   when they disagree (``check_against_libraries``): the vectors stay theirs, but a
#   machine where they differ fails loudly instead of writing different bytes.
# - Neighbours come from the bit pattern (magnitude +/- 1), not from nextafter or from a
#   sorted value table: np.unique keeps +0.0 or -0.0 of the table's two zeros depending
#   on the SIMD sort it dispatches to, and nextafter on subnormals depends on the
#   flush-to-zero mode. Signed zeros follow one rule, IEEE 754's nextUp/nextDown and the
#   widget's ``neighbours`` (book/_static/widgets/floats.js): a step keeps the
#   sign of the value, so the neighbour towards zero of +/-(smallest subnormal) is the
#   zero of the same sign (below +s is 0.0, above -s is -0.0), and both zeros have the
#   neighbours -s and +s.
# - NaN: a NaN input is stored as the format's canonical quiet NaN with the sign bit
#   clear (exponent all ones, mantissa top bit only; e4m3fn's only NaN, 0x7f); what
#   payload or sign a library's NaN carries does not matter, only that it is a NaN. e4m3fn
#   overflow is NaN with the sign of the input (0x7f or 0xff), as ml_dtypes and the widget
#   do. JSON writes every NaN as "nan", without sign.
# - Random inputs are drawn as integers (random fp32 bit patterns, random numerators over
#   2**24), never through np.exp / np.log, whose float64 results differ in the last place
#   between NumPy's AVX512F and baseline loops.
# - NF4 codes are computed exactly the way bitsandbytes' CPU kernel rounds (fp32
#   reciprocal of absmax, fp32 product, fp32 midpoints) and checked against
#   bitsandbytes; a case that the widget's float64 arithmetic would code differently
#   (too close to a midpoint) stops the script, so such a case is never written.
# - The remaining float arithmetic (int8 round(127 x / absmax), its dequantized value,
#   code x absmax, llmbook.memory's activation estimate) is Python float64 operations, one
#   at a time, each correctly rounded by IEEE 754 and so the same on every CPU (no SIMD,
#   no fused multiply-add); the widget does the same operations in the same order. The
#   JSON's floats are Python's repr (shortest round trip; -0.0 keeps its sign). Dicts keep
#   insertion order; no set is iterated.

#: widget key: (exponent bits, mantissa bits, kind, ml_dtypes/NumPy dtype, unsigned view).
#: Kinds: "ieee" (all-ones exponent is inf/NaN), "fn" (e4m3fn: no infinity, NaN only
#: 0x7f/0xff), "finite" (fp4 e2m1: no inf, no NaN; overflow saturates, as ml_dtypes
#: does; a NaN has no code), "e8m0" (the MX scale: unsigned, 8 exponent bits, 2**(E-127),
#: 255 is NaN; a positive value rounds to the nearest power of two, ties up, as
#: ml_dtypes and torch do; zero and negatives have no code: ml_dtypes makes them NaN,
#: torch does not, so the widget says "not representable").
FORMATS = {
    "fp32": (8, 23, "ieee", np.float32, np.uint32),
    "fp16": (5, 10, "ieee", np.float16, np.uint16),
    "bf16": (8, 7, "ieee", ml_dtypes.bfloat16, np.uint16),
    "e4m3": (4, 3, "fn", ml_dtypes.float8_e4m3fn, np.uint8),
    "e5m2": (5, 2, "ieee", ml_dtypes.float8_e5m2, np.uint8),
    "e2m1": (2, 1, "finite", ml_dtypes.float4_e2m1fn, np.uint8),
    "e8m0": (8, 0, "e8m0", ml_dtypes.float8_e8m0fnu, np.uint8),
}


def layout(key: str) -> tuple[int, int, str, int, int, int]:
    """ebits, mbits, kind, bias, sign bit (0: unsigned), largest finite magnitude's bits."""
    ebits, mbits, kind = FORMATS[key][:3]
    emax = (1 << ebits) - 1
    max_finite = {
        "ieee": ((emax - 1) << mbits) | ((1 << mbits) - 1),
        "fn": (emax << mbits) | ((1 << mbits) - 2),
        "finite": (emax << mbits) | ((1 << mbits) - 1),
        "e8m0": emax - 1,
    }[kind]
    sign = 0 if kind == "e8m0" else 1 << (ebits + mbits)
    return ebits, mbits, kind, (1 << (ebits - 1)) - 1, sign, max_finite


def nan_bits(key: str) -> int | None:
    """The canonical NaN: sign clear; IEEE: exponent all ones, mantissa top bit; e4m3fn:
    0x7f; e8m0: 0xff; fp4 e2m1 has none."""
    ebits, mbits, kind, _, sign, _ = layout(key)
    if kind == "ieee":
        return (((1 << ebits) - 1) << mbits) | (1 << (mbits - 1))
    return {"fn": sign - 1, "finite": None, "e8m0": 255}[kind]


def encode_e8m0(x: float) -> int | None:
    """E8M0 code of x: the nearest power of two, ties up, clamped below at 2**-127;
    255 (NaN) past 2**127 and for inf or NaN; None for zero and negatives."""
    if math.isnan(x) or math.isinf(x):
        return 255
    if x <= 0:
        return None
    a = Fraction(x)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    if a >= Fraction(3, 2) * Fraction(2) ** e:
        e += 1
    e = max(e, -127)
    return 255 if e > 127 else e + 127


def round_magnitude(a: Fraction, key: str) -> int | None:
    """Bit pattern of the positive rational a rounded to nearest, ties to even; None if it
    overflows (rounds beyond the largest finite value)."""
    ebits, mbits, ieee, bias, _, max_finite = layout(key)
    if a == 0:
        return 0
    e = (
        a.numerator.bit_length() - a.denominator.bit_length()
    )  # 2**e <= a < 2**(e+1) after fixing
    if Fraction(2) ** e > a:
        e -= 1
    e = max(e, 1 - bias)  # subnormals share the smallest exponent
    r = round(a / Fraction(2) ** (e - mbits))  # Fraction rounds half to even
    if r == 1 << (mbits + 1):
        r, e = r >> 1, e + 1
    bits = r if r < 1 << mbits else ((e + bias) << mbits) | (r - (1 << mbits))
    return None if bits > max_finite else bits


def encode(x: float | Fraction, key: str) -> int | None:
    """Bit pattern of x in format key: round half to even; overflow to inf (to NaN in
    e4m3fn, to the largest value in fp4 e2m1) with the sign of x; a zero, or a value
    rounding to zero, keeps the sign of x. None: x has no code (see FORMATS)."""
    kind, sign, max_finite = layout(key)[2], layout(key)[4], layout(key)[5]
    if kind == "e8m0":
        return encode_e8m0(float(x))
    overflow = {"ieee": max_finite + 1, "fn": nan_bits(key), "finite": max_finite}[kind]
    if isinstance(x, float):
        if math.isnan(x) and kind == "finite":
            return None
        if math.isnan(x):
            return nan_bits(key)
        negative = math.copysign(1.0, x) < 0
        bits = overflow if math.isinf(x) else round_magnitude(Fraction(abs(x)), key)
    else:
        negative, bits = x < 0, round_magnitude(abs(x), key)
    return (sign if negative else 0) | (overflow if bits is None else bits)


def decode(bits: int, key: str) -> float:
    """Value of a bit pattern (exact: every value of these formats is a float64)."""
    ebits, mbits, kind, bias, sign, _ = layout(key)
    if kind == "e8m0":
        return math.nan if bits == 255 else math.ldexp(1.0, bits - 127)
    ieee = kind == "ieee"
    mag = bits & (sign - 1)
    e, m = mag >> mbits, mag & ((1 << mbits) - 1)
    if (ieee and e == (1 << ebits) - 1) or (kind == "fn" and mag == nan_bits(key)):
        v = math.inf if (ieee and m == 0) else math.nan
    elif e == 0:
        v = math.ldexp(m, 1 - bias - mbits)
    else:
        v = math.ldexp((1 << mbits) | m, e - bias - mbits)
    return -v if bits & sign else v  # -0.0 for the negative zero


def f32(x: float | Fraction) -> float:
    """x rounded to fp32 (exactly; no float operation, so no flush-to-zero either)."""
    return decode(encode(x, "fp32"), "fp32")


def neighbours(bits: int, key: str) -> tuple[float | None, float | None]:
    """The values just below and above a finite value, from its bit pattern (the widget's
    rule; see the top of this section for signed zeros). None past the largest finite."""
    _, _, kind, _, sign, max_finite = layout(key)
    if not math.isfinite(decode(bits, key)):
        return None, None
    if kind == "e8m0":  # no zero, no sign: the powers of two on either side
        below = decode(bits - 1, key) if bits > 0 else None
        return below, (decode(bits + 1, key) if bits < max_finite else None)
    mag, negative = bits & (sign - 1), bool(bits & sign)
    if mag == 0:
        return decode(sign | 1, key), decode(1, key)
    toward_zero = decode(bits - 1, key)  # same sign: +s -> 0.0, -s -> -0.0
    away = None if mag == max_finite else decode(bits + 1, key)
    return (away, toward_zero) if negative else (toward_zero, away)


def same(a: float, b: float) -> bool:
    """Equal as the JavaScript's Object.is, except that any two NaNs are the same."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def num(v: float):
    """JSON has no inf/NaN: encode them as strings."""
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def float_values() -> list[float]:
    """Inputs, all exactly representable in fp32 (so no format rounds twice)."""
    special = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.1,
        1 / 3,
        math.pi,
        math.e,
        2.0,
        0.5,
        65504.0,
        65519.0,
        65520.0,
        65536.0,
        448.0,
        460.0,
        464.0,
        465.0,
        480.0,
        57344.0,
        61439.0,
        61440.0,
        1e-8,
        5.96e-8,
        2.98e-8,
        2**-24,
        2**-25,
        3 * 2**-26,
        2**-9,
        2**-10,
        2**-7,
        2**-6,
        2**-16,
        2**-17,
        1e-40,
        1e-45,
        3.4e38,
        3.3e38,
        1 + 2**-11,
        1 + 3 * 2**-11,
        1 + 2**-8,
        1 + 3 * 2**-8,
        1 + 2**-4,
        1 + 3 * 2**-4,
        1 + 2**-3,
        1 + 2**-23,
        2**127,
        6.0,
        -6.0,
        100.0,
        1000.0,
        1e5,
        1e10,
        123456.789,
        -0.001,
        # fp4 e2m1 and the e8m0 scale: ties, saturation, the ends of e8m0's range
        0.25,
        0.75,
        1.5,
        3.0,
        5.0,
        7.0,
        -7.0,
        0.3,
        2**-127,
        3 * 2**-128,
        2**-130,
        1.7e38,
    ]
    # random magnitudes from 1e-9 to 1e6: uniform fp32 bit patterns, so about log-uniform
    rng = np.random.default_rng(0)
    signs = rng.choice([-1, 1], 300)
    patterns = rng.integers(
        encode(f32(1e-9), "fp32"), encode(f32(1e6), "fp32"), 300, endpoint=True
    )
    randoms = [
        decode(int(b), "fp32") * int(s) for s, b in zip(signs, patterns, strict=True)
    ]
    return [f32(v) for v in special] + randoms + [math.inf, -math.inf, math.nan]


def check_against_libraries(rows: list[dict]) -> None:
    """Every bit pattern and value as NumPy (fp32, fp16) and ml_dtypes (bf16, fp8) compute
    it, or stop: a NaN is only required to be a NaN (its payload is the library's)."""
    xs = np.array([row["x_float"] for row in rows], dtype=np.float64)
    wrong = []
    with np.errstate(
        over="ignore", invalid="ignore"
    ):  # overflow to inf/NaN is what the vectors test
        for key, (*_, dtype, view) in FORMATS.items():
            lib_bits = xs.astype(np.float32).astype(dtype).view(view).astype(np.uint64)
            ours = np.array(
                [
                    2**64 - 1 if (b := row["formats"][key]["bits"]) is None else b
                    for row in rows
                ],
                dtype=np.uint64,
            )
            lib_values = (
                np.where(ours == np.uint64(2**64 - 1), 0, ours)
                .astype(view)
                .view(dtype)
                .astype(np.float64)
            )
            for row, lb, lv in zip(rows, lib_bits, lib_values, strict=True):
                want = row["formats"][key]
                if want["bits"] is None:  # no code here; ml_dtypes' is its own choice
                    continue
                lib_value = decode(int(lb), key)
                if not (
                    int(lb) == want["bits"]
                    or (math.isnan(lib_value) and math.isnan(want["value_float"]))
                ):
                    wrong.append(
                        f"{key} bits of {row['x_float']!r}: library {int(lb):#x}, exact {want['bits']:#x}"
                    )
                if not same(float(lv), want["value_float"]):
                    wrong.append(
                        f"{key} value of {want['bits']:#x}: library {float(lv)!r}, exact "
                        f"{want['value_float']!r}"
                    )
    if wrong:
        raise RuntimeError(
            "NumPy / ml_dtypes disagree with exact rounding on this machine "
            "(flush-to-zero mode?):\n" + "\n".join(wrong[:20])
        )


def float_vectors() -> list[dict]:
    rows = []
    for x in float_values():
        row = {"x": num(x), "x_float": x, "formats": {}}
        for key in FORMATS:
            bits = encode(x, key)
            if bits is None:
                row["formats"][key] = {"bits": None, "value": None, "below": None}
                row["formats"][key] |= {"above": None, "value_float": math.nan}
                continue
            value = decode(bits, key)
            below, above = neighbours(bits, key)
            row["formats"][key] = {
                "bits": bits,
                "value": num(value),
                "below": below,
                "above": above,
                "value_float": value,
            }
        rows.append(row)
    check_against_libraries(rows)
    for row in rows:  # drop the helpers' keys
        del row["x_float"]
        for entry in row["formats"].values():
            del entry["value_float"]
    return rows


def nf4_code_exact(x: float, absmax: float, code: list[float]) -> int:
    """bitsandbytes' CPU quantize_4bit, exactly: scaled = fp32(x * fp32(1 / absmax)) clamped
    to [-1, 1], code = how many fp32 midpoints (code[i] + code[i+1]) / 2 lie below it."""
    x, absmax = f32(x), f32(absmax)  # as a float32 tensor holds them
    scaled = f32(Fraction(x) * Fraction(f32(1 / Fraction(absmax))))
    scaled = min(max(scaled, -1.0), 1.0)
    mids = [
        f32(Fraction(f32(Fraction(a) + Fraction(b))) / 2) for a, b in pairwise(code)
    ]
    return sum(m < scaled for m in mids)


def nf4_code_widget(x: float, absmax: float, code: list[float]) -> int:
    """The widget's quantizeNf4: float64 x / absmax against float64 midpoints."""
    n = max(-1.0, min(1.0, x / absmax))
    return sum(n > (a + b) / 2 for a, b in pairwise(code))


def quant_vectors() -> list[dict]:
    import bitsandbytes.functional as F
    import torch

    code = [
        float(c) for c in F.get_4bit_type("nf4", device="cpu").tolist()
    ]  # a fixed table of fp32 values
    rng = np.random.default_rng(1)
    cases = [
        (0.5, 127.0),
        (1.5, 127.0),
        (2.5, 127.0),
        (-2.5, 127.0),
        (1.0, 1.0),
        (-1.0, 1.0),
        (0.0, 3.0),
        (0.3, 1.0),
        (-0.05, 1.0),
        (6.0, 6.0),
    ]
    # absmax: random fp32 bit patterns from 2**-7 to 2**7; x = absmax * k / 2**24 (exact in
    # float64, then rounded to fp32, so |x| <= absmax)
    scales = rng.integers(
        encode(2.0**-7, "fp32"), encode(2.0**7, "fp32"), 150, endpoint=True
    )
    fractions = rng.integers(-(2**24), 2**24, 150, endpoint=True)
    for a, k in zip(scales, fractions, strict=True):
        absmax = decode(int(a), "fp32")
        cases.append((f32(absmax * int(k) / 2**24), absmax))
    out = []
    for x, absmax in cases:
        q = max(
            -127, min(127, round(127 * x / absmax))
        )  # Python's round: half to even, like np.round
        nf4 = nf4_code_exact(x, absmax, code)
        if nf4 != nf4_code_widget(x, absmax, code):
            raise RuntimeError(
                f"NF4 case {x!r}/{absmax!r} lies on a midpoint within fp32 rounding; drop it"
            )
        out.append(
            {
                "x": x,
                "absmax": absmax,
                "int8": q,
                "int8_value": q * absmax / 127,
                "nf4": nf4,
                "nf4_value": code[nf4] * absmax,
            }
        )
    # bitsandbytes' own quantizer must agree: one 64-value block per case, x first
    blocks = torch.zeros(len(cases), 64)
    blocks[:, 0] = torch.tensor([x for x, _ in cases])
    blocks[:, 1] = torch.tensor([a for _, a in cases])
    packed, state = F.quantize_4bit(blocks.flatten(), blocksize=64, quant_type="nf4")
    got = (
        packed.flatten().reshape(len(cases), 32)[:, 0] >> 4
    ).tolist()  # the first element is the high nibble
    wrong = [
        f"{row['x']!r}/{row['absmax']!r}: bitsandbytes {g}, exact {row['nf4']}"
        for row, g, am in zip(out, got, state.absmax.tolist(), strict=True)
        if g != row["nf4"] or am != f32(row["absmax"])
    ]
    if wrong:
        raise RuntimeError(
            "bitsandbytes disagrees with its exact arithmetic on this machine:\n"
            + "\n".join(wrong[:20])
        )
    return out


def memory_vectors() -> list[dict]:
    from transformers import LlamaConfig

    from llmbook.memory import PRESETS, breakdown, peak, step_phases

    rng = np.random.default_rng(2)
    configs = dict(PRESETS)
    for i in range(8):
        heads = int(rng.choice([4, 8, 16, 32]))
        kv = int(rng.choice([k for k in (1, 2, 4, 8, 16, 32) if heads % k == 0]))
        configs[f"random-{i}"] = dict(
            hidden_size=heads * int(rng.choice([16, 32, 64, 128])),
            intermediate_size=int(rng.integers(100, 3000)),
            num_hidden_layers=int(rng.integers(1, 12)),
            num_attention_heads=heads,
            num_key_value_heads=kv,
            vocab_size=int(rng.integers(100, 50000)),
            tie_word_embeddings=bool(rng.integers(0, 2)),
        )
    options = [
        dict(recipe="inference", dtype=d, quantization=q, double_quant=dq)
        for d, q, dq in itertools.product(
            ("bfloat16", "float32"), (None, "int8", "nf4"), (False, True)
        )
        if not (dq and q != "nf4")
    ]
    options += [
        dict(recipe=r, checkpointing=c)
        for r in ("full", "full-fp32", "full-bf16", "full-master")
        for c in (False, True)
    ]
    options += [
        dict(recipe="lora", dtype="float16", lora_rank=8),
        dict(recipe="lora", dtype="float32"),
        dict(recipe="qlora", dtype="float32", checkpointing=True),
        dict(recipe="qlora", double_quant=True),
        dict(recipe="qlora", checkpointing=True, lora_rank=64),
    ]
    options += [  # the other optimizers, on every training recipe
        dict(recipe=r, optimizer=o)
        for r in ("full", "full-fp32", "full-bf16", "full-master", "lora", "qlora")
        for o in ("adamw8bit", "sgd")
    ]
    options += [  # no KV cache in the model's output
        dict(recipe=r, use_cache=False) for r in ("full", "lora")
    ]
    options += [  # how AdamW steps: its temporaries
        dict(recipe=r, optimizer_impl=i, checkpointing=c)
        for r in ("full", "full-bf16", "lora")
        for i in ("for-loop", "fused")
        for c in (False, True)
    ]
    options += [  # eager attention keeps the s x s scores
        dict(recipe=r, attention="eager", checkpointing=c)
        for r in ("full", "qlora")
        for c in (False, True)
    ]
    out = layout_vectors(rng)
    for (name, cfg), (batch, context) in itertools.product(
        configs.items(), ((1, 2048), (4, 513))
    ):
        config = LlamaConfig(**cfg)
        for opts in options:
            if name == "Llama-2-70B" and batch != 1:
                continue  # slow to instantiate even on the meta device; one setting is enough
            parts = breakdown(config, batch=batch, context=context, **opts)
            phases = step_phases(config, batch=batch, context=context, **opts)
            out.append(
                {
                    "name": name,
                    "config": cfg,
                    "options": {**opts, "batch": batch, "context": context},
                    "parameters": None,
                    "parts": parts,
                    "phases": phases,
                    "peak": list(peak(config, batch=batch, context=context, **opts)),
                }
            )
    from llmbook.memory import estimate, fits_on

    for row in out:
        row["parameters"] = estimate(
            LlamaConfig(**row["config"]), "bfloat16"
        ).n_parameters
        row["fits_on"] = fits_on(sum(row["peak"][1].values()))
    return out


def layout_vectors(rng) -> list[dict]:
    """Inference on KV cache layouts today's models use: sliding windows on some layers
    (``layer_types``), chunked attention, multi-head latent attention, layers without a
    cache; every way to store the cache and both ways to keep a window."""
    from transformers import LlamaConfig

    from llmbook.memory import breakdown, kv_layers, peak, step_phases

    out = []
    kinds = ("full_attention", "sliding_attention", "chunked_attention", "moe")
    for i in range(12):
        heads = int(rng.choice([4, 8, 16]))
        layers = int(rng.integers(2, 10))
        cfg = dict(
            hidden_size=heads * 64,
            intermediate_size=int(rng.integers(100, 3000)),
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads // int(rng.choice([1, 2, 4])),
            vocab_size=int(rng.integers(100, 50000)),
            tie_word_embeddings=bool(rng.integers(0, 2)),
        )
        if i % 3 == 0:  # every layer sliding, as Mistral's config says it
            cfg["sliding_window"] = int(rng.integers(16, 4096))
        elif i % 3 == 1:
            cfg["layer_types"] = [str(rng.choice(kinds)) for _ in range(layers)]
            cfg["sliding_window"] = int(rng.integers(16, 4096))
            cfg["attention_chunk_size"] = int(rng.integers(16, 4096))
        if i % 4 == 3:  # multi-head latent attention
            cfg.update(kv_lora_rank=int(rng.integers(16, 600)), qk_rope_head_dim=64)
        for kv_quant, kv_dtype, keep in itertools.product(
            (None, "fp8", "int4", "int2"), (None, "float32"), ("all", "window")
        ):
            opts = dict(recipe="inference", kv_quant=kv_quant, kv_dtype=kv_dtype)
            opts.update(kv_keep=keep, batch=int(rng.integers(1, 5)))
            opts["context"] = int(rng.integers(1, 20000))
            config = LlamaConfig(**cfg)
            kinds_here = {t for t, _ in kv_layers(config)}
            if kv_quant in ("int4", "int2") and kinds_here != {"full_attention"}:
                continue  # refused: transformers' QuantizedCache takes full attention
            out.append(
                {
                    "name": f"layout-{i}",
                    "config": cfg,
                    "options": opts,
                    "parameters": None,
                    "parts": breakdown(config, **opts),
                    "phases": step_phases(config, **opts),
                    "peak": list(peak(config, **opts)),
                }
            )
    return out


def sharded_vectors() -> list[dict]:
    """``sharded_phases`` for every preset and a few random shapes, every training recipe,
    sharding and offload choice, on 2 or 8 GPUs."""
    from transformers import LlamaConfig

    from llmbook.memory import PRESETS, SHARDINGS, offloaded_bytes, sharded_phases

    rng = np.random.default_rng(3)
    configs = dict(PRESETS)
    for i in range(4):
        heads = int(rng.choice([4, 8, 16]))
        configs[f"random-{i}"] = dict(
            hidden_size=heads * int(rng.choice([32, 64, 128])),
            intermediate_size=int(rng.integers(100, 3000)),
            num_hidden_layers=int(rng.integers(2, 12)),
            num_attention_heads=heads,
            num_key_value_heads=heads // 2,
            vocab_size=int(rng.integers(100, 50000)),
            tie_word_embeddings=bool(rng.integers(0, 2)),
        )
    recipes = ("full", "full-fp32", "full-bf16", "full-master", "lora", "qlora")
    out = []
    for i, (name, cfg) in enumerate(configs.items()):
        config = LlamaConfig(**cfg)
        for recipe, sharding, offload in itertools.product(
            recipes, SHARDINGS, (False, True)
        ):
            if offload and sharding not in ("zero2", "zero3"):
                continue
            opts = dict(
                recipe=recipe,
                gpus=(2, 8, 3)[i % 3],
                sharding=sharding,
                offload=offload,
                checkpointing=bool(i % 2),
                context=1024,
            )
            phases = sharded_phases(config, **opts)
            row = {"name": name, "config": cfg, "options": opts, "phases": phases}
            if offload:
                rest = {k: v for k, v in opts.items() if k != "offload"}
                row["offloaded"] = offloaded_bytes(config, **rest)
            out.append(row)
        for recipe, sharding, impl in itertools.product(
            ("full", "full-bf16", "lora"), SHARDINGS, ("for-loop", "fused")
        ):  # how AdamW steps, and ZeRO-1's ranks one by one
            opts = dict(recipe=recipe, gpus=(2, 8, 3)[i % 3], sharding=sharding)
            opts.update(optimizer_impl=impl, context=512)
            if sharding == "zero1":
                opts["rank"] = i % opts["gpus"]
            phases = sharded_phases(config, **opts)
            out.append({"name": name, "config": cfg, "options": opts, "phases": phases})
    return out


def gpus() -> dict:
    """The calculator's GPUs (name, nvidia-smi total, usable bytes, source) and the reserve
    rule behind "usable", from llmbook.memory."""
    from llmbook.memory import (
        ALLOCATOR_SLACK,
        CUDA_RESERVE_BYTES,
        GPU_SPECS,
        GPUS,
        TORCH_TOTAL_GAP_BYTES,
        VLLM_BLOCK_TOKENS,
        VLLM_MAX_SEQS,
        VLLM_NON_TORCH_BYTES,
        VLLM_STEP_TOKENS,
        VLLM_UTILIZATION,
        usable_bytes,
    )

    return {
        "cuda_reserve_bytes": CUDA_RESERVE_BYTES,
        "allocator_slack": ALLOCATOR_SLACK,
        "serving": {  # vLLM's budget (llmbook.memory.serving)
            "utilization": VLLM_UTILIZATION,
            "block_tokens": VLLM_BLOCK_TOKENS,
            "step_tokens": VLLM_STEP_TOKENS,
            "max_seqs": VLLM_MAX_SEQS,
            "torch_total_gap_bytes": TORCH_TOTAL_GAP_BYTES,
            "non_torch_bytes": VLLM_NON_TORCH_BYTES,
        },
        "gpus": [
            {
                "name": name,
                "total_mib": mib,
                "usable_bytes": usable_bytes(name),
                "source": source,
                # the roofline's ceilings (llmbook.memory.GPU_SPECS), from its data sheet
                "bandwidth": GPU_SPECS[name]["bandwidth"],
                "peak": GPU_SPECS[name]["peak"],
                "speed_source": GPU_SPECS[name]["source"],
            }
            for name, (mib, source) in GPUS.items()
        ],
    }


#: The config fields the calculator's KV cache and prompt-pass activations read.
MODEL_FIELDS = (
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "v_head_dim",
    "kv_lora_rank",
    "qk_rope_head_dim",
    "sliding_window",
    "attention_chunk_size",
    "vocab_size",
    "num_experts_per_tok",
    "experts_per_token",
    "num_local_experts",
    "num_experts",
)

#: Weight settings the calculator offers: (bytes a value of the unquantized tensors,
#: quantization, double quantization).
WEIGHT_SETTINGS = [(2, None, False), (4, None, False)] + [
    (w, q, dq) for w in (2, 4) for q in ("int8", "nf4") for dq in (False, True)
]


def weight_key(width: int, quant, double_quant: bool) -> str:
    """The key of a weight setting in a model preset's ``weight_bytes`` (the JS's too)."""
    return f"{width}|{quant or ''}|{'dq' if double_quant and quant == 'nf4' else ''}"


@functools.cache
def model_presets() -> dict[str, dict]:
    """llmbook.memory.MODEL_PRESETS as the calculator reads them: the fields its KV
    cache and activations use, each layer's type as llmbook.memory.kv_layers reads it,
    and what only Python can count: the weights in every setting offered, the parameters
    (total and active) and each layer's recurrent state (read on the meta device)."""
    import torch

    from llmbook.memory import (
        MODEL_PRESETS,
        PUBLISHED_QUANTIZATION,
        active_parameters,
        estimate,
        expert_bytes,
        kv_layers,
        matmul_parameters,
        preset_config,
        state_bytes,
    )

    out = {}
    for name, (_, _, hub_id) in MODEL_PRESETS.items():
        config = preset_config(name)
        entry = {k: getattr(config, k, None) for k in MODEL_FIELDS}
        entry = {k: v for k, v in entry.items() if v is not None}
        types = [kind for kind, _ in kv_layers(config)]
        entry["layer_types"] = types
        entry["hub_id"] = hub_id
        entry["n_parameters"] = estimate(config, torch.bfloat16).n_parameters
        entry["matmul_parameters"] = list(matmul_parameters(config))  # the roofline's
        entry["active_parameters"] = active_parameters(config)
        entry["weight_bytes"] = {
            weight_key(w, q, dq): estimate(
                config, torch.float32 if w == 4 else torch.bfloat16, q, dq
            ).total_bytes
            for w, q, dq in WEIGHT_SETTINGS
        }
        entry[
            "expert_bytes"
        ] = {  # the routed experts' share of each (for the roofline)
            weight_key(w, q, dq): expert_bytes(
                config, torch.float32 if w == 4 else torch.bfloat16, q, dq
            )["experts"]
            for w, q, dq in WEIGHT_SETTINGS
        }
        if name in PUBLISHED_QUANTIZATION:  # as its makers ship it (gpt-oss: MXFP4)
            q = PUBLISHED_QUANTIZATION[name]
            entry["published_quantization"] = q
            key = weight_key(2, q, False)
            entry["weight_bytes"][key] = estimate(config, torch.bfloat16, q).total_bytes
            entry["expert_bytes"][key] = expert_bytes(config, torch.bfloat16, q)[
                "experts"
            ]
        if any(
            t in ("linear_attention", "conv", "hybrid", "hybrid_sliding") for t in types
        ):
            entry["state_bytes"] = {
                d: state_bytes(config, d) for d in ("bfloat16", "float32")
            }
        out[name] = entry
    return out


def presets_js() -> str:
    from llmbook.memory import PRESETS

    return (
        "// Generated by scripts/make_widget_data.py from llmbook.memory.PRESETS,\n"
        "// MODEL_PRESETS and GPUS; do not edit.\n"
        f"window.LLMBookPresets = {json.dumps(PRESETS, indent=1)};\n"
        f"window.LLMBookModelPresets = {json.dumps(model_presets())};\n"
        f"window.LLMBookGPUs = {json.dumps(gpus(), indent=1)};\n"
    )


def model_preset_vectors() -> list[dict]:
    """Inference on every model preset: each weight setting, every way to store the
    cache, both ways to keep a window, one and several sequences; training refused."""
    from llmbook.memory import breakdown, peak, preset_config, step_phases

    presets = model_presets()
    rng = np.random.default_rng(4)
    out = []
    for name, entry in presets.items():
        config = preset_config(name)
        for (w, q, dq), kv_quant, keep in itertools.product(
            WEIGHT_SETTINGS, (None, "fp8"), ("all", "window")
        ):
            dtype = "float32" if w == 4 else "bfloat16"
            opts = dict(recipe="inference", dtype=dtype, quantization=q)
            opts.update(double_quant=dq, kv_quant=kv_quant, kv_keep=keep)
            opts.update(
                batch=int(rng.integers(1, 9)), context=int(rng.integers(1, 200_000))
            )
            out.append(
                {
                    "name": name,
                    "config": entry,
                    "options": opts,
                    "parameters": entry["n_parameters"],
                    "parts": breakdown(config, **opts),
                    "phases": step_phases(config, **opts),
                    "peak": list(peak(config, **opts)),
                }
            )
    return out


def mx_values(rng, n: int) -> list[float]:
    """n fp32-exact values: random integers over a random power of two (no np.exp)."""
    shift = int(rng.integers(-12, 12))
    return [int(v) * 2.0**shift for v in rng.integers(-4096, 4097, n)]


def mx_vectors() -> list[dict]:
    """Blocks of 32 through every MX format with the chapter's own quantizer
    (llmbook.pages.ch12.quantize_mx, bit for bit torchao's): scale code, element codes,
    element values and stored values. Exact in fp32 and in the widget's float64."""
    import torch

    from llmbook.pages.ch12 import MX_BLOCK, MX_FORMATS, element_codes, quantize_mx

    rng = np.random.default_rng(1)
    blocks = [
        [0.0] * MX_BLOCK,  # all zero: the smallest scale
        [k / 4 for k in range(-16, 16)],  # quarters: ties in every element format
        [1.0] + [0.0] * 30 + [-1.0],  # a maximum that is a power of two
        [1000.0] + [0.01 * k for k in range(31)],  # one outlier
        [-0.0, 5.0, 7.5, 6.0, -6.5] + [0.5] * 27,  # clipped and tied near the top
    ]
    blocks += [mx_values(rng, MX_BLOCK) for _ in range(12)]
    rows = []
    for fmt in MX_FORMATS:
        for values in blocks:
            x = torch.tensor([values], dtype=torch.float32)
            scale, elements = quantize_mx(x, fmt)
            stored = elements * torch.exp2(scale.float() - 127)
            rows.append(
                {
                    "format": fmt,
                    "values": values,
                    "scale_code": int(scale.item()),
                    "codes": element_codes(elements[0], fmt).tolist(),
                    "elements": elements[0].tolist(),
                    "stored": stored[0].tolist(),
                }
            )
    return rows


def serving_vectors() -> list[dict]:
    """vLLM's budget and the requests that fit, on every Llama preset and every model
    preset vLLM's budget models, each GPU, the cache in 16 bits and fp8, random lengths,
    block sizes, shares and shared prefixes; the published weights for gpt-oss."""
    import torch
    from transformers import LlamaConfig

    from llmbook.memory import (
        GPUS,
        PRESETS,
        PUBLISHED_QUANTIZATION,
        EstimateError,
        max_concurrency,
        preset_config,
        requests_that_fit,
        serving_budget,
    )

    rng = np.random.default_rng(5)
    models = {name: (LlamaConfig(**kw), kw) for name, kw in PRESETS.items()}
    for name, entry in model_presets().items():
        models[name] = (preset_config(name), entry)
    out = []
    for name, (config, entry) in models.items():
        try:
            serving_budget(config, "H100 80GB", "bfloat16")
        except EstimateError:
            continue  # chunked attention and fixed-size states: refused in both
        for gpu in GPUS:
            width, quant, dq = WEIGHT_SETTINGS[int(rng.integers(len(WEIGHT_SETTINGS)))]
            if name in PUBLISHED_QUANTIZATION and rng.random() < 0.5:
                width, quant, dq = 2, PUBLISHED_QUANTIZATION[name], False
            options = dict(
                width=width,
                quantization=quant,
                double_quant=dq,
                kv_bytes=int(rng.choice([1, 2])),
                utilization=float(rng.choice([0.9, 0.85, 0.95])),
                block=int(rng.choice([16, 16, 32, 1])),
                tp=int(rng.choice([1, 1, 2])),
            )
            dtype = torch.float32 if width == 4 else torch.bfloat16
            b = serving_budget(
                config,
                gpu,
                dtype,
                quant,
                options["kv_bytes"],
                options["utilization"],
                options["block"],
                tensor_parallel=options["tp"],
                double_quant=dq,
            )
            prompt, answer = int(rng.integers(1, 20_000)), int(rng.integers(0, 4_000))
            full = all(k == "full_attention" for k, _ in _kinds(config))
            shared = int(rng.integers(0, prompt + 1)) if full else 0
            row = {
                "name": name,
                "config": entry,
                "gpu": gpu,
                "options": options,
                "prompt": prompt,
                "answer": answer,
                "shared_prefix": shared,
                "budget": {**b.__dict__, "cache_tokens": b.cache_tokens},
            }
            if b.blocks:
                fit = requests_that_fit(config, b, prompt, answer, shared)
                row["fit"] = {
                    **fit,
                    "max_concurrency": max_concurrency(config, b, prompt + answer),
                }
            out.append(row)
    return out


def roofline_vectors() -> list[dict]:
    """The roofline's bounds on every Llama preset and model preset, a random GPU, weight
    setting, cache width, batch, prompt and context each (llmbook.memory.roofline)."""
    import torch
    from transformers import LlamaConfig

    from llmbook.memory import (
        GPU_SPECS,
        PRESETS,
        PUBLISHED_QUANTIZATION,
        compute_for,
        gpu_device,
        preset_config,
        roofline,
    )

    rng = np.random.default_rng(6)
    models = {name: (LlamaConfig(**kw), kw) for name, kw in PRESETS.items()}
    for name, entry in model_presets().items():
        models[name] = (preset_config(name), entry)
    out = []
    for name, (config, entry) in models.items():
        for _ in range(4):
            gpu = list(GPU_SPECS)[int(rng.integers(len(GPU_SPECS)))]
            width = int(rng.choice([2, 4]))
            quant = [None, "int8", "nf4"][int(rng.integers(3))]
            if name in PUBLISHED_QUANTIZATION and rng.random() < 0.3:
                width, quant = 2, PUBLISHED_QUANTIZATION[name]
            dtype = "float32" if width == 4 else "bfloat16"
            device = gpu_device(gpu)
            compute = compute_for(device, dtype, quant)
            batch, prompt = int(rng.integers(1, 65)), int(rng.integers(1, 8193))
            context = None if rng.random() < 0.5 else int(rng.integers(1, 32_768))
            if rng.random() < 0.25:  # a big batch at a short context: compute-bound
                batch, prompt, context = int(rng.integers(512, 4096)), 16, 64
            kv = int(rng.choice([1, 2, 4]))
            full = all(k == "full_attention" for k, _ in _kinds(config))
            kv_quant = [None, "fp8", "int4"][int(rng.integers(3 if full else 2))]
            dq = quant == "nf4" and rng.random() < 0.5
            options = dict(
                gpu=gpu,
                compute=compute,
                batch=batch,
                prompt=prompt,
                context=context,
                width=width,
                quantization=quant,
                kv_bytes=kv,
                kv_quant=kv_quant,
                double_quant=dq,
            )
            bounds = roofline(
                config,
                device,
                compute,
                batch,
                prompt,
                context,
                getattr(torch, dtype),
                quant,
                kv,
                kv_quant,
                dq,
            )
            out.append(
                {"name": name, "config": entry, "options": options, "bounds": bounds}
            )
    return out


def _kinds(config):
    from llmbook.memory import kv_layers

    return [(k, w) for k, w in kv_layers(config) if k != "dummy"]


SECTIONS = {
    "floats": float_vectors,
    "mx": mx_vectors,
    "quantizers": quant_vectors,
    "memory": memory_vectors,
    "model_presets": model_preset_vectors,
    "sharded": sharded_vectors,
    "serving": serving_vectors,
    "roofline": roofline_vectors,
    "gpus": gpus,
}


def vectors_json(sections=tuple(SECTIONS)) -> str:
    """The vectors file's text; ``sections`` picks parts (the tests compare some across CPU paths)."""
    data = {
        "generated_by": "scripts/make_widget_data.py",
        **{name: SECTIONS[name]() for name in sections},
    }
    return json.dumps(data, indent=0) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if the files are out of date"
    )
    args = parser.parse_args(argv)
    stale = []
    for path, text in ((PRESETS_JS, presets_js()), (VECTORS, vectors_json())):
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)} ({len(text):,} bytes)")
    if stale:
        print("out of date (run python scripts/make_widget_data.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
