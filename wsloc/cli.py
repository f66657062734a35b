"""The ``wsloc`` command line: one subcommand per module in :mod:`wsloc.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import WslocError

# Subcommand modules; each defines ``add_parser(subparsers)`` registering its parser with
# ``set_defaults(run=...)``, where ``run(args) -> int`` is the exit status.
COMMANDS = ["classify", "localize", "evaluate", "merge", "sanity", "visualize_class", "convert", "report"]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="wsloc", description="Weakly supervised localization from a classifier.")
    parser.add_argument("--version", action="version", version=f"wsloc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"wsloc.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"wsloc.commands.{name}":
                continue  # not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except WslocError as exc:
        print(f"wsloc {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"wsloc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
