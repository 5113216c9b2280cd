"""`gridcast bench mouse`: cursor continuation on the Balabit logs (pixels, 50 ms, 8 -> 12).

The runner is `gridcast.bench.mouse.run_mouse` (protocol in `gridcast.datasets.mouse`; test users
23, 29, 9 never reach training, user 35 selects the epoch); this module parses the flags and
prints its result: the same JSON shape as `bench ethucy` (one pseudo-scene, ``"test_users"``),
and a PNG of a few test paths with every model's continuation.
"""
from __future__ import annotations

import argparse
import json
import sys

from gridcast.cli.common import run_single_threaded
from gridcast.kinds import parse_kinds


def register(targets: argparse._SubParsersAction) -> None:
    p = targets.add_parser("mouse", help="Balabit mouse cursors, users held out (ADE/FDE in pixels)")
    p.add_argument("--data", required=True, help="the balabit_mouse folder (training_files/user*/session_*)")
    p.add_argument("--cells", default="lstm,gru,rnn", help="cell kinds to train (default: lstm,gru,rnn)")
    p.add_argument("--samples", type=int, default=1, choices=(1, 20), help="20: also best-of-20 per window")
    p.add_argument("--seeds", type=int, default=1, help="models per kind; mean and std over them")
    p.add_argument("--epochs", type=int, default=None, help="override the epoch budget")
    p.add_argument("--quick", action="store_true", help="protocol check: full windows and baselines, tiny models")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--out", default="gridcast-bench-mouse", help="folder for mouse_paths.png and results.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_single_threaded(_run, args)


def _run(args: argparse.Namespace) -> int:
    from gridcast.bench.mouse import run_mouse, text_report

    result = run_mouse(args.data, parse_kinds(args.cells), seeds=args.seeds, samples=args.samples,
                       epochs=args.epochs, quick=args.quick, out=args.out,
                       log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(result) if args.json else text_report(result))
    return 0
