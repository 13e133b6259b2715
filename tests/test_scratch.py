"""Building the book leaves nothing behind: the folders pages write checkpoints into
are removed when their kernel shuts down (each build used to leave about 250 MB in
the temporary directory, and repeated builds filled a disk)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, chapter_notebooks

LEAKS = re.compile(r"\bmkdtemp\(")


def test_a_scratch_folder_is_gone_when_the_kernel_shuts_down():
    import nbformat
    from nbclient import NotebookClient

    code = (
        "from llmbook.notebook import scratch_dir\n"
        "folder = scratch_dir('test-scratch-')\n"
        "(folder / 'model.safetensors').write_bytes(b'x' * 1000)\n"
        "print(folder)"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    folder = Path(nb.cells[0].outputs[0]["text"].strip())
    assert folder.name.startswith("test-scratch-")
    assert not folder.exists(), f"{folder} outlived its kernel"


def test_a_scratch_folder_is_gone_when_python_exits():
    code = "from llmbook.notebook import scratch_dir; print(scratch_dir('t-'))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True
    )
    folder = Path(out.stdout.strip())
    assert out.returncode == 0 and folder.name.startswith("t-")
    assert not folder.exists()


def leaking_files() -> list[str]:
    # llmbook/smollm.py's mkdtemp is renamed into the cache or removed: not scanned
    files = [*chapter_notebooks(), *ROOT.glob("scripts/*.py")]
    return [f.name for f in files if LEAKS.search(f.read_text())]


def test_no_page_or_script_makes_a_folder_it_never_removes():
    assert leaking_files() == [], (
        "use llmbook.notebook.scratch_dir or TemporaryDirectory"
    )


def test_the_leak_check_can_fail():
    assert LEAKS.search('folder = Path(tempfile.mkdtemp(prefix="ch05-"))')
    assert not LEAKS.search("folder = scratch_dir('ch05-')")
