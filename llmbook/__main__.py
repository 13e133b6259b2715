"""``python -m llmbook COMMAND``: the book's command-line tools.

python -m llmbook memory CONFIG [--dtype ...] [--quantization int8|nf4|fp4] [--json]
python -m llmbook serve MODEL [--gpu H100] [--prompt N --answer N] [--json]
python -m llmbook env [--json]
python -m llmbook prepare [--smollm]   (what a first run makes: see llmbook.firstrun)
"""

from __future__ import annotations

import sys

COMMANDS = {
    "memory": "llmbook.cli",
    "serve": "llmbook.serve_cli",
    "env": "llmbook.env",
    "prepare": "llmbook.firstrun",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(
            f"usage: python -m llmbook {{{','.join(COMMANDS)}}} ...  (got {argv[0] if argv else 'nothing'!r})"
        )
        return 2
    import importlib

    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
