#!/usr/bin/env python3
"""Every glued value of a built book, to compare two builds (before and after a refactor).

    python scripts/glue_values.py _build > before.json        # after `jb build .`
    python scripts/glue_values.py _build --compare before.json  # what changed since

Values are read from the executed notebooks the build keeps (``_build/jupyter_execute``)
or from any folder of executed notebooks (``jupyter nbconvert --execute``), as the text
each ``glue`` call recorded. ``--compare`` prints the names whose values
changed, appeared or disappeared, and exits 1 when any did.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def recorded_text(output: dict) -> str:
    """The text/plain form of one glue output (the build and nbconvert name it differently)."""
    data = output.get("data", {})
    text = next((v for k, v in data.items() if k.endswith("text/plain")), "")
    return "".join(text) if isinstance(text, list) else text


def glue_values(build: Path) -> dict[str, dict[str, str]]:
    """{chapter: {glue name: recorded text}} from a build directory or executed notebooks."""
    found = {}
    if (build / "jupyter_execute").is_dir():  # a build: not its execution cache
        build = build / "jupyter_execute"
    for path in sorted(build.rglob("*.ipynb")):
        side = path.with_suffix(".glue.json")  # what myst-nb keeps of a page's glue
        if side.exists():
            outputs = json.loads(side.read_text(encoding="utf-8")).values()
        else:
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
            outputs = [o for c in cells for o in c.get("outputs", [])]
        values = {
            o["metadata"]["scrapbook"]["name"]: recorded_text(o)
            for o in outputs
            if "scrapbook" in o.get("metadata", {})
        }
        if values:
            found[path.stem] = values
    return found


def differences(before: dict, after: dict) -> list[str]:
    """One line per glued value that changed, appeared or disappeared."""
    lines = []
    for chapter in sorted(set(before) | set(after)):
        old, new = before.get(chapter, {}), after.get(chapter, {})
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                lines.append(
                    f"{chapter} {name}: {old.get(name, '(absent)')} -> {new.get(name, '(absent)')}"
                )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "build", type=Path, help="_build, or a folder of executed notebooks"
    )
    parser.add_argument(
        "--compare", type=Path, help="a JSON file written by an earlier run"
    )
    args = parser.parse_args(argv)
    values = glue_values(args.build)
    if not values:
        print(f"no glued values under {args.build}: build first", file=sys.stderr)
        return 2
    if not args.compare:
        print(json.dumps(values, indent=1, sort_keys=True))
        return 0
    changed = differences(json.loads(args.compare.read_text()), values)
    print(
        "\n".join(changed)
        or f"all {sum(map(len, values.values()))} glued values unchanged"
    )
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
