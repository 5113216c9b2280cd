"""`gridcast evaluate MODEL_DIR DATA [--json]`: the model beside its baselines on held-out tracks."""
from __future__ import annotations

import argparse

from gridcast.cli.common import (
    add_column_args,
    check_flags,
    check_plot_path,
    float_in,
    metrics_table,
    prepare_data,
    print_json,
)

KEYS = ["acc@1", "acc@5", "mrr", "ade_cells", "fde_cells", "ade", "fde"]
AHEAD_KEYS = ["acc@1+1", "acc@1+5", "acc@1+10"]
VERDICT_KEYS = ["acc@1", "acc@5", "mrr", "ade", "fde"]  # ade_cells / fde_cells where the grid knows no metres
AHEAD_VERDICT_KEYS = ["acc@1+1", "acc@1+5", "acc@1+10"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="next-cell and route metrics of a model beside baselines",
                       description="Score a model on held-out tracks beside stay, constant velocity and Markov "
                                   "baselines (with dwell, for a fixed step) refitted on every track the model saw "
                                   "before the test period (its training and validation tracks, stored in the model "
                                   "directory), the same for every model kind; one verdict line per metric. Raw "
                                   "input is gridded on the model's grid.")
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("data", metavar="DATA", help="gridded Parquet or raw points (with column flags)")
    p.add_argument("--collapse", action="store_true",
                   help="drop consecutive repeats before scoring (default: as the model's training tracks)")
    p.add_argument("--cut", type=float, default=0.5, help="share of each track observed before the route is continued")
    p.add_argument("--json", action="store_true",
                   help='print {"model": {metric: value}, "baselines": {name: {metric: value}}, "n": int}')
    p.add_argument("--plot", metavar="PNG", help="also draw the longest track: observed part, truth and the 3 most "
                                                  "probable continuations (an immediate end of route is marked [end])")
    p.add_argument("--plot-calibration", metavar="PNG",
                   help="also draw the reliability diagram of the model's top next cell (and before calibration)")
    add_column_args(p)
    p.add_argument("--sep", help="CSV field separator (default: sniffed)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridcast.errors import InputError

    check_flags(args, {"cut": float_in(0, 1, low_open=True, high_open=True)})
    check_plot_path("plot", args.plot)
    check_plot_path("plot-calibration", args.plot_calibration)
    from gridcast.nextcell.baselines import default_baselines
    from gridcast.nextcell.evaluation import evaluate
    from gridcast.nextcell.forecaster import Forecaster

    if not 0.0 < args.cut < 1.0:
        raise InputError(f"--cut must be in (0, 1), got {args.cut}")
    from gridcast.ingest.outputs import refuse_input_as_output
    for flag, target in (("--plot", args.plot), ("--plot-calibration", args.plot_calibration)):
        if target:  # before any work: a figure must never replace the data or a model file
            refuse_input_as_output(target, [args.data], flag, folders=[args.model])
    model = Forecaster.load(args.model)
    ready = prepare_data(args.data, args, like=model, like_name=args.model, collapse=args.collapse)
    tracks, grid = ready.tracks, ready.grid
    result = evaluate(model, default_baselines(), tracks, grid=grid, cut=args.cut)  # fitted on model.train_tracks_
    if args.plot:
        _plot_longest(model, tracks, args.cut, args.plot)
    if args.plot_calibration:
        _plot_calibration(model, tracks, args.plot_calibration)
    if args.json:
        print_json(result)
        return 0
    keys = [k for k in KEYS if k in result["model"]]
    label = f"model ({model.config.cell}/{model.config.target})"
    rows = {label: result["model"], **result["baselines"]}
    print(f"{len(tracks)} tracks, {result['n']} next-cell steps; baselines fitted on the model's "
          f"{len(model.train_tracks_)} training + validation tracks")
    print(metrics_table(rows, keys))
    ahead = [k for k in AHEAD_KEYS if any(k in m for m in rows.values())]
    if ahead:
        print("\nthe cell k steps ahead (acc@1+k):")
        print(metrics_table(rows, ahead))
    print()
    print(_route_note(result["model"]))
    for line in verdict_lines(result, f"{model.config.cell}/{model.config.target}"):
        print(line)
    if "ece_floor" in result["model"]:
        print(_ece_note(result["model"], result["n"]))
    return 0


def _ece_note(model: dict, steps: int) -> str:
    """The model's ECE beside the ECE a perfectly calibrated model would show on these steps."""
    return (f"ece {model['ece']:.3f}: a perfectly calibrated model with these confidences would show "
            f"{model['ece_floor']:.3f} on these {steps} steps by chance alone (ece_floor)")


def _route_note(model: dict) -> str:
    """What the model's route columns are, with its other route answers beside them."""
    from gridcast.nextcell.sampling import DEFAULT_SAMPLES

    unit, suffix = ("m", "") if "ade" in model else ("cells", "_cells")
    best = f"_best_of_{DEFAULT_SAMPLES}"
    return (f"model routes: ade/fde are its point forecast's (per step the medoid of {DEFAULT_SAMPLES} sampled routes); "
            f"its greedy rollout: {model.get(f'ade{suffix}_greedy', float('nan')):.1f} / "
            f"{model.get(f'fde{suffix}_greedy', float('nan')):.1f} {unit}; the nearest of the {DEFAULT_SAMPLES} samples "
            f"(best of {DEFAULT_SAMPLES}): {model.get(f'ade{suffix}{best}', float('nan')):.1f} / "
            f"{model.get(f'fde{suffix}{best}', float('nan')):.1f} {unit}")


def verdict_lines(result: dict, label: str) -> list[str]:
    """One verdict per metric the model and at least one baseline both measured."""
    from gridcast.nextcell.evaluation import verdict

    metric_grid = "ade" in result["model"]
    keys = [k if metric_grid or not k.startswith(("ade", "fde")) else f"{k}_cells" for k in VERDICT_KEYS]
    table = {"models": {label: result["model"]}, "baselines": result["baselines"]}
    lines = []
    for key in keys + AHEAD_VERDICT_KEYS + ["nll", "ece"]:  # the model's own scores, where a baseline measures them too
        if key in result["model"]:
            try:
                lines.append(verdict(table, key))
            except KeyError:  # no baseline measured it
                continue
    return lines


def _plot_longest(model, tracks, cut: float, path: str) -> None:
    """The longest track, cut where the route metrics cut it, with the model's top-3 beams."""
    import sys

    from gridcast.nextcell.plots import plot_route_prediction

    track = max(tracks, key=len)
    n_obs = max(1, int(len(track) * cut))
    routes = model.beam(track.cells[:n_obs], max(1, len(track) - n_obs), width=3)
    size = f"{model.grid.cell_size:g} {'m ' if model.grid.metric else ''}cells" if model.grid is not None else "cells"
    written = plot_route_prediction(path, track.cells[:n_obs], track.cells[n_obs:], routes,
                                    background=model.train_tracks_, grid=model.grid,
                                    title=f"track {track.id}: {model.config.cell.upper()} continuation ({size})")
    print(f"plot: {written}", file=sys.stderr)


def _plot_calibration(model, tracks, path: str) -> None:
    """The reliability diagram of the model as calibrated and, where its temperature is not 1, as
    the network gave its probabilities."""
    import sys

    import numpy as np

    from gridcast.nextcell.calibration import NO_CALIBRATION, plot_reliability, top1_along

    def along(predictor) -> tuple:
        parts = [top1_along(predictor, t.cells, t.times) for t in tracks if len(t) >= 2]
        return np.concatenate([c for c, _ in parts]), np.concatenate([k for _, k in parts])

    label = f"{model.config.cell}/{model.config.target}"
    series = {f"{label}, T = {model.temperature:.2f}": along(model)}
    if model.temperature != 1.0:
        fitted, model.calibration_ = model.calibration_, NO_CALIBRATION
        series[f"{label} before calibration"] = along(model)
        model.calibration_ = fitted
    written = plot_reliability(path, series, title=f"{len(tracks)} tracks: is the top next cell as likely as said?")
    print(f"calibration plot: {written}", file=sys.stderr)
