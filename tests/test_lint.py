"""The style gate: ruff (lint and format) over the package, scripts, tests and the
chapters' code cells, and how a chapter's code reads (short cells, no hidden names).

Each check has a twin that feeds it a bad example, so a check that stopped working
would fail here instead of passing silently."""

from __future__ import annotations

import ast
import builtins
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, chapter_notebooks, load_notebook

NOTEBOOKS = chapter_notebooks()
RUFF = [sys.executable, "-m", "ruff"]
MAX_CELL_LINES = 25  # longer only with a first line "# long cell: <why>"
MAX_MEDIAN_LINES = 10  # the book's median code cell must be shorter than this
LONG_CELL_REASON = "# long cell:"  # first line, or second after a "# @save" mark
SAVED = re.compile(r"# @save\b")
HIDING_TAGS = {"remove-cell", "remove-input", "hide-cell"}


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RUFF, *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_lint_passes():
    result = ruff("check", "--output-format", "concise", ".")
    assert result.returncode == 0, (
        "ruff check . (fix with `ruff check --fix .`):\n" + result.stdout[-4000:]
    )


def test_ruff_format_is_applied():
    result = ruff("format", "--check", ".")
    assert result.returncode == 0, "run `ruff format .`:\n" + result.stdout[-4000:]


def test_ruff_reads_the_notebooks(tmp_path):
    """The gate must cover .ipynb files: an unused import in a chapter fails it."""
    bad = load_notebook(NOTEBOOKS[0])
    bad["cells"].append(
        {
            "cell_type": "code",
            "id": "bad",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
            "source": ["import os\n"],
        }
    )
    path = tmp_path / "bad.ipynb"
    import json

    path.write_text(json.dumps(bad))
    result = ruff("check", "--no-cache", "--select", "F401", str(path))
    assert result.returncode == 1 and "F401" in result.stdout


# --- how a chapter's code reads ---------------------------------------------------------


def code_cells(nb: dict) -> list[tuple[int, str, bool]]:
    """(index, source, visible) of each code cell; hidden ones are tagged for removal."""
    cells = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            hidden = bool(HIDING_TAGS & set(cell.get("metadata", {}).get("tags", [])))
            cells.append((i, "".join(cell["source"]), not hidden))
    return cells


def long_cells(nb: dict) -> list[tuple[int, int]]:
    """(index, lines) of visible code cells over the limit that do not say why."""
    return [
        (i, len(src.splitlines()))
        for i, src, visible in code_cells(nb)
        if visible
        and len(src.splitlines()) > MAX_CELL_LINES
        and not src.startswith(LONG_CELL_REASON)
        and not (
            SAVED.match(src) and src.split("\n", 2)[1].startswith(LONG_CELL_REASON)
        )
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_long_cell_without_a_reason(path):
    assert long_cells(load_notebook(path)) == [], (
        f"split these (index, lines), or start them with '{LONG_CELL_REASON} <why>'"
    )


def test_the_median_code_cell_is_short():
    lengths = [
        len(src.splitlines())
        for p in NOTEBOOKS
        for _, src, visible in code_cells(load_notebook(p))
        if visible
    ]
    assert statistics.median(lengths) < MAX_MEDIAN_LINES, statistics.median(lengths)


def test_long_cell_check_catches_a_long_cell():
    cell = {
        "cell_type": "code",
        "metadata": {},
        "source": ["x = 1\n"] * (MAX_CELL_LINES + 1),
    }
    assert long_cells({"cells": [cell]}) == [(0, MAX_CELL_LINES + 1)]
    cell["source"] = [LONG_CELL_REASON + " a table of ten cases\n"] + cell["source"]
    assert long_cells({"cells": [cell]}) == []
    saved = ["# @save: later pages import this cell\n"] + ["x = 1\n"] * MAX_CELL_LINES
    cell["source"] = saved
    assert long_cells({"cells": [cell]}) == [(0, MAX_CELL_LINES + 1)]
    cell["source"] = saved[:1] + [LONG_CELL_REASON + " one format\n"] + saved[1:]
    assert long_cells({"cells": [cell]}) == []


def names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(defined, used) names of a cell's top level and everything inside it."""
    defined, used = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (defined if isinstance(node.ctx, ast.Store) else used).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            defined.add(node.name)
    return defined, used


def hidden_names_used(nb: dict) -> list[tuple[int, str]]:
    """(cell, name) where visible code uses a name that only a hidden cell defined."""
    only_hidden, problems = set(), []
    for i, src, visible in code_cells(nb):
        if src.lstrip().startswith(("%", "!")):
            continue
        defined, used = names(ast.parse(src))
        if visible:
            problems += [(i, n) for n in sorted(used & only_hidden - defined)]
            only_hidden -= defined
        else:
            only_hidden |= defined - set(dir(builtins))
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_visible_code_never_relies_on_hidden_cells(path):
    assert hidden_names_used(load_notebook(path)) == [], (
        "import or define these in a visible cell"
    )


def test_hidden_name_check_catches_a_hidden_import():
    def cell(src, tags=()):
        return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": [src]}

    nb = {"cells": [cell("import sys", ["remove-cell"]), cell("print(sys.argv)")]}
    assert hidden_names_used(nb) == [(1, "sys")]
    nb["cells"].insert(1, cell("import sys"))
    assert hidden_names_used(nb) == []


# Plumbing collapses behind "Show code cell source": the page shows the code that teaches
# and the figure or table it makes. The setup cell (imports, hardware) and any cell that
# builds a figure are tagged hide-input; the notebook itself still shows them.
DRAWS_A_FIGURE = re.compile(r"\bplt\.(subplots|figure)\b|\.plot\.barh?\(|\bax\.set[(_]")


def plumbing_on_the_page(nb: dict) -> list[tuple[int, str]]:
    """(cell, why) for visible, uncollapsed cells that only set up or draw."""
    found = []
    for i, cell in enumerate(nb["cells"]):
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] != "code" or (HIDING_TAGS | {"hide-input"}) & tags:
            continue
        src = "".join(cell["source"])
        if re.search(r"^env = setup\(", src, re.M):
            found.append((i, "the setup cell"))
        elif DRAWS_A_FIGURE.search(src) and "# @save" not in src:
            found.append((i, "draws a figure"))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_and_drawing_code_are_collapsed(path):
    assert plumbing_on_the_page(load_notebook(path)) == [], "tag these hide-input"


def test_plumbing_check_catches_a_visible_figure():
    def cell(src, tags=()):
        return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": [src]}

    nb = {
        "cells": [
            cell("import torch\nenv = setup()"),
            cell("x = 1"),
            cell("fig, ax = plt.subplots()\nax.plot([1, 2])"),
        ]
    }
    assert plumbing_on_the_page(nb) == [(0, "the setup cell"), (2, "draws a figure")]
    nb["cells"][2]["metadata"]["tags"] = ["hide-input"]
    assert plumbing_on_the_page(nb) == [(0, "the setup cell")]


# --- the repository stands alone -------------------------------------------------------

# a relative path that climbs one folder or more, as in a Markdown link
CLIMBING = re.compile(r"(?<![\w.])((?:\.\./)+[\w.-][\w./-]*)")
TEXT_SUFFIXES = {".md", ".py", ".ipynb", ".sh", ".yml", ".toml", ".txt", ".cfg"}


def escaping_paths(name: str, text: str) -> list[str]:
    """Relative paths in the file ``name`` that lead out of the repository from its folder."""
    here, root = (ROOT / name).parent, ROOT.resolve()
    return [
        m
        for m in CLIMBING.findall(text)
        if not (here / m).resolve().is_relative_to(root)
    ]


def test_nothing_refers_to_files_outside_the_repository():
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = {
        name: found
        for name in files
        if Path(name).suffix in TEXT_SUFFIXES and (ROOT / name).exists()
        if (found := escaping_paths(name, (ROOT / name).read_text(errors="ignore")))
    }
    assert offenders == {}


def test_escaping_path_check_can_fail():
    assert escaping_paths("README.md", "see ../elsewhere/GUIDE.md") == [
        "../elsewhere/GUIDE.md"
    ]
    assert escaping_paths("book/intro.md", "see ../README.md and ./x") == []
