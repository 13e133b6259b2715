"""Sphinx extension for the Build report page.

Directives:

``chapter-environments``
    A table of the machine and library versions each chapter *executed* on, read from
    the ``env_summary`` value the chapter glued in its last cell. With the execution
    cache, a chapter's outputs can come from an earlier build, so this, not the build
    host, is the provenance of its numbers.
``build-host``
    The machine and versions of the Sphinx process that assembled the pages.
``build-benchmarks``
    The recorded build benchmarks from ``book/data/build_benchmarks.json`` (written by
    ``scripts/benchmark_build.py``), with the command, date and machine that made them.
``device-build``
    The recorded whole-book build on a GPU machine from ``book/data/device_build.json``
    (written by ``scripts/device_check.sh``): provenance, each chapter's time and result,
    and the whole build's time against the GPU budget.

The report page is re-read on every build so that it never shows stale values.
"""

from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.docutils import SphinxDirective

ENV_KEY = "env_summary"
BENCHMARKS = Path("book/data/build_benchmarks.json")
DEVICE_BUILD = Path("book/data/device_build.json")


class chapter_environments(nodes.General, nodes.Element):
    """Placeholder, filled once every chapter has been read."""


def _table(header: list[str], rows: list[list[str]]) -> nodes.table:
    table = nodes.table(classes=["colwidths-auto"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    group += head
    row = nodes.row()
    for cell in header:
        row += nodes.entry("", nodes.paragraph(text=cell))
    head += row
    body = nodes.tbody()
    group += body
    for cells in rows:
        row = nodes.row()
        for cell in cells:
            row += nodes.entry("", nodes.paragraph(text=str(cell)))
        body += row
    return table


class ChapterEnvironments(SphinxDirective):
    def run(self):
        self.env.metadata[self.env.docname]["buildreport"] = True
        return [chapter_environments()]


class BuildHost(SphinxDirective):
    def run(self):
        from llmbook.env import CPU_FEATURES, detect

        env = detect(check_network=False)
        rows = [
            [
                "device",
                env.device_name if env.is_gpu else f"CPU only ({env.cpu_cores} cores)",
            ],
            ["CPU", env.cpu_name],
            [
                "CPU features",
                ", ".join(env.cpu_features) or "none of " + ", ".join(CPU_FEATURES),
            ],
            [
                "bitsandbytes CPU 4-bit path",
                env.bnb_cpu_path or "bitsandbytes not installed",
            ],
            ["memory", f"{env.cpu_memory_gib:.0f} GiB"],
            ["Python", env.python],
            *[
                [name, version or "not installed"]
                for name, version in env.versions.items()
            ],
        ]
        return [_table(["", "value"], rows)]


class BuildBenchmarks(SphinxDirective):
    def run(self):
        path = Path(self.env.srcdir) / BENCHMARKS
        self.env.note_dependency(str(path))
        if not path.exists():
            return [
                nodes.paragraph(
                    text="No build benchmark has been recorded yet: run scripts/benchmark_build.py."
                )
            ]
        data = json.loads(path.read_text())
        rows = [
            [
                r["what"],
                f"{r['seconds']:.0f} s",
                f"{r['peak_rss_gib']:.2f} GiB",
                r["budget"],
            ]
            for r in data["runs"]
        ]
        intro = nodes.paragraph(
            text=(
                f"Measured on {data['date']} on {data['machine']} with {data['command']}; "
                f"versions: {data['versions']}."
            )
        )
        chapters = _table(
            ["chapter", "execution time"],
            [[c["chapter"], f"{c['seconds']:.1f} s"] for c in data["chapters"]],
        )
        return [
            intro,
            _table(
                ["build", "wall time", "peak memory (whole process tree)", "budget"],
                rows,
            ),
            chapters,
        ]


class DeviceBuild(SphinxDirective):
    def run(self):
        path = Path(self.env.srcdir) / DEVICE_BUILD
        self.env.note_dependency(str(path))
        if not path.exists():
            return [
                nodes.paragraph(
                    text="No GPU build has been recorded yet: run scripts/device_check.sh on a GPU machine."
                )
            ]
        data = json.loads(path.read_text())
        p, build = data["provenance"], data["build"]
        ok = sum(c["result"] == "ok" for c in data["chapters"])
        seconds = build.get("timed_out_after_s") or build["wall_s"]
        if build.get("whole_book_executed"):
            budget = f"the whole book took {seconds:.0f} s against the GPU budget of {build['budget_s']} s"
        else:
            budget = (
                f"the build ended after {seconds:.0f} s before every chapter had run, so it does not measure "
                f"the whole book against the GPU budget of {build['budget_s']} s"
            )
        intro = nodes.paragraph(
            text=(
                f"Recorded on {p['date']} on an {p['device_name']} ({p['gpu_memory_gib']:.0f} GiB, driver {p['driver']}, "
                f"CUDA {p['cuda_runtime']}; CPU {p['cpu']}, {p['cpu_cores']} cores, bitsandbytes CPU path {p['bnb_cpu_path']}) "
                f"with {p['command']}; versions: "
                + ", ".join(f"{k} {v}" for k, v in p["versions"].items() if v)
                + f". {ok} of {len(data['chapters'])} chapters ran without error; {budget}."
            )
        )
        rows = [
            [
                c["chapter"],
                f"{c['seconds']:.1f} s" if c.get("seconds") is not None else "-",
                c["result"],
                c.get("error", ""),
            ]
            for c in data["chapters"]
        ]
        notes = [nodes.paragraph(text=n) for n in data.get("notes", [])]
        return [
            intro,
            _table(["chapter", "execution time", "result", "error"], rows),
            *notes,
        ]


class FillChapterEnvironments(SphinxPostTransform):
    default_priority = 8

    def run(self, **kwargs) -> None:
        from myst_nb.ext.glue.crossref import read_glue_cache

        for node in list(self.document.findall(chapter_environments)):
            folder = self.env.mystnb_config.output_folder
            rows = []
            for docname in self.env.found_docs:
                if not str(self.env.doc2path(docname)).endswith(".ipynb"):
                    continue
                glued = read_glue_cache.__wrapped__(folder, docname).get(ENV_KEY)
                title = (
                    self.env.titles[docname].astext()
                    if docname in self.env.titles
                    else docname
                )
                summary = (
                    glued["data"]["text/plain"].strip("'\"")
                    if glued
                    else "not recorded"
                )
                rows.append((docname, title, summary))
            rows.sort()
            node.replace_self(
                _table(["chapter", "executed on"], [[t, s] for _, t, s in rows])
            )


def always_reread(app, env, added, changed, removed):
    """Re-read the report page on every build: it summarises other pages."""
    return [doc for doc, meta in env.metadata.items() if meta.get("buildreport")]


def setup(app):
    app.add_node(chapter_environments)
    app.add_directive("chapter-environments", ChapterEnvironments)
    app.add_directive("build-host", BuildHost)
    app.add_directive("build-benchmarks", BuildBenchmarks)
    app.add_directive("device-build", DeviceBuild)
    app.add_post_transform(FillChapterEnvironments)
    app.connect("env-get-outdated", always_reread)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "0.1"}
