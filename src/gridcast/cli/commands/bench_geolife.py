"""`gridcast bench geolife --data DIR [--json]`: next cell on real commutes, models beside baselines.

Protocol in `gridcast.geolife` (250 m, 60 s, gaps > 10 min split, cell changes, per person by day
70/10/20). ``--json`` prints the `gridcast evaluate --json` shape (**contract**: "model",
"baselines", "n") for the best kind, with every kind, per-person results, paired differences and
split sizes beside it. ``--quick`` keeps the whole protocol (data, split, every baseline) but
trains one small LSTM for a few epochs: a check that runs in seconds, not a result.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from gridcast.errors import InputError

QUICK = {"epochs": 4, "hidden": 32, "patience": 2}


def add_common(p: argparse.ArgumentParser, columns: dict[str, str]) -> None:
    """Flags shared by the real-commute benchmarks (GeoLife, UCI)."""
    p.add_argument("--cells", default="lstm,gru,rnn", help="cell kinds to train (default: lstm,gru,rnn)")
    p.add_argument("--seeds", default="0,1,2", help="seeds per kind; metrics are means over them (default: 0,1,2)")
    p.add_argument("--epochs", type=int, help="override the epoch budget")
    p.add_argument("--hidden", type=int, help="override the hidden size")
    p.add_argument("--head", choices=("fusion", "plain"), help="override the output head (ablation)")
    p.add_argument("--time-features", action="store_true", help="ablation: add time of day / week inputs")
    p.add_argument("--no-time-features", action="store_true", help=argparse.SUPPRESS)  # the default now
    p.add_argument("--min-tracks", type=int, help="override: trips that must visit a cell for it to get an id")
    p.add_argument("--max-move", type=int, help="override: the fusion head's move window is (2R+1)^2 cells")
    p.add_argument("--quick", action="store_true", help="protocol check: full data and baselines, one tiny LSTM")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--out", help="also write the JSON result to this file")
    grid = p.add_argument_group("protocol")
    grid.add_argument("--cell-size", type=float, default=250.0, help="cell size in metres (default: 250)")
    grid.add_argument("--step", type=float, default=60.0, help="resampling step in seconds (default: 60)")
    grid.add_argument("--max-gap", type=float, default=600.0, help="split tracks at gaps longer than this (s)")
    cols = p.add_argument_group("columns")
    for role, name in columns.items():
        cols.add_argument(f"--{role}-col", default=name, help=f"{role} column (default: {name})")


def parse_list(text: str, what: str, cast=str) -> tuple:
    try:
        items = tuple(cast(x.strip()) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--{what} must be a comma-separated list, got {text!r}") from None
    if not items:
        raise InputError(f"--{what} is empty")
    return items


def bench(args: argparse.Namespace, data) -> int:
    """Run `gridcast.geolife.run_benchmark` on loaded data with the flags in `args`; print it."""
    import torch

    from gridcast.datasets.geolife import ModelSpec, run_benchmark, text_report
    from gridcast.cli.common import print_json

    torch.set_num_threads(min(2, torch.get_num_threads()))
    kinds = parse_list(args.cells, "cells")
    bad = [k for k in kinds if k not in ("lstm", "gru", "rnn")]
    if bad:
        raise InputError(f"--cells: unknown cell kind(s) {bad}; choose from lstm, gru, rnn")
    seeds = parse_list(args.seeds, "seeds", int)
    spec = ModelSpec()
    if args.quick:
        kinds, seeds = kinds[:1], seeds[:1]
        for key, value in QUICK.items():
            setattr(spec, key, value)
    for key in ("epochs", "hidden", "head", "min_tracks", "max_move"):
        if getattr(args, key) is not None:
            setattr(spec, key, getattr(args, key))
    spec.time_features = bool(args.time_features) and not args.no_time_features
    if spec.head == "plain":
        spec.min_tracks = args.min_tracks or 1
    log = None if args.json else (lambda m: print(m, flush=True))
    result = run_benchmark(data, kinds=kinds, seeds=seeds, spec=spec, log=log, n_boot=200 if args.quick else 1000)
    result["quick"] = bool(args.quick)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    if args.json:
        print_json(result)
    else:
        print(text_report(result))
    return 0


def register(targets: argparse._SubParsersAction) -> None:
    from gridcast.datasets.geolife import GEOLIFE_COLUMNS, GEOLIFE_UTC_OFFSET_H

    p = targets.add_parser("geolife", help="GeoLife commutes: next cell and 10-cell routes beside Markov baselines")
    p.add_argument("--data", required=True, help="folder with geolife_sample.txt.gz (or the file itself)")
    p.add_argument("--utc-offset", type=float, default=GEOLIFE_UTC_OFFSET_H,
                   help="hours added to the logged times to get the local clock (default: 8, Beijing)")
    add_common(p, GEOLIFE_COLUMNS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridcast.datasets.geolife import load_geolife

    columns = {"track": args.track_col, "time": args.time_col, "lat": args.lat_col, "lon": args.lon_col}
    data = load_geolife(args.data, cell_size=args.cell_size, step=args.step, max_gap=args.max_gap,
                        utc_offset_h=args.utc_offset, columns=columns)
    return bench(args, data)
