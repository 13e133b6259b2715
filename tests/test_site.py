"""The built site: a from-scratch build with warnings as errors, and what a reader sees."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser

import pytest
import yaml
from conftest import (
    README_REBUILD,
    ROOT,
    chapter_notebooks,
    load_notebook,
    run_jb,
    scratch_notebook,
    toc_files,
)

pytestmark = pytest.mark.build
NOTEBOOKS = chapter_notebooks()
GLUE_ROLE = re.compile(r"\{glue(?::text)?\}`([^`]+)`")


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []
        self.imgs: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "img":
            self.imgs.append(a)


def page(build, stem: str) -> str:
    return (build.html / "book" / f"{stem}.html").read_text(encoding="utf-8")


def parsed(html: str) -> Links:
    p = Links()
    p.feed(html)
    return p


def why_the_build_failed(log: str, most: int = 40) -> str:
    """A failed build's causes first, compactly (CI shows only the start of a long
    message): its warnings and errors (the stderr gate's name the chapter, the cell and
    the text), each cell error's lines, then the log's last lines."""
    lines = log.splitlines()
    cause = re.compile(
        r"WARNING: |ERROR: |Error|Exception|Traceback|timed out|Killed|^=== "
    )
    picked = [i for i, line in enumerate(lines) if cause.search(line)]
    shown = [lines[i][:300] for i in picked[:most]]
    return "\n".join(["causes:", *shown, "last lines:", *lines[-15:]])


def test_book_builds_from_scratch_without_warnings(built_book):
    assert built_book.returncode == 0, why_the_build_failed(built_book.log)
    warnings = [
        line
        for line in built_book.log.splitlines()
        if "WARNING: " in line or "ERROR: " in line
    ]
    assert not warnings, warnings[:10]
    for path in NOTEBOOKS:
        assert f"{path.name}: Executing notebook" in built_book.log, (
            f"{path.name} was not executed from scratch"
        )


def test_every_toc_page_is_built(built_book):
    for entry in toc_files():
        assert (built_book.html / f"{entry}.html").is_file(), entry


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_and_download_links_point_at_the_committed_notebook(built_book, path):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]["url"].rstrip("/").removeprefix("https://github.com/")
    hrefs = parsed(page(built_book, path.stem)).hrefs
    colab = [h for h in hrefs if h.startswith("https://colab.research.google.com/")]
    assert colab, "no Open in Colab link"
    for link in colab:
        m = re.fullmatch(
            rf"https://colab\.research\.google\.com/github/{re.escape(repo)}/blob/([^/]+)/(.+)",
            link,
        )
        assert m, link
        assert m.group(1) == config["repository"]["branch"]
        target = ROOT / m.group(2)
        assert target.suffix == ".ipynb" and target.is_file(), (
            f"Colab link to a missing file: {m.group(2)}"
        )
    binder = [h for h in hrefs if h.startswith("https://mybinder.org/")]
    assert binder and all(h.endswith(f"book/{path.name}") for h in binder)
    downloads = [
        h
        for h in hrefs
        if h.endswith(f"{path.stem}.ipynb") and not h.startswith("http")
    ]
    assert downloads, "no download link to the .ipynb"
    for link in downloads:
        assert (built_book.html / "book" / link).resolve().is_file(), link


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_error_or_stderr_output_in_the_page(built_book, path):
    html = page(built_book, path.stem)
    assert "Traceback (most recent call last)" not in html
    # the classes myst-nb gives an error's output (not the words, which prose may use)
    assert not re.search(r'class="[^"]*\boutput (traceback|error)\b', html)
    # stderr only where a cell shows it on purpose (book/_ext/stderrgate.py)
    shown = [
        c
        for c in load_notebook(path)["cells"]
        if c.get("metadata", {}).get("mystnb", {}).get("output_stderr") == "show"
    ]
    assert html.count('class="output stderr') <= len(shown), (
        "a warning leaked into the page: silence or fix it"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_glued_values_appear_in_the_text(built_book, path):
    html = page(built_book, path.stem)
    assert "{glue" not in html, "an unresolved glue role reached the page"
    glue_file = built_book.executed / "book" / f"{path.stem}.glue.json"
    glued = json.loads(glue_file.read_text())
    keys = set()
    for cell in load_notebook(path)["cells"]:
        if cell["cell_type"] == "markdown":
            keys |= {
                k.split(":")[0] for k in GLUE_ROLE.findall("".join(cell["source"]))
            }
    assert keys, "a chapter's prose should cite its own numbers"
    smart = str.maketrans(
        {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'}
    )  # Sphinx smartquotes
    spans = [
        s.translate(smart)
        for s in re.findall(r'<span class="pasted-text">([^<]*)</span>', html)
    ]
    for key in keys:
        assert key in glued, f"prose cites {key!r}, which no cell glued"
        value = glued[key]["data"]["text/plain"].strip("'\"")
        value = (
            value.replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
            .replace("\\'", "'")
        )
        assert value in spans, f"{key}={value!r} is not in the rendered text"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_exist_and_have_alt_text(built_book, path):
    imgs = [
        i
        for i in parsed(page(built_book, path.stem)).imgs
        if "_images/" in i.get("src", "")
    ]
    for img in imgs:
        assert (built_book.html / "book" / img["src"]).resolve().is_file(), img["src"]
        alt = img.get("alt", "")
        assert len(alt) > 20 and "_images/" not in alt, (
            f"figure without alt text: {img['src']}"
        )


def test_build_report_names_each_chapters_environment(built_book):
    html = (built_book.html / "book" / "build_report.html").read_text()
    assert "not recorded" not in html
    for path in NOTEBOOKS:
        glued = json.loads(
            (built_book.executed / "book" / f"{path.stem}.glue.json").read_text()
        )
        summary = glued["env_summary"]["data"]["text/plain"].strip("'\"")
        assert summary.replace("&", "&amp;") in html
    assert "Run Time (s)" in html  # myst-nb's execution statistics table


def test_the_readmes_rebuild_executes_nothing(built_book):
    """The README's second command, run in the clone after the first: no chapter runs."""
    assert README_REBUILD in (ROOT / "README.md").read_text()
    if built_book.returncode != 0:
        pytest.skip("the first build failed")
    assert built_book.rebuild_returncode == 0, built_book.rebuild_log[-3000:]
    assert "build succeeded" in built_book.rebuild_log
    assert "Executing notebook" not in built_book.rebuild_log
    assert "llmbook: first run" not in built_book.rebuild_log


def test_the_build_started_cold_and_made_what_it_needs(built_book):
    """The build's home folder was empty: it converted SmolLM2 and built matplotlib's
    font cache itself, said so once in its log, and no chapter's output mentions it."""
    made = [
        line for line in built_book.log.splitlines() if "llmbook: first run" in line
    ]
    assert any(
        "converted SmolLM2-135M-Instruct" in line and str(built_book.home) in line
        for line in made
    ), f"the build found a converted SmolLM2 it did not make itself: {made}"
    assert any("font cache" in line for line in made), made
    assert len(made) == 2, made
    assert list((built_book.home / ".cache" / "llmbook").glob("*/model.safetensors"))
    # nothing on stderr but pip's notices about this machine's package index
    noise = [
        line
        for line in built_book.stderr.splitlines()
        if line.strip() and not line.startswith("WARNING: Location ")
    ]
    assert noise == [], noise[:10]
    for path in NOTEBOOKS:
        assert "llmbook: first run" not in page(built_book, path.stem), path.name


# --- behaviour of the configuration, on a two-chapter scratch book ---------------------

SCRATCH_TOC = """format: jb-book
root: book/intro
chapters:
  - file: book/01_alpha
  - file: book/02_beta
"""


@pytest.fixture
def scratch_book(tmp_path):
    src = tmp_path / "src"
    (src / "book").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", src / "_config.yml")
    shutil.copytree(ROOT / "book" / "_ext", src / "book" / "_ext")
    shutil.copy(ROOT / "book" / "references.bib", src / "book" / "references.bib")
    shutil.copytree(
        ROOT / "book" / "_static", src / "book" / "_static"
    )  # widgets, favicon, MathJax
    (src / "_toc.yml").write_text(SCRATCH_TOC)
    (src / "book" / "intro.md").write_text("# Scratch\n")
    (src / "book" / "01_alpha.ipynb").write_text(
        scratch_notebook("print('alpha', 1 + 1)")
    )
    (src / "book" / "02_beta.ipynb").write_text(scratch_notebook("print('beta')"))
    return src, tmp_path / "out"


def test_a_changed_chapter_reexecutes_alone(scratch_book):
    src, out = scratch_book
    first = run_jb(src, out)
    assert first.returncode == 0, first.stdout[-3000:]
    log = first.stdout + first.stderr
    assert "01_alpha.ipynb: Executing" in log and "02_beta.ipynb: Executing" in log
    (src / "book" / "02_beta.ipynb").write_text(
        scratch_notebook("print('beta, changed')")
    )
    second = run_jb(src, out)
    log = second.stdout + second.stderr
    assert second.returncode == 0
    assert "02_beta.ipynb: Executing" in log and "01_alpha.ipynb: Executing" not in log


def test_a_failing_cell_fails_the_build_with_its_traceback(scratch_book):
    src, out = scratch_book
    (src / "book" / "02_beta.ipynb").write_text(
        scratch_notebook("def f():\n    raise ValueError('boom from beta')\nf()")
    )
    result = run_jb(src, out)
    log = result.stdout + result.stderr
    assert result.returncode != 0, "a failing notebook must fail the build"
    assert "ValueError" in log and "boom from beta" in log, (
        "the traceback must be in the log"
    )


def test_claims_page_lists_every_claim_with_a_verdict_and_evidence(built_book):
    html = (built_book.html / "book" / "claims.html").read_text()
    rows = re.findall(r"<tr class=\"row-(?:odd|even)\">(.*?)</tr>", html, flags=re.S)
    body = [r for r in rows if "<strong>C" in r]
    assert len(body) == 24
    for i, row in enumerate(body, start=1):
        assert f"<strong>C{i}</strong>" in row
        assert re.search(
            r"<strong>(holds|holds with a caveat|outdated|wrong)</strong>", row
        ), row[:300]
        assert re.search(r'href="\d\d_\w+\.html#verdicts"', row), (
            f"C{i} links to no chapter's verdicts"
        )
    assert "{glue" not in html
