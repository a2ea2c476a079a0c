"""The ``plmscale`` console script: ``plmscale <command> ...``."""

from __future__ import annotations

import sys

COMMANDS = {"export": "plmscale.export.command", "import": "plmscale.export.import_command",
            "plan": "plmscale.perf.cli", "elmo": "plmscale.families.elmo.embed",
            "report": "plmscale.report"}
"""Subcommand -> module with a ``main(argv) -> int``."""


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: plmscale {{{','.join(COMMANDS)}}} ...  (plmscale <command> --help)",
              file=sys.stderr)
        return 2
    import importlib
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
