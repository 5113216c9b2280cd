"""Pieces several commands share: the column flags for raw tracks, and reading DATA arguments."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.tracks import Track, collapse_repeats, tracks_from_frame


def add_column_args(parser: argparse.ArgumentParser) -> None:
    """The column flags of raw tracks, shared by every command that reads them (grid, fit, evaluate)."""
    cols = parser.add_argument_group("columns of raw tracks")
    cols.add_argument("--track-col", default="track", help='track id column (default: track; "" = the whole file is one track)')
    cols.add_argument("--time-col", default="time", help="time column: ISO-8601 text or numbers of seconds (default: time)")
    cols.add_argument("--lat-col", help="latitude column (degrees; default: lat unless --x-col/--y-col)")
    cols.add_argument("--lon-col", help="longitude column (degrees; default: lon unless --x-col/--y-col)")
    cols.add_argument("--x-col", help="planar x column (metres, pixels, ...)")
    cols.add_argument("--y-col", help="planar y column")


def add_gridding_args(parser: argparse.ArgumentParser) -> None:
    """How to grid raw tracks on the spot (fit); a gridded Parquet carries its own grid instead."""
    group = parser.add_argument_group("gridding raw tracks (ignored for a gridded Parquet)")
    group.add_argument("--cell-size", type=float, help="cell size in metres (planar: in the data's units)")
    group.add_argument("--step", type=float, help="resample every track at this many seconds")
    group.add_argument("--max-gap", type=float, help="split a track at gaps longer than this (seconds)")
    group.add_argument("--sep", help="CSV field separator (default: sniffed)")


def column_map(args: argparse.Namespace):
    """A ColumnMap from the flags added by `add_column_args`."""
    from gridcast.ingest.pipeline import ColumnMap

    track = args.track_col or None
    planar = args.x_col is not None or args.y_col is not None
    geo = args.lat_col is not None or args.lon_col is not None
    if planar and geo:
        raise InputError("give --lat-col/--lon-col or --x-col/--y-col, not both")
    if planar:
        if not (args.x_col and args.y_col):
            raise InputError("give both --x-col and --y-col")
        return ColumnMap(track=track, time=args.time_col, x=args.x_col, y=args.y_col)
    return ColumnMap(track=track, time=args.time_col, lat=args.lat_col or "lat", lon=args.lon_col or "lon")


def is_gridded(path: Path) -> bool:
    """True for a Parquet written by `gridcast grid` (it carries its grid in the file metadata)."""
    if path.suffix.lower() not in (".parquet", ".pq"):
        return False
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    return b"gridcast.grid" in meta


def load_tracks(path: str, args: argparse.Namespace, grid: Grid | None = None, collapse: bool = False,
                min_len: int = 2, like: dict | None = None, like_name: str = "") -> tuple[list[Track], Grid, dict]:
    """Tracks from DATA: a gridded Parquet as is, or raw points gridded on the spot.

    With `grid` (a model's own grid), raw points land on exactly that grid, and a gridded file must
    carry the same grid, so that cell ids mean what the model learned. `like` (a model's
    "preprocessing", named `like_name`) is followed where the flags say nothing (`follow_preparation`).
    Returns the tracks, the grid and how they were prepared (``{"max_gap", "collapse"}``), which a
    model keeps so that later input is prepared the same way.
    """
    from gridcast.ingest.pipeline import grid_tracks, read_gridded

    source = Path(path)
    if not source.exists():
        raise InputError(f"{source}: no such file")
    if is_gridded(source):
        gridded = read_gridded(source)
        if grid is not None and _grid_key(gridded.grid) != _grid_key(grid):
            raise InputError(f"{source} was gridded on {gridded.grid.to_dict()}, the model on {grid.to_dict()}; "
                             f"regrid it with `gridcast grid ... --like MODEL_DIR`")
        data_grid = gridded.grid
        gap = gridded.meta.get("max_gap")
        collapse = collapse or bool(gridded.meta.get("collapse"))
        if like:  # the file's own gaps are fixed; only collapsing can still follow the model
            collapse, _ = follow_preparation(like, like_name, collapse, gap, gap_given=True)
    else:
        cell_size = getattr(args, "cell_size", None)
        if grid is None and cell_size is None:
            raise InputError(f"{source} is raw points: give --cell-size (and --step) or grid it first with `gridcast grid`")
        gap = getattr(args, "max_gap", None)
        if like:
            collapse, gap = follow_preparation(like, like_name, collapse, gap, gap_given=gap is not None)
        gridded = grid_tracks(source, cell_size=cell_size if grid is None else grid.cell_size,
                              step=getattr(args, "step", None) if grid is None else grid.step,
                              columns=column_map(args), max_gap=gap, like=grid,
                              sep=getattr(args, "sep", None))
        data_grid = gridded.grid
        report = gridded.report
        if report.dropped:  # nothing is dropped silently: say what and why, on stderr (stdout may be JSON)
            reasons = ", ".join(f"{n} {reason}" for reason, n in report.dropped.items())
            print(f"note: {source}: {report.read} rows read, {report.kept} kept; dropped: {reasons} "
                  f"(`gridcast grid ... --strict` names each row)", file=sys.stderr)
    tracks = tracks_from_frame(gridded.frame)
    if collapse:
        tracks = [collapse_repeats(t) for t in tracks]
    kept = [t for t in tracks if len(t) >= min_len]
    if not kept:
        raise InputError(f"{source}: no track has at least {min_len} cells")
    if len(kept) < len(tracks):
        short = sorted(t.id for t in tracks if len(t) < min_len)
        print(f"note: {source}: {len(tracks) - len(kept)} track(s) with fewer than {min_len} cells left out: "
              f"{', '.join(short[:5])}{' ...' if len(short) > 5 else ''}", file=sys.stderr)
    return kept, grid if grid is not None else data_grid, {"max_gap": gap, "collapse": bool(collapse)}


def follow_preparation(prep: dict, source: str, collapse: bool, max_gap: float | None,
                       gap_given: bool) -> tuple[bool, float | None]:
    """Collapse and max gap for new input prepared like `source` (a model's config.json
    "preprocessing", or a gridded file's metadata): flags the user gave win, and a choice taken
    from the source is said on stderr, so nothing changes silently (evaluate, predict, grid --like)."""
    if not gap_given and prep.get("max_gap") is not None:
        max_gap = float(prep["max_gap"])
        print(f"note: splitting tracks at gaps > {max_gap:g} s, as {source} was", file=sys.stderr)
    if not collapse and prep.get("collapse"):
        collapse = True
        print(f"note: collapsing consecutive repeats, as {source} was", file=sys.stderr)
    return collapse, max_gap


def _grid_key(grid: Grid) -> tuple:
    return (grid.cell_size, grid.origin_x, grid.origin_y, grid.crs)


def run_single_threaded(body, args: argparse.Namespace) -> int:
    """Run `body(args)` with one torch thread: for the small matmuls of these models, extra threads
    only spin-wait on a shared machine. The caller's thread count is restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return body(args)
    finally:
        torch.set_num_threads(threads)


def print_json(obj) -> None:
    """JSON on stdout with NaN written as null (NaN is not JSON)."""
    print(json.dumps(_clean(obj)))


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def metrics_table(rows: dict[str, dict[str, float]], keys: list[str]) -> str:
    """A plain-text table: one row per predictor, one column per metric."""
    width = max(len(name) for name in rows) + 2
    lines = [" " * width + "".join(f"{k:>11}" for k in keys)]
    for name, metrics in rows.items():
        cells = []
        for k in keys:
            v = metrics.get(k)
            cells.append(f"{'-':>11}" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:>11.3f}")
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)
