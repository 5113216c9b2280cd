"""`gridcast bench ethucy`: leave-one-scene-out ETH/UCY benchmark (SGAN windows, 8 -> 12 at 2.5 Hz).

The runner is `gridcast.bench.ethucy.run_ethucy`; this module parses the flags and prints its
result (the markdown table, or ``--json``). For every held-out scene: train on the other scenes'
train split, keep the epoch with the best ADE on their val split, report ADE/FDE (metres) on the
held-out test split, beside constant velocity and a linear fit computed on the very same windows.
``--seeds N`` trains N models per kind and scene and reports the mean (and std) over seeds;
``--samples 20`` adds best-of-20, per pedestrian and per window, labelled.
"""
from __future__ import annotations

import argparse
import json
import sys

from gridcast.cli.common import run_single_threaded
from gridcast.kinds import parse_kinds


def register(targets: argparse._SubParsersAction) -> None:
    p = targets.add_parser("ethucy", help="ETH/UCY pedestrians, leave one scene out (ADE/FDE in metres)")
    p.add_argument("--data", required=True, help="folder with <scene>/{train,val,test}/*.txt")
    p.add_argument("--cells", default="lstm,gru,rnn", help="cell kinds to train (default: lstm,gru,rnn)")
    p.add_argument("--samples", type=int, default=1, choices=(1, 20),
                   help="1: deterministic only; 20: also best-of-20 (per pedestrian and per window)")
    p.add_argument("--seeds", type=int, default=1, help="models per kind and scene; mean and std over them")
    p.add_argument("--scenes", default=None, help="comma list of held-out scenes (default: all found)")
    p.add_argument("--epochs", type=int, default=None, help="override the epoch budget")
    p.add_argument("--neighbours", type=int, default=None,
                   help="others attended per pedestrian (default 8; 0 = the single-agent model)")
    p.add_argument("--no-mirror", dest="mirror", action="store_false",
                   help="deterministic prediction from the inputs as seen only (default: averaged with the "
                        "prediction from their mirror image, mirrored back)")
    p.add_argument("--quick", action="store_true",
                   help="protocol check in about a minute: full windows and baselines, tiny models")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--out", default=None, help="also write results.json and table.md here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_single_threaded(_run, args)


def _run(args: argparse.Namespace) -> int:
    from gridcast.bench.ethucy import markdown_table, run_ethucy

    kinds = parse_kinds(args.cells)
    scenes = [s.strip() for s in args.scenes.split(",") if s.strip()] if args.scenes else None
    result = run_ethucy(args.data, kinds, seeds=args.seeds, samples=args.samples, scenes=scenes,
                        epochs=args.epochs, neighbours=args.neighbours, mirror=args.mirror, quick=args.quick,
                        out=args.out, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(result) if args.json else markdown_table(result))
    return 0
