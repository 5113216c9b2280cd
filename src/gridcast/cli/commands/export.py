"""`gridcast export MODEL_DIR --out DIR [--strip-tracks]`: a copy of a model to serve or share; with
--strip-tracks its training tracks are replaced by pseudo-tracks rebuilt from their aggregated
transition counts, so prediction is unchanged and nobody's trips are handed out."""
from __future__ import annotations

import argparse

from gridcast.cli.common import print_json, print_note


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="copy a model directory, optionally without its raw training tracks",
                       description="Copy MODEL_DIR to a new directory. A model directory carries its training "
                                   "tracks (for the baselines and the Markov prior); --strip-tracks keeps only what "
                                   "prediction needs: their order-1 and order-2 transition counts.")
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("--out", required=True, help="a new (or empty) directory")
    p.add_argument("--strip-tracks", action="store_true",
                   help="replace the training tracks by pseudo-tracks with the same transition counts")
    p.add_argument("--json", action="store_true", help='print {"strip_tracks", "tracks", "pseudo_tracks", "out"}')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridcast.nextcell.export import export_model

    report = export_model(args.model, args.out, strip_tracks=args.strip_tracks)
    if args.json:
        print_json({**report, "out": args.out})
    elif args.strip_tracks:
        print_note(f"wrote {args.out}: {report['tracks']} training tracks replaced by {report['pseudo_tracks']} "
                   f"pseudo-tracks with the same transition counts")
    else:
        print_note(f"wrote {args.out} (training tracks kept)")
    return 0
