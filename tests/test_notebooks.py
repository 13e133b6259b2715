"""Notebook hygiene: clean, listed in the table of contents, runnable in Colab."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import types

import pytest
import yaml
from conftest import ROOT, chapter_notebooks, load_notebook, toc_files
from packaging.requirements import Requirement

NOTEBOOKS = chapter_notebooks()
ALLOWED_NB_METADATA = {"kernelspec", "language_info", "accelerator", "colab", "llmbook"}
ALLOWED_CELL_METADATA = {"tags", "mystnb"}
# A typed measurement in prose: a number with a unit, not inside a glue role or code.
TYPED_FIGURE = re.compile(
    r"(?<![\w.{`])\d+(?:\.\d+)?\s?(?:GB|GiB|MB|MiB|KB|KiB|ms|tokens/s|it/s|%|x faster|× faster)(?!\w)"
)


def pinned_requirements(
    files: tuple[str, ...] = ("requirements.txt", "requirements-nodeps.txt"),
) -> dict[str, str]:
    pins = {}
    for line in "\n".join((ROOT / f).read_text() for f in files).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"requirements.txt must pin exactly: {line}"
            pins[req.name.lower().replace("_", "-")] = spec.version
    return pins


def install_cell(nb: dict) -> dict:
    return next(c for c in nb["cells"] if c["cell_type"] == "code")


def source(cell: dict) -> str:
    return "".join(cell["source"])


def test_there_are_chapters():
    assert NOTEBOOKS, "no chapter notebooks found in book/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    nb = load_notebook(path)
    assert set(nb["metadata"]) <= ALLOWED_NB_METADATA, (
        f"unstable notebook metadata: {set(nb['metadata']) - ALLOWED_NB_METADATA}"
    )
    ids = [c.get("id") for c in nb["cells"]]
    assert len(set(ids)) == len(ids) and all(ids), "cell ids must be present and unique"
    for i, cell in enumerate(nb["cells"]):
        assert set(cell.get("metadata", {})) <= ALLOWED_CELL_METADATA, (
            f"cell {i}: unstable metadata"
        )
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"cell {i} carries outputs"
            assert cell["execution_count"] is None, (
                f"cell {i} carries an execution count"
            )


def test_sync_script_finds_nothing_to_change():
    result = subprocess.run(
        [sys.executable, "scripts/sync_notebooks.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_chapter_is_in_the_toc_and_every_toc_entry_exists():
    listed = toc_files()
    for path in NOTEBOOKS:
        assert f"book/{path.stem}" in listed, f"{path.name} is not in _toc.yml"
    for entry in listed:
        matches = list(ROOT.glob(entry + ".*"))
        assert matches, f"_toc.yml names {entry}, which does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_name_and_title(path):
    assert re.fullmatch(r"\d{2}_[a-z0-9]+(_[a-z0-9]+)*", path.stem), (
        "chapters are NN_snake_slug.ipynb"
    )
    first = load_notebook(path)["cells"][0]
    assert first["cell_type"] == "markdown" and source(first).startswith("# "), (
        "a chapter opens with its title"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_typed_measurements_in_prose(path):
    for i, cell in enumerate(load_notebook(path)["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = re.sub(
            r"`[^`]*`", "", source(cell)
        )  # roles and inline code are not prose
        found = TYPED_FIGURE.findall(text)
        assert not found, f"cell {i}: typed figure(s) {found}: glue them from the run"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_ends_with_its_environment(path):
    last = [c for c in load_notebook(path)["cells"] if c["cell_type"] == "code"][-1]
    assert 'glue("env_summary"' in source(last), (
        "the last cell glues env_summary for the build report"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_cells_removed_from_the_page_only_glue(path):
    """Besides the install cell, a cell removed from the page (``remove-cell``) is there to
    glue: the prose shows what it records. (What it defines no visible cell may use:
    tests/test_lint.py.) Colab shows these cells as they are."""
    import ast

    nb = load_notebook(path)
    install = install_cell(nb)
    for i, cell in enumerate(nb["cells"]):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell is install or cell["cell_type"] != "code" or "remove-cell" not in tags:
            continue
        calls = [
            n
            for n in ast.walk(ast.parse(source(cell)))
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "glue"
        ]
        assert calls, f"cell {i} is removed from the page but glues nothing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_answers_come_first_each_with_its_evidence(path):
    """Right after the questions, an Answers box (labelled for the intro's question map):
    answers with numbers from this build (glued), each linked to the section of the page
    that shows the evidence."""
    from myst_parser.mdit_to_docutils.base import default_slugify

    nb = load_notebook(path)
    assert "**The questions.**" in source(nb["cells"][0])
    box = source(nb["cells"][1])
    assert box.startswith(f"(answers-{path.name[:2]})=\n:::{{admonition}} Answers")
    answers = re.findall(r"^- (.*?)(?=^- |^:::)", box, flags=re.M | re.S)
    assert answers and "{glue:" in box, "answers with numbers from this build"
    anchors = {
        default_slugify(line.lstrip("#").strip())
        for cell in nb["cells"]
        if cell["cell_type"] == "markdown"
        for line in source(cell).splitlines()
        if line.startswith(("## ", "### "))
    }
    for answer in answers:
        links = re.findall(r"\]\(#([^)]+)\)", answer)
        assert links and set(links) <= anchors, (
            f"an answer without its evidence: {answer}"
        )
    # each answer has its own label, and the intro's map sends a question straight to it
    labels = answer_labels(box, path.name[:2])
    assert len(labels) == len(answers), "every answer starts with (answer-NN-slug)="
    rows = question_map((ROOT / "book" / "intro.md").read_text()).get(path.stem, [])
    assert rows, "the question map lists this chapter's questions"
    assert map_problems(rows, labels) == []


ANSWER_LABEL = re.compile(r"^- \((answer-(\d\d)-[a-z0-9-]+)\)=$", re.M)
MAP_ROW = re.compile(
    r"^\| (.+?) \| \{doc\}`(\d\d_\w+)` \(\{ref\}`the answer <([\w-]+)>`\) \|$", re.M
)


def answer_labels(box: str, chapter: str) -> list[str]:
    """The labels of an Answers box's bullets, which must name their own chapter."""
    found = ANSWER_LABEL.findall(box)
    return [label for label, nn in found if nn == chapter]


def question_map(intro: str) -> dict[str, list[tuple[str, str]]]:
    """The intro's question map: chapter -> [(question, the answer's label)]."""
    table = intro.split("## Question map", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[tuple[str, str]]] = {}
    for question, chapter, label in MAP_ROW.findall(table):
        rows.setdefault(chapter, []).append((question, label))
    chapters = re.compile(
        r"\{doc\}`\d\d_"
    )  # the widgets' and reports' rows go to a page
    body = [r for r in table.splitlines() if r.startswith("| ") and chapters.search(r)]
    assert len(body) == sum(map(len, rows.values())), "a map row without its answer"
    return rows


def map_problems(rows: list[tuple[str, str]], labels: list[str]) -> list[str]:
    """Map rows whose answer is not in the box, and answers no map row asks for."""
    asked = {label for _, label in rows}
    return [
        f"{q!r} -> {label}: no such answer" for q, label in rows if label not in labels
    ] + [
        f"{label}: no question of the map leads to it"
        for label in labels
        if label not in asked
    ]


def test_question_map_check_catches_a_wrong_link():
    box = "(answers-04)=\n:::{admonition} Answers\n\n- (answer-04-nf4)=\n  NF4 is ...\n:::"
    intro = (
        "## Question map\n\n| You are asking... | Answered in |\n|---|---|\n"
        "| What is NF4? | {doc}`04_llm_int8_nf4` ({ref}`the answer <answer-04-nf4>`) |\n"
    )
    labels = answer_labels(box, "04")
    assert labels == ["answer-04-nf4"]
    rows = question_map(intro)["04_llm_int8_nf4"]
    assert map_problems(rows, labels) == []
    assert map_problems(rows, []) == ["'What is NF4?' -> answer-04-nf4: no such answer"]
    assert map_problems([], labels) == [
        "answer-04-nf4: no question of the map leads to it"
    ]
    assert answer_labels(box, "05") == []  # a label names its own chapter
    with pytest.raises(AssertionError, match="without its answer"):
        question_map(
            intro.replace("the answer <answer-04-nf4>", "the answers <answers-04>")
        )


# --- Colab --------------------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_is_colab_only_hidden_and_never_installs_torch(path):
    cell = install_cell(load_notebook(path))
    code = source(cell)
    assert "remove-cell" in cell["metadata"].get("tags", []), (
        "the install cell is hidden in the site"
    )
    assert 'if "google.colab" in sys.modules:' in code
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"][
        "url"
    ].rstrip("/")
    assert f'REPO_URL = "{repo}"' in code, (
        "run scripts/sync_notebooks.py: the URL must match _config.yml"
    )
    specs = colab_install_specs(code)
    assert specs, "the install cell installs nothing"
    assert not any(Requirement(s).name == "torch" for s in specs if "@" not in s), (
        "never install torch in Colab"
    )


def colab_install_specs(code: str, monkeypatch=None) -> list[str]:
    """Run the install cell as if in Colab, recording the pip command instead of running it."""
    calls = []
    fake_subprocess = types.SimpleNamespace(run=lambda args, **kw: calls.append(args))
    fake_colab = types.ModuleType("google.colab")
    saved = {k: sys.modules.get(k) for k in ("google.colab", "subprocess")}
    sys.modules["google.colab"] = fake_colab
    sys.modules["subprocess"] = fake_subprocess
    try:
        exec(compile(code, "<install cell>", "exec"), {})
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    assert 1 <= len(calls) <= 2, (
        "the install cell makes one pip call (two with --no-deps)"
    )
    for args in calls:
        assert args[1:4] == ["-m", "pip", "install"]
    if len(calls) == 2:  # the second installs only what requirements-nodeps.txt pins
        assert "--no-deps" in calls[1], (
            "a second pip call is only for --no-deps packages"
        )
        nodeps = pinned_requirements(("requirements-nodeps.txt",))
        for spec in calls[1][4:]:
            if not spec.startswith("-"):
                assert Requirement(spec).name in nodeps, spec
    return [a for args in calls for a in args[4:] if not a.startswith("-")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_bounds_admit_the_pinned_versions(path):
    pins = pinned_requirements()
    for spec in colab_install_specs(source(install_cell(load_notebook(path)))):
        req = Requirement(spec)
        if req.url:  # the book's own package, from the repository
            assert req.name == "llmbook"
            continue
        name = req.name.lower().replace("_", "-")
        assert name in pins, (
            f"{name} is installed in Colab but not pinned in requirements.txt"
        )
        assert req.specifier.contains(pins[name]), (
            f"{spec} excludes the pinned {name}=={pins[name]}"
        )
        assert req.specifier, f"{spec}: give version bounds"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_does_nothing_outside_colab(path):
    code = source(install_cell(load_notebook(path)))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import subprocess\n"
            "subprocess.run = lambda *a, **k: (_ for _ in ()).throw(SystemExit('pip was called'))\n"
            + code,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_package_dependencies_admit_the_pinned_versions():
    import tomllib

    pins = pinned_requirements()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        req = Requirement(spec)
        assert req.specifier.contains(pins[req.name.lower()]), spec
    assert not any(Requirement(s).name == "torch" for s in project["dependencies"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_declares_its_needs_and_whether_a_gpu_helps(path):
    """The install cell and Colab's runtime type come from these (sync_notebooks.py)."""
    declared = load_notebook(path)["metadata"].get("llmbook", {})
    assert isinstance(declared.get("needs"), list), "declare metadata llmbook.needs"
    assert isinstance(declared.get("gpu"), bool), "declare metadata llmbook.gpu"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_gpu_request_follows_the_declaration(path):
    meta = load_notebook(path)["metadata"]
    if meta.get("llmbook", {}).get("gpu"):
        assert meta["accelerator"] == "GPU" and meta["colab"]["gpuType"]
    else:
        assert "accelerator" not in meta and "gpuType" not in meta.get("colab", {})


def test_some_chapters_ask_colab_for_a_gpu():
    """Else the two tests above would check nothing about the GPU request."""
    asks = [p for p in NOTEBOOKS if load_notebook(p)["metadata"].get("accelerator")]
    assert asks, "no chapter asks Colab for a GPU"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_cells_parse(path):
    for i, cell in enumerate(load_notebook(path)["cells"]):
        if cell["cell_type"] == "code" and not source(cell).lstrip().startswith(
            ("%", "!")
        ):
            ast.parse(source(cell), filename=f"{path.name} cell {i}")


def test_typed_figure_detector_catches_pasted_numbers():
    assert TYPED_FIGURE.findall("chatglm-6b needs 12.6 GB, about 40% more") == [
        "12.6 GB",
        "40%",
    ]
    assert not TYPED_FIGURE.findall(
        "it needs {glue:text}`size_gb` GB and fp16 has 10 mantissa bits"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapters_do_not_need_the_book_toolchain_to_run(path):
    """Colab has no myst-nb: chapters glue through llmbook.notebook.glue, which falls back."""
    for i, cell in enumerate(load_notebook(path)["cells"]):
        if cell["cell_type"] == "code":
            assert not re.search(
                r"^\s*(from|import) (myst_nb|jupyter_book|sphinx)",
                source(cell),
                flags=re.M,
            ), f"cell {i}"


def test_toc_lists_chapters_in_slug_order():
    chapters = [entry for entry in toc_files() if re.fullmatch(r"book/\d{2}_.*", entry)]
    assert chapters == sorted(chapters), (
        "number chapters in reading order (NN_ prefixes sort like the toc)"
    )
