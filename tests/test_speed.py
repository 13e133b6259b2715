"""The roofline (llmbook.memory.speed): FLOPs against PyTorch's own counter on real
forward passes, bytes against the weight estimate, and the bounds' shape on known
hardware."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForCausalLM, DynamicCache, LlamaConfig, MistralConfig

from llmbook import memory
from llmbook.memory.speed import (
    Device,
    StoredWeights,
    attention_flops,
    forward_flops,
    roofline,
)


def small(kind=LlamaConfig, **extra):
    return kind(
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=256,
        attn_implementation="eager",
        **extra,
    )


@pytest.mark.parametrize("past", [0, 7, 40])
@pytest.mark.parametrize("tied", [False, True])
def test_a_decoding_steps_flops_are_pytorchs_count(past, tied):
    """One new token after ``past`` cached ones, batch 2: PyTorch's FlopCounterMode
    counts exactly the roofline's FLOPs (eager attention: its two products are matrix
    products the counter sees; it has no formula for the CPU's fused SDPA kernel)."""
    config = small(tie_word_embeddings=tied)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    cache = DynamicCache(config=config)
    with torch.no_grad():
        if past:
            model(torch.randint(0, 256, (2, past)), past_key_values=cache)
        counter = FlopCounterMode(display=False)
        with counter:
            model(torch.randint(0, 256, (2, 1)), past_key_values=cache)
    assert counter.get_total_flops() == forward_flops(config, 2, 1, past, 1)


def test_a_sliding_window_caps_what_attention_reads():
    window = 5
    config = small(MistralConfig, sliding_window=window)
    for past in (0, 3, 20):
        for tokens in (1, 4, 9):
            seen = sum(min(past + i + 1, window) for i in range(tokens))
            per = 4 * 4 * 32 * 3  # heads x head_dim x layers
            assert attention_flops(config, 1, tokens, past) == per * seen


def test_bytes_read_follow_the_estimate_and_the_experts_touched():
    """The weights once, less the input embedding but its tokens' rows; of a mixture of
    experts, the ``k`` of ``E`` one token uses, and nearly all of them for many tokens."""
    config = small()
    est = memory.estimate(config, torch.bfloat16)
    embedding = 256 * 128 * 2
    dense = StoredWeights.of(config, torch.bfloat16)
    assert dense.read(1) == est.total_bytes - embedding + 128 * 2
    assert dense.read(64) - dense.read(1) == 63 * 128 * 2
    tied = StoredWeights.of(small(tie_word_embeddings=True), torch.bfloat16)
    assert (
        tied.read(1)
        == memory.estimate(small(tie_word_embeddings=True), torch.bfloat16).total_bytes
        + 128 * 2
    )
    oss = memory.preset_config("gpt-oss-20b")
    moe = StoredWeights.of(oss, torch.bfloat16)
    experts = memory.expert_bytes(oss, torch.bfloat16)
    one_token = moe.total + moe.row - experts["experts"] + experts["active"]
    assert moe.read(1) == pytest.approx(one_token, rel=1e-6)  # k of E experts
    assert moe.read(4096) == pytest.approx(moe.total + 4096 * moe.row, rel=1e-3)


def test_a_prompt_pass_counts_no_more_than_pytorch():
    """A prompt pass with eager attention: the counter sees the whole masked square of
    scores, the roofline only the causal half, so it counts less, by exactly that."""
    config = small()
    model = AutoModelForCausalLM.from_config(config).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.randint(0, 256, (1, 20)), logits_to_keep=1)
    ours = forward_flops(config, 1, 20, 0, 1)
    square = 4 * 3 * 4 * 32 * 20 * 20  # layers x heads x head_dim x keys x queries
    assert counter.get_total_flops() - ours == square - attention_flops(
        config, 1, 20, 0
    )


def test_chunked_attention_sees_its_own_chunk():
    from transformers import Llama4TextConfig

    config = Llama4TextConfig(
        hidden_size=128,
        intermediate_size=256,
        intermediate_size_mlp=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        attention_chunk_size=5,
        num_local_experts=32,
        vocab_size=256,
        layer_types=["chunked_attention"] * 4,
    )
    for past in (0, 3, 11):
        for tokens in (1, 6, 13):
            seen = sum((past + i) % 5 + 1 for i in range(tokens))
            assert attention_flops(config, 1, tokens, past) == 4 * 4 * 4 * 32 * seen


def test_a_type_the_sheet_lacks_takes_the_fastest_peak():
    from llmbook.memory import compute_for

    t4 = memory.gpu_device("T4")  # no bf16 on a Turing card's sheet
    assert compute_for(t4, "bfloat16") == "int8"  # its fastest: a bound errs low
    assert compute_for(t4, "float16") == "fp16"
    assert compute_for(memory.gpu_device("H100 80GB"), "bfloat16", "mxfp4") == "bf16"
    assert (
        compute_for(memory.gpu_device("H100 80GB"), "bfloat16", "quanto-int4") == "fp8"
    )


H100 = Device("H100 SXM", bandwidth=3.35e12, peak={"bf16": 989e12})


def test_decoding_is_memory_bound_until_the_batch_is_large():
    llama = memory.preset_config("Llama-3-8B")
    one = roofline(llama, H100, "bf16", batch=1, prompt=1, dtype=torch.bfloat16)
    assert one["step_bound"] == "memory"
    weights = memory.estimate(llama, torch.bfloat16).total_bytes
    embedding = llama.vocab_size * llama.hidden_size * 2  # a lookup: one row is read
    kv = memory.kv_cache_bytes(llama, 1, 1)
    step = weights - embedding + llama.hidden_size * 2 + kv
    assert one["step_s"] == pytest.approx(step / 3.35e12, rel=1e-9)
    assert one["ridge"] == pytest.approx(989e12 / 3.35e12)
    # 2 FLOPs per weight per token against 2 bytes per weight: the machine balance
    assert 128 < one["critical_batch"] <= 512
    long = roofline(llama, H100, "bf16", batch=1, prompt=4096, dtype=torch.bfloat16)
    assert long["ttft_bound"] == "compute"
    assert long["ttft_s"] == pytest.approx(long["prompt_flops"] / 989e12)


def test_bad_input_is_refused_in_one_line():
    llama = memory.preset_config("Llama-3-8B")
    for bad in (dict(compute="fp4"), dict(batch=0)):
        args = dict(compute="bf16", batch=1) | bad
        with pytest.raises(memory.EstimateError) as error:
            roofline(llama, H100, args["compute"], args["batch"], 16)
        assert "\n" not in str(error.value)


def test_every_gpu_has_its_data_sheet_ceilings():
    assert set(memory.GPU_SPECS) == set(memory.GPUS)
    for gpu, spec in memory.GPU_SPECS.items():
        assert spec["bandwidth"] > 1e11 and spec["source"], gpu
        assert spec["kind"] in ("vendor", "copy", "quoted"), gpu
        assert {"bf16", "fp16"} & set(spec["peak"]), gpu
        # a dense tensor-core peak is at least the plain fp32 one
        if "fp32" in spec["peak"]:
            assert max(spec["peak"].values()) > spec["peak"]["fp32"], gpu


def test_the_command_line_gives_the_bounds_of_an_inference_job(capsys):
    import json

    from llmbook import cli

    argv = ["Llama-3-8B", "--recipe", "inference", "--seq", "2048", "--batch", "4"]
    assert cli.main([*argv, "--gpu", "H100", "--json"]) == 0
    said = json.loads(capsys.readouterr().out)["roofline"]
    llama = memory.preset_config("Llama-3-8B")
    want = roofline(
        llama,
        memory.gpu_device("H100 80GB"),
        "bf16",
        4,
        2048,
        None,
        "bfloat16",
        None,
        2,
    )
    assert list(said) == ["H100 80GB"]
    assert said["H100 80GB"]["decode_tok_s"] == pytest.approx(want["decode_tok_s"])
    assert cli.main([*argv, "--gpu", "H100"]) == 0
    text = capsys.readouterr().out
    assert "at best" in text and "H100 80GB" in text.split("at best")[1]
