"""Serving: vLLM's budget (llmbook.memory.serving) against vLLM's own start-up logs, the
block counts against a block manager that stores the tokens one by one, transformers'
paged cache against its predicted bytes, and the `serve` command's answers and errors."""

from __future__ import annotations

import json
import math
import random

import pytest
from transformers import AutoConfig, LlamaConfig

from llmbook import memory, serve_cli
from llmbook.memory import EstimateError
from llmbook.pages.ch13 import BlockManager
from llmbook.units import GIB

LLAMA_3_8B = LlamaConfig(**memory.PRESETS["Llama-3-8B"])


def test_pages_are_vllms_page_size():
    """2 x block x KV heads x head_dim x bytes for attention; one latent and one rotary
    key (no factor 2) for DeepSeek's multi-head latent attention."""
    assert memory.page_bytes(LLAMA_3_8B, 16, 2) == 2 * 16 * 8 * 128 * 2
    v3 = memory.preset_config("DeepSeek-V3")
    assert memory.page_bytes(v3, 64, 2) == 64 * (512 + 64) * 2
    assert memory.page_bytes(LLAMA_3_8B, 16, 1) * 2 == memory.page_bytes(LLAMA_3_8B, 16)


def test_the_budget_reproduces_vllms_logged_parts():
    """vllm-project/vllm pull request 10511: `vllm serve meta-llama/Meta-Llama-3-8B` on
    one 80 GB H100 logged total 79.22, usable 71.29, weights 14.96, outside PyTorch
    1.79, activations 1.26 and KV cache 53.29 GiB."""
    b = memory.serving_budget(LLAMA_3_8B, "H100 80GB", "bfloat16", step_tokens=8192)
    assert b.total / GIB == pytest.approx(79.22, abs=0.1)
    assert b.requested / GIB == pytest.approx(71.29, abs=0.1)
    assert b.weights / GIB == pytest.approx(14.96, abs=0.005)
    assert b.activations / GIB == pytest.approx(
        1.26, abs=0.35
    )  # modelled, not profiled
    assert b.kv_cache / GIB == pytest.approx(53.29, rel=0.01)
    assert b.blocks == b.kv_cache // (2 * 2**20)  # 2 MiB a block of 16 tokens
    assert b.cache_tokens == b.blocks * 16


def test_concurrency_is_vllms_formula_on_its_own_logged_numbers():
    """pull request 17122's log: 158,656 tokens of cache, "Maximum concurrency for
    32,768 tokens per request: 4.84x"."""
    blocks = 158_656 // 16
    budget = memory.serving_budget(LLAMA_3_8B, "L40S", "bfloat16")
    budget = memory.ServingBudget(**{**budget.__dict__, "blocks": blocks})
    assert round(memory.max_concurrency(LLAMA_3_8B, budget, 32_768), 2) == 4.84


def test_groups_follow_the_hybrid_allocator():
    oss = memory.preset_config("gpt-oss-20b")
    assert [(k, n) for k, _, n in memory.cache_groups(oss)] == [
        ("sliding_attention", 12),
        ("full_attention", 12),
    ]
    mixed = LlamaConfig(**memory.PRESETS["Llama-3.2-1B"], sliding_window=512)
    mixed.layer_types = [
        "sliding_attention",
        "sliding_attention",
        "full_attention",
    ] * 5 + ["full_attention"]
    with pytest.raises(EstimateError, match="equal"):
        memory.cache_groups(mixed)  # 10 sliding and 6 full: vLLM pads, not modelled
    mixed.num_hidden_layers, mixed.layer_types = 15, mixed.layer_types[:15]
    groups = memory.cache_groups(mixed)  # 10 sliding, 5 full: three groups of 5
    assert sorted(k for k, _, _ in groups) == ["full_attention"] + [
        "sliding_attention"
    ] * 2 and {n for _, _, n in groups} == {5}


def test_sliding_layers_are_charged_a_window_and_one_step():
    oss = memory.preset_config("gpt-oss-20b")
    window = oss.sliding_window
    tokens, step = 100_000, 2048
    sliding = math.ceil((window - 1 + step) / 16) + 1
    full = math.ceil(tokens / 16)
    assert memory.request_blocks(oss, tokens, 16, step) == sliding + full
    assert memory.request_blocks(oss, 100, 16, step) == 2 * math.ceil(100 / 16) + 1
    # one token a step: the window's blocks exactly, plus one (window - 1 + 1 tokens)
    assert memory.request_blocks(oss, tokens, 16, 1) == window // 16 + 1 + full


@pytest.mark.parametrize("seed", range(6))
def test_requests_that_fit_match_a_block_manager(seed):
    """Users with a shared system prompt, stored token by token in the chapter's block
    manager (prefix forked, copied on write): the blocks the formula charges are the
    blocks used, and one more user would not fit."""
    rng = random.Random(seed)
    block = rng.choice([1, 4, 16, 32])
    prompt, answer = rng.randint(1, 300), rng.randint(0, 200)
    shared = rng.choice([0, rng.randint(0, prompt)])
    tiny = LlamaConfig(
        num_hidden_layers=2,
        num_key_value_heads=2,
        head_dim=16,
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=64,
    )
    budget = memory.serving_budget(
        LLAMA_3_8B, "H100 80GB", "bfloat16", block_tokens=block
    )
    fit = memory.requests_that_fit(tiny, budget, prompt, answer, shared)
    n = 5
    m = BlockManager(10_000, block)
    m.append("prefix", shared)
    for u in range(n):
        m.fork("prefix", f"u{u}") if shared >= block else m.append(f"u{u}", shared)
        m.append(f"u{u}", prompt - shared)
        for _ in range(answer):
            m.append(f"u{u}")
    m.release("prefix")
    assert m.used == fit["shared_blocks"] + n * fit["blocks_each"]


def test_requests_that_fit_say_what_limits_them():
    big = memory.serving_budget(LLAMA_3_8B, "H100 80GB", "bfloat16")
    short = memory.requests_that_fit(LLAMA_3_8B, big, 100, 50)
    assert short["limit"] == "max_num_seqs" and short["requests"] == 1024
    long = memory.requests_that_fit(LLAMA_3_8B, big, 30_000, 2_000)
    assert long["limit"] == "KV cache"
    assert long["requests"] == big.blocks // math.ceil(32_000 / 16)
    shared = memory.requests_that_fit(
        LLAMA_3_8B, big, 30_000, 2_000, shared_prefix=29_000
    )
    assert shared["requests"] > 10 * long["requests"]
    with pytest.raises(EstimateError):
        memory.requests_that_fit(LLAMA_3_8B, big, 100, 50, shared_prefix=101)


def test_a_model_whose_weights_do_not_fit_gets_no_cache():
    b = memory.serving_budget(memory.preset_config("Qwen3-30B-A3B"), "L4", "bfloat16")
    assert b.kv_cache < 0 and b.blocks == 0


def test_models_whose_cache_vllm_budgets_otherwise_are_refused_in_one_line():
    for name in ("Llama-4-Scout", "Qwen3-Next-80B-A3B", "Jamba-v0.1"):
        with pytest.raises(EstimateError) as error:
            memory.serving_budget(memory.preset_config(name), "H100 80GB", "bfloat16")
        assert "\n" not in str(error.value)


def test_transformers_paged_cache_is_its_predicted_bytes():
    """transformers' continuous batching on a small random Llama: its cache tensor is
    whole sectors (blocks aligned to 128 bytes) plus two never handed out."""
    import torch
    import transformers.generation.continuous_batching.cache as cb_cache
    from transformers import AutoModelForCausalLM, GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    made = []
    init = cb_cache.PagedAttentionCache.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    cb_cache.PagedAttentionCache.__init__ = spy
    try:
        cb = ContinuousBatchingConfig(
            num_blocks=7,
            page_size=8,
            max_batch_tokens=64,
            use_cuda_graph=False,
            auto_switch_to_flash=False,
        )
        out = model.generate_batch(
            [[1, 2, 3], [4, 5]],
            generation_config=GenerationConfig(
                max_new_tokens=4, do_sample=False, eos_token_id=0, pad_token_id=0
            ),
            continuous_batching_config=cb,
            warmup=False,
        )
    finally:
        cb_cache.PagedAttentionCache.__init__ = init
    assert len(out) == 2
    block = 3 * 2 * 8 * 2 * 16 * 4  # layers, K and V, page, KV heads, head_dim, fp32
    sector = math.lcm(block, 128)
    assert made[0].cache_tensor.numel() == (math.ceil(7 * block / sector) + 2) * sector


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = serve_cli.main(list(argv))
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_serve_command_answers_as_the_library(capsys):
    code, out, _ = run(
        capsys,
        "Llama-3-8B",
        "--gpu",
        "h100",
        "--prompt",
        "2000",
        "--answer",
        "500",
        "--shared-prefix",
        "1500",
        "--json",
    )
    assert code == 0
    said = json.loads(out)
    budget = memory.serving_budget(LLAMA_3_8B, "H100 80GB", "bfloat16")
    fit = memory.requests_that_fit(LLAMA_3_8B, budget, 2000, 500, 1500)
    assert said["budget"]["blocks"] == budget.blocks
    assert said["requests"] == fit["requests"] and said["limit"] == fit["limit"]
    code, out, _ = run(capsys, "Llama-3-8B", "--gpu", "H100", "--kv-cache-dtype", "fp8")
    assert code == 0 and "blocks of 16 tokens (1 MiB each)" in out
    code, out, _ = run(
        capsys,
        "Llama-3-8B",
        "--gpu",
        "H100",
        "--max-num-seqs",
        "64",
        "--non-torch-gib",
        "0.2",
        "--max-num-batched-tokens",
        "2048",
        "--json",
    )
    said = json.loads(out)
    assert said["requests"] == 64 and said["limit"] == "max_num_seqs"
    assert said["budget"]["non_torch"] == round(0.2 * GIB)
    assert said["budget"]["step_tokens"] == 2048
    code, out, _ = run(capsys, "gpt-oss-20b")  # every GPU, the model as published

    assert code == 0 and len(out.strip().splitlines()) == len(memory.GPUS) + 1


@pytest.mark.parametrize(
    "argv, says",
    [
        (["Llama-3-8B", "--gpu", "H7"], "unknown or ambiguous GPU"),
        (["Llama-3-8B", "--prompt", "0"], "--prompt"),
        (["Llama-3-8B", "--prompt", "10", "--shared-prefix", "11"], "--shared-prefix"),
        (["Llama-3-8B", "--utilization", "1.5"], "--utilization"),
        (["Llama-4-Scout"], "chunked_attention"),
        (["Llama-9-1T"], "Llama-9-1T"),
    ],
)
def test_the_serve_command_refuses_in_one_line(capsys, argv, says):
    code, out, err = run(capsys, *argv)
    said = (out + err).strip()
    assert code == 2 and says in said and "\n" not in said and "Traceback" not in said


def test_hub_config_shapes_are_read(tmp_path):
    """A config.json as published (here Mistral's sliding window, every layer)."""
    config = AutoConfig.for_model(
        "mistral",
        sliding_window=4096,
        num_hidden_layers=4,
        hidden_size=256,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=512,
    )
    groups = memory.cache_groups(config)
    assert [(k, w, n) for k, w, n in groups] == [("sliding_attention", 4096, 4)]
