"""One truth, two languages: the widgets' JavaScript against the Python that generates
their data and test vectors (scripts/make_widget_data.py)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT


def test_widget_data_is_generated_from_the_current_python():
    proc = subprocess.run(
        [sys.executable, "scripts/make_widget_data.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


VECTORS = ROOT / "tests" / "js" / "vectors.json"
CANONICAL_NAN = {
    "fp32": 0x7FC00000,
    "fp16": 0x7E00,
    "bf16": 0x7FC0,
    "e4m3": 0x7F,
    "e5m2": 0x7E,
    "e2m1": None,  # fp4 has no NaN: a NaN input has no code
    "e8m0": 0xFF,
}


def _node():
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        if os.environ.get("LLMBOOK_REQUIRE_BROWSER"):
            pytest.fail("Node.js is missing: apt-get install nodejs")
        pytest.skip("Node.js is not installed (apt-get install nodejs)")
    return node


def test_widget_vectors_do_not_depend_on_the_cpu_path():
    """The generator must write the same bytes on any CPU. One machine can play several:
    NumPy's and torch's SIMD dispatch, forced down, take other code paths (np.unique's sort
    kept +0.0 with AVX512 and -0.0 without, np.exp differs in the last place). The float and
    quantizer vectors (the sections with float arithmetic; the memory ones are integers)
    come out identical to the committed file, which the --check test ties to this
    machine's default paths."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # NumPy 1.x
        from numpy.core import _multiarray_umath as umath
    # the SIMD targets NumPy would dispatch to here, narrowest first (disabling one the CPU
    # lacks is an error or a warning)
    dispatched = [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]
    committed = json.loads(VECTORS.read_text())
    committed = {
        k: committed[k] for k in ("generated_by", "floats", "quantizers")
    }  # integer sections left out
    want = json.dumps(committed, indent=0) + "\n"
    code = (
        "import sys; sys.path.insert(0, 'scripts'); import make_widget_data as m; "
        "sys.stdout.write(m.vectors_json(('floats', 'quantizers')))"
    )
    runs = {
        "NumPy without its widest SIMD targets": {
            "NPY_DISABLE_CPU_FEATURES": " ".join(dispatched[1:])
        },
        "NumPy and torch on baseline code only": {
            "NPY_DISABLE_CPU_FEATURES": " ".join(dispatched),
            "ATEN_CPU_CAPABILITY": "default",
        },
    }
    for name, env in runs.items():
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env={
                **{
                    k: v
                    for k, v in os.environ.items()
                    if k != "NPY_ENABLE_CPU_FEATURES"
                },
                **env,
            },
        )
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
        assert proc.stdout == want, (
            f"{name} ({env}) writes other vectors than this machine's default paths"
        )


def test_widget_vectors_follow_the_signed_zero_and_nan_rules():
    """The rules make_widget_data.py documents: a NaN input is stored as the canonical quiet
    NaN with the sign clear; neighbours step the bit pattern, keeping the value's sign (so
    below +s is 0.0 and above -s is -0.0), and a zero of either sign has neighbours -s, +s."""
    sign = lambda v: math.copysign(1.0, v)  # noqa: E731
    failures = []
    for row in json.loads(VECTORS.read_text())["floats"]:
        for key, f in row["formats"].items():
            if row["x"] == "nan" and f["bits"] != CANONICAL_NAN[key]:
                failures.append(
                    f"{key}: NaN stored as {f['bits']}, not {CANONICAL_NAN[key]}"
                )
            if f["bits"] is None:  # no code (a NaN in fp4, zero or less in e8m0)
                if f != {"bits": None, "value": None, "below": None, "above": None}:
                    failures.append(f"{key} x={row['x']}: no code, yet {f}")
                continue
            where = f"{key} x={row['x']} ({f['bits']:#x})"
            v = f["value"]
            if isinstance(v, str):
                if (f["below"], f["above"]) != (None, None):
                    failures.append(f"{where}: a non-finite value has neighbours")
                continue
            if v == 0:
                if not (f["below"] < 0 < f["above"] and f["below"] == -f["above"]):
                    failures.append(
                        f"{where}: zero's neighbours are {f['below']}, {f['above']}"
                    )
                continue
            for side in ("below", "above"):
                if f[side] is not None and sign(f[side]) != sign(v):
                    failures.append(
                        f"{where}: {side} {f[side]!r} has the other sign than {v!r}"
                    )
    assert failures == []


def test_javascript_neighbours_match_the_vectors_to_the_sign_of_zero():
    """widgets.test.cjs compares neighbours with !==, blind to the sign of zero; Object.is here."""
    script = """
      const W = require("./book/_static/widgets/llmbook-widgets.js");
      const V = JSON.parse(require("fs").readFileSync("tests/js/vectors.json", "utf8"));
      const out = []; const show = (v) => (Object.is(v, -0) ? "-0" : String(v));
      for (const row of V.floats) for (const [k, want] of Object.entries(row.formats)) {
        const nb = W.neighbours(want.bits, W.FORMATS[k]);
        for (const side of ["below", "above"]) {
          if (!Object.is(nb[side], want[side])) {
            out.push(`${k} ${side} ${row.x}: ${show(nb[side])} vs ${show(want[side])}`);
          }
        }
      }
      console.log(JSON.stringify(out));
    """
    proc = subprocess.run(
        [_node(), "-e", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == []


def test_javascript_agrees_with_python_in_node():
    proc = subprocess.run(
        [_node(), "--test", "tests/js/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    declared = len(
        re.findall(
            r"^test\(", (ROOT / "tests" / "js" / "widgets.test.cjs").read_text(), re.M
        )
    )
    assert (
        "# fail 0" in proc.stdout and f"# pass {declared}" in proc.stdout
    )  # every declared test ran and passed


def test_widgets_ship_as_static_files_the_site_loads():
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    static = ROOT / config["html_static_path"][0]
    for f in config["html_js_files"] + config["html_css_files"]:
        assert (static / f).is_file(), f
    # the one request a widget may make: the calculator's fetch of a config.json from
    # the Hugging Face hub, when the reader asks for it (the browser tests check that a
    # page asks nothing of another host on its own)
    asked = 'const HUB = "https://huggingface.co/";'
    fetch = 'await fetch(HUB + name + "/resolve/main/config.json")'
    for path in (static / "widgets").rglob("*.js"):
        js = path.read_text()
        if path.name == "memory-calculator.js":
            assert js.count(asked) == 1 and js.count("fetch(") == js.count(fetch) == 1
            js = js.replace(asked, "").replace(fetch, "")
        assert "fetch(" not in js and "http" not in js.replace(
            "http://www.w3.org/2000/svg", ""
        ), f"the widgets must work offline: {path.name}"


def test_the_site_loads_every_part_of_the_widgets_in_order():
    """_config.yml's html_js_files: presets, then the parts in the order the entry file
    loads them in Node (each part uses only names of the parts before it), entry last;
    and no part on disk is left out."""
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    widgets = ROOT / "book" / "_static" / "widgets"
    entry = (widgets / "llmbook-widgets.js").read_text()
    parts = json.loads(re.search(r"const PARTS = (\[.*?\]);", entry).group(1))
    files = ["presets.js", *parts, "llmbook-widgets.js"]
    assert config["html_js_files"] == [f"widgets/{f}" for f in files]
    on_disk = {p.relative_to(widgets).as_posix() for p in widgets.rglob("*.js")}
    assert on_disk == set(files) | {"namespace.js"}  # namespace.js: Node only
