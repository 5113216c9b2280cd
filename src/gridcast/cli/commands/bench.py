"""`gridcast bench TARGET`: reproducible benchmarks on the shared real datasets, and speed.

Each target lives in its own light module under `gridcast.cli.commands` and exposes
`register(subparsers)`; like the commands (`gridcast.cli.app`), a target whose module fails to
import is an error, never a target that silently vanishes.
"""
from __future__ import annotations

import argparse

from gridcast.cli.app import import_command

# The targets, in the order `gridcast bench --help` lists them: name -> module exposing `register`.
TARGETS: dict[str, str] = {
    "ethucy": "gridcast.cli.commands.bench_ethucy",
    "mouse": "gridcast.cli.commands.bench_mouse",
    "geolife": "gridcast.cli.commands.bench_geolife",
    "uci": "gridcast.cli.commands.bench_uci",
    "fishers": "gridcast.cli.commands.bench_fishers",
    "liverpool": "gridcast.cli.commands.bench_liverpool",
    "speed": "gridcast.cli.commands.bench_speed",
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help=f"benchmarks on real data ({', '.join(TARGETS)})")
    targets = parser.add_subparsers(dest="target", required=True, metavar="TARGET")
    for name, module in TARGETS.items():
        import_command(f"bench {name}", module).register(targets)
