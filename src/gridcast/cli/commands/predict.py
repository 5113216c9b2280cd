"""`gridcast predict MODEL_DIR --track "x,y x,y ..." [--horizon N] [--top-k K] [--json] [--geojson FILE]`,
`gridcast predict MODEL_DIR --points "lat,lon[,time] ..."` (raw positions, gridded on the model's
grid), or `gridcast predict MODEL_DIR DATA [column flags]`: the same after the end of every track in
a file (raw points are gridded on the model's own grid), one JSON object per track with ``--json``.
Answers carry cell centres in the input's coordinates (and times, where the prefix has them); a
prefix outside the training area gets a warning on stderr."""
from __future__ import annotations

import argparse
import sys

from gridcast.cli.common import Range, add_column_args, check_flags, int_in, prepare_data, print_json, print_note

DEFAULT_MAX_HORIZON = 1000  # a beam of 1e6 steps runs for minutes: a cap, raised with --max-horizon
PREDICT_RANGES: dict[str, Range] = {"max_horizon": int_in(1, 1_000_000), "top_k": int_in(1, 1000),
                                    "samples": int_in(0, 10_000)}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="next cell (top-k) and most probable routes after a track prefix",
                       description="Predict the next cell and whole-route continuations (beam search) from a prefix "
                                   "of cells (--track), of raw positions (--points) or after every track of a DATA file.")
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("data", nargs="?", metavar="DATA",
                   help="instead of --track/--points: raw points (column flags) or a gridded Parquet; predicts after "
                        "the end of every track, gridded on the model's grid")
    p.add_argument("--track", help='the cells so far, e.g. "14,3 13,3 12,3"')
    p.add_argument("--points", help='the positions so far, gridded on the model\'s grid: "lat,lon lat,lon ..." '
                                    '(a grid with a CRS) or "x,y x,y ..." (planar); each may end in ",TIME" '
                                    '(ISO-8601 such as 2026-01-26T15:57:02Z, or seconds) to resample at the model\'s step')
    p.add_argument("--horizon", type=int, default=10, help="cells to continue the route by (default 10; at most --max-horizon)")
    p.add_argument("--max-horizon", type=int, default=DEFAULT_MAX_HORIZON,
                   help=f"the largest --horizon accepted (default {DEFAULT_MAX_HORIZON}; raise it for longer routes)")
    p.add_argument("--top-k", type=int, default=5, help="next-cell candidates and routes to return (default 5)")
    p.add_argument("--samples", type=int, default=0, metavar="N",
                   help='also return N routes sampled from the model (seed 0; --json "samples"); the point forecast '
                        '("point": where it will be at each step) is the per-step medoid of 20 such samples')
    p.add_argument("--json", action="store_true",
                   help='print {"next": [{"cell": [x, y], "p": p, "lon", "lat"}, ...], "routes": [{"cells": [[x, y], ...], '
                        '"p": p, "ended", "coords", "times"}, ...], "p_end"} (coordinates on a model with a grid; '
                        'with DATA: one such object per track and line, plus "track")')
    p.add_argument("--geojson", metavar="FILE",
                   help="also write prefix, routes and next cells as a GeoJSON FeatureCollection (lon, lat; "
                        "all tracks of DATA in one file); a model on a planar grid is refused")
    p.add_argument("--collapse", action="store_true",
                   help="with DATA or --points: drop consecutive repeats (default: as the model's training tracks)")
    add_column_args(p)
    p.add_argument("--sep", help="CSV field separator (default: sniffed)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridcast.errors import InputError

    check_flags(args, PREDICT_RANGES)  # before torch is imported: a bad number is refused at once
    if not 1 <= args.horizon <= args.max_horizon:
        raise InputError(f"--horizon must be an integer in [1, {args.max_horizon}], got {args.horizon} "
                         "(--max-horizon raises the cap)")
    from gridcast.nextcell.forecaster import Forecaster
    from gridcast.nextcell.geojson import check_geojson_grid, check_geojson_target

    given = [name for name, value in (("--track", args.track), ("--points", args.points), ("DATA", args.data))
             if value is not None]
    if len(given) != 1:
        raise InputError(f"give either --track \"x,y x,y ...\", --points \"lat,lon ...\" or a DATA file: exactly one of "
                         f"them, not both or neither{' (got ' + ' and '.join(given) + ')' if given else ''}")
    model = Forecaster.load(args.model)
    if args.geojson is not None:
        check_geojson_grid(model.grid, args.model)
        check_geojson_target(args.geojson, _protected(args))
        from gridcast.ingest.outputs import refuse_input_as_output
        refuse_input_as_output(args.geojson, [args.data], "--geojson", folders=[args.model])  # hard links too
    if args.data is not None:
        return _predict_file(args, model)
    from gridcast.nextcell.prefix_answer import cells_prefix, predict_prefix
    from gridcast.tracks import parse_track

    if args.points is not None:
        track, warning = _points_prefix(args, model)
    else:
        track, warning = cells_prefix(model, parse_track(args.track))
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    collapsed = args.points is not None and _collapses(args, model)
    answer = predict_prefix(model, track, args.horizon, args.top_k, args.samples)
    place = _place(model, collapsed)
    if args.geojson is not None:
        _write_geojson(args, [answer], place, with_track=False)
    if args.json:
        print_json(answer.json(place))
        return 0
    _print_text(track.cells, answer.nexts, answer.p_end, answer.routes, args.horizon, place, answer.point,
                answer.samples)
    return 0


def _points_and_samples(args: argparse.Namespace, model, prefixes: list, times: list | None) -> tuple[list, list]:
    """The point forecast of every prefix and its `--samples` sampled routes (`nextcell.prefix_answer`)."""
    from gridcast.nextcell.prefix_answer import points_and_samples

    return points_and_samples(model, prefixes, args.horizon, args.samples, times)


def _collapses(args: argparse.Namespace, model) -> bool:
    return bool(args.collapse or (model.preprocessing or {}).get("collapse"))


def _place(model, collapsed: bool):
    """Where answers are written (None: a model fitted on bare cells keeps today's cells-only output)."""
    from gridcast.nextcell.prefix_answer import answer_place

    return answer_place(model, collapsed)


def _points_prefix(args: argparse.Namespace, model):
    """--points -> (one track on the model's grid, prepared like its training tracks; a coverage
    warning or None)."""
    from gridcast.ingest.points import parse_points
    from gridcast.nextcell.prefix_answer import points_prefix

    if model.grid is None:
        from gridcast.errors import InputError

        raise InputError(f"--points needs a grid: {args.model} was fitted on bare cells (from Python); use --track")
    points = parse_points(args.points, geographic=model.grid.crs is not None)
    return points_prefix(model, points, args.collapse, args.model, log=print_note, label="the --points prefix")


def _predict_file(args: argparse.Namespace, model) -> int:
    """Every track of DATA as a prefix: beams for all tracks at once and the next cell per track
    (`predict_many`). Raw points land on the model's grid, so cell ids mean what the model learned."""
    from gridcast.errors import InputError
    from gridcast.ingest.gridded_file import is_gridded
    from gridcast.nextcell.batch import predict_many
    from gridcast.nextcell.coverage import Coverage

    if model.grid is None and not is_gridded(args.data):
        raise InputError(f"{args.model} carries no grid (fitted on cells from Python): give DATA as a "
                         f"gridded Parquet or use --track")
    ready = prepare_data(args.data, args, like=model, like_name=args.model, collapse=args.collapse, min_len=1)
    tracks = ready.tracks
    coverage = Coverage.of_model(model)
    if coverage is not None:
        warning = coverage.tracks_warning([(t.id, t.cells) for t in tracks])
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    timed = model.config.time_features
    predictions = predict_many(model, [t.cells for t in tracks], args.horizon, width=args.top_k, k=args.top_k,
                               times=[t.times for t in tracks] if timed else None, exact=False)
    points, samples = _points_and_samples(args, model, [t.cells for t in tracks],
                                          [t.times for t in tracks] if timed else None)
    from gridcast.nextcell.prefix_answer import PrefixAnswer

    answers = [PrefixAnswer(t, p.next, p.p_end, p.routes, point, drawn)
               for t, p, point, drawn in zip(tracks, predictions, points, samples)]
    place = _place(model, bool(ready.preprocessing.get("collapse")))
    if args.geojson is not None:
        _write_geojson(args, answers, place, with_track=True)
    for answer in answers:
        if args.json:
            print_json({"track": answer.track.id, **answer.json(place)})
        else:
            print(f"track {answer.track.id}: ", end="")
            _print_text(answer.track.cells, answer.nexts, answer.p_end, answer.routes, args.horizon, place,
                        answer.point, answer.samples)
    return 0


def _write_geojson(args: argparse.Namespace, answers: list, place, with_track: bool) -> None:
    from gridcast.nextcell.geojson import feature_collection, prediction_features, write_geojson

    features = []
    for a in answers:
        features += prediction_features(a.track.cells, a.nexts, a.routes, place,
                                        track=a.track.id if with_track else None, prefix_times=a.track.times,
                                        point=a.point)
    write_geojson(args.geojson, feature_collection(features), protect=_protected(args))
    print_note(f"wrote {args.geojson} ({len(features)} features)")


def _centre_text(place, centre: list[float]) -> str:
    """A cell centre for people: labelled, so lon/lat order cannot be misread."""
    if place.geographic:
        return f"lat {centre[1]:.6f}, lon {centre[0]:.6f}"
    return f"x {centre[0]:g}, y {centre[1]:g}"


def _protected(args: argparse.Namespace) -> list[str]:
    """What --geojson must never overwrite: the model directory and the input data."""
    return [args.model] + ([args.data] if args.data is not None else [])


def _print_text(prefix, nexts, p_end: float, routes, horizon: int, place=None, point=None, samples=None) -> None:
    print(f"after {len(prefix)} cells ending at {tuple(int(v) for v in prefix[-1])}:")
    print("  next cell      p" + ("      centre" if place is not None else ""))
    centres = place.coords([n.cell for n in nexts]) if place is not None else [None] * len(nexts)
    for n, centre in zip(nexts, centres):
        print(f"  {str(n.cell):<12} {n.p:.3f}" + (f"  {_centre_text(place, centre)}" if centre is not None else ""))
    if p_end > 0.01:
        print(f"  (route ends here: p = {p_end:.3f})")
    print(f"most probable continuations (up to {horizon} cells):")
    for r in routes:
        tail = " [end]" if r.ended else ""
        print(f"  p = {r.p:.3f}: " + " ".join(f"{c},{rw}" for c, rw in r.cells) + tail)
    if point is not None:
        print("where it will be, step by step (point forecast: the medoid of sampled routes):")
        print("  " + " ".join(f"{int(c)},{int(rw)}" for c, rw in point))
    for i, (cells, ended) in enumerate(samples or [], 1):
        print(f"  sample {i}: " + " ".join(f"{c},{rw}" for c, rw in cells) + (" [end]" if ended else ""))
