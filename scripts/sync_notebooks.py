#!/usr/bin/env python3
"""Keep the chapters' notebooks clean and in step with _config.yml.

For every book/*.ipynb:
- remove outputs and execution counts,
- keep only stable notebook metadata (kernelspec, language_info, Colab's accelerator),
- give cells stable ids (cell-000, cell-001, ...) when they have none or random ones,
- write the repository URL from _config.yml into the Colab install cell.

    python scripts/sync_notebooks.py          # rewrite in place
    python scripts/sync_notebooks.py --check  # list what would change; exit 1 if anything

Run it before committing a notebook (tests/test_notebooks.py fails otherwise).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KEEP_NB_METADATA = ("kernelspec", "language_info", "accelerator", "colab")
KEEP_CELL_METADATA = ("tags", "mystnb")  # mystnb: image alt text and other rendering options
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
REPO_LINE = re.compile(r'^(\s*REPO_URL = )"[^"]*"', re.M)
STABLE_ID = re.compile(r"^cell-\d{3}$")


def repository_url(root: Path = ROOT) -> str:
    config = yaml.safe_load((root / "_config.yml").read_text())
    return config["repository"]["url"].rstrip("/")


def clean(nb: dict, repo_url: str) -> dict:
    """A clean copy of the notebook dict ``nb``."""
    out = dict(nb)
    meta = {k: v for k, v in nb.get("metadata", {}).items() if k in KEEP_NB_METADATA}
    meta["kernelspec"] = KERNELSPEC
    meta["language_info"] = {"name": "python"}
    if "colab" in meta:
        meta["colab"] = {k: v for k, v in meta["colab"].items() if k in ("gpuType", "provenance")}
        meta["colab"]["provenance"] = []
    out["metadata"] = meta
    cells = []
    ids = [c.get("id", "") for c in nb["cells"]]
    renumber = not all(STABLE_ID.match(i) for i in ids) or len(set(ids)) != len(ids)
    for i, cell in enumerate(nb["cells"]):
        c = dict(cell)
        c["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in KEEP_CELL_METADATA}
        if renumber:
            c["id"] = f"cell-{i:03d}"
        if c["cell_type"] == "code":
            c["outputs"] = []
            c["execution_count"] = None
            source = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            c["source"] = REPO_LINE.sub(rf'\1"{repo_url}"', source)
        cells.append(c)
    out["cells"] = cells
    return out


def dumps(nb: dict) -> str:
    """Serialise the way Jupyter does (one-space indent, sorted keys, newline at end)."""
    for cell in nb["cells"]:
        if isinstance(cell["source"], str):
            cell["source"] = cell["source"].splitlines(keepends=True)
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is not clean")
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: book/*.ipynb)")
    args = parser.parse_args(argv)
    repo_url = repository_url()
    paths = args.paths or sorted((ROOT / "book").glob("*.ipynb"))
    dirty = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        cleaned = dumps(clean(json.loads(text), repo_url))
        if cleaned != text:
            dirty.append(path)
            if not args.check:
                path.write_text(cleaned, encoding="utf-8")
    verb = "not clean" if args.check else "cleaned"
    for path in dirty:
        print(f"{verb}: {path.relative_to(ROOT) if path.is_absolute() else path}")
    if not dirty:
        print(f"all {len(paths)} notebooks clean")
    return 1 if (dirty and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
