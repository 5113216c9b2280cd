"""`gridcast bench geolife --data DIR [--json]`: next cell on real commutes, models beside baselines.

Protocol in `gridcast.datasets.geolife` (250 m, 60 s, gaps > 10 min split, cell changes, per person by day
70/10/20). ``--json`` prints the `gridcast evaluate --json` shape (**contract**: "model",
"baselines", "n") for the best kind, with every kind, per-person results, paired differences and
split sizes beside it. ``--quick`` keeps the whole protocol (data, split, every baseline) but
trains one small LSTM for a few epochs: a check that runs in seconds, not a result.
"""
from __future__ import annotations

import argparse

from gridcast.cli.common import add_commute_args, run_commute_bench


def register(targets: argparse._SubParsersAction) -> None:
    from gridcast.datasets.geolife import GEOLIFE_COLUMNS, GEOLIFE_UTC_OFFSET_H

    p = targets.add_parser("geolife", help="GeoLife commutes: next cell and 10-cell routes beside Markov baselines")
    p.add_argument("--data", required=True, help="folder with geolife_sample.txt.gz (or the file itself)")
    p.add_argument("--utc-offset", type=float, default=GEOLIFE_UTC_OFFSET_H,
                   help="hours added to the logged times to get the local clock (default: 8, Beijing)")
    add_commute_args(p, GEOLIFE_COLUMNS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridcast.datasets.geolife import load_geolife

    columns = {"track": args.track_col, "time": args.time_col, "lat": args.lat_col, "lon": args.lon_col}
    data = load_geolife(args.data, cell_size=args.cell_size, step=args.step, max_gap=args.max_gap,
                        utc_offset_h=args.utc_offset, columns=columns, mode=args.mode)
    return run_commute_bench(args, data)
