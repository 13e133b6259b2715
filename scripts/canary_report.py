"""Turn a run_chapters_plain.py summary into a Markdown report: which chapter broke, how.

python scripts/canary_report.py summary.json "Colab runtime" >> "$GITHUB_STEP_SUMMARY"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def report(summary: list[dict], where: str) -> str:
    broken = [r for r in summary if not r["ok"]]
    lines = [
        f"## Canary: chapters on the {where}",
        "",
        f"{len(summary) - len(broken)} of {len(summary)} chapters ran top to bottom.",
        "",
        "| chapter | result | seconds | what broke |",
        "|---|---|---|---|",
    ]
    for r in summary:
        error = (r.get("error") or "").strip().splitlines()
        last = error[-1].replace("|", "\\|") if error else ""
        lines.append(
            f"| {r['chapter']} | {'ok' if r['ok'] else '**FAILED**'} | {r['seconds']:.0f} | {last} |"
        )
    for r in broken:
        lines += [
            "",
            f"### {r['chapter']}",
            "",
            "```",
            (r.get("error") or "").strip()[-3000:],
            "```",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: canary_report.py SUMMARY.json WHERE", file=sys.stderr)
        return 2
    path = Path(argv[0])
    if not path.exists():
        print(
            f"## Canary: chapters on the {argv[1]}\n\nNo summary was written: the run stopped before any chapter ended."
        )
        return 0
    print(report(json.loads(path.read_text()), argv[1]), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
