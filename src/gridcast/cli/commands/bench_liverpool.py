"""`gridcast bench liverpool [--mode collapsed|fixed] [--json]`: the demo's data and protocol (bundled
Liverpool route 14: 100 m, 30 s, 11 earliest trips train, 5 latest test) through the benchmark runner
of `gridcast bench geolife`: every kind, several seeds, intervals and paired differences; same shape.
"""
from __future__ import annotations

import argparse

from gridcast.cli.common import add_commute_args, run_commute_bench


def register(targets: argparse._SubParsersAction) -> None:
    p = targets.add_parser("liverpool", help="the demo's bus route 14: both modes, seeds, paired intervals")
    add_commute_args(p, None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridcast.datasets.liverpool import load_liverpool_commute

    return run_commute_bench(args, load_liverpool_commute(args.mode))
