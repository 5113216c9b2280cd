"""`gridcast bench fishers --data DIR [--mode fixed|collapsed] [--json]`: animal GPS (Movebank fishers).

Protocol in `gridcast.datasets.fishers` (100 m, 600 s, gaps > 1 h split, per animal by time span
60/10/30; rows without a location dropped and counted in "ingest"). The default mode is ``fixed``
(one cell per step: an animal rests for hours). Same output shape as `gridcast bench geolife`.
"""
from __future__ import annotations

import argparse

from gridcast.cli.common import add_commute_args, run_commute_bench


def register(targets: argparse._SubParsersAction) -> None:
    from gridcast.datasets.fishers import CELL_SIZE, FISHERS_COLUMNS, MAX_GAP, STEP

    p = targets.add_parser("fishers", help="Movebank fishers (animal GPS): where next at a 600 s step, beside baselines")
    p.add_argument("--data", required=True, help="folder with fishers.csv.gz (or the file itself)")
    add_commute_args(p, FISHERS_COLUMNS, cell_size=CELL_SIZE, step=STEP, max_gap=MAX_GAP, mode="fixed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridcast.datasets.fishers import load_fishers

    columns = {"track": args.track_col, "time": args.time_col, "lat": args.lat_col, "lon": args.lon_col}
    data = load_fishers(args.data, cell_size=args.cell_size, step=args.step, max_gap=args.max_gap, columns=columns,
                        mode=args.mode)
    return run_commute_bench(args, data)
