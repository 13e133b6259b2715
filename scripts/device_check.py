#!/usr/bin/env python3
"""The whole book built once on this machine (meant for a GPU machine), recorded.

Builds every chapter with ``jb build`` from an empty execution cache, exactly as the
site's GPU build does, and writes a JSON record: GPU, driver, CUDA, CPU features and
bitsandbytes' CPU path, library versions, the date and command, the whole build's wall
time against the 5-minute GPU budget, and for each chapter its execution time and
result (the failing cell and error when it failed). On a GPU it also records the
bitsandbytes issue-2078 check (a 4-bit layer moved to the GPU after a CPU forward pass)
and the peak memory of real training steps against llmbook.memory.peak.

    python scripts/device_check.py --out DIR       # DIR/device_build.json, DIR/build.log
    python scripts/device_check.py --dry-run       # CPU: chapter 1 only, to test this script

``scripts/device_check.sh`` wraps it. The committed records live in ``book/data/`` (the
Build report shows them) and ``llmbook/data/`` (chapters read them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from llmbook.env import provenance  # noqa: E402

GPU_BUDGET_S = 300  # the whole book on one modern GPU


def toc_chapters(root: Path) -> list[str]:
    """The notebooks of ``_toc.yml``, in order, as paths relative to ``root``."""
    import yaml

    files = []

    def walk(entries):
        for entry in entries:
            if "file" in entry and (root / f"{entry['file']}.ipynb").exists():
                files.append(f"{entry['file']}.ipynb")
            walk(entry.get("sections", []))

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    return files


def scratch_book(keep: list[str], dest: Path) -> Path:
    """A copy of the book whose table of contents holds only the chapters in ``keep``."""
    import yaml

    shutil.copytree(
        ROOT,
        dest,
        ignore=shutil.ignore_patterns("_build", ".venv*", ".git", "artifacts", ".dev*"),
    )
    toc = yaml.safe_load((dest / "_toc.yml").read_text())
    for part in toc["parts"]:
        part["chapters"] = [
            c
            for c in part["chapters"]
            if f"{c['file']}.ipynb" in keep
            or not c["file"].split("/")[-1][:2].isdigit()
        ]
    toc["parts"] = [part for part in toc["parts"] if part["chapters"]]
    (dest / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    return dest


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failure_of(report: Path) -> dict:
    """The failing cell (first lines) and the error line from a myst-nb execution report
    (which carries the kernel's coloured traceback: colour codes are stripped)."""
    text = ANSI.sub("", report.read_text(errors="replace"))
    cell = ""
    match = re.search(
        r"An error occurred while executing the following cell:\n-+\n(.*?)\n-+\n",
        text,
        re.S,
    )
    if match:
        cell = "\n".join(match.group(1).splitlines()[:6])
    errors = [
        line
        for line in text.splitlines()
        if re.match(r"^[A-Za-z_.]*(Error|Exception|Requirement|Shape)\b.*:", line)
        and "CellExecutionError" not in line
        and "ExecutionError:" not in line
    ]
    return {
        "failing_cell": cell,
        "error": errors[-1][:500] if errors else text.strip().splitlines()[-1][:500],
    }


def chapter_results(output: Path, chapters: list[str]) -> list[dict]:
    from jupyter_cache import get_cache

    cache = get_cache(str(output / "_build" / ".jupyter_cache"))
    seconds = {
        Path(r.uri).name: r.data.get("execution_seconds")
        for r in cache.list_cache_records()
    }
    reports = output / "_build" / "html" / "reports"
    rows = []
    for chapter in chapters:
        name = Path(chapter).name
        row = {
            "chapter": name,
            "seconds": round(seconds[name], 1) if name in seconds else None,
        }
        report = (
            next(iter(reports.glob(f"**/{Path(chapter).stem}.err.log")), None)
            if reports.exists()
            else None
        )
        if name in seconds:
            row["result"] = "ok"
        else:
            row["result"] = "failed"
            row.update(
                failure_of(report)
                if report
                else {
                    "failing_cell": "",
                    "error": "not executed (the build stopped first; see build.log)",
                }
            )
        rows.append(row)
    return rows


def bnb_move_check() -> dict | None:
    """bitsandbytes issue 2078 on this machine's GPU (None without one)."""
    import torch

    if not torch.cuda.is_available():
        return None
    from llmbook.bnb_cpu import move_after_cpu_forward

    torch.manual_seed(0)
    weight = torch.randn(1536, 384) * 0.05  # a MiniLM MLP layer's shape
    return move_after_cpu_forward(weight, device="cuda")


#: Training steps whose peak the GPU check measures against llmbook.memory.peak: recipe,
#: KV heads (fewer than the 16 query heads: grouped-query attention), batch, tokens,
#: checkpointing. The shape is a small Llama with a real vocabulary.
PEAK_CASES = (
    ("full", 4, 2, 1024, False),
    ("full", 16, 2, 1024, True),
    ("lora", 4, 2, 1024, False),
    ("qlora", 4, 2, 1024, True),
)


def peak_rows(device: str = "cuda", cases=PEAK_CASES, layers: int = 4) -> list[dict]:
    """Each case's predicted peak (llmbook.memory.peak) and the measured one: the CUDA
    allocator's ``max_memory_allocated`` over a second step on a GPU, the profiler's
    live tensors on a CPU (llmbook.measure.peak_tensor_bytes)."""
    rows = []
    for case in cases:
        rows.append(_peak_row(device, layers, *case))
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
    return rows


def _peak_row(device, layers, recipe, kv_heads, batch, seq, ckpt) -> dict:
    import contextlib

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    from llmbook import memory
    from llmbook.bench import load_kwargs
    from llmbook.measure import peak_tensor_bytes

    config = LlamaConfig(
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=layers,
        num_attention_heads=16,
        num_key_value_heads=kv_heads,
        vocab_size=32000,
    )
    torch.manual_seed(0)
    dtype = torch.float32 if recipe == "full" else torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if recipe == "qlora":  # the same weights, stored in nf4 with double quantization
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(
                folder, **load_kwargs("nf4-dq"), device_map=device
            )
    else:
        model = model.to(device)
    if recipe != "full":
        lora = LoraConfig(r=16, target_modules=list(memory.LORA_TARGETS))
        model = get_peft_model(model, lora)
    model.train()
    if ckpt:
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, foreach=True)  # a GPU's default
    ids = torch.randint(0, config.vocab_size, (batch, seq), device=device)
    held = {}  # the loop's `out`, kept until the next forward pass returns
    half = torch.autocast(device.split(":")[0], torch.bfloat16)

    def step():
        with half if recipe == "full" else contextlib.nullcontext():
            held["out"] = model(input_ids=ids, labels=ids)
        held["out"].loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        measured = torch.cuda.max_memory_allocated()
    else:
        measured = peak_tensor_bytes(step)
    moment, parts = memory.peak(
        config,
        recipe,
        dtype="float32" if recipe == "full" else "bfloat16",
        double_quant=True,
        batch=batch,
        context=seq,
        checkpointing=ckpt,
    )
    predicted = sum(parts.values())
    return {
        "recipe": recipe,
        "kv_heads": kv_heads,
        "tokens": [batch, seq],
        "checkpointing": ckpt,
        "moment": moment,
        "predicted_bytes": predicted,
        "measured_bytes": measured,
        "predicted_over_measured": round(predicted / measured, 4),
    }


def peak_check() -> list[dict] | None:
    """llmbook.memory.peak against the CUDA allocator on this machine's GPU (None
    without one)."""
    import torch

    return peak_rows("cuda") if torch.cuda.is_available() else None


def main(argv: list[str] | None = None) -> int:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        default=str(ROOT / "artifacts" / "device_check"),
        help="folder for the record and log",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="build chapter 1 only (tests this script on a CPU)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=540,
        help="seconds before the build is stopped and recorded as such",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    argv = argv if argv is not None else sys.argv[1:]
    record = {
        "provenance": provenance(
            "python " + shlex.join(["scripts/device_check.py", *argv])
        )
    }
    path = out / "device_build.json"
    path.write_text(
        json.dumps(record, indent=2) + "\n"
    )  # provenance first: something survives a kill
    chapters = toc_chapters(ROOT)
    with tempfile.TemporaryDirectory(prefix="llmbook-device-") as tmp:
        source = ROOT
        if args.dry_run:
            chapters = chapters[:1]
            source = scratch_book(chapters, Path(tmp) / "book")
        output = Path(tmp) / "out"
        # Every chapter runs even after one fails, so the record names each failure.
        config = yaml.safe_load((source / "_config.yml").read_text())
        config["sphinx"]["config"]["nb_execution_raise_on_error"] = False
        config_path = source / ".device_check_config.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        cmd = [
            sys.executable,
            "-c",
            "import sys; from jupyter_book.cli.main import main; sys.argv[0] = 'jb'; main()",
            "build",
            str(source),
            "--path-output",
            str(output),
            "--config",
            str(config_path),
            "-n",
            "--keep-going",
        ]
        if not args.dry_run:  # a one-chapter scratch book has dangling cross-references
            cmd.append("-W")
        start = time.perf_counter()
        log_path = out / "build.log"  # streamed, so a killed run still leaves its log
        timed_out, proc = False, None
        try:
            with open(log_path, "w") as log:
                proc = subprocess.Popen(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={
                        **os.environ,
                        "HF_HUB_OFFLINE": "1",
                        "LLMBOOK_STRICT_4BIT": "1",
                    },
                )
                try:
                    proc.wait(timeout=args.timeout)
                except subprocess.TimeoutExpired:
                    timed_out = True
        finally:
            if (
                proc is not None and proc.poll() is None
            ):  # timeout, Ctrl-C or any error: stop the build
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                time.sleep(
                    3
                )  # its kernels (own sessions) exit once their parent is gone
            config_path.unlink(missing_ok=True)
        wall_s = time.perf_counter() - start
        log_text = log_path.read_text(errors="replace")
        record["build"] = {
            "command": " ".join(cmd[3:])
            .replace(str(output), "OUT")
            .replace(str(source), "BOOK")
            + " (empty execution cache; every chapter runs even after one fails; LLMBOOK_STRICT_4BIT=1)",
            "returncode": proc.returncode,
            "timed_out_after_s": args.timeout if timed_out else None,
            "wall_s": round(wall_s, 1),
            "budget_s": GPU_BUDGET_S,
            "within_budget": not timed_out and wall_s <= GPU_BUDGET_S,
            "dry_run": args.dry_run,
            "warnings": [
                line
                for line in log_text.splitlines()
                if "WARNING" in line and "IPKernelApp" not in line
            ][:20],
        }
        record["chapters"] = chapter_results(output, chapters)
    path.write_text(
        json.dumps(record, indent=2) + "\n"
    )  # before the GPU check, which could crash
    record["bnb_move_after_cpu_forward"] = bnb_move_check()
    path.write_text(json.dumps(record, indent=2) + "\n")
    record["training_peaks"] = peak_check()
    record["build"]["whole_book_executed"] = not args.dry_run and all(
        c["result"] == "ok" for c in record["chapters"]
    )
    path.write_text(json.dumps(record, indent=2) + "\n")
    failed = [c["chapter"] for c in record["chapters"] if c["result"] != "ok"]
    print(
        f"device_check: {len(record['chapters']) - len(failed)}/{len(record['chapters'])} chapters ok, "
        f"build exit {proc.returncode}, {wall_s:.0f} s; record in {path}"
    )
    for c in record["chapters"]:
        print(f"  {c['chapter']}: {c['result']} {c['seconds']} s {c.get('error', '')}")
    return 0 if proc.returncode == 0 and not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
