"""Generate the web widgets' data from Python, the one source of truth.

- ``book/_static/widgets/presets.js``: the memory calculator's preset architectures
  (``llmbook.memory.PRESETS``), loaded by the site.
- ``tests/js/vectors.json``: test vectors the JavaScript must reproduce exactly: bit
  patterns, stored values and neighbours of many values in fp32, fp16, bf16 and fp8
  (NumPy and ml_dtypes), absmax int8 and NF4 codes (bitsandbytes' own quantizer), and
  memory breakdowns of many configs (``llmbook.memory.breakdown``).

    python scripts/make_widget_data.py          # rewrite both files
    python scripts/make_widget_data.py --check  # exit 1 if either is out of date
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

import ml_dtypes
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESETS_JS = ROOT / "book" / "_static" / "widgets" / "presets.js"
VECTORS = ROOT / "tests" / "js" / "vectors.json"

FORMATS = {  # widget key: (numpy dtype, unsigned view)
    "fp32": (np.float32, np.uint32),
    "fp16": (np.float16, np.uint16),
    "bf16": (ml_dtypes.bfloat16, np.uint16),
    "e4m3": (ml_dtypes.float8_e4m3fn, np.uint8),
    "e5m2": (ml_dtypes.float8_e5m2, np.uint8),
}


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
    special = [0.0, -0.0, 1.0, -1.0, 0.1, 1 / 3, math.pi, math.e, 2.0, 0.5, 65504.0, 65519.0, 65520.0, 65536.0,
               448.0, 460.0, 464.0, 465.0, 480.0, 57344.0, 61439.0, 61440.0, 1e-8, 5.96e-8, 2.98e-8, 2**-24,
               2**-25, 3 * 2**-26, 2**-9, 2**-10, 2**-7, 2**-6, 2**-16, 2**-17, 1e-40, 1e-45, 3.4e38, 3.3e38,
               1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-4, 1 + 3 * 2**-4, 1 + 2**-3,
               1 + 2**-23, 2**127, 6.0, -6.0, 100.0, 1000.0, 1e5, 1e10, 123456.789, -0.001]
    rng = np.random.default_rng(0)
    randoms = rng.choice([-1, 1], 300) * np.exp(rng.uniform(np.log(1e-9), np.log(1e6), 300))
    values = [float(np.float32(v)) for v in [*special, *randoms]]
    return values + [math.inf, -math.inf, math.nan]


def all_finite(dtype, view) -> np.ndarray:
    """Every finite value of a 16- or 8-bit format, sorted."""
    bits = np.arange(2 ** (8 * np.dtype(view).itemsize), dtype=np.uint64).astype(view)
    v = bits.view(dtype).astype(np.float64)
    return np.unique(v[np.isfinite(v)])


def neighbours(v: float, key: str, table: np.ndarray | None):
    if not math.isfinite(v):
        return None, None
    if key == "fp32":
        f = np.float32(v)
        below, above = np.nextafter(f, np.float32(-np.inf)), np.nextafter(f, np.float32(np.inf))
        if v == 0:
            below, above = -np.nextafter(np.float32(0), np.float32(1)), np.nextafter(np.float32(0), np.float32(1))
        return (None if np.isinf(below) else float(below)), (None if np.isinf(above) else float(above))
    i = np.searchsorted(table, v)
    below = float(table[i - 1]) if i > 0 else None
    j = np.searchsorted(table, v, side="right")
    above = float(table[j]) if j < len(table) else None
    return below, above


def float_vectors() -> list[dict]:
    tables = {k: (None if k == "fp32" else all_finite(*FORMATS[k])) for k in FORMATS}
    out = []
    for x in float_values():
        row = {"x": num(x), "formats": {}}
        for key, (dtype, view) in FORMATS.items():
            stored = np.array([x], dtype=np.float32).astype(dtype)
            bits = int(stored.view(view)[0])
            value = float(stored.astype(np.float64)[0])
            below, above = neighbours(value, key, tables[key])
            row["formats"][key] = {"bits": bits, "value": num(value), "below": below, "above": above}
        out.append(row)
    return out


def quant_vectors() -> list[dict]:
    import bitsandbytes.functional as F
    import torch

    code = F.get_4bit_type("nf4", device="cpu").tolist()
    rng = np.random.default_rng(1)
    cases = [(0.5, 127.0), (1.5, 127.0), (2.5, 127.0), (-2.5, 127.0), (1.0, 1.0), (-1.0, 1.0), (0.0, 3.0),
             (0.3, 1.0), (-0.05, 1.0), (6.0, 6.0)]
    cases += [(float(np.float32(a * u)), float(np.float32(a))) for a, u in
              zip(np.exp(rng.uniform(-5, 5, 150)), rng.uniform(-1, 1, 150))]
    out = []
    for x, absmax in cases:
        q = int(np.clip(np.round(127 * x / absmax), -127, 127))  # np.round: half to even
        block = torch.zeros(64)
        block[0], block[1] = x, absmax
        packed, state = F.quantize_4bit(block, blocksize=64, quant_type="nf4")
        assert float(state.absmax[0]) == np.float32(absmax)
        nibble = int(packed.flatten()[0]) >> 4  # the first element is the high nibble
        out.append({"x": x, "absmax": absmax, "int8": q, "int8_value": q * absmax / 127,
                    "nf4": nibble, "nf4_value": code[nibble] * absmax})
    return out


def memory_vectors() -> list[dict]:
    from transformers import LlamaConfig

    from llmbook.memory import PRESETS, breakdown

    rng = np.random.default_rng(2)
    configs = dict(PRESETS)
    for i in range(8):
        heads = int(rng.choice([4, 8, 16, 32]))
        kv = int(rng.choice([k for k in (1, 2, 4, 8, 16, 32) if heads % k == 0]))
        configs[f"random-{i}"] = dict(hidden_size=heads * int(rng.choice([16, 32, 64, 128])),
                                      intermediate_size=int(rng.integers(100, 3000)),
                                      num_hidden_layers=int(rng.integers(1, 12)), num_attention_heads=heads,
                                      num_key_value_heads=kv, vocab_size=int(rng.integers(100, 50000)),
                                      tie_word_embeddings=bool(rng.integers(0, 2)))
    options = [dict(recipe="inference", dtype=d, quantization=q, double_quant=dq)
               for d, q, dq in itertools.product(("bfloat16", "float32"), (None, "int8", "nf4"), (False, True))
               if not (dq and q != "nf4")]
    options += [dict(recipe="full", checkpointing=c) for c in (False, True)]
    options += [dict(recipe="lora", dtype="float16", lora_rank=8), dict(recipe="qlora", double_quant=True),
                dict(recipe="qlora", checkpointing=True, lora_rank=64)]
    out = []
    for (name, cfg), (batch, context) in itertools.product(configs.items(), ((1, 2048), (4, 513))):
        config = LlamaConfig(**cfg)
        for opts in options:
            if name == "Llama-2-70B" and batch != 1:
                continue  # slow to instantiate even on the meta device; one setting is enough
            parts = breakdown(config, batch=batch, context=context, **opts)
            out.append({"name": name, "config": cfg, "options": {**opts, "batch": batch, "context": context},
                        "parameters": None, "parts": parts})
    from llmbook.memory import estimate

    for row in out:
        row["parameters"] = estimate(LlamaConfig(**row["config"]), "bfloat16").n_parameters
    return out


def presets_js() -> str:
    from llmbook.memory import PRESETS

    return ("// Generated by scripts/make_widget_data.py from llmbook.memory.PRESETS; do not edit.\n"
            f"window.LLMBookPresets = {json.dumps(PRESETS, indent=1)};\n")


def vectors_json() -> str:
    np.seterr(over="ignore", invalid="ignore")  # overflow to inf/NaN is what the vectors test
    data = {"generated_by": "scripts/make_widget_data.py", "floats": float_vectors(), "quantizers": quant_vectors(),
            "memory": memory_vectors()}
    return json.dumps(data, indent=0) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are out of date")
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
