"""`gridcast predict MODEL_DIR --track "x,y x,y ..." [--horizon N] [--top-k K] [--json]`, or
`gridcast predict MODEL_DIR DATA [column flags]`: the same after the end of every track in a file
(raw points are gridded on the model's own grid), one JSON object per track with ``--json``."""
from __future__ import annotations

import argparse

from gridcast.cli.common import add_column_args, prepare_data, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="next cell (top-k) and most probable routes after a track prefix",
                       description="Predict the next cell and whole-route continuations (beam search) from a prefix of cells.")
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("data", nargs="?", metavar="DATA",
                   help="instead of --track: raw points (column flags) or a gridded Parquet; predicts after "
                        "the end of every track, gridded on the model's grid")
    p.add_argument("--track", help='the cells so far, e.g. "14,3 13,3 12,3"')
    p.add_argument("--horizon", type=int, default=10, help="cells to continue the route by (default 10)")
    p.add_argument("--top-k", type=int, default=5, help="next-cell candidates and routes to return (default 5)")
    p.add_argument("--json", action="store_true",
                   help='print {"next": [{"cell": [x, y], "p": p}, ...], "routes": [{"cells": [[x, y], ...], "p": p}, ...]} '
                        '(with DATA: one such object per track and line, plus "track")')
    p.add_argument("--collapse", action="store_true", help="with DATA: drop consecutive repeats (default: as the model's training tracks)")
    add_column_args(p)
    p.add_argument("--sep", help="CSV field separator (default: sniffed)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridcast.errors import InputError
    from gridcast.nextcell.forecaster import Forecaster
    from gridcast.tracks import parse_track

    if args.horizon < 1 or args.top_k < 1:
        raise InputError(f"--horizon and --top-k must be >= 1, got {args.horizon} and {args.top_k}")
    if (args.track is None) == (args.data is None):
        raise InputError("give either --track \"x,y x,y ...\" or a DATA file, not both or neither")
    if args.data is not None:
        return _predict_file(args)
    prefix = parse_track(args.track)
    model = Forecaster.load(args.model)
    nexts, p_end = model.predict_next_with_end(prefix, args.top_k)
    routes = model.beam(prefix, args.horizon, width=args.top_k)
    if args.json:
        print_json(_as_json(nexts, p_end, routes))
        return 0
    _print_text(prefix, nexts, p_end, routes, args.horizon)
    return 0


def _as_json(nexts, p_end: float, routes) -> dict:
    """The **contract** shape of `predict --json`."""
    return {"next": [{"cell": list(n.cell), "p": n.p} for n in nexts],
            "routes": [{"cells": [list(c) for c in r.cells], "p": r.p, "ended": r.ended} for r in routes],
            "p_end": p_end}


def _predict_file(args: argparse.Namespace) -> int:
    """Every track of DATA as a prefix: beams for all tracks at once and the next cell per track
    (`predict_many`). Raw points land on the model's grid, so cell ids mean what the model learned."""
    from gridcast.errors import InputError
    from gridcast.ingest.gridded_file import is_gridded
    from gridcast.nextcell.batch import predict_many
    from gridcast.nextcell.forecaster import Forecaster

    model = Forecaster.load(args.model)
    if model.grid is None and not is_gridded(args.data):
        raise InputError(f"{args.model} carries no grid (fitted on cells from Python): give DATA as a "
                         f"gridded Parquet or use --track")
    tracks = prepare_data(args.data, args, like=model, like_name=args.model, collapse=args.collapse,
                          min_len=1).tracks
    timed = model.config.time_features
    predictions = predict_many(model, [t.cells for t in tracks], args.horizon, width=args.top_k, k=args.top_k,
                               times=[t.times for t in tracks] if timed else None, exact=False)
    for track, prediction in zip(tracks, predictions):
        if args.json:
            print_json({"track": track.id, **_as_json(prediction.next, prediction.p_end, prediction.routes)})
        else:
            print(f"track {track.id}: ", end="")
            _print_text(track.cells, prediction.next, prediction.p_end, prediction.routes, args.horizon)
    return 0


def _print_text(prefix, nexts, p_end: float, routes, horizon: int) -> None:
    print(f"after {len(prefix)} cells ending at {tuple(int(v) for v in prefix[-1])}:")
    print("  next cell      p")
    for n in nexts:
        print(f"  {str(n.cell):<12} {n.p:.3f}")
    if p_end > 0.01:
        print(f"  (route ends here: p = {p_end:.3f})")
    print(f"most probable continuations (up to {horizon} cells):")
    for r in routes:
        tail = " [end]" if r.ended else ""
        print(f"  p = {r.p:.3f}: " + " ".join(f"{c},{rw}" for c, rw in r.cells) + tail)
