"""`gridcast bench TARGET`: reproducible benchmarks on the shared real datasets.

Each target lives in `gridcast.cli.commands.bench_<target>` and exposes `register(subparsers)`.
"""
from __future__ import annotations

import argparse
import importlib

TARGETS = ("ethucy", "mouse", "geolife", "uci", "speed")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="benchmarks on real data (ethucy, mouse, geolife, uci, speed)")
    targets = parser.add_subparsers(dest="target", required=True, metavar="TARGET")
    for name in TARGETS:
        try:
            module = importlib.import_module(f"gridcast.cli.commands.bench_{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"gridcast.cli.commands.bench_{name}":
                continue
            raise
        module.register(targets)
