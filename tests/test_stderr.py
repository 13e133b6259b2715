"""Unexpected stderr in a chapter fails the build (book/_ext/stderrgate.py).

Checked on a scratch book with the real configuration: one chapter writes stderr it does
not expect, one shows it on purpose (``"mystnb": {"output_stderr": "show"}``), one hides
it (the ``remove-stderr`` tag).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from conftest import JB, ROOT, run_jb, scratch_notebook

pytestmark = pytest.mark.build

TOC = """format: jb-book
root: book/intro
chapters:
  - file: book/01_alpha
  - file: book/02_beta
  - file: book/03_gamma
"""
WRITE = "import sys\nprint('fine on stdout')\nprint('{}: careful, this went to stderr', file=sys.stderr)"


def notebook(name: str, metadata: dict | None = None) -> str:
    """A scratch chapter whose one code cell writes a line naming it to stderr."""
    nb = json.loads(scratch_notebook(WRITE.format(name)))
    nb["cells"][1]["metadata"] = metadata or {}
    return json.dumps(nb)


@pytest.fixture
def scratch(tmp_path):
    src = tmp_path / "src"
    (src / "book").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", src / "_config.yml")
    shutil.copytree(ROOT / "book" / "_ext", src / "book" / "_ext")
    shutil.copy(ROOT / "book" / "references.bib", src / "book" / "references.bib")
    shutil.copytree(ROOT / "book" / "_static", src / "book" / "_static")
    (src / "_toc.yml").write_text(TOC)
    (src / "book" / "intro.md").write_text("# Scratch\n")
    (src / "book" / "01_alpha.ipynb").write_text(notebook("alpha"))
    (src / "book" / "02_beta.ipynb").write_text(
        notebook("beta", {"mystnb": {"output_stderr": "show"}})
    )
    (src / "book" / "03_gamma.ipynb").write_text(
        notebook("gamma", {"tags": ["remove-stderr"]})
    )
    return src, tmp_path / "out"


def shown_stderr(html: str) -> list[str]:
    """The text of a page's stderr output blocks."""
    return re.findall(
        r'class="output stderr[^"]*">.*?<pre>(?:<span></span>)?(.*?)\n?</pre>',
        html,
        re.S,
    )


def test_unexpected_stderr_fails_the_build_naming_chapter_cell_and_text(scratch):
    src, out = scratch
    for attempt in ("first build", "rebuild with nothing changed"):
        result = run_jb(src, out, timeout=600)
        log = result.stdout + result.stderr
        assert result.returncode != 0, f"{attempt}: must fail\n{log[-3000:]}"
        errors = re.findall(r"ERROR: .*", re.sub(r"\x1b\[[0-9;]*m", "", log))
        assert errors == [
            "ERROR: unexpected stderr in book/01_alpha.ipynb, cell index 1: "
            "alpha: careful, this went to stderr -- silence or fix its cause (or let "
            'the cell show it: "mystnb": {"output_stderr": "show"}), then build '
            "again: this chapter will run again"
        ], (attempt, errors)
    # without -W too
    plain = subprocess.run(
        [JB, "build", str(src), "--path-output", str(out)], capture_output=True
    )
    assert plain.returncode != 0, plain.stdout[-3000:]

    # the expected stderr passes: shown where the cell asks, hidden where it is tagged
    (src / "book" / "01_alpha.ipynb").write_text(
        notebook("alpha", {"tags": ["remove-stderr"]})
    )
    result = run_jb(src, out, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    html = {
        p: (out / "_build" / "html" / "book" / f"{p}.html").read_text()
        for p in ("01_alpha", "02_beta", "03_gamma")
    }
    assert shown_stderr(html["02_beta"]) == ["beta: careful, this went to stderr"]
    for page in ("01_alpha", "03_gamma"):
        assert shown_stderr(html[page]) == [] and "fine on stdout" in html[page]


FIRST_RUN_ONLY = """import pathlib, sys
marker = pathlib.Path({marker!r})
if not marker.exists():
    marker.write_text('prepared')
    {fail}
print('ready')"""
FAILURES = {
    "stderr": "print('preparing something once...', file=sys.stderr)",
    "exception": "raise RuntimeError('preparing something once...')",
}


@pytest.mark.parametrize("failure", FAILURES)
def test_a_chapter_rejected_once_runs_again_and_passes(scratch, failure):
    """A chapter that fails on its first run only (stderr, as a first-use conversion
    would write, or an exception): the first build fails and names it; the next, with
    nothing changed, executes it again instead of replaying what was rejected, and
    passes."""
    src, out = scratch
    marker = src.parent / "prepared-once"
    code = FIRST_RUN_ONLY.format(marker=str(marker), fail=FAILURES[failure])
    (src / "book" / "01_alpha.ipynb").write_text(scratch_notebook(code))
    first = run_jb(src, out, timeout=600)
    log = re.sub(r"\x1b\[[0-9;]*m", "", first.stdout + first.stderr)
    assert first.returncode != 0, log[-3000:]
    assert "01_alpha" in log and "preparing something once..." in log
    assert marker.exists()
    second = run_jb(src, out, timeout=600)
    log = second.stdout + second.stderr
    assert second.returncode == 0, log[-3000:]
    assert "01_alpha.ipynb: Executing notebook" in log, "the outputs were replayed"
    html = (out / "_build" / "html" / "book" / "01_alpha.html").read_text()
    assert "ready" in html and shown_stderr(html) == []


def test_a_first_run_message_on_a_page_fails_the_build(scratch):
    """A chapter that made something itself on first use and said so (llmbook's
    "first run" line) would publish outputs that differ from a later build's."""
    src, out = scratch
    code = "print('llmbook: first run: converted something into /somewhere')"
    (src / "book" / "01_alpha.ipynb").write_text(scratch_notebook(code))
    result = run_jb(src, out, timeout=600)
    log = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)
    assert result.returncode != 0, log[-3000:]
    assert "a first-run message reached book/01_alpha.ipynb, cell index 1" in log
