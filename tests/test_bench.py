"""The benchmark harness (llmbook.bench) and the scripts that use it, on tiny models."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llmbook import bench, memory
from llmbook.memory import estimate
from llmbook.models import tiny_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = tiny_config("llama", num_hidden_layers=2)
    return config, bench.save_checkpoint(
        config, tmp_path_factory.mktemp("bench") / "m", dtype=torch.bfloat16
    )


def test_kv_cache_formula_matches_a_real_cache(checkpoint):
    config, folder = checkpoint
    model, _, _ = bench.load(folder, "bf16")
    ids = bench.prompt(config.vocab_size, 3, 17)
    with torch.inference_mode():
        out = model(ids, use_cache=True)
    cache = getattr(out, "cache", None) or out.past_key_values
    measured = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    assert measured == memory.kv_cache_bytes(config, 3, 17, 2)
    # by hand: 2 (K and V) x 2 layers x 3 x 17 tokens x 4 KV heads x 32 dims x 2 bytes
    assert measured == 2 * 2 * 3 * 17 * 4 * 32 * 2


@pytest.mark.parametrize("precision", bench.PRECISIONS)
def test_loaded_weights_match_the_estimator(checkpoint, precision):
    config, folder = checkpoint
    model, seconds, weight_bytes = bench.load(folder, precision)
    dtype = bench.load_kwargs(precision)["dtype"]
    expected = estimate(
        config, dtype, precision if precision in ("int8", "nf4") else None
    ).total_bytes
    assert seconds > 0
    assert weight_bytes == expected  # to the byte, as loaded (before any repacking)
    if precision in ("fp32", "bf16", "fp16"):  # parameters x bytes, plus the buffers
        n = sum(p.numel() for p in model.parameters())
        buffers = sum(b.nbytes for b in model.buffers())
        assert weight_bytes == n * dtype.itemsize + buffers


def test_state_bytes_counts_a_known_allocation_once():
    lin = torch.nn.Linear(1000, 500, dtype=torch.float16)
    assert bench.state_bytes(lin) == (1000 * 500 + 500) * 2
    tied = torch.nn.Sequential(lin, torch.nn.Linear(1000, 500))
    tied[1].weight = lin.weight  # shared storage counted once
    assert bench.state_bytes(tied) == (1000 * 500 + 500 + 500) * 2 + 500 * 4 - 500 * 2


def test_compute_bytes_and_bad_precision():
    assert [bench.compute_bytes(p) for p in bench.PRECISIONS] == [4, 2, 2, 2, 2]
    with pytest.raises(ValueError, match="unknown precision"):
        bench.load_kwargs("int4")
    with pytest.raises(ValueError, match="unknown precision"):
        bench.compute_bytes("fp8")


def test_prompt_is_seeded_and_in_range():
    a, b = bench.prompt(100, 2, 50, seed=3), bench.prompt(100, 2, 50, seed=3)
    assert torch.equal(a, b) and a.shape == (2, 50)
    assert a.min() >= 1 and a.max() < 100
    assert not torch.equal(a, bench.prompt(100, 2, 50, seed=4))


def test_generate_makes_exactly_the_tokens_asked(checkpoint):
    config, folder = checkpoint
    model, _, _ = bench.load(folder, "fp32")
    out = bench.generate(model, bench.prompt(config.vocab_size, 2, 5), 7)
    assert out.shape == (2, 12)


def test_measure_generation_reports_consistent_numbers(checkpoint):
    config, folder = checkpoint
    model, _, _ = bench.load(folder, "fp32")
    r = bench.measure_generation(
        model, batch=2, prompt_tokens=8, new_tokens=6, repeats=2
    )
    assert r.ttft_s > 0 and r.total_s > 0 and r.ttft_spread_s >= 0
    assert math.isnan(r.decode_tok_s) or r.decode_tok_s > 0
    assert r.kv_cache_bytes == memory.kv_cache_bytes(config, 2, 8 + 6 - 1, 4)
    assert set(r.as_dict()) >= {
        "ttft_s",
        "decode_tok_s",
        "peak_bytes",
        "kv_cache_bytes",
    }
    with pytest.raises(ValueError, match="at least 2"):
        bench.measure_generation(model, 1, 4, 1)


def test_layer_timeline_is_ordered_and_complete(checkpoint):
    config, folder = checkpoint
    model, _, _ = bench.load(folder, "fp32")
    events = bench.layer_timeline(model, bench.prompt(config.vocab_size, 1, 8))
    assert [e["layer"] for e in events] == list(range(config.num_hidden_layers))
    assert all(0 <= e["start_s"] < e["end_s"] for e in events)
    assert all(b["start_s"] >= a["end_s"] for a, b in itertools.pairwise(events))
    assert {e["device"] for e in events} == {"cpu"}
    # hooks are removed afterwards
    assert all(
        not layer._forward_hooks and not layer._forward_pre_hooks
        for layer in model.model.layers
    )


def test_gpu_script_dry_run_on_cpu(tmp_path):
    out = tmp_path / "dry.json"
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/gpu_inference_bench.py",
            "--dry-run",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    prov = data["provenance"]
    assert prov["device"] == "cpu" and prov["command"].endswith(
        f"--dry-run --out {out}"
    )
    assert prov["versions"]["torch"] == torch.__version__ and prov["date"].endswith("Z")
    sections = data["sections"]
    assert [r["precision"] for r in sections["precisions"]] == list(bench.PRECISIONS)
    assert "needs CUDA" in sections["split_timeline"]["skipped"]
    assert [r["variant"] for r in sections["lora"]] == [
        "no adapter",
        "LoRA unmerged",
        "LoRA merged",
    ]
    lora = {r["variant"]: r["weight_bytes"] for r in sections["lora"]}
    assert lora["LoRA merged"] == lora["no adapter"] < lora["LoRA unmerged"]
    assert all(
        r["allocated_bytes"] is None for r in sections["precisions"]
    )  # CUDA only


def test_recorded_gpu_run_has_full_provenance():
    data = bench.recorded_run("gpu_inference_h200.json")
    prov = data["provenance"]
    assert (
        prov["device"] == "cuda"
        and prov["device_name"]
        and prov["driver"]
        and prov["cuda_runtime"]
    )
    assert prov["command"].startswith("python scripts/gpu_inference_bench.py")
    assert all(
        prov["versions"][k]
        for k in ("torch", "transformers", "bitsandbytes", "accelerate", "peft")
    )
    assert set(data["sections"]) == {
        "precisions",
        "prompt_sweep",
        "batch_sweep",
        "memory",
        "lora",
        "split_timeline",
    }
    # what the allocator gained by loading 16- and 32-bit models: bytes per parameter,
    # plus the rotary buffers and the allocator's rounding of each block to 512 bytes
    rows = {r["precision"]: r for r in data["sections"]["precisions"]}
    for precision, width in (("bf16", 2), ("fp16", 2), ("fp32", 4)):
        assert (
            0 <= rows[precision]["allocated_bytes"] - width * prov["parameters"] < 4096
        )


def test_gpu_script_says_what_is_missing(tmp_path):
    code = (
        "import builtins, runpy, sys\n"
        "real = builtins.__import__\n"
        "def fake(name, *a, **k):\n"
        "    if name == 'bitsandbytes':\n"
        "        raise ImportError(name=name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = fake\n"
        "sys.argv = ['gpu_inference_bench.py', '--dry-run', '--out', sys.argv[1]]\n"
        "runpy.run_path('scripts/gpu_inference_bench.py', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "x.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: bitsandbytes is missing; install the book's requirements (pip install -r requirements.txt)"
    ]


def test_plain_chapter_runner_reports_the_failing_cell(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("x = 1"),
            nbformat.v4.new_code_cell("raise ValueError('planted')"),
        ]
    )
    bad = tmp_path / "99_bad.ipynb"
    nbformat.write(nb, bad)
    good = tmp_path / "98_good.ipynb"
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1 + 1)")]),
        good,
    )
    out = tmp_path / "summary.json"
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/run_chapters_plain.py",
            str(good),
            str(bad),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    summary = {r["chapter"]: r for r in json.loads(out.read_text())}
    assert (
        summary["98_good.ipynb"]["ok"]
        and "2" in summary["98_good.ipynb"]["stdout_tail"]
    )
    assert not summary["99_bad.ipynb"]["ok"]
    assert (
        summary["99_bad.ipynb"]["error"].startswith("cell 1:")
        and "planted" in summary["99_bad.ipynb"]["error"]
    )


def test_plain_runner_turns_the_chapters_deprecations_into_errors(tmp_path):
    import nbformat

    code = "import warnings\nwarnings.warn('old API', DeprecationWarning)\nprint('still here')"
    nb = tmp_path / "97_deprecated.ipynb"
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), nb
    )
    relaxed = subprocess.run(
        [sys.executable, "scripts/run_chapters_plain.py", str(nb)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert relaxed.returncode == 0, relaxed.stdout
    strict = subprocess.run(
        [
            sys.executable,
            "scripts/run_chapters_plain.py",
            "--warnings-as-errors",
            str(nb),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert strict.returncode == 1 and "DeprecationWarning: old API" in strict.stdout
    assert "97_deprecated.ipynb: FAILED" in strict.stdout


def test_plain_runner_can_run_the_colab_install_cell(tmp_path):
    import nbformat

    code = (
        "import sys\nprint('colab' if 'google.colab' in sys.modules else 'not colab')"
    )
    nb = tmp_path / "96_colab.ipynb"
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), nb
    )
    out = tmp_path / "s.json"
    subprocess.run(
        [
            sys.executable,
            "scripts/run_chapters_plain.py",
            "--colab",
            str(nb),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert "\ncolab\n" in "\n" + json.loads(out.read_text())[0]["stdout_tail"]


def test_decode_interval_brackets_the_median_and_orders_only_when_separated():
    from llmbook.bench import decode_interval, separated

    row = {
        "batch": 1,
        "new_tokens": 64,
        "ttft_s": 0.02,
        "ttft_spread_s": 0.001,
        "total_s": 1.16,
        "total_spread_s": 0.17,
    }
    low, high = decode_interval(row)
    median = 63 / (1.16 - 0.02)
    assert low < median < high
    assert low == pytest.approx(63 / (1.16 + 0.17 - 0.019)) and high == pytest.approx(
        63 / (1.16 - 0.17 - 0.021)
    )
    assert decode_interval(
        {**row, "total_spread_s": 0.0, "ttft_spread_s": 0.0}
    ) == pytest.approx((median, median))
    assert (
        separated((3, 4), (1, 2)) == 1
        and separated((1, 2), (3, 4)) == -1
        and separated((1, 3), (2, 4)) == 0
    )
    # every recorded GPU measurement's interval holds its own median
    for rows in bench.recorded_run()["sections"].values():
        for r in rows if isinstance(rows, list) else []:
            lo, hi = decode_interval(r)
            assert lo <= r["decode_tok_s"] <= hi


@pytest.mark.parametrize("precision", bench.ALL_PRECISIONS)
def test_every_precision_name_gives_its_bitsandbytes_config(precision):
    kwargs = bench.load_kwargs(precision)
    q = kwargs.get("quantization_config")
    if precision in bench.FLOATS:
        assert q is None and kwargs["dtype"] == getattr(torch, bench.FLOATS[precision])
        return
    assert q.load_in_8bit == precision.startswith("int8")
    assert q.load_in_4bit == (not precision.startswith("int8"))
    if q.load_in_4bit:
        assert q.bnb_4bit_quant_type == precision[:3]
        assert q.bnb_4bit_use_double_quant == precision.endswith("-dq")
        assert q.bnb_4bit_compute_dtype == torch.bfloat16 == kwargs["dtype"]
    else:
        assert (q.llm_int8_threshold == 0.0) == (precision == "int8-no-outliers")
        assert kwargs["dtype"] == torch.float16


def test_load_kwargs_can_keep_the_checkpoint_dtype_and_set_compute():
    kwargs = bench.load_kwargs("nf4", compute_dtype=torch.float32, dtype="auto")
    assert kwargs["dtype"] == "auto"
    assert kwargs["quantization_config"].bnb_4bit_compute_dtype == torch.float32
