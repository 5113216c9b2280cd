"""The `gridcast` command.

Each subcommand lives in its own module under `gridcast.commands` and exposes
`register(subparsers)`; this file only wires them together and turns user errors into one line and
exit status 2 (DESIGN.md: never a Python traceback for a user's mistake).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from gridcast.errors import GridcastError

COMMANDS = ("demo", "grid", "fit", "predict", "evaluate", "bench", "explain")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridcast",
        description="Learn where a moving thing goes next: grid cells at a fixed time step, RNN/LSTM/GRU forecasters, honest baselines.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"gridcast.cli.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"gridcast.cli.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GridcastError as exc:
        print(f"gridcast {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"gridcast {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gridcast {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
