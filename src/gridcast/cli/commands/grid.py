"""`gridcast grid`: raw tracks (CSV / gzip CSV / Parquet / GeoLife .plt / GPX, one file, a directory or a
glob) -> gridded sequences (Parquet).

A thin shell over `gridcast.ingest.grid_tracks`: flags become a ColumnMap, `--like` is followed with
`gridcast.ingest.resolve_like`, the report is printed as a table or as the `--json` contract shape,
and every user mistake surfaces as an InputError (one line, exit status 2, printed by the CLI's main).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from gridcast.cli.common import CELL_SIZE, add_column_args, add_memory_limit_arg, check_flags, column_map, print_note
from gridcast.errors import InputError
from gridcast.grid import MAX_STEP

if TYPE_CHECKING:
    from gridcast.ingest.report import IngestReport


def _seconds(text: str) -> float | None:
    """A positive number of seconds; 0 or 'none' means "keep the points as they are"."""
    if text.strip().lower() in ("0", "none", "off"):
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < v <= MAX_STEP:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds (at most {MAX_STEP:g}), got {text!r}")
    return v


def _sep(text: str) -> str:
    named = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
    return named.get(text.lower(), text)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "grid",
        help="raw tracks (CSV/Parquet) -> gridded sequences at a time step (Parquet)",
        description=(
            "Read raw points, drop and count bad rows (or stop at the first with --strict), project "
            "lat/lon to metres, resample each track at --step seconds, split at gaps, and write "
            "integer grid cells with the grid in the file's metadata."
        ),
    )
    p.add_argument("input", help="points: a CSV (optionally .gz), Parquet, GeoLife .plt or GPX file, or a directory "
                                 "or quoted glob of such files (a track may span several files)")
    p.add_argument("--out", required=True, help="output Parquet file, or a directory (ending in / or an empty "
                                                "existing one): a dataset partitioned by track hash, gridded out of core")
    p.add_argument("--cell-size", type=float, help="cell side in metres (lat/lon) or input units (x/y); optional with --like")
    p.add_argument("--step", type=_seconds, default=argparse.SUPPRESS,
                   help="resampling step in seconds (0 = keep points as they are); defaults to the --like grid's step")
    add_column_args(p)
    p.add_argument("--max-gap", type=_seconds, default=argparse.SUPPRESS,
                   help="split a track where points are more than this many seconds apart (0 = never); "
                        "defaults to the --like source's")
    p.add_argument("--like", help="reuse the grid of a gridded Parquet file or a model directory exactly, and its "
                                  "--max-gap and --collapse unless given")
    p.add_argument("--strict", action="store_true", help="stop (exit 2) at the first bad row instead of dropping it")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--crs", help="projected CRS for lat/lon (default: UTM zone of the median position), or the CRS of x/y")
    p.add_argument("--sep", type=_sep, help="CSV delimiter (default: sniffed among , TAB ; |)")
    p.add_argument("--collapse", action="store_true", help="keep only the first point of each run of equal cells")
    p.add_argument("--min-points", type=int, default=2, help="drop track parts with fewer points than this (default: 2)")
    add_memory_limit_arg(p)  # checked against the estimate before resampling allocates anything
    p.add_argument("--engine", choices=("local", "dask"), default="local",
                   help="who grids the buckets of --out DIR/: this process (local) or Dask tasks (dask)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="with --engine dask: a Dask scheduler (tcp://host:8786); default: a LocalCluster on 127.0.0.1")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridcast.ingest.gridded_file import write_gridded
    from gridcast.ingest.outputs import refuse_input_as_output
    from gridcast.ingest.pipeline import grid_tracks
    from gridcast.ingest.prepare import resolve_like

    t0 = time.perf_counter()
    refuse_input_as_output(args.out, [args.input, args.like], "--out", folders=[args.like, args.input])
    source = resolve_like(args.like) if args.like else None
    like = None if source is None else source.grid
    if hasattr(args, "step"):
        step = args.step
    elif like is not None:
        step = like.step
    else:
        raise InputError("--step is required (seconds between resampled points; 0 keeps the points as they are)")
    check_flags(args, {"cell_size": CELL_SIZE})  # named as the flag, before any reading
    if args.min_points < 1:
        raise InputError(f"--min-points must be at least 1, got {args.min_points}")
    collapse, max_gap = args.collapse, getattr(args, "max_gap", None)
    if source is not None:  # prepared like the source, not only gridded like it
        collapse, max_gap = source.follow(collapse, max_gap, gap_given=hasattr(args, "max_gap"), log=print_note)
    if _is_dataset_out(args.out):
        return _run_dataset(args, step, like, collapse, max_gap, t0)
    if args.engine != "local" or args.scheduler:
        raise InputError("--engine dask and --scheduler write a dataset: give --out a directory (ending in /)")
    gt = grid_tracks(
        args.input, cell_size=args.cell_size, step=step, columns=column_map(args), max_gap=max_gap,
        like=like, crs=args.crs, strict=args.strict, collapse=collapse, min_points=args.min_points,
        sep=args.sep, progress=(not args.json) and sys.stderr.isatty(), memory_limit=args.memory_limit,
    )
    write_gridded(gt, args.out)
    gt.report.timed(time.perf_counter() - t0)
    if args.json:
        print(json.dumps(gt.report.to_json()))
    else:
        print(_table(gt.report, gt.grid, args.input, args.out))
    return 0


def _is_dataset_out(out: str) -> bool:
    import os

    return out.endswith(("/", "\\")) or os.path.isdir(out)


def _run_dataset(args: argparse.Namespace, step, like, collapse: bool, max_gap, t0: float) -> int:
    """--out DIR/: out of core, bucket by bucket, in this process or on Dask."""
    from gridcast.ingest.out_of_core import grid_to_dataset

    if args.scheduler and args.engine != "dask":
        raise InputError("--scheduler needs --engine dask")
    result = grid_to_dataset(
        args.input, args.out, cell_size=args.cell_size, step=step, columns=column_map(args), max_gap=max_gap,
        like=like, crs=args.crs, strict=args.strict, collapse=collapse, min_points=args.min_points, sep=args.sep,
        memory_limit=args.memory_limit, engine=args.engine, scheduler=args.scheduler,
    )
    result.report.timed(time.perf_counter() - t0)
    if args.json:
        print(json.dumps(result.report.to_json()))
    else:
        print(_table(result.report, result.grid, args.input, result.out + "/"))
    return 0


def _table(report: IngestReport, grid, src: str, out: str) -> str:
    rows = [
        ("read", f"{report.read:,}"),
        ("kept", f"{report.kept:,}"),
        ("dropped", f"{sum(report.dropped.values()):,}"),
    ]
    rows += [(f"  {reason}", f"{n:,}") for reason, n in report.dropped.items()]
    rows += [
        ("tracks", f"{report.tracks:,}"),
        ("seconds", f"{report.seconds:.3f}"),
        ("points/s", f"{report.points_per_s:,.0f}"),
    ]
    unit = "m" if grid.crs else "units"
    step = "as recorded" if grid.step is None else f"{grid.step:g} s"
    rows.append(("grid", f"{grid.cell_size:g} {unit} cells, origin ({grid.origin_x:.10g}, {grid.origin_y:.10g}), "
                         f"{grid.crs or 'planar'}, step {step}"))
    width = max(len(k) for k, _ in rows)
    lines = [f"gridcast grid: {src} -> {out}"]
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    lines += [f"  note: {m}" for m in report.messages]
    return "\n".join(lines)
