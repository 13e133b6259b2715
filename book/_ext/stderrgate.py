"""Sphinx extension: a chapter that writes unexpected stderr fails the build.

With ``nb_output_stderr: error`` myst-nb reports "stderr was found in the cell outputs of
cell N", without the text. This extension reports each such output once instead (myst-nb's
message is suppressed through ``suppress_warnings: [mystnb.stderr]``), as an error naming the
chapter, the cell and what it wrote, and marks the build as failed even without ``-W``.
A page that failed is read again by the next build, and its outputs are dropped from the
execution cache, so the next build *executes* it again: a cause that has gone away (a
first-run message, a warning fixed in a library) no longer fails it, and a cause that stays
fails it again.

A cell that expects stderr says so in its metadata: ``"mystnb": {"output_stderr": "show"}``
shows it on the page, the ``remove-stderr`` tag hides it.
"""

from __future__ import annotations

from docutils import nodes
from freshcache import cache_path
from sphinx.util import logging

logger = logging.getLogger(__name__)
# a cell's nb_output_stderr (its own, else the book's) that lets its stderr through
ALLOWED = ("show", "remove")


def is_cell(node) -> bool:
    return isinstance(node, nodes.container) and node.get("nb_element") == "cell_code"


def is_stderr(node) -> bool:
    return isinstance(node, nodes.Element) and "stderr" in node["classes"]


#: What llmbook prints when it makes something on first use (llmbook.firstrun): on a
#: page it means the chapter's outputs depend on whether the machine was new.
FIRST_RUN_MARK = "llmbook: first run:"


def is_output(node) -> bool:
    return isinstance(node, nodes.Element) and "output" in node["classes"]


def check_stderr(app, doctree):
    """Log an error for every stderr output of a cell that does not expect it, and for
    every output that says something was made on first use."""
    env = app.env
    failed = env.llmbook_stderr_failed = getattr(env, "llmbook_stderr_failed", set())
    failed.discard(env.docname)
    for cell in doctree.findall(is_cell):
        for out in cell.findall(is_output):
            if FIRST_RUN_MARK in out.astext():
                logger.error(
                    "a first-run message reached %s, cell index %d: make it before the "
                    "build (llmbook.firstrun.prepare), then build again",
                    env.doc2path(env.docname, False),
                    cell["cell_index"],
                    location=out,
                )
                failed.add(env.docname)
                app.statuscode = 1
        own = (cell.get("cell_metadata") or {}).get("mystnb", {})
        if own.get("output_stderr", app.config.nb_output_stderr) in ALLOWED:
            continue
        for out in cell.findall(is_stderr):
            text = " ".join(out.astext().split())
            logger.error(
                "unexpected stderr in %s, cell index %d: %s -- silence or fix its cause "
                '(or let the cell show it: "mystnb": {"output_stderr": "show"}), then '
                "build again: this chapter will run again",
                env.doc2path(env.docname, False),
                cell["cell_index"],
                text if len(text) < 400 else text[:400] + " ...",
                location=out,
            )
            failed.add(env.docname)
            app.statuscode = 1
    if env.docname in failed:
        forget_cached_outputs(app, env.docname)


def forget_cached_outputs(app, docname: str) -> None:
    """Remove a notebook's executed outputs from the jupyter cache (if it has any), so
    that the next build executes it instead of replaying what was rejected."""
    from pathlib import Path

    path = Path(app.env.doc2path(docname))
    cache_dir = cache_path(app, app.config)
    if path.suffix != ".ipynb" or not (cache_dir / "global.db").is_file():
        return
    import nbformat
    from jupyter_cache import get_cache

    try:
        cache = get_cache(cache_dir)
        record = cache.match_cache_notebook(nbformat.read(path, as_version=4))
        cache.remove_cache(record.pk)
    except KeyError:  # not cached (executed without the cache, or already dropped)
        return
    except Exception as error:  # a locked or damaged cache: say so, do not crash
        logger.warning(
            "could not drop the cached outputs of %s (%s: %s): run `jb clean .` "
            "if the next build replays them",
            docname,
            type(error).__name__,
            error,
        )


def reread_failed(app, env, added, changed, removed):
    """The pages that failed last time are outdated: their error is reported again."""
    return sorted(getattr(env, "llmbook_stderr_failed", set()) - set(removed))


def purge(app, env, docname):
    getattr(env, "llmbook_stderr_failed", set()).discard(docname)


def merge(app, env, docnames, other):
    env.llmbook_stderr_failed = getattr(env, "llmbook_stderr_failed", set()) | (
        getattr(other, "llmbook_stderr_failed", set()) & set(docnames)
    )


def setup(app):
    app.connect("doctree-read", check_stderr)
    app.connect("env-get-outdated", reread_failed)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
