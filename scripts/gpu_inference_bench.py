"""Record inference memory and speed on a GPU, for the inference chapter.

Runs llmbook's benchmark harness on a TinyLlama-1.1B-shaped model (random weights, the
real architecture) in fp32, bf16, fp16, int8 and nf4, then sweeps prompt length and
batch size, measures what memory generation adds to the weights, compares LoRA
unmerged, merged and absent, and records a per-layer timeline of a model split over the
GPU and the CPU. Writes one JSON file with its provenance (GPU, driver, versions, date,
the exact command). Takes about three minutes on an H100-class GPU.

    python scripts/gpu_inference_bench.py --out llmbook/data/gpu_inference_MYGPU.json
    python scripts/gpu_inference_bench.py --dry-run --out /tmp/dry.json   # CPU, seconds

Without CUDA (or with ``--dry-run``) it runs the same code on a tiny model on the CPU
and reports the CUDA-only section (the GPU + CPU split timeline) as skipped. The JSON is
rewritten after each section, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from llmbook import bench  # noqa: E402
from llmbook.env import provenance as env_provenance  # noqa: E402
from llmbook.memory import LORA_TARGETS  # noqa: E402
from llmbook.models import build  # noqa: E402
from llmbook.notebook import scratch_dir  # noqa: E402


def quiet() -> None:
    import logging

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for name in ("accelerate", "bitsandbytes"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*inputs will be cast from.*")
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )


def provenance(device: str, plan: dict, argv: list[str]) -> dict:
    import torch

    record = env_provenance(
        "python " + shlex.join(["scripts/gpu_inference_bench.py", *argv])
    )
    return {
        **record,
        "device": device,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "plan": plan,
    }


def plan_for(device: str) -> dict:
    """What to run: full size on CUDA, tiny on CPU (the dry run)."""
    if device == "cuda":
        return dict(
            config=bench.TINYLLAMA_1B,
            precisions=list(bench.PRECISIONS),
            repeats=3,
            base=dict(batch=1, prompt_tokens=128, new_tokens=64),
            prompt_sweep=[32, 128, 512, 1024, 2048],
            prompt_sweep_precisions=["bf16", "int8", "nf4"],
            batch_sweep=[1, 4, 16, 64],
            batch_sweep_precisions=["bf16", "int8", "nf4"],
            sweep_new_tokens=32,
            memory=dict(batch=8, prompt_tokens=1024, new_tokens=32),
            memory_precisions=["bf16", "int8", "nf4"],
            lora_rank=16,
        )
    from llmbook.models import FAMILIES

    tiny = {**FAMILIES["llama"], "num_hidden_layers": 2}
    return dict(
        config=tiny,
        precisions=list(bench.PRECISIONS),
        repeats=1,
        base=dict(batch=1, prompt_tokens=16, new_tokens=4),
        prompt_sweep=[8, 32],
        prompt_sweep_precisions=["bf16", "nf4"],
        batch_sweep=[1, 2],
        batch_sweep_precisions=["bf16"],
        sweep_new_tokens=3,
        memory=dict(batch=2, prompt_tokens=32, new_tokens=3),
        memory_precisions=["bf16", "int8"],
        lora_rank=4,
    )


def free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def run(args, argv: list[str]) -> dict:
    import torch
    from transformers import LlamaConfig

    device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    plan = plan_for(device)
    result: dict = {"provenance": provenance(device, plan, argv), "sections": {}}
    sections = result["sections"]
    out = Path(args.out)

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"[{time.perf_counter() - t_start:6.1f} s] wrote {out}", flush=True)

    t_start = time.perf_counter()
    config = LlamaConfig(**plan["config"])
    folder = scratch_dir("bench-") / "model"  # removed when the script exits
    bench.save_checkpoint(config, folder, dtype=torch.bfloat16, device=device)
    result["provenance"]["parameters"] = sum(
        p.numel() for p in build(config, empty=True).parameters()
    )
    reps = plan["repeats"]

    def gen(model, precision, batch, prompt_tokens, new_tokens):
        r = bench.measure_generation(
            model,
            batch,
            prompt_tokens,
            new_tokens,
            repeats=reps,
            device=device,
            kv_bytes_per_value=bench.compute_bytes(precision),
        )
        return {"precision": precision, **r.as_dict()}

    # 1. every precision at one setting
    rows = []
    for precision in plan["precisions"]:
        model, load_s, weight_bytes, allocated = bench.load_measured(
            folder, precision, device
        )
        rows.append(
            {
                "load_s": load_s,
                "weight_bytes": weight_bytes,
                "allocated_bytes": allocated,
                **gen(model, precision, **plan["base"]),
            }
        )
        print(rows[-1], flush=True)
        del model
        free(device)
    sections["precisions"] = rows
    save()

    # 2. prompt length (C19) and 3. batch size, both at a fixed number of new tokens
    for name, key, values in (
        ("prompt_sweep", "prompt_tokens", plan["prompt_sweep"]),
        ("batch_sweep", "batch", plan["batch_sweep"]),
    ):
        rows = []
        for precision in plan[f"{name}_precisions"]:
            model, _, _ = bench.load(folder, precision, device)
            for v in values:
                setting = {
                    "batch": 1,
                    "prompt_tokens": plan["base"]["prompt_tokens"],
                    "new_tokens": plan["sweep_new_tokens"],
                    key: v,
                }
                rows.append(gen(model, precision, **setting))
                print(rows[-1], flush=True)
            del model
            free(device)
        sections[name] = rows
        save()

    # 4. what generation adds to the weights (C20)
    rows = []
    for precision in plan["memory_precisions"]:
        model, _, weight_bytes, allocated = bench.load_measured(
            folder, precision, device
        )
        rows.append(
            {
                "weight_bytes": weight_bytes,
                "allocated_bytes": allocated,
                **gen(model, precision, **plan["memory"]),
            }
        )
        del model
        free(device)
    sections["memory"] = rows
    save()

    # 5. LoRA: none, unmerged adapter, merged (C21)
    from peft import LoraConfig, get_peft_model

    rows = []
    for variant in ("no adapter", "LoRA unmerged", "LoRA merged"):
        model, _, weight_bytes = bench.load(folder, "bf16", device)
        if variant != "no adapter":
            lora = LoraConfig(
                r=plan["lora_rank"],
                lora_alpha=2 * plan["lora_rank"],
                init_lora_weights=False,
                target_modules=list(LORA_TARGETS),
            )
            model = get_peft_model(model, lora).eval()
            if variant == "LoRA merged":
                model = model.merge_and_unload()
            weight_bytes = bench.state_bytes(model)
        rows.append(
            {
                "variant": variant,
                "weight_bytes": weight_bytes,
                **gen(model, "bf16", **plan["base"]),
            }
        )
        print(rows[-1], flush=True)
        del model
        free(device)
    sections["lora"] = rows
    save()

    # 6. a naive split over two devices (C17): CUDA-only
    if device != "cuda":
        sections["split_timeline"] = {
            "skipped": "needs CUDA: the split puts half the layers on the GPU and half on the CPU"
        }
    else:
        from transformers import AutoModelForCausalLM

        n = config.num_hidden_layers
        device_map = {
            "model.embed_tokens": 0,
            "model.rotary_emb": 0,
            "model.norm": "cpu",
            "lm_head": "cpu",
        }
        device_map |= {
            f"model.layers.{i}": (0 if i < n // 2 else "cpu") for i in range(n)
        }
        ids = bench.prompt(config.vocab_size, 1, plan["base"]["prompt_tokens"])
        timelines = {}
        for label, dm in (("one GPU", "cuda"), ("GPU + CPU", device_map)):
            model = AutoModelForCausalLM.from_pretrained(
                folder, dtype=torch.bfloat16, device_map=dm
            ).eval()
            bench.layer_timeline(model, ids)  # warm-up
            timelines[label] = bench.layer_timeline(model, ids)
            del model
            free(device)
        sections["split_timeline"] = timelines
    result["provenance"]["wall_s"] = time.perf_counter() - t_start
    save()
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        default=str(ROOT / "llmbook" / "data" / "gpu_inference.json"),
        help="where to write the JSON results",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny model on the CPU, for tests"
    )
    args = parser.parse_args(argv)
    try:
        import bitsandbytes  # noqa: F401
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        print(
            f"error: {e.name} is missing; install the book's requirements (pip install -r requirements.txt)",
            file=sys.stderr,
        )
        return 2
    quiet()
    run(args, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
