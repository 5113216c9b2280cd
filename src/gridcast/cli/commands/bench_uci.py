"""`gridcast bench uci --data DIR [--json]`: the GeoLife pipeline, untouched, on the UCI GPS
Trajectories (Go!Track, Aracaju): only the column names and the split unit (trips, not days) differ.
Same output shape as `gridcast bench geolife`."""
from __future__ import annotations

import argparse

from gridcast.cli.common import add_commute_args, run_commute_bench


def register(targets: argparse._SubParsersAction) -> None:
    from gridcast.datasets.uci import UCI_COLUMNS

    p = targets.add_parser("uci", help="UCI GPS trajectories (Go!Track): the GeoLife protocol on another city")
    p.add_argument("--data", required=True, help="folder with go_track_trackspoints.csv and go_track_tracks.csv")
    p.add_argument("--user-col", default="id_android", help="person column of go_track_tracks.csv")
    add_commute_args(p, UCI_COLUMNS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridcast.datasets.uci import load_uci

    data = load_uci(args.data, cell_size=args.cell_size, step=args.step, max_gap=args.max_gap, user_col=args.user_col,
                    columns={"track": args.track_col, "time": args.time_col, "lat": args.lat_col, "lon": args.lon_col}, mode=args.mode)
    return run_commute_bench(args, data)
