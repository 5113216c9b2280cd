"""Raw tracks -> gridded sequences: read, validate, project, resample, grid; fast and safe.

The public API (re-exported by `gridcast.ingest`):

    >>> from gridcast.ingest import ColumnMap, grid_tracks, write_gridded, read_gridded
    >>> gt = grid_tracks("trips.csv", cell_size=100, step=30,  # doctest: +SKIP
    ...                  columns=ColumnMap(track="trip_id", time="timestamp", lat="latitude", lon="longitude"))
    >>> gt.report.to_json()  # doctest: +SKIP
    {'read': ..., 'kept': ..., 'dropped': {reason: rows}, 'tracks': ..., 'seconds': ..., 'points_per_s': ...}
    >>> write_gridded(gt, "trips.parquet")  # doctest: +SKIP

Every row read is either kept or counted under one reason in `report.dropped` (reasons are listed in
`gridcast.ingest.validate.REASONS`), so `read == kept + sum(dropped.values())` always holds.
`strict=True` instead raises `InputError` at the first bad row, naming the file, the row (and line)
and the reason.

The readers (CSV, gzip, byte ranges, Parquet, DataFrame) live in `gridcast.ingest.sources`, the
threaded validated read in `gridcast.ingest.reader`; this module orders, resamples, projects and
grids what they yield.

What is streamed and what is not (honestly): CSV and Parquet are read in record batches (about 1 MiB
of text each; a plain CSV is cut into one byte range per core, each streamed by its own reader in
its own thread) and every batch is validated and reduced to four compact columns (track code, time,
two coordinates: 28 bytes a point) before the next few are read, so raw text and unused columns
never sit in memory. The compact columns of *all* points are then held at once, because a track's
points may be spread over the whole file and must be sorted by time before resampling: a 100 M-point
file needs ~3 GB, not the file's size. A fully out-of-core path (external sort) is not implemented.

Speed: a CSV is first parsed with typed columns (pyarrow parses the numbers and times); if any value
will not parse, the read restarts with raw columns judged batch by batch (and, for undecodable
bytes, once more with lenient UTF-8), so a dirty file costs at most two extra reads. Only the raw
points that resampled points are interpolated from are projected.
"""
from __future__ import annotations

import os
import time as _time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.ingest import projection, resample, sources, validate
from gridcast.ingest.columns import ColumnMap
from gridcast.ingest.gridded import GriddedTracks
from gridcast.ingest.reader import Validated, read_validated
from gridcast.ingest.report import IngestReport
from gridcast.tracks import collapse_mask


def _check_args(cell_size, step, max_gap, min_points, like) -> None:
    def positive(name: str, v) -> None:
        if v is not None and not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
            raise InputError(f"{name} must be a positive number, got {v!r}")

    if like is None and cell_size is None:
        raise InputError("give a cell size (or a grid to reuse with like=/--like)")
    positive("cell size", cell_size)
    positive("step", step)
    positive("max gap", max_gap)
    if not (isinstance(min_points, (int, np.integer)) and min_points >= 1):
        raise InputError(f"min_points must be an integer >= 1, got {min_points!r}")


def _resolve_grid_spec(like: Grid | None, cell_size, step, crs, geographic: bool):
    """(cell_size, crs) to use; a reused grid must agree with every explicit setting."""
    if crs is not None:
        crs = projection.check_crs(crs)
    if like is None:
        return float(cell_size), crs
    if cell_size is not None and not np.isclose(float(cell_size), like.cell_size, rtol=1e-12, atol=0):
        raise InputError(f"cell size {cell_size} differs from the reused grid's {like.cell_size}")
    if step != like.step:
        raise InputError(f"step {step} differs from the reused grid's step {like.step}; pass step={like.step}")
    if crs is not None and crs != like.crs:
        raise InputError(f"CRS {crs} differs from the reused grid's CRS {like.crs}")
    if geographic and like.crs is None:
        raise InputError("the reused grid is planar (it has no CRS), so lat/lon input cannot be placed on it")
    return like.cell_size, like.crs


def _open_checked(source, columns: ColumnMap, cell_size, step, max_gap, min_points, like: Grid | None, crs, sep,
                  progress: bool):
    """What every gridding path does first: check the arguments, resolve the grid's cell size and CRS, open
    the input. Returns (source, column names, geographic, cell_size, crs)."""
    columns.check()
    _check_args(cell_size, step, max_gap, min_points, like)
    geographic = columns.geographic
    cell_size, crs = _resolve_grid_spec(like, cell_size, step, crs, geographic)
    want = columns.names()
    return sources.open_source(source, want, sep, progress, geographic), want, geographic, cell_size, crs


def grid_tracks(
    source: str | os.PathLike | pd.DataFrame,
    *,
    cell_size: float | None,
    step: float | None,
    columns: ColumnMap,
    max_gap: float | None = None,
    like: Grid | None = None,
    crs: str | None = None,
    strict: bool = False,
    collapse: bool = False,
    min_points: int = 2,
    sep: str | None = None,
    progress: bool = False,
    memory_limit: float | None = None,
) -> GriddedTracks:
    """Read raw points and return tracks resampled at `step` seconds on a square grid.

    Args:
        source: CSV (optionally gzip), Parquet path, or a DataFrame.
        cell_size: cell side in metres (lat/lon) or input units (x/y); optional with `like`.
        step: resampling step in seconds; None keeps the points as they are.
        columns: the column mapping (lat/lon or x/y).
        max_gap: split a track where consecutive points are more than this many seconds apart;
            parts are named "<id>#1", "<id>#2", ...
        like: reuse this grid exactly (origin, cell size, CRS, step).
        crs: projected CRS for lat/lon input (default: the UTM zone of the median position), or
            the CRS planar x/y are in.
        strict: raise InputError at the first bad row instead of dropping it.
        collapse: keep only the first point of each run of equal cells in a track.
        min_points: drop track parts with fewer output points than this (reason "short_track").
        sep: CSV delimiter (default: sniffed from the header among , TAB ; |).
        progress: show a progress bar while reading a big file.
        memory_limit: refuse (InputError, before allocating) a resampling whose estimated memory
            exceeds this many bytes; None: `gridcast.ingest.memory.DEFAULT_MEMORY_LIMIT` (2 GB).

    Raises:
        InputError: unusable arguments or files, no usable tracks, or (strict) the first bad row.
    """
    t0 = _time.perf_counter()
    src, want, geographic, cell_size, crs = _open_checked(source, columns, cell_size, step, max_gap, min_points,
                                                          like, crs, sep, progress)
    data = read_validated(src, want, geographic, strict)
    report = IngestReport(read=data.read)
    dropped = dict(data.counts)
    if len(data.t) == 0:
        _nothing_left(src.name, report, dropped)
    msgs = report.messages
    msgs += _reading_notes(data, want["time"])
    if not geographic and (hint := _looks_geographic(data.a, data.b)):
        msgs.append(hint)

    # order, duplicates, gaps, resampling
    ordered = resample.order_points(data.code, data.t)
    dropped["duplicate_time"] = len(ordered.duplicates)
    if strict and len(ordered.duplicates):
        k = int(ordered.duplicates.min())  # the first duplicate in file order
        place, _ = src.where(int(data.index[k]))
        track = validate.printable(data.names[data.code[k]])
        raise InputError(f"{place}: duplicate time {data.t[k]:.10g} in track '{track}' (an earlier row has the same time)")
    if len(ordered.unsorted_tracks):
        first = validate.printable(data.names[int(ordered.unsorted_tracks[0])])
        msgs.append(f"sorted {len(ordered.unsorted_tracks)} track(s) whose times were out of order (e.g. '{first}')")
    o = ordered.order
    code, t = (data.code, data.t) if o is None else (data.code[o], data.t[o])
    parts = resample.split_parts(code, t, max_gap)
    msgs += _gap_notes(parts, code, t, step, max_gap)
    rs = resample.resample(t, parts, step, len(t), memory_limit)
    if len(rs.part) == 0:  # no resample tick falls inside any track: every track is short
        dropped["short_track"] = len(t)
        if strict:
            name = validate.printable(_part_names(data.names, parts, np.array([0]))[0].as_py())
            raise InputError(f"{src.name} track '{name}': 0 point(s) after cleaning and resampling, "
                             f"fewer than min_points={min_points}")
        _nothing_left(src.name, report, dropped)

    # positions, grid, cells
    x, y, crs = _positions(data, o, rs, geographic, crs, msgs)
    grid = _make_grid(like, geographic, x, y, cell_size, crs, step)
    col, row = grid.to_cells(x, y)
    part, tout = rs.part, rs.time
    if collapse:
        keep = collapse_mask(col, row, part)
        part, tout, x, y, col, row = part[keep], tout[keep], x[keep], y[keep], col[keep], row[keep]

    # short parts
    out_count = np.bincount(part, minlength=len(parts.start))
    good = out_count >= min_points
    dropped["short_track"] = int((parts.stop - parts.start)[~good].sum())
    if strict and not good.all():
        p = int(np.argmax(~good))
        name = validate.printable(_part_names(data.names, parts, np.array([p]))[0].as_py())
        raise InputError(
            f"{src.name} track '{name}': {int(out_count[p])} point(s) after cleaning"
            f"{' and resampling' if step else ''}, fewer than min_points={min_points}"
        )
    keep = good[part]
    if not keep.all():
        part, tout, x, y, col, row = part[keep], tout[keep], x[keep], y[keep], col[keep], row[keep]
    report.dropped = {r: int(dropped[r]) for r in validate.REASONS if dropped.get(r)}
    report.kept = report.read - sum(report.dropped.values())
    report.tracks = int(good.sum())
    if report.kept <= 0 or len(part) == 0:
        _nothing_left(src.name, report, dropped)

    frame = _frame(data.names, parts, good, part, tout, col, row, x, y)
    report.timed(_time.perf_counter() - t0)
    meta = {
        "source": src.name, "columns": want, "time_kind": data.time_kind, "max_gap": max_gap,
        "collapse": bool(collapse), "min_points": int(min_points),
    }
    return GriddedTracks(frame=frame, grid=grid, report=report, meta=meta)


def _reading_notes(data: Validated, time_col: str) -> list[str]:
    notes = [
        f"time column '{time_col}' read as ISO-8601 (seconds since 1970-01-01 UTC; times without an offset taken as UTC)"
        if data.time_kind == "iso" else f"time column '{time_col}' read as numbers of seconds"
    ]
    if data.lenient:
        notes.append("the file is not valid UTF-8 throughout; undecodable bytes were read as \\xNN escapes")
    if data.non_utf8:
        notes.append(f"{data.non_utf8} track id(s) were not valid UTF-8; their bytes are kept as \\xNN escapes")
    return notes


#: x/y that all lie within +-180/+-90 and span less than this are probably lon/lat degrees.
GEOGRAPHIC_SPAN = 5.0


def _looks_geographic(x: np.ndarray, y: np.ndarray) -> str | None:
    """A warning when planar x/y look like lon/lat degrees: fractional values within +-180/+-90 that
    span under a few degrees (a cell size meant in metres would then be in degrees)."""
    if len(x) < 2 or np.all(x == np.round(x)) and np.all(y == np.round(y)):  # integer coordinates: pixels, cells
        return None
    if np.abs(x).max() > 180 or np.abs(y).max() > 90:
        return None
    if np.ptp(x) >= GEOGRAPHIC_SPAN or np.ptp(y) >= GEOGRAPHIC_SPAN:
        return None
    return (f"warning: the x/y values lie within +-180/+-90 and span under {GEOGRAPHIC_SPAN:g} units: they look like "
            "longitude/latitude degrees; if they are, pass --lon-col/--lat-col so they are projected to metres "
            "(as x/y the cell size is in degrees)")


def _gap_notes(parts: resample.Parts, code: np.ndarray, t: np.ndarray, step: float | None, max_gap: float | None) -> list[str]:
    notes = []
    per_track = parts.count[parts.ordinal == 1]
    if (per_track > 1).any():
        split = per_track[per_track > 1]
        notes.append(f"split {len(split)} track(s) at gaps > {max_gap:g} s into {int(split.sum())} parts")
    if step is not None and max_gap is None and len(t) > 1:
        inner = np.diff(t)[code[1:] == code[:-1]]
        if len(inner) and inner.max() > 100 * step:
            notes.append(f"interpolated across gaps of up to {inner.max():.4g} s; pass max_gap (--max-gap) to split tracks there")
    return notes


def _positions(
    data: Validated, o: np.ndarray | None, rs: resample.Resampled, geographic: bool, crs: str | None, msgs: list[str],
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Output x, y: projects only the raw points that resampled points are interpolated from."""
    need = np.zeros(len(data.t), bool)
    need[rs.left] = True
    need[rs.right] = True
    pts = np.flatnonzero(need)
    sel = pts if o is None else o[pts]
    a, b = data.a[sel], data.b[sel]
    if geographic:
        if crs is None:
            crs = projection.local_crs(b, a)
            msgs.append(f"projected lat/lon to {crs} (the UTM zone of the median position)")
        px, py = projection.project(b, a, crs)
    else:
        px, py = a, b
    li, ri, w = np.searchsorted(pts, rs.left), np.searchsorted(pts, rs.right), rs.weight
    return px[li] + w * (px[ri] - px[li]), py[li] + w * (py[ri] - py[li]), crs


def _make_grid(like: Grid | None, geographic: bool, x: np.ndarray, y: np.ndarray, cell_size: float,
               crs: str | None, step: float | None) -> Grid:
    step = None if step is None else float(step)
    if like is not None:
        grid = like
    elif geographic:
        grid = Grid.covering(x, y, cell_size, crs=crs, step=step)
    else:  # planar: origin (0, 0), so integer coordinates at cell size 1 keep their numbers
        grid = Grid(cell_size=float(cell_size), crs=crs, step=step)
    if len(x):
        reach = max(np.abs(x - grid.origin_x).max(), np.abs(y - grid.origin_y).max()) / grid.cell_size
        if reach > 2.0**52:
            raise InputError(f"coordinates reach {reach:.3g} cells from the grid origin; use a larger cell size")
    return grid


def _frame(names: list[str], parts: resample.Parts, good: np.ndarray, part: np.ndarray, tout: np.ndarray,
           col: np.ndarray, row: np.ndarray, x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """The contract frame: track, step, time, col, row, x, y (track ids built in Arrow, not per row)."""
    used = np.flatnonzero(good)
    renum = np.full(len(good), -1, np.int64)
    renum[used] = np.arange(len(used))
    track = pc.take(_part_names(names, parts, used), pa.array(renum[part]))
    table = pa.table({
        "track": track, "step": resample.steps_within(part), "time": tout,
        "col": col, "row": row, "x": x, "y": y,
    })
    return table.to_pandas()


class NothingLeft(InputError):
    """No usable track is left; `report` still counts every row (a bucket of a dataset may be empty)."""

    def __init__(self, message: str, report: IngestReport):
        super().__init__(message)
        self.report = report


def _nothing_left(name: str, report: IngestReport, dropped: dict[str, int]) -> None:
    shown = ", ".join(f"{k} {v}" for k, v in dropped.items() if v)
    report.dropped = {r: int(dropped[r]) for r in validate.REASONS if dropped.get(r)}
    rest = report.read - sum(report.dropped.values())
    if rest > 0:  # rows that survived cleaning but made no track are short tracks
        report.dropped["short_track"] = report.dropped.get("short_track", 0) + rest
    report.kept = 0
    report.tracks = 0
    raise NothingLeft(f"{name}: no usable tracks left after cleaning (read {report.read} rows; dropped: {shown})", report)


def _part_names(names: list[str], parts: resample.Parts, which: np.ndarray) -> pa.Array:
    """Track ids of the given parts: the raw id, or '<id>#k' when the track was split."""
    base = pc.take(pa.array(names, pa.string()), pa.array(parts.track[which].astype(np.int64)))
    split = parts.count[which] > 1
    if not split.any():
        return base
    suffix = pc.binary_join_element_wise(base, pc.cast(pa.array(parts.ordinal[which]), pa.string()), "#")
    return pc.if_else(pa.array(split), suffix, base)
