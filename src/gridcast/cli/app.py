"""The `gridcast` command.

Each subcommand lives in its own module under `gridcast.cli.commands` and exposes
`register(subparsers)`; this file only wires them together and turns user errors into one line and
exit status 2 (a user's mistake never shows a Python traceback; see docs/contracts.md).

Command modules are imported eagerly, so they must stay light (argparse and the standard library at
the top; the library is imported inside the function that runs the command): `gridcast --help`
imports neither torch nor pandas. A command module that fails to import is an error, never a
command that silently vanishes from `--help`.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from gridcast.errors import GridcastError

# The commands, in the order `--help` lists them: name -> module exposing `register(subparsers)`.
COMMANDS: dict[str, str] = {
    "demo": "gridcast.cli.commands.demo",
    "grid": "gridcast.cli.commands.grid",
    "fit": "gridcast.cli.commands.fit",
    "predict": "gridcast.cli.commands.predict",
    "evaluate": "gridcast.cli.commands.evaluate",
    "bench": "gridcast.cli.commands.bench",
    "explain": "gridcast.cli.commands.explain",
    "export": "gridcast.cli.commands.export",
    "serve": "gridcast.cli.commands.serve",
}


class CommandImportError(ImportError):
    """A command module of the registry could not be imported: the installation is broken."""


def import_command(name: str, module: str) -> ModuleType:
    """The module of command `name`, or a CommandImportError naming the command and the cause."""
    try:
        loaded = importlib.import_module(module)
    except Exception as exc:
        raise CommandImportError(f"gridcast: command {name!r} cannot be registered: importing {module} failed "
                                 f"({type(exc).__name__}: {exc})") from exc
    if not callable(getattr(loaded, "register", None)):
        raise CommandImportError(f"gridcast: command {name!r} cannot be registered: {module} has no register()")
    return loaded


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridcast",
        description="Learn where a moving thing goes next: grid cells at a fixed time step, "
                    "RNN/LSTM/GRU forecasters, honest baselines.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        import_command(name, module).register(sub)
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
