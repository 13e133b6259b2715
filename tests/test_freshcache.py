"""The execution cache is invalidated when the code the chapters import changes.

jupyter-cache keys a notebook on its code cells alone; ``book/_ext/freshcache.py`` makes a
change to ``llmbook/``, its data, ``requirements.txt`` or the reported library versions
re-execute every chapter. Checked on a scratch book whose notebooks read a scratch library
and a scratch requirements file at run time.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_jb, scratch_notebook

EXT = ROOT / "book" / "_ext"

SCRATCH_CONFIG = f"""title: Scratch
only_build_toc_files: true
execute:
  execute_notebooks: cache
sphinx:
  local_extensions:
    freshcache: {EXT}
  config:
    freshcache_globs: ["mylib/**/*.py", "requirements.txt"]
    nb_execution_raise_on_error: true
"""

SCRATCH_TOC = """format: jb-book
root: intro
chapters:
  - file: alpha
  - file: beta
"""

# What each chapter prints: the library's value and the pinned requirement, read at run time.
READ_INPUTS = (
    "import pathlib, mylib\n"
    "print('computed with', mylib.VALUE, 'and', pathlib.Path('requirements.txt').read_text().strip())\n"
)


# While a flag file (not a fingerprinted input) exists, beta's kernel kills the build
# process, as a CI timeout, the OOM killer or Ctrl-C would: Sphinx then keeps its
# previous environment, which says every page is up to date.
KILL_THE_BUILD = """
import os, signal
if pathlib.Path('kill.flag').exists():
    parent = pathlib.Path(f'/proc/{os.getppid()}/cmdline').read_bytes()
    assert b'jb' in parent or b'jupyter-book' in parent or b'jupyter_book' in parent, parent
    os.kill(os.getppid(), signal.SIGKILL)
    os._exit(1)
"""


@pytest.fixture
def scratch(tmp_path):
    src = tmp_path / "src"
    (src / "mylib").mkdir(parents=True)
    (src / "_config.yml").write_text(SCRATCH_CONFIG)
    (src / "_toc.yml").write_text(SCRATCH_TOC)
    (src / "intro.md").write_text("# Scratch\n")
    (src / "mylib" / "__init__.py").write_text('VALUE = "lib-v1"\n')
    (src / "requirements.txt").write_text("pin==1.0\n")
    (src / "alpha.ipynb").write_text(scratch_notebook(READ_INPUTS))
    (src / "beta.ipynb").write_text(scratch_notebook(READ_INPUTS + KILL_THE_BUILD))
    return src, tmp_path / "out"


def build(src: Path, out: Path, ok: bool = True) -> str:
    """Build the scratch book; its log. ``ok=False``: the build must fail."""
    result = run_jb(src, out, timeout=300)
    log = result.stdout + result.stderr
    assert (result.returncode == 0) == ok, log[-3000:]
    return log


def shown(out: Path, page: str) -> str:
    """What the page's output says it was computed with."""
    html = (out / "_build" / "html" / f"{page}.html").read_text()
    found = re.findall(r"computed with (\S+) and (\S+)", html)
    assert len(found) == 1, found
    return " ".join(found[0])


def executed(log: str) -> set[str]:
    return set(re.findall(r"(\w+)\.ipynb: Executing notebook", log))


def test_the_extension_is_loaded_and_fingerprints_the_reported_packages():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["sphinx"]["local_extensions"].get("freshcache") == "book/_ext"
    spec = importlib.util.spec_from_file_location("freshcache", EXT / "freshcache.py")
    freshcache = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(freshcache)
    from llmbook.env import REPORTED_PACKAGES

    assert tuple(freshcache.DEFAULT_PACKAGES) == tuple(REPORTED_PACKAGES)
    files = {
        p.as_posix() for p in freshcache.matched_files(ROOT, freshcache.DEFAULT_GLOBS)
    }
    assert {"requirements.txt", "llmbook/env.py", "llmbook/data/sentences.txt"} <= files


@pytest.mark.build
def test_a_changed_library_or_requirements_reexecutes_every_chapter(scratch):
    src, out = scratch
    log = build(src, out)
    assert executed(log) == {"alpha", "beta"}
    assert shown(out, "alpha") == "lib-v1 pin==1.0"

    # (1) nothing changed: nothing executes
    log = build(src, out)
    assert "Executing notebook" not in log
    assert "llmbook:" not in log

    # (2) the library changes, the notebooks do not
    (src / "mylib" / "__init__.py").write_text('VALUE = "lib-v2"\n')
    log = build(src, out)
    assert executed(log) == {"alpha", "beta"}
    assert shown(out, "alpha") == shown(out, "beta") == "lib-v2 pin==1.0"
    assert (
        "llmbook: mylib/__init__.py changed since the cached outputs were computed: re-executing every chapter"
        in log
    )

    # (3) the pinned requirements change
    (src / "requirements.txt").write_text("pin==2.0\n")
    log = build(src, out)
    assert executed(log) == {"alpha", "beta"}
    assert shown(out, "alpha") == shown(out, "beta") == "lib-v2 pin==2.0"
    assert (
        "llmbook: requirements.txt changed since the cached outputs were computed"
        in log
    )

    # a cache whose provenance is unknown (no fingerprint file) is not trusted
    (out / "_build" / ".jupyter_cache" / "freshcache.json").unlink()
    log = build(src, out)
    assert executed(log) == {"alpha", "beta"}
    assert "llmbook: the cached outputs carry no record" in log

    log = build(src, out)
    assert "Executing notebook" not in log


@pytest.mark.build
def test_a_build_killed_after_a_change_still_reexecutes_next_time(scratch):
    src, out = scratch
    build(src, out)
    (src / "mylib" / "__init__.py").write_text('VALUE = "lib-v2"\n')
    (src / "kill.flag").write_text("")
    result = run_jb(src, out, timeout=300)
    assert result.returncode == -9, (result.stdout + result.stderr)[-3000:]
    (src / "kill.flag").unlink()
    # the cache was cleared and its fingerprint file already matches the new library, yet
    # beta's page must not keep lib-v1
    log = build(src, out)
    assert "beta" in executed(log)
    assert shown(out, "alpha") == shown(out, "beta") == "lib-v2 pin==1.0"
