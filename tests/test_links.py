"""Links, anchors and page weight of the built site, checked offline on the HTML files.

External links are listed in ``<build>/external_links.txt``; they are fetched only when
LLMBOOK_CHECK_EXTERNAL=1 and a network exists (not on the CI machines). Each page's
weight with its assets goes to ``<build>/page_weight.json``.
"""

from __future__ import annotations

import json
import os
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest
from conftest import toc_files

pytestmark = pytest.mark.build
MAX_FIGURE_BYTES = 300_000  # a chapter's PNG figure
MAX_PAGE_BYTES = 4_000_000  # a page's HTML with its images, scripts and styles


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.assets: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag in ("img", "script") and a.get("src"):
            self.assets.append(a["src"])
        if tag == "link" and a.get("href") and "stylesheet" in (a.get("rel") or ""):
            self.assets.append(a["href"])


def parse(path: Path) -> Page:
    p = Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


@pytest.fixture(scope="module")
def site(built_book):
    if built_book.returncode != 0:
        pytest.fail("the book did not build")
    html = built_book.html
    pages = {
        p: parse(p)
        for p in html.rglob("*.html")
        if "_static" not in p.parts and "_sources" not in p.parts
    }
    return html, pages


def test_no_broken_internal_links_or_anchors(site, built_book):
    html, pages = site
    broken, external = [], set()
    for path, page in pages.items():
        for href in page.links:
            scheme = urlparse(href).scheme
            if scheme in ("http", "https"):
                external.add(href)
                continue
            if scheme in ("mailto", "javascript", "data"):
                continue
            target, fragment = urldefrag(href)
            dest = (path.parent / unquote(target)).resolve() if target else path
            if dest.is_dir():
                dest = dest / "index.html"
            if not dest.exists():
                broken.append(f"{path.relative_to(html)}: {href} (no such file)")
            elif fragment and dest.suffix == ".html":
                ids = pages[dest].ids if dest in pages else parse(dest).ids
                if unquote(fragment) not in ids:
                    broken.append(
                        f"{path.relative_to(html)}: {href} (no anchor #{fragment})"
                    )
    (built_book.output / "external_links.txt").write_text(
        "\n".join(sorted(external)) + "\n"
    )
    assert broken == [], broken[:20]


@pytest.mark.skipif(
    not os.environ.get("LLMBOOK_CHECK_EXTERNAL"),
    reason="external links are checked only with a network",
)
def test_external_links_answer(site, built_book):
    bad = []
    for url in (built_book.output / "external_links.txt").read_text().split():
        if "colab.research.google.com" in url or "mybinder.org" in url:
            continue  # launch links are checked against the repository in test_site
        try:
            req = urllib.request.Request(
                url, method="HEAD", headers={"User-Agent": "llmbook-linkcheck"}
            )
            with urllib.request.urlopen(req, timeout=15) as r:
                if r.status >= 400:
                    bad.append(f"{url} ({r.status})")
        except Exception as e:  # noqa: BLE001 - report any failure with its URL
            bad.append(f"{url} ({e})")
    assert bad == []


def test_page_weight_is_reported_and_sensible(site, built_book):
    html, pages = site
    report = {}
    for entry in toc_files():
        path = (html / f"{entry}.html").resolve()
        page = pages[path]
        assets = {}
        for src in page.assets:
            if urlparse(src).scheme:
                continue
            f = (path.parent / unquote(urldefrag(src)[0])).resolve()
            if f.is_file():
                assets[str(f.relative_to(html))] = f.stat().st_size
        images = {k: v for k, v in assets.items() if k.startswith("_images/")}
        total = path.stat().st_size + sum(assets.values())
        report[entry] = {
            "html_bytes": path.stat().st_size,
            "asset_bytes": sum(assets.values()),
            "images": len(images),
            "image_bytes": sum(images.values()),
            "total_bytes": total,
        }
        for name, size in images.items():
            assert size <= MAX_FIGURE_BYTES, (
                f"{entry}: {name} is {size:,} bytes; save a smaller PNG or an SVG"
            )
        assert total <= MAX_PAGE_BYTES, (
            f"{entry} weighs {total:,} bytes with its assets"
        )
    (built_book.output / "page_weight.json").write_text(
        json.dumps(report, indent=1) + "\n"
    )
    assert set(report) == set(toc_files())
