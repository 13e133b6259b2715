"""One truth, two languages: the widgets' JavaScript against the Python that generates
their data and test vectors (scripts/make_widget_data.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


def test_widget_data_is_generated_from_the_current_python():
    proc = subprocess.run([sys.executable, "scripts/make_widget_data.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_javascript_agrees_with_python_in_node():
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        if os.environ.get("LLMBOOK_REQUIRE_BROWSER"):
            pytest.fail("Node.js is missing: apt-get install nodejs")
        pytest.skip("Node.js is not installed (apt-get install nodejs)")
    proc = subprocess.run([node, "--test", "tests/js/"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout and "# pass 7" in proc.stdout


def test_widgets_ship_as_static_files_the_site_loads():
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    static = ROOT / config["html_static_path"][0]
    for f in config["html_js_files"] + config["html_css_files"]:
        assert (static / f).is_file(), f
    js = (static / "widgets" / "llmbook-widgets.js").read_text()
    assert "fetch(" not in js and "http" not in js.replace("http://www.w3.org/2000/svg", ""), "the widgets must work offline"
