"""The built site in a real browser (headless Chromium through Playwright).

The site is served on localhost from the from-scratch build (``built_book``). Each page
must load with no console error and no failed request, ask nothing of any other host,
render its maths, show its figures and outputs, and fit a phone's width. The two widgets
are driven by typing and clicking, and their arithmetic is checked in the page against
the Python-generated test vectors. Screenshots go to ``<build>/screenshots``.

Needs Chromium (Debian's ``chromium``) and the ``playwright`` package; ``.ci/run``
installs both and sets LLMBOOK_REQUIRE_BROWSER=1, so there a missing browser fails
instead of skipping. Run alone: ``pytest -m browser``.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest
from conftest import ROOT, chapter_notebooks, toc_files

from llmbook.memory import PRESETS

pytestmark = [pytest.mark.build, pytest.mark.browser]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
VECTORS = json.loads((ROOT / "tests" / "js" / "vectors.json").read_text())


def chromium_path() -> str | None:
    return (
        os.environ.get("CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


@pytest.fixture(scope="session")
def site(built_book):
    if built_book.returncode != 0:
        pytest.fail(
            "the book did not build; see test_book_builds_from_scratch_without_warnings"
        )
    handler = functools.partial(QuietHandler, directory=str(built_book.html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the site silently, noting every request it answered with an error.

    The browser's own requests (``/favicon.ico``) fire no Playwright event, and the
    console message they log can be lost when the page redirects: the server sees them.
    ``errors`` is the current visit's list of failed requests.
    """

    errors: list[str] = []

    def log_request(self, code="-", size="-"):
        if int(code) >= 400:
            self.errors.append(f"{self.path} (HTTP {int(code)}, seen by the server)")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def browser():
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        path = None
    if path is None:
        if os.environ.get("LLMBOOK_REQUIRE_BROWSER"):
            pytest.fail(
                "Chromium or playwright is missing: apt-get install chromium; pip install playwright"
            )
        pytest.skip(
            "no Chromium/playwright here (apt-get install chromium; pip install playwright)"
        )
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield b
        b.close()


@pytest.fixture(scope="session")
def shots(built_book) -> Path:
    d = built_book.output / "screenshots"
    d.mkdir(exist_ok=True)
    return d


class Visit:
    """One page load, recording console errors, failed requests and every URL asked for."""

    def __init__(self, browser, url: str, viewport=DESKTOP):
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.requests: list[str] = []
        self.page.on(
            "console",
            lambda m: self.errors.append(m.text) if m.type == "error" else None,
        )
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})")
        )
        self.page.on(
            "response",
            lambda r: (
                self.failed.append(f"{r.url} (HTTP {r.status})")
                if r.status >= 400
                else None
            ),
        )
        self.page.on("request", lambda r: self.requests.append(r.url))
        QuietHandler.errors = self.failed  # what the server refused counts too
        self.page.goto(url, wait_until="networkidle")

    def __enter__(self) -> "Visit":
        return self

    def __exit__(self, *exc) -> None:
        self.context.close()


def pages() -> list[str]:
    """Every page of the table of contents, and index.html, the redirect at the root."""
    return ["index.html"] + [f"{entry}.html" for entry in toc_files()]


@pytest.mark.parametrize("path", pages())
def test_page_loads_cleanly_and_asks_no_third_party(site, browser, path):
    with Visit(browser, f"{site}/{path}") as v:
        if path == "index.html":
            v.page.wait_for_url(f"{site}/{toc_files()[0]}.html")
            v.page.wait_for_load_state("networkidle")
        assert v.errors == [], v.errors
        assert v.failed == [], v.failed
        foreign = [
            u
            for u in v.requests
            if not u.startswith(site) and not u.startswith("data:")
        ]
        assert foreign == [], f"requests to other hosts: {foreign}"
        # maths: MathJax ran, and no raw TeX delimiters are left in the text
        if v.page.locator("div.math, span.math").count():
            v.page.wait_for_selector("mjx-container", timeout=15000)
            text = v.page.inner_text("main")
            assert not re.search(r"\$[^$\s][^$]*\$|\\\(|\\\[", text), (
                "raw TeX left on the page"
            )
        # figures: every image loaded, with a real size and alt text
        for img in v.page.locator("main img").all():
            assert img.evaluate("i => i.complete && i.naturalWidth > 0"), (
                img.get_attribute("src")
            )
            alt, src = img.get_attribute("alt") or "", img.get_attribute("src")
            assert len(alt) > (20 if "_images/" in src else 3), (
                f"no real alt text: {src}"
            )  # figures describe themselves


@pytest.mark.parametrize("path", [p for p in chapter_notebooks()], ids=lambda p: p.name)
def test_chapter_shows_outputs_and_working_buttons(site, browser, path):
    with Visit(browser, f"{site}/book/{path.stem}.html") as v:
        assert v.page.locator("div.cell_output").count() >= 3, (
            "code cells without outputs"
        )
        hrefs = v.page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        colab = [
            h
            for h in hrefs
            if h.startswith("https://colab.research.google.com/github/")
        ]
        assert colab and all(h.endswith(f"book/{path.name}") for h in colab), colab
        assert (ROOT / "book" / path.name).is_file()
        downloads = [h for h in hrefs if h.startswith(site) and h.endswith(".ipynb")]
        assert downloads, "no download button for the notebook"
        for h in downloads:
            r = v.context.request.get(h)
            assert r.ok and json.loads(r.body())["cells"], h


def test_search_finds_a_term_from_a_chapter(site, browser):
    with Visit(browser, f"{site}/search.html?q=bitsandbytes") as v:
        v.page.wait_for_selector(
            "#search-results ul li a, ul.search li a", timeout=20000
        )
        links = v.page.eval_on_selector_all(
            "ul.search li a", "els => els.map(e => e.getAttribute('href'))"
        )
        assert any("04_llm_int8_nf4" in h for h in links), links


# Elements that stick out of the viewport, neither fixed (a drawer) nor in a scrolling box
OVERFLOWING = """() => {
  const boxed = (e) => { for (let a = e; a; a = a.parentElement) {
    const style = getComputedStyle(a);
    if (style.position === "fixed" || (a !== e && style.overflowX !== "visible")) return true;
  } return false; };
  return [...document.querySelectorAll("main *")]
    .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !boxed(e))
    .map((e) => `<${e.tagName.toLowerCase()} class="${e.className}">: ${e.textContent.slice(0, 60)}`)
    .slice(0, 5);
}"""


def sideways(v: Visit) -> tuple[int, list[str]]:
    """How far the page scrolls sideways, and the elements that make it."""
    width = "document.documentElement.scrollWidth - window.innerWidth"
    return v.page.evaluate(width), v.page.evaluate(OVERFLOWING)


@pytest.mark.parametrize("entry", toc_files())
def test_layout_fits_a_phone(site, browser, shots, entry):
    """Every page of the book: code, outputs, tables and maths scroll in their own box."""
    with Visit(browser, f"{site}/{entry}.html", viewport=PHONE) as v:
        overflow, culprits = sideways(v)
        assert overflow <= 1, (
            f"the page scrolls sideways by {overflow}px at phone width: {culprits}"
        )
        stem = entry.split("/")[-1]
        if stem.startswith("0"):
            v.page.screenshot(path=str(shots / f"{stem}-phone.png"), full_page=False)


@pytest.mark.parametrize(
    "viewport",
    [{"width": 1280, "height": 800}, {"width": 390, "height": 844}],
    ids=["desktop", "phone"],
)
def test_claims_table_is_read_without_sideways_scrolling(
    site, browser, shots, viewport
):
    """Every verdict and its reason fit the text column, on a desktop and on a phone."""
    with Visit(browser, f"{site}/book/claims.html", viewport=viewport) as v:
        table = v.page.locator("main table.llmb-claims")
        assert table.count() == 1, "the claims table lost its class (claimstable.py)"
        widths = table.evaluate(
            """t => ({table: t.scrollWidth, box: t.parentElement.clientWidth,
                      boxScroll: t.parentElement.scrollWidth,
                      clipped: [...t.querySelectorAll("td")]
                        .filter((td) => td.scrollWidth > td.clientWidth + 1)
                        .map((td) => td.textContent.slice(0, 40))})"""
        )
        assert widths["table"] <= widths["box"], f"wider than its box: {widths}"
        assert widths["boxScroll"] <= widths["box"], f"its box scrolls: {widths}"
        assert widths["clipped"] == [], "cells whose text sticks out"
        overflow, culprits = sideways(v)
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px: {culprits}"
        v.page.screenshot(
            path=str(shots / f"claims-{viewport['width']}.png"), full_page=True
        )


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapter_answers_in_its_first_screen(site, browser, path):
    """At 1280 x 900, before any scrolling, the chapter's Answers box is on screen with at
    least three of this build's glued numbers in view."""
    with Visit(browser, f"{site}/book/{path.stem}.html") as v:
        box = v.page.locator("div.admonition", has_text="Answers").first
        assert box.locator(".admonition-title").inner_text().strip() == "Answers"
        top = box.bounding_box()["y"]
        assert 0 <= top < DESKTOP["height"], f"the Answers box starts at {top:.0f} px"
        glued = [
            g.bounding_box() for g in box.locator(".pasted-text, .pasted-inline").all()
        ]
        in_view = [b for b in glued if b and b["y"] + b["height"] <= DESKTOP["height"]]
        assert len(in_view) >= 3, f"{len(in_view)} glued numbers in the first screen"


def test_chapter_screenshots_at_desktop_width(site, browser, shots):
    stem = chapter_notebooks()[1].stem
    with Visit(browser, f"{site}/book/{stem}.html") as v:
        v.page.screenshot(path=str(shots / f"{stem}-desktop.png"), full_page=False)
        assert (shots / f"{stem}-desktop.png").stat().st_size > 10_000


# --- the widgets ------------------------------------------------------------------


def finish(v: Visit, screenshot: Path) -> None:
    """Save the whole page, and fail if anything the test did logged an error."""
    v.page.screenshot(path=str(screenshot), full_page=True)
    assert v.errors == [], v.errors


def row_value(page, fmt: str) -> str:
    return page.locator(f"tr[data-format='{fmt}'] td.llmb-value").first.inner_text()


def bits_of(page, fmt: str) -> str:
    return "".join(
        page.locator(f"tr[data-format='{fmt}'] button.llmb-bit").all_inner_texts()
    )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_float_explorer_by_typing_and_clicking(site, browser, shots, viewport):
    with Visit(browser, f"{site}/book/float_explorer.html", viewport=viewport) as v:
        page = v.page
        value = page.locator(
            "[data-llmb-widget='float-explorer'] input.llmb-input"
        ).first
        value.fill("65504")
        assert bits_of(page, "fp16") == "0111101111111111"
        assert row_value(page, "fp16") == "65504"
        value.fill("65520")
        assert row_value(page, "fp16") == "+inf" and row_value(page, "bf16") == "65536"
        value.fill("1")
        assert bits_of(page, "fp32") == "0" + "01111111" + "0" * 23
        page.locator(
            "tr[data-format='fp32'] button[data-bit='31']"
        ).click()  # the sign bit
        assert row_value(page, "fp32") == "-1" and value.input_value() == "-1"
        bit = page.locator(
            "tr[data-format='bf16'] button[data-bit='6']"
        )  # top mantissa bit, by keyboard
        bit.focus()
        page.keyboard.press("Enter")
        assert row_value(page, "bf16") == "-1.5"
        value.fill("500")
        assert row_value(page, "e4m3") == "NaN" and row_value(page, "e5m2") == "512"
        scale = page.locator(
            "[data-llmb-widget='float-explorer'] input.llmb-input"
        ).nth(1)
        value.fill("0.3")
        scale.fill("1")
        assert (
            page.locator("tr[data-quantizer='nf4'] td.llmb-code").inner_text() == "11"
        )
        assert (
            page.locator("tr[data-quantizer='absmax int8'] td.llmb-code").inner_text()
            == "38"
        )
        value.fill("7")  # fp4 saturates; e8m0 rounds to the nearest power of two
        assert row_value(page, "e2m1") == "6" and row_value(page, "e8m0") == "8"
        value.fill("nan")
        kind = page.locator("tr[data-format='e2m1'] td.llmb-kind").inner_text()
        assert kind == "not representable"
        explorer = page.locator("[data-llmb-widget='float-explorer']")
        explorer.locator("textarea").fill("5 1 -0.3 7.5")
        explorer.locator("select").select_option("MXFP4 E2M1")
        scale = page.locator("caption[data-mx-scale]")
        assert scale.get_attribute("data-mx-scale") == "127"  # 2**0: 7.5 < 8
        stored = page.locator("table.llmb-mx td.llmb-value").all_inner_texts()
        assert stored == ["4", "1", "-0.5", "6"]  # a tie to even, and a clipped maximum
        explorer.locator("textarea").fill(" ".join(["1"] * 33))
        assert "at most 32" in page.locator("p.llmb-mx-message").inner_text()
        assert page.locator("table.llmb-mx tr").count() == 0
        finish(
            v,
            shots
            / f"float-explorer-{'desktop' if viewport is DESKTOP else 'phone'}.png",
        )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_float_explorer_bits_by_keyboard_and_touch(site, browser, viewport):
    """One tab stop per format's bits, the arrow keys move between bits and formats;
    every bit is a target of at least 24 x 24 px (WCAG 2.2); no table of the explorer
    scrolls sideways, on a phone either."""
    with Visit(browser, f"{site}/book/float_explorer.html", viewport=viewport) as v:
        page = v.page
        page.locator("[data-llmb-widget='float-explorer'] input.llmb-input").first.fill(
            "1"
        )
        rows = page.locator("tr.llmb-bitrow")
        stops = page.locator("button.llmb-bit[tabindex='0']")
        assert rows.count() >= 7 and stops.count() == rows.count()
        assert page.locator("button.llmb-bit").count() > 80
        sign = page.locator("tr.llmb-bitrow[data-format='fp32'] button.llmb-bit").first
        assert sign.get_attribute("tabindex") == "0"
        sign.focus()
        page.keyboard.press("ArrowRight")  # the exponent's top bit
        focused = "document.activeElement.dataset.format + ':' + document.activeElement.dataset.bit"
        assert page.evaluate(focused) == "fp32:30"
        page.keyboard.press("End")
        assert page.evaluate(focused) == "fp32:0"
        page.keyboard.press(
            "ArrowDown"
        )  # fp16's last bit, the same place from the right
        assert page.evaluate(focused) == "fp16:0"
        page.keyboard.press("Enter")  # flips it: 1 + 2**-10
        assert row_value(page, "fp16") == "1.0009766"
        assert page.evaluate(focused) == "fp16:0"  # focus stays on the bit it flipped
        assert page.locator("tr[data-format='fp16'] button[tabindex='0']").count() == 1
        page.keyboard.press("Tab")  # leaves fp16's bits for the next format's
        assert page.evaluate(focused).startswith("bf16:")
        small = page.evaluate(
            """() => [...document.querySelectorAll('button.llmb-bit')]
                .map(b => b.getBoundingClientRect())
                .filter(r => r.width < 24 || r.height < 24).length"""
        )
        assert small == 0, f"{small} bits smaller than 24 x 24 px"
        wide = page.evaluate(
            """() => [...document.querySelectorAll('[data-llmb-widget] table')]
                .filter(t => t.scrollWidth > t.clientWidth + 1)
                .map(t => t.className + ' ' + t.scrollWidth + '>' + t.clientWidth)"""
        )
        assert wide == [], f"tables scroll sideways: {wide}"
        assert v.errors == []


def test_float_explorer_link_reproduces_it(site, browser):
    """The explorer's state lives in the URL: a flipped bit, a block and its format come
    back when the link is opened; a bad or old link says so in one line."""
    url = f"{site}/book/float_explorer.html"
    with Visit(browser, url) as v:
        page = v.page
        explorer = page.locator("[data-llmb-widget='float-explorer']")
        explorer.locator("input.llmb-input").first.fill("1")
        page.locator("tr[data-format='fp32'] button[data-bit='31']").click()
        explorer.locator("textarea").fill("5 1 -0.3 7.5")
        explorer.locator("select").select_option("MXFP4 E2M1")
        link = page.url
        assert "#floats?" in link
    with Visit(browser, link) as v:
        page = v.page
        assert row_value(page, "fp32") == "-1"
        stored = page.locator("table.llmb-mx td.llmb-value").all_inner_texts()
        assert stored == ["4", "1", "-0.5", "6"]
        assert page.locator(".llmb-link-error").count() == 0
    with Visit(browser, f"{url}#floats?v=abc&format=MXFP7&color=red") as v:
        said = v.page.locator(".llmb-link-error").inner_text()
        assert "v abc" in said and "format MXFP7" in said and "color" in said
        assert "\n" not in said and v.errors == []
        value = v.page.locator("[data-llmb-widget='float-explorer'] input.llmb-input")
        assert value.first.input_value() == "0.1"  # the default


def widget_controls(widget) -> dict[str, str]:
    """Every control's value (checkboxes as true/false), keyed by its id less the
    widget's random prefix."""
    return widget.evaluate(
        """w => Object.fromEntries([...w.querySelectorAll('input, select, textarea')]
            .filter(e => e.id && !e.id.endsWith('-config') && !e.id.endsWith('-hub'))
            .map(e => [e.id.slice(e.id.indexOf('-') + 1), e.type === 'checkbox' ? String(e.checked) : e.value]))"""
    )


def assert_link_reproduces(browser, link: str, widget: str, controls: dict) -> None:
    """Opened anew, the link sets every control as it was, and says nothing is wrong."""
    with Visit(browser, link) as v:
        host = v.page.locator(f"[data-llmb-widget='{widget}']")
        assert widget_controls(host) == controls
        assert host.locator(".llmb-link-error").count() == 0 and v.errors == []


def test_float_explorer_link_round_trips_every_control(site, browser):
    url = f"{site}/book/float_explorer.html"
    with Visit(browser, url) as v:
        explorer = v.page.locator("[data-llmb-widget='float-explorer']")
        before = widget_controls(explorer)
        explorer.locator("input[id$='-v']").fill("-3.25e-3")
        explorer.locator("input[id$='-s']").fill("16")
        explorer.locator("textarea").fill("0.5 -2 1e-3 300")
        select = explorer.locator("select")
        last = select.locator("option").last.get_attribute("value")
        select.select_option(last)
        after = widget_controls(explorer)
        unchanged = [k for k in after if after[k] == before[k]]
        assert unchanged == [], (
            f"the test left these controls as they were: {unchanged}"
        )
        link = v.page.url
    assert_link_reproduces(browser, link, "float-explorer", after)


def test_float_explorer_is_in_the_floating_point_chapter(site, browser):
    with Visit(browser, f"{site}/book/01_floating_point.html") as v:
        assert (
            v.page.locator(
                "[data-llmb-widget='float-explorer'] tr.llmb-bitrow[data-format='e5m2']"
            ).count()
            == 1
        )
        assert v.page.locator("a[href$='float_explorer.html']").count() >= 1


def test_widget_arithmetic_in_the_browser_matches_python(site, browser):
    """The same checks as tests/js/widgets.test.cjs, run by Chromium's JavaScript engine."""
    with Visit(browser, f"{site}/book/float_explorer.html") as v:
        failures = v.page.evaluate(
            """(V) => {
          const W = window.LLMBookWidgets; const out = [];
          const num = (x) => x === "nan" ? NaN : x === "inf" ? Infinity : x === "-inf" ? -Infinity : x;
          for (const row of V.floats) for (const [k, want] of Object.entries(row.formats)) {
            const f = W.FORMATS[k];
            if (W.encode(num(row.x), f) !== want.bits) out.push(`${k} encode ${row.x}`);
            const got = W.decode(want.bits, f), exp = num(want.value);
            if (!(Object.is(got, exp) || (Number.isNaN(got) && Number.isNaN(exp)))) out.push(`${k} decode ${want.bits}`);
          }
          for (const r of V.mx) {
            const got = W.quantizeMxBlock(r.values, r.format);
            if (got.scaleCode !== r.scale_code) out.push(`${r.format} scale`);
            got.elements.forEach((e, i) => {
              if (e.code !== r.codes[i] || !Object.is(e.stored, r.stored[i])) out.push(`${r.format} [${i}]`);
            });
          }
          for (const c of V.quantizers) {
            if (W.quantizeInt8(c.x, c.absmax).code !== c.int8) out.push(`int8 ${c.x}`);
            if (W.quantizeNf4(c.x, c.absmax).code !== c.nf4) out.push(`nf4 ${c.x}`);
          }
          for (const r of V.memory) {
            const got = W.breakdown(r.config, r.options);
            for (const [k, b] of Object.entries(r.parts)) if (got[k] !== b) out.push(`${r.name} ${k}`);
          }
          return out;
        }""",
            VECTORS,
        )
        assert failures == []


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_memory_calculator_by_choosing_and_typing(site, browser, shots, viewport):
    with Visit(browser, f"{site}/book/memory_calculator.html", viewport=viewport) as v:
        page = v.page
        calc = page.locator("[data-llmb-widget='memory-calculator']")
        calc.locator("select[data-field='recipe']").select_option("inference")
        calc.locator("select[data-field='quantization']").select_option("nf4")
        calc.locator("input[data-field='double_quant']").check()
        calc.locator("input[data-field='batch']").fill("4")
        calc.locator("input[data-field='context']").fill("513")
        want = next(
            r
            for r in VECTORS["memory"]
            if r["name"] == "Llama-2-7B"
            and r["options"]["recipe"] == "inference"
            and r["options"].get("quantization") == "nf4"
            and r["options"].get("double_quant")
            and r["options"]["dtype"] == "bfloat16"
            and r["options"]["batch"] == 4
        )
        total = int(calc.locator("p.llmb-total").get_attribute("data-total-bytes"))
        assert total == sum(want["peak"][1].values()) == sum(want["parts"].values())
        weights = (
            calc.locator("tr[data-part='weights'] td.llmb-bytes")
            .inner_text()
            .replace(",", "")
        )
        assert int(weights) == want["parts"]["weights"]
        assert calc.locator("svg.llmb-bar rect[data-part]").count() == 3
        # typing a shape switches to "custom"; a bad shape gives a message, not a crash
        calc.locator("input[data-field='num_key_value_heads']").fill("5")
        assert "divisible" in calc.locator(".llmb-error").inner_text()
        assert calc.locator("select[id$='-preset']").input_value() == "custom"
        calc.locator("select[id$='-preset']").select_option("Llama-2-70B")
        calc.locator("select[data-field='recipe']").select_option("full")
        assert "none" in calc.locator("p.llmb-fits").inner_text()
        # training: the peak is one moment of the step, the table lists every moment
        calc.locator("select[id$='-preset']").select_option("Llama-3-8B")
        calc.locator("input[data-field='context']").fill("2048")
        calc.locator("input[data-field='batch']").fill("1")
        want = next(
            r
            for r in VECTORS["memory"]
            if r["name"] == "Llama-3-8B"
            and r["options"]
            == {"recipe": "full", "checkpointing": False}
            | {"batch": 1, "context": 2048}
        )
        moment = calc.locator("p.llmb-total").get_attribute("data-moment")
        assert moment == want["peak"][0]
        total = int(calc.locator("p.llmb-total").get_attribute("data-total-bytes"))
        assert total == sum(want["peak"][1].values())
        rows = calc.locator("table.llmb-moments tr[data-moment]")
        assert rows.count() == len(want["phases"])
        assert calc.locator("table.llmb-moments tr.llmb-peak").count() == 1
        # several GPUs: each one's share, as llmbook.memory.sharded_phases counts it
        want = next(
            r
            for r in VECTORS["sharded"]
            if r["name"] == "Llama-3-8B"
            and r["options"]["recipe"] == "full"
            and r["options"]["sharding"] == "zero3"
            and not r["options"]["offload"]
        )
        calc.locator("input[data-field='context']").fill(
            str(want["options"]["context"])
        )
        calc.locator("input[data-field='checkpointing']").set_checked(
            want["options"]["checkpointing"]
        )
        calc.locator("input[data-field='gpus']").fill(str(want["options"]["gpus"]))
        calc.locator("select[data-field='sharding']").select_option("zero3")
        totals = {m: sum(p.values()) for m, p in want["phases"].items()}
        total = int(calc.locator("p.llmb-total").get_attribute("data-total-bytes"))
        assert total == max(totals.values())
        assert calc.locator("p.llmb-total").get_attribute("data-moment") == max(
            totals, key=totals.get
        )
        assert calc.locator("tr[data-part='gathered_weights']").count() == 1
        calc.locator("select[data-field='sharding']").select_option("ddp")
        calc.locator("input[data-field='offload']").check()
        assert "ZeRO-2 or ZeRO-3" in calc.locator(".llmb-error").inner_text()
        calc.locator("input[data-field='offload']").uncheck()
        finish(
            v,
            shots
            / f"memory-calculator-{'desktop' if viewport is DESKTOP else 'phone'}.png",
        )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_memory_calculator_mixture_of_experts_and_hybrid_presets(
    site, browser, viewport
):
    """A hybrid preset (fixed-size states beside attention) and a mixture of experts:
    inference equals Python's to the byte; the shape's locked fields fold into one line
    (on a phone they took a screen); training is refused in one line."""
    with Visit(browser, f"{site}/book/memory_calculator.html", viewport=viewport) as v:
        calc = v.page.locator("[data-llmb-widget='memory-calculator']")
        for name in ("Qwen3-Next-80B-A3B", "gpt-oss-20b"):
            want = next(
                r
                for r in VECTORS["model_presets"]
                if r["name"] == name
                and r["options"]["dtype"] == "bfloat16"
                and r["options"]["quantization"] == "nf4"
                and not r["options"]["double_quant"]
                and r["options"]["kv_quant"] == "fp8"
                and r["options"]["kv_keep"] == "all"
            )
            calc.locator("select[id$='-preset']").select_option(name)
            calc.locator("select[data-field='recipe']").select_option("inference")
            calc.locator("select[data-field='quantization']").select_option("nf4")
            calc.locator("input[data-field='double_quant']").uncheck()
            calc.locator("select[data-field='kv_quant']").select_option("fp8")
            for field in ("batch", "context"):
                calc.locator(f"input[data-field='{field}']").fill(
                    str(want["options"][field])
                )
            total = calc.locator("p.llmb-total")
            assert int(total.get_attribute("data-total-bytes")) == sum(
                want["parts"].values()
            )
            assert "active per token" in total.inner_text()
            hidden = calc.locator("input[data-field='hidden_size']")
            assert hidden.is_disabled() and not hidden.is_visible()
            assert hidden.input_value() == str(want["config"]["hidden_size"])
            said = calc.locator("p.llmb-shape-said")
            assert said.is_visible() and "\n" not in said.inner_text()
            assert f"hidden size {want['config']['hidden_size']}," in said.inner_text()
            form = calc.locator(".llmb-calc-model").bounding_box()
            assert form["height"] < viewport["height"] / 5, (
                f"the shape: {form['height']} px"
            )
        calc.locator("select[data-field='recipe']").select_option("lora")
        error = calc.locator(".llmb-error").inner_text()
        assert "choose inference" in error and "\n" not in error
        calc.locator("select[id$='-preset']").select_option("Llama-3-8B")
        hidden = calc.locator("input[data-field='hidden_size']")
        assert not hidden.is_disabled() and hidden.is_visible()
        assert not calc.locator("p.llmb-shape-said").is_visible()


def test_memory_calculator_takes_a_pasted_config(site, browser):
    """Llama-2-7B's shape pasted as a config.json: the same answer as its preset; another
    architecture is sent to the command line in one line."""
    want = next(
        r
        for r in VECTORS["memory"]
        if r["name"] == "Llama-2-7B"
        and r["options"]["recipe"] == "inference"
        and r["options"]["quantization"] is None
        and r["options"]["dtype"] == "bfloat16"
        and r["options"]["batch"] == 1
    )
    with Visit(browser, f"{site}/book/memory_calculator.html") as v:
        calc = v.page.locator("[data-llmb-widget='memory-calculator']")
        calc.locator("select[id$='-preset']").select_option("Llama-3-8B")
        calc.locator("select[data-field='recipe']").select_option("inference")
        calc.locator("input[data-field='context']").fill(
            str(want["options"]["context"])
        )
        calc.locator("details.llmb-paste summary").click()
        box = calc.locator("details.llmb-paste textarea")
        box.fill(json.dumps({"model_type": "llama", **want["config"]}))
        calc.locator("details.llmb-paste button", has_text="Use this").click()
        assert calc.locator("select[id$='-preset']").input_value() == "custom"
        total = calc.locator("p.llmb-total").get_attribute("data-total-bytes")
        assert int(total) == sum(want["parts"].values())
        assert "preset=custom" in v.page.url and "hidden_size=4096" in v.page.url
        box.fill('{"model_type": "gpt_oss", "hidden_size": 2880}')
        calc.locator("details.llmb-paste button", has_text="Use this").click()
        said = calc.locator("details.llmb-paste .llmb-error").inner_text()
        assert "python -m llmbook memory" in said and "\n" not in said
        assert int(
            calc.locator("p.llmb-total").get_attribute("data-total-bytes")
        ) == int(total)  # the last good config stays
        # a model id fetched from the hub (mocked: these tests go nowhere else)
        llama = {"model_type": "llama", **PRESETS["Llama-3-8B"]}

        def hub(route):
            name = route.request.url.removeprefix("https://huggingface.co/")
            if name.startswith("meta-llama/"):
                route.fulfill(status=200, body=json.dumps(llama))
            elif name.startswith("gated/"):
                route.fulfill(status=401, body="")
            else:
                route.abort()

        v.page.route("https://huggingface.co/**", hub)
        hub_id = calc.locator("details.llmb-paste input[type='text']")
        fetch = calc.locator("details.llmb-paste button", has_text="Fetch")
        said = calc.locator("details.llmb-paste p.llmb-paste-said")
        for name, answer in [
            ("not an id", "owner/name"),
            ("gated/model", "gated"),
            ("offline/model", "offline"),
            ("meta-llama/Meta-Llama-3-8B", "Using this llama config"),
        ]:
            hub_id.fill(name)
            fetch.click()
            said.filter(has_text=answer).wait_for(timeout=5000)
            assert "\n" not in said.inner_text()
        field = calc.locator("input[data-field='intermediate_size']")
        assert field.input_value() == str(PRESETS["Llama-3-8B"]["intermediate_size"])


def test_memory_calculator_answers_in_view_and_its_link_reproduces_it(site, browser):
    """At 1280 x 900 the answer (fits or not, the total) sits beside the form and is in
    view as the job changes; on a phone it comes right after the model's name. The URL
    holds the settings: opened again it gives the same answer; a bad or old link says so
    in one line and keeps the defaults. JSON and CSV downloads carry the breakdown."""
    url = f"{site}/book/memory_calculator.html"
    with Visit(browser, url) as v:
        calc = v.page.locator("[data-llmb-widget='memory-calculator']")
        calc.scroll_into_view_if_needed()
        calc.locator("select[id$='-preset']").select_option("Llama-3-8B")
        calc.locator("select[data-field='recipe']").select_option("qlora")
        calc.locator("input[data-field='gpus']").fill("1")
        calc.locator("input[data-field='context']").fill("3000")
        calc.locator("input[data-field='checkpointing']").check()
        fits, form = calc.locator("p.llmb-fits"), calc.locator(".llmb-calc-job")
        assert fits.bounding_box()["x"] > form.bounding_box()["x"] + 200  # beside it
        calc.locator("select[data-field='sharding']").focus()  # the bottom of the form
        box = fits.bounding_box()
        assert 0 <= box["y"] and box["y"] + box["height"] <= 900, box  # still in view
        total = calc.locator("p.llmb-total").get_attribute("data-total-bytes")
        link = v.page.url
        assert "#calc?" in link and "recipe=qlora" in link and "context=3000" in link
        with v.page.expect_download() as info:
            calc.locator("a.llmb-download", has_text="memory.json").click()
        saved = json.loads(Path(info.value.path()).read_text())
        assert sum(saved["peak_bytes"].values()) == int(total)
        with v.page.expect_download() as info:
            calc.locator("a.llmb-download", has_text="memory.csv").click()
        lines = Path(info.value.path()).read_text().splitlines()
        assert lines[0] == "moment,part,bytes" and len(lines) > 10
    with Visit(browser, link) as v:  # the link, opened anew
        calc = v.page.locator("[data-llmb-widget='memory-calculator']")
        assert calc.locator("p.llmb-total").get_attribute("data-total-bytes") == total
        assert calc.locator(".llmb-link-error").count() == 0
        v.page.evaluate("location.hash = location.hash.replace('qlora', 'lora')")
        recipe = calc.locator("select[data-field='recipe']")
        v.page.wait_for_function(
            "document.querySelector(\"select[data-field='recipe']\").value === 'lora'"
        )
        assert recipe.input_value() == "lora"  # an edited address is followed
        for bad in ("0", "-1", "2.5", ""):
            calc.locator("input[data-field='batch']").fill(bad)
            assert "Check: batch" in calc.locator(".llmb-error").inner_text()
    old = f"{url}#calc?preset=Llama-9-1T&batch=abc&recipe=inference&flux=2"
    with Visit(browser, old) as v:
        calc = v.page.locator("[data-llmb-widget='memory-calculator']")
        said = calc.locator(".llmb-link-error").inner_text()
        assert "Llama-9-1T" in said and "batch abc" in said and "\n" not in said
        assert calc.locator("select[data-field='recipe']").input_value() == "inference"
        assert v.errors == []
    with Visit(browser, url, viewport=PHONE) as v:
        calc = v.page.locator("[data-llmb-widget='memory-calculator']")
        answer = calc.locator("p.llmb-fits").bounding_box()["y"]
        y = {
            name: calc.locator(f"[id$='-{name}']").bounding_box()["y"]
            for name in ("preset", "hidden_size")
        }
        assert y["preset"] < answer < y["hidden_size"]  # right after the model's name


def test_memory_calculator_link_round_trips_every_control(site, browser):
    """Every field, box and menu changed from its default (a custom model's shape, the job,
    the hardware) comes back, value for value, when the link is opened anew."""
    url = f"{site}/book/memory_calculator.html"
    with Visit(browser, url) as v:
        calc = v.page.locator("[data-llmb-widget='memory-calculator']")
        before = widget_controls(calc)
        calc.locator("select[data-field='recipe']").select_option("lora")
        calc.locator("input[data-field='gpus']").fill(
            "2"
        )  # so the sharding menu counts
        for field in calc.locator("[data-field]").all():
            kind = field.evaluate("e => e.tagName === 'SELECT' ? 'select' : e.type")
            name = field.get_attribute("data-field")
            if kind == "checkbox":
                field.click()
            elif kind == "select" and name != "recipe":
                options = field.locator("option").all()
                values = [o.get_attribute("value") for o in options]
                field.select_option(
                    next(x for x in values[::-1] if x != field.input_value())
                )
            elif kind == "number" and name != "gpus":
                field.fill(str(int(field.input_value()) * 2 or 1))
        after = widget_controls(calc)
        assert calc.locator("select[id$='-preset']").input_value() == "custom"
        unchanged = [k for k in after if after[k] == before[k] and k != "preset"]
        assert unchanged == [], (
            f"the test left these controls as they were: {unchanged}"
        )
        link = v.page.url
    assert_link_reproduces(browser, link, "memory-calculator", after)


def test_memory_calculator_serving_mode_answers_as_the_serve_command(site, browser):
    """Serving with vLLM: the requests that fit on the chosen GPU and on every GPU equal
    llmbook.memory.serving's (the `serve` command's), a shared prefix raises them, and
    a cache vLLM cannot store is refused in one line."""
    from transformers import LlamaConfig

    from llmbook import memory

    config = LlamaConfig(**memory.PRESETS["Llama-3-8B"])
    url = f"{site}/book/memory_calculator.html#calc?preset=Llama-3-8B&recipe=serve"
    with Visit(browser, url + "&prompt=2000&answer=500&serve_gpu=L40S") as v:
        calc = v.page.locator("[data-llmb-widget='memory-calculator']")
        for gpu in memory.GPUS:
            b = memory.serving_budget(config, gpu, "bfloat16")
            want = (
                memory.requests_that_fit(config, b, 2000, 500)["requests"]
                if b.blocks
                else 0
            )
            row = calc.locator(f"table.llmb-serving-gpus tr[data-gpu='{gpu}'] td").first
            assert row.inner_text().replace(",", "") == str(want), gpu
        l40s = memory.serving_budget(config, "L40S", "bfloat16")
        total = calc.locator("p.llmb-total")
        assert total.get_attribute("data-total-bytes") == str(l40s.kv_cache)
        assert "On one L40S" in calc.locator("p.llmb-fits").inner_text()
        alone = int(total.get_attribute("data-requests"))
        calc.locator("input[data-field='shared_prefix']").fill("1500")
        shared = memory.requests_that_fit(config, l40s, 2000, 500, 1500)["requests"]
        assert int(total.get_attribute("data-requests")) == shared > alone
        calc.locator("select[data-field='kv_quant']").select_option("int4")
        said = calc.locator(".llmb-error").inner_text()
        assert "16 bits or fp8" in said and "\n" not in said and v.errors == []


def test_memory_calculator_bounds_speed_as_the_roofline(site, browser):
    """An inference job: on each GPU it fits, the roofline's bounds, as
    llmbook.memory.roofline (and the memory command's "at best" lines) give them."""
    from llmbook import memory

    llama = memory.preset_config("Llama-3-8B")
    url = f"{site}/book/memory_calculator.html#calc?preset=Llama-3-8B&recipe=inference"
    with Visit(browser, url + "&batch=4&context=2048") as v:
        rows = v.page.locator("table.llmb-speed tr[data-gpu]")
        shown = {
            r.get_attribute("data-gpu"): float(r.get_attribute("data-decode"))
            for r in rows.all()
        }
        assert "H100 80GB" in shown and "T4" not in shown  # only where it fits
        for gpu, decode in shown.items():
            want = memory.roofline(
                llama,
                memory.gpu_device(gpu),
                "bf16",
                4,
                2048,
                None,
                "bfloat16",
                None,
                2,
            )["decode_tok_s"]
            assert decode == pytest.approx(want, rel=1e-9), gpu
        assert v.errors == []


def test_memory_calculator_is_in_the_model_memory_chapter(site, browser):
    with Visit(browser, f"{site}/book/02_model_memory.html") as v:
        assert (
            v.page.locator(
                "[data-llmb-widget='memory-calculator'] p.llmb-total"
            ).count()
            == 1
        )
