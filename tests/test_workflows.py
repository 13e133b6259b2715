"""CI and deployment: workflows valid and least-privilege, .ci/run runs the README's tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def tool(name: str) -> str:
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -r requirements-dev.txt"
    return str(found)


def test_the_workflows_exist():
    names = {p.name for p in WORKFLOWS}
    assert {
        "book-gpu.yml",
        "pr-cpu.yml",
        "canary-colab.yml",
        "canary-latest.yml",
    } <= names


@pytest.mark.parametrize("name", ["canary-colab.yml", "canary-latest.yml"])
def test_canaries_are_scheduled_run_every_chapter_afresh_and_report(name):
    wf = load(ROOT / ".github" / "workflows" / name)
    assert wf["on"]["schedule"][0]["cron"] and "workflow_dispatch" in wf["on"]
    (job,) = wf["jobs"].values()
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert "scripts/run_chapters_plain.py" in runs, (
        "chapters run with no execution cache"
    )
    assert "jupyter_cache" not in runs and not any(
        s.get("uses", "").startswith("actions/cache") for s in job["steps"]
    )
    assert "scripts/canary_report.py" in runs and "GITHUB_STEP_SUMMARY" in runs
    report = next(s for s in job["steps"] if "canary_report.py" in s.get("run", ""))
    assert report.get("if") == "always()", (
        "report even (especially) when a chapter broke"
    )
    if name == "canary-colab.yml":
        assert job["container"]["image"].startswith(
            "us-docker.pkg.dev/colab-images/public/runtime"
        )
        assert "--colab" in runs
    else:
        assert "--warnings-as-errors" in runs
        assert all(
            lib in runs
            for lib in ("torch", "transformers", "accelerate", "bitsandbytes", "peft")
        )
        assert "--upgrade" in runs


def test_canary_report_names_the_broken_chapter(tmp_path):
    summary = [
        {"chapter": "01_a.ipynb", "ok": True, "seconds": 3.0, "error": None},
        {
            "chapter": "02_b.ipynb",
            "ok": False,
            "seconds": 5.0,
            "error": "cell 4: Traceback...\nTypeError: load_in_8bit is gone",
        },
    ]
    (tmp_path / "s.json").write_text(json.dumps(summary))
    out = subprocess.run(
        [
            sys.executable,
            "scripts/canary_report.py",
            str(tmp_path / "s.json"),
            "Colab runtime",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "1 of 2 chapters ran" in out
    assert "| 02_b.ipynb | **FAILED** | 5 | TypeError: load_in_8bit is gone |" in out
    missing = subprocess.run(
        [sys.executable, "scripts/canary_report.py", str(tmp_path / "none.json"), "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "No summary was written" in missing


def test_workflows_match_the_github_schema():
    result = subprocess.run(
        [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, WORKFLOWS),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_no_security_problem():
    result = subprocess.run(
        [tool("zizmor"), "--offline", str(ROOT / ".github" / "workflows")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege(path):
    wf = load(path)
    assert wf.get("permissions") == {}, "grant nothing at the top; grant per job"
    for name, job in wf["jobs"].items():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"job {name} must state its permissions"
        writes = {k for k, v in perms.items() if v == "write"}
        if name == "deploy":
            assert writes == {"pages", "id-token"}, writes
        else:
            assert writes == set(), f"job {name} should only read: {writes}"
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("actions/checkout"):
                assert step.get("with", {}).get("persist-credentials") is False


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_to_commits(path):
    for job in load(path)["jobs"].values():
        for step in job.get("steps", []):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), (
                    step["uses"]
                )


def test_gpu_workflow_builds_caches_and_deploys():
    wf = load(ROOT / ".github" / "workflows" / "book-gpu.yml")
    assert "push" in wf["on"] and wf["on"]["push"]["branches"] == ["main"]
    build = wf["jobs"]["build"]
    assert "vars.GPU_RUNNER_LABEL" in build["runs-on"], (
        "the GPU runner label is a repository variable"
    )
    steps = build["steps"]
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    key = cache["with"]["key"]
    assert cache["with"]["path"] == "_build/.jupyter_cache"
    assert "hashFiles('requirements.txt'" in key and "steps.gpu.outputs.name" in key
    assert cache["with"]["restore-keys"].strip() in key, (
        "restore from the same requirements and GPU"
    )
    assert any("scripts/build.sh" in s.get("run", "") for s in steps)
    assert any(
        s.get("uses", "").startswith("actions/upload-pages-artifact") for s in steps
    )
    deploy = wf["jobs"]["deploy"]
    assert (
        deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    )


def test_build_script_treats_warnings_as_errors():
    assert (
        'jb" build . -n -W --keep-going' in (ROOT / "scripts" / "build.sh").read_text()
    )


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"^(bash scripts/\w+\.sh)\s*$", readme, flags=re.M)


def test_readme_has_a_build_and_a_test_command():
    assert readme_commands() == ["bash scripts/build.sh", "bash scripts/test.sh"]


def test_ci_runs_the_readme_test_command_from_a_fresh_venv():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci
    assert 'rm -rf "$VENV"' in ci, "CI must start from a fresh virtual environment"
    assert re.search(r"^bash scripts/test\.sh\b", ci, flags=re.M)
    # a new user's machine: an empty home, no cache variables (tests/conftest.cold_env)
    assert 'rm -rf "$COLD_HOME" && mkdir -p "$COLD_HOME"' in ci
    assert 'export HOME="$COLD_HOME"' in ci and "unset LLMBOOK_CACHE HF_HOME" in ci
    pr = (ROOT / ".github" / "workflows" / "pr-cpu.yml").read_text()
    assert "bash scripts/test.sh" in pr
