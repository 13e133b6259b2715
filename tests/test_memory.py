"""The memory estimator against models really loaded by transformers and bitsandbytes."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch

from llmbook.bnb_cpu import quant_constants
from llmbook.cli import main
from llmbook.measure import tensor_bytes
from llmbook.memory import (
    PHASES,
    EstimateError,
    constants_bytes,
    estimate,
    is_skipped,
    load_config,
    module_group,
    weight_bytes,
)
from llmbook.models import build, tiny_config

pytest.importorskip("bitsandbytes")
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig  # noqa: E402
from transformers.utils import logging  # noqa: E402

logging.set_verbosity_error()
SMALL = {
    "llama": {"num_hidden_layers": 2},
    "opt": {"num_hidden_layers": 2},
    "gpt2": {"n_layer": 2},
}
SCHEMES = [  # label, quantization, double quant, dtype of the rest
    ("fp32", None, False, torch.float32),
    ("fp16", None, False, torch.float16),
    ("bf16", None, False, torch.bfloat16),
    ("int8", "int8", False, torch.float16),
    ("int8-fp32", "int8", False, torch.float32),
    ("nf4", "nf4", False, torch.bfloat16),
    ("nf4-dq", "nf4", True, torch.float16),
    ("fp4", "fp4", False, torch.float32),
]


@pytest.fixture(scope="module", params=sorted(SMALL))
def checkpoint(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    build(tiny_config(request.param, **SMALL[request.param])).save_pretrained(folder)
    return folder


def load(folder, quantization, double_quant, dtype, **extra):
    qc = None
    if quantization == "int8":
        qc = BitsAndBytesConfig(load_in_8bit=True, **extra)
    elif quantization:
        qc = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=quantization,
            bnb_4bit_use_double_quant=double_quant,
            **extra,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForCausalLM.from_pretrained(
            folder, dtype=dtype, quantization_config=qc
        )


def measured_constants(model) -> int:
    """Bytes of every quantization constant the loaded model holds, each storage once."""
    return tensor_bytes(*quant_constants(model))


@pytest.mark.parametrize(
    "label, quantization, double_quant, dtype", SCHEMES, ids=[s[0] for s in SCHEMES]
)
def test_estimate_equals_the_loaded_model_to_the_byte(
    checkpoint, label, quantization, double_quant, dtype
):
    model = load(checkpoint, quantization, double_quant, dtype)
    est = estimate(model.config, dtype, quantization, double_quant)
    assert est.footprint_bytes == model.get_memory_footprint()
    assert est.constants_bytes == measured_constants(model)
    assert est.n_parameters == sum(
        p.numel()
        for p in build(
            tiny_config(model.config.model_type, **SMALL[model.config.model_type])
        ).parameters()
    )


def test_default_dtype_is_the_checkpoints(checkpoint):
    model = load(checkpoint, None, False, "auto")
    est = estimate(model.config)
    assert (
        est.dtype == "float32" and est.footprint_bytes == model.get_memory_footprint()
    )


def test_replacing_the_skip_list_quantizes_lm_head(checkpoint):
    """llm_int8_skip_modules replaces the default list: an untied lm_head is then quantized."""
    model = load(
        checkpoint, "int8", False, torch.float16, llm_int8_skip_modules=["not_a_module"]
    )
    est = estimate(model.config, torch.float16, "int8", skip_modules=["not_a_module"])
    assert est.footprint_bytes == model.get_memory_footprint()
    assert est.constants_bytes == measured_constants(model)
    default = estimate(model.config, torch.float16, "int8")
    head = {t.name: t for t in est.tensors}.get("lm_head.weight")
    if model.get_output_embeddings().weight is model.get_input_embeddings().weight:
        assert (
            head is None and est.footprint_bytes == default.footprint_bytes
        )  # tied: stays with the embedding
    else:
        assert head.quantized and est.footprint_bytes < default.footprint_bytes


def test_fp32_is_four_bytes_per_parameter_fp16_two(checkpoint):
    config = load_config(str(checkpoint))
    e32, e16 = estimate(config, torch.float32), estimate(config, torch.float16)
    params = sum(t.nbytes for t in e32.tensors if t.group != "buffers") // 4
    assert params == e32.n_parameters
    assert (
        sum(t.nbytes for t in e16.tensors if t.group != "buffers")
        == 2 * e32.n_parameters
    )


def test_weight_and_constant_formulas():
    assert weight_bytes(4096 * 4096, "int8", 2) == 4096 * 4096
    assert weight_bytes(4096 * 4096, "nf4", 2) == 4096 * 4096 // 2
    assert weight_bytes(7, "fp4", 2) == 4  # an odd count still fills a whole byte
    assert weight_bytes(10, None, 4) == 40
    assert constants_bytes(4096 * 4096, 4096, "int8") == 4 * 4096
    blocks = 4096 * 4096 // 64
    assert constants_bytes(4096 * 4096, 4096, "nf4") == 4 * blocks + 64
    assert (
        constants_bytes(4096 * 4096, 4096, "nf4", double_quant=True)
        == blocks + 4 * (blocks // 256) + 1024 + 4 + 64
    )
    # double quantization: about 0.127 bits per weight instead of 0.5 (QLoRA paper)
    dq_bits = 8 * constants_bytes(4096 * 4096, 4096, "nf4", True) / (4096 * 4096)
    assert 0.12 < dq_bits < 0.13 and 8 * constants_bytes(4096 * 4096, 4096, "nf4") / (
        4096 * 4096
    ) == pytest.approx(0.5, abs=1e-3)


def test_skip_patterns_follow_transformers_rules():
    assert is_skipped("lm_head", ["lm_head"])
    assert is_skipped("model.decoder.layers.23.fc1", ["fc1"])  # suffix
    assert is_skipped(
        "model.layers.1.mlp", ["model.layers.1"]
    )  # prefix at a module boundary
    assert not is_skipped("model.layers.11.mlp", ["model.layers.1"])
    assert not is_skipped("mlp.gate_proj", ["mlp.gate"])


@pytest.mark.parametrize(
    "name, group",
    [
        ("model.embed_tokens.weight", "embeddings"),
        ("lm_head.weight", "head"),
        ("model.layers.0.self_attn.q_proj.weight", "attention"),
        ("model.layers.0.mlp.down_proj.weight", "mlp"),
        ("model.layers.0.input_layernorm.weight", "norms"),
        ("transformer.h.0.ln_1.bias", "norms"),
        ("transformer.h.0.mlp.c_fc.weight", "mlp"),
        ("gpt_neox.embed_in.weight", "embeddings"),
        ("embed_out.weight", "head"),
    ],
)
def test_module_groups(name, group):
    assert module_group(name) == group


def test_unknown_quantization_is_refused():
    with pytest.raises(EstimateError, match="unknown quantization"):
        estimate(tiny_config("llama"), quantization="int3")


# --- the command line ------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmbook", "memory", *args],
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )


def test_cli_json_total_matches_the_estimate(checkpoint):
    result = run_cli(
        str(checkpoint / "config.json"),
        "--quantization",
        "nf4",
        "--double-quant",
        "--dtype",
        "float16",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    est = estimate(load_config(str(checkpoint)), torch.float16, "nf4", True)
    assert (
        data["total_bytes"] == est.total_bytes
        and data["footprint_bytes"] == est.footprint_bytes
    )
    assert (
        sum(g["bytes"] + g["constants_bytes"] for g in data["groups"].values())
        == data["total_bytes"]
    )


def test_cli_human_output(checkpoint):
    result = run_cli(str(checkpoint))
    assert (
        result.returncode == 0
        and "get_memory_footprint()" in result.stdout
        and "GiB" in result.stdout
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such config file"),
        ("{not json", "not valid JSON"),
        ('{"hidden_size": 8}', "no 'model_type'"),
        ('{"model_type": "chatglm", "hidden_size": 8}', "unknown model type 'chatglm'"),
    ],
)
def test_cli_errors_are_one_clear_line(tmp_path, content, message):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    result = run_cli(str(path))
    assert result.returncode == 2
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_cli_hub_id_offline_is_one_line():
    result = run_cli("some-org/some-model-that-is-not-here")
    assert result.returncode == 2 and len(result.stdout.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_main_dispatch_rejects_unknown_command():
    from llmbook.__main__ import main as dispatch

    assert dispatch(["nonsense"]) == 2 and dispatch([]) == 2


def test_main_in_process(checkpoint, capsys):
    assert main([str(checkpoint), "--quantization", "int8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["quantization"] == "int8"


# --- will it fit? usable GPU memory and the CLI's whole-job answer ------------------


def test_usable_memory_leaves_the_cuda_context_and_slack():
    from conftest import ROOT

    from llmbook.memory import ALLOCATOR_SLACK, CUDA_RESERVE_BYTES, GPUS, usable_bytes

    for gpu, (total_mib, source) in GPUS.items():
        total = total_mib * 2**20
        assert (
            usable_bytes(gpu)
            == int((total - CUDA_RESERVE_BYTES) * (1 - ALLOCATOR_SLACK))
            and source
        )
        assert usable_bytes(gpu) < total - CUDA_RESERVE_BYTES
    # the H200 this book ran on: torch's total_memory (recorded) less a CUDA context still
    # exceeds what the calculator plans to fill
    record = json.loads((ROOT / "book" / "data" / "device_build.json").read_text())[
        "provenance"
    ]
    assert record["device_name"] == "NVIDIA H200"
    assert usable_bytes("H200") < record["gpu_memory_gib"] * 2**30 - 512 * 2**20


def test_llama_2_7b_in_bf16_at_4096_tokens_does_not_fit_a_t4():
    """The calculator's old answer (16 'GiB' per T4, 5% spare) said it fits; it does not."""
    from llmbook.memory import PRESETS, breakdown, fits_on

    parts = breakdown(
        LlamaConfig(**PRESETS["Llama-2-7B"]),
        "inference",
        "bfloat16",
        batch=1,
        context=4096,
    )
    assert sum(parts.values()) > 14.9 * 2**30
    assert "T4" not in fits_on(sum(parts.values())) and "A100 40GB" in fits_on(
        sum(parts.values())
    )


def test_cli_answers_the_whole_question(tmp_path, capsys):
    from llmbook.cli import main

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", **PRESETS_7B}))
    assert (
        main(
            [
                str(path),
                "--recipe",
                "inference",
                "--dtype",
                "bf16",
                "--seq",
                "4096",
                "--gpu",
                "t4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "T4: does NOT fit" in out and "kv_cache" in out
    assert main([str(path), "--recipe", "qlora", "--checkpointing", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["peak_bytes"] == sum(data["peak_parts"].values())
    assert data["peak_moment"] in PHASES and "T4" in data["fits_on"]
    with pytest.raises(SystemExit):
        main([str(path), "--dtype", "fp8"])
    err = capsys.readouterr().err
    assert (
        "unknown dtype 'fp8'" in err and len(err.strip().splitlines()) == 1
    )  # no usage
    assert main([str(path), "--recipe", "full", "--batch", "0"]) == 2
    assert "positive" in capsys.readouterr().out


PRESETS_7B = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
}


@pytest.mark.parametrize(
    ("recipe", "options", "gpu"),
    [
        ("qlora", dict(checkpointing=True), "T4"),
        ("lora", dict(optimizer="sgd"), "RTX 4090"),
        ("full", dict(attention="eager"), "H100 80GB"),
        ("inference", dict(batch=3), "T4"),
    ],
)
def test_longest_context_is_the_last_that_fits(recipe, options, gpu):
    """The closed form inside longest_context agrees with peak_bytes at the boundary."""
    from transformers import LlamaConfig

    from llmbook.memory import PRESETS, longest_context, peak_bytes, usable_bytes

    config = LlamaConfig(**PRESETS["Llama-3.2-1B"])
    n = longest_context(config, gpu, recipe, **options)
    assert 0 < n < 131072

    def total(tokens):
        return peak_bytes(config, recipe, context=tokens, **options)

    assert total(n) <= usable_bytes(gpu) < total(n + 1)


def test_longest_context_is_zero_when_the_weights_do_not_fit():
    from transformers import LlamaConfig

    from llmbook.memory import PRESETS, longest_context

    config = LlamaConfig(**PRESETS["Llama-2-70B"])
    assert longest_context(config, "T4", "full", checkpointing=True) == 0


@pytest.mark.parametrize(
    ("preset", "options", "gpu"),
    [
        ("Qwen3-Next-80B-A3B", dict(batch=8), "B200"),  # states from the first token
        ("gpt-oss-20b", dict(quantization="mxfp4", batch=16), "RTX 4090"),
        ("gpt-oss-20b", dict(quantization="mxfp4", kv_keep="window"), "L4"),
        ("Jamba-v0.1", dict(batch=4), "B200"),
    ],
)
def test_longest_context_follows_windows_and_states(preset, options, gpu):
    """A sliding layer that keeps its window stops growing there, a recurrent state
    appears with the first token: the search still ends at the last context that fits."""
    from llmbook.memory import longest_context, peak_bytes, preset_config, usable_bytes

    config = preset_config(preset)
    n = longest_context(config, gpu, "inference", limit=2_000_000, **options)
    assert 0 < n < 2_000_000

    def total(tokens):
        return peak_bytes(config, "inference", context=tokens, **options)

    assert total(n) <= usable_bytes(gpu) < total(n + 1)
