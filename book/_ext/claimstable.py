"""Sphinx extension: the claims table, assembled from the chapters' own verdicts.

Directive ``claims-table``: one row per claim of ``book/data/claims.json``, with the
verdict and its reason read from the chapters' notebooks (never retyped):

- a verdict admonition, ``:::{admonition} C17: ...`` whose body starts with a bold
  headline (``**Correct, and expected.**``) followed by the reason;
- or a row of a verdict table, ``| C5: ... | **Outdated** | evidence |``.

A claim judged in several chapters links to each; the verdict shown is the last one in
reading order (the chapter that measured it most directly comes later). Glued numbers
in a reason are rendered from the chapter that glued them. The category (holds, holds
with a caveat, outdated, wrong) comes from the headline's first words; an unknown
headline or a claim with no verdict fails the build.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from docutils import nodes
from sphinx.util.docutils import SphinxDirective

CLAIMS = Path("book/data/claims.json")
ADMONITION = re.compile(
    r":::\{admonition\} (C\d+)\b[^\n]*\n(?::class:[^\n]*\n)?(.*?)\n:::", re.S
)
TABLE_ROW = re.compile(r"^\| (C\d+)\b[^|]*\| ([^|]*)\| ([^|]*)\|", re.M)
HEADLINE = re.compile(r"^\*\*(.+?)\*\*(.*)$", re.S)
GLUE = re.compile(r"\{glue:text\}`([^`:]+)`")

CATEGORIES = ("holds", "holds with a caveat", "outdated", "wrong")
# The category of a verdict's bold headline (lower case, final full stop dropped): first
# the whole headline, then its first words, in order. Any other headline fails the build;
# a new wording is added here.
WHOLE = {"correct": "holds", "consistent": "holds", "correct, and expected": "holds"}
FIRST_WORDS = (
    ("correct.", "holds"),
    ("wrong", "wrong"),
    ("outdated", "outdated"),
    *(
        (w, "holds with a caveat")
        for w in (
            "correct,",
            "correct for",
            "holds",
            "only",
            "approximately",
            "right about",
            "expected by construction",
            "reproduced",
            "the trade is correct",
        )
    ),
)


def category(headline: str) -> str:
    """Holds / holds with a caveat / outdated / wrong, from a verdict's bold headline.

    Raises ValueError for a headline that ``WHOLE`` and ``FIRST_WORDS`` do not know.
    """
    h = headline.strip().rstrip(".").lower()
    if h in WHOLE:
        return WHOLE[h]
    for words, cat in FIRST_WORDS:
        if h.startswith(words):
            return cat
    raise ValueError(
        f"unknown verdict headline {headline!r}: it must start with one of "
        f"{', '.join(repr(w) for w, _ in FIRST_WORDS)}, or add its wording to FIRST_WORDS"
    )


def first_sentence(text: str) -> str:
    text = " ".join(text.split())
    match = re.search(r"(?<=[.!?])\s(?=\S)", text)
    return (text[: match.start()] if match else text).strip()


def chapter_verdicts(root: Path, chapters: list[str]) -> dict[str, list[dict]]:
    """{claim id: [{chapter, headline, reason}, ...]} in reading order."""
    found: dict[str, list[dict]] = {}
    for chapter in chapters:
        nb = json.loads((root / f"{chapter}.ipynb").read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            text = "".join(cell["source"])
            for m in ADMONITION.finditer(text):
                h = HEADLINE.match(m.group(2).strip())
                if h:
                    found.setdefault(m.group(1), []).append(
                        {
                            "chapter": chapter,
                            "headline": h.group(1),
                            "reason": first_sentence(h.group(2)),
                        }
                    )
            if "## Verdicts" in text or "| claim | verdict" in text:
                for m in TABLE_ROW.finditer(text):
                    h = HEADLINE.match(m.group(2).strip())
                    if h:
                        reason = " ".join(
                            p for p in (h.group(2).strip(" ,"), m.group(3).strip()) if p
                        )
                        found.setdefault(m.group(1), []).append(
                            {
                                "chapter": chapter,
                                "headline": h.group(1),
                                "reason": reason,
                            }
                        )
    return found


def toc_chapters(srcdir: Path) -> list[str]:
    toc = yaml.safe_load((srcdir / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [f.split("/")[-1] for f in files if re.fullmatch(r"book/\d{2}_\w+", f)]


class ClaimsTable(SphinxDirective):
    has_content = False

    def run(self):
        srcdir = Path(self.env.srcdir)
        claims = json.loads((srcdir / CLAIMS).read_text())["claims"]
        chapters = toc_chapters(srcdir)
        verdicts = chapter_verdicts(srcdir / "book", chapters)
        for chapter in chapters:
            self.env.note_dependency(str(srcdir / "book" / f"{chapter}.ipynb"))
        self.env.note_dependency(str(srcdir / CLAIMS))
        missing = [c["id"] for c in claims if c["id"] not in verdicts]
        if missing:
            raise self.error(f"no chapter gives a verdict for {', '.join(missing)}")
        lines = [
            "| claim | verdict | why (the chapter's words) | evidence |",
            "|---|---|---|---|",
        ]
        counts = dict.fromkeys(CATEGORIES, 0)
        for c in claims:
            vs = verdicts[c["id"]]
            last = vs[-1]
            try:
                cat = category(last["headline"])
            except ValueError as err:
                raise self.error(
                    f"{c['id']} in {last['chapter']}.ipynb: {err}"
                ) from None
            counts[cat] += 1
            # a glued number in the reason comes from the chapter that glued it ("doc::key:s")
            reason = GLUE.sub(
                lambda m, ch=last["chapter"]: (
                    f"{{glue:text}}`{ch}.ipynb::{m.group(1)}:s`"
                ),
                last["reason"],
            )
            links = ", ".join(
                f"[{v['chapter'][:2]}]({v['chapter']}.ipynb#verdicts)" for v in vs
            )
            cell = lambda s: s.replace("|", "\\|").replace("\n", " ")  # noqa: E731
            lines.append(
                f"| **{c['id']}** {cell(c['claim'])} | **{cat}** | *{cell(last['headline'])}* "
                f"{cell(reason)} | {links} |"
            )
        summary = "; ".join(f"{n} {k}" for k, n in counts.items())
        text = [f"Of the {len(claims)} claims: {summary}.", "", *lines]
        container = self.parse_text_to_nodes("\n".join(text))
        for table in (t for node in container for t in node.findall(nodes.table)):
            table["classes"].append("llmb-claims")  # styled by book/_static/layout.css
        return container


def setup(app):
    app.add_directive("claims-table", ClaimsTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
