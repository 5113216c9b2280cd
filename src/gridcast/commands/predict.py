"""`gridcast predict MODEL_DIR --track "x,y x,y ..." [--horizon N] [--top-k K] [--json]`."""
from __future__ import annotations

import argparse

from .common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="next cell (top-k) and most probable routes after a track prefix",
                       description="Predict the next cell and whole-route continuations (beam search) from a prefix of cells.")
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("--track", required=True, help='the cells so far, e.g. "14,3 13,3 12,3"')
    p.add_argument("--horizon", type=int, default=10, help="cells to continue the route by (default 10)")
    p.add_argument("--top-k", type=int, default=5, help="next-cell candidates and routes to return (default 5)")
    p.add_argument("--json", action="store_true",
                   help='print {"next": [{"cell": [x, y], "p": p}, ...], "routes": [{"cells": [[x, y], ...], "p": p}, ...]}')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..forecaster import Forecaster
    from ..tracks import parse_track

    if args.horizon < 1 or args.top_k < 1:
        raise InputError(f"--horizon and --top-k must be >= 1, got {args.horizon} and {args.top_k}")
    prefix = parse_track(args.track)
    model = Forecaster.load(args.model)
    nexts, p_end = model.predict_next_with_end(prefix, args.top_k)
    routes = model.beam(prefix, args.horizon, width=args.top_k)
    if args.json:
        print_json({
            "next": [{"cell": list(n.cell), "p": n.p} for n in nexts],
            "routes": [{"cells": [list(c) for c in r.cells], "p": r.p, "ended": r.ended} for r in routes],
            "p_end": p_end,
        })
        return 0
    print(f"after {len(prefix)} cells ending at {tuple(prefix[-1])}:")
    print("  next cell      p")
    for n in nexts:
        print(f"  {str(n.cell):<12} {n.p:.3f}")
    if p_end > 0.01:
        print(f"  (route ends here: p = {p_end:.3f})")
    print(f"most probable continuations (up to {args.horizon} cells):")
    for r in routes:
        tail = " [end]" if r.ended else ""
        print(f"  p = {r.p:.3f}: " + " ".join(f"{c},{rw}" for c, rw in r.cells) + tail)
    return 0
