"""A prefix given as raw points (``--points "lat,lon lat,lon ..."``), placed on a model's grid.

Why here and not in the CLI: a user who has positions, not cells, must get them on *the model's*
grid exactly as training data was (projected to its CRS, resampled at its step, split and
collapsed like it), or the cell ids mean nothing. Points with times go through the very pipeline
a DATA file does (`grid_tracks` on a one-track frame); points without times are taken as one
point per model step (or per cell change, for a collapsed model) and only projected and gridded.

    >>> from gridcast.grid import Grid
    >>> grid = Grid(cell_size=1.0)
    >>> points = parse_points("14,3 13.2,3.1 12,3", geographic=False)
    >>> points_track(points, grid).cells.tolist()
    [[14, 3], [13, 3], [12, 3]]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import numpy as np

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.ingest.validate import MAX_COORD, MAX_TIME
from gridcast.tracks import Track, collapse_repeats

#: The id of the one track a ``--points`` prefix becomes.
POINTS_TRACK = "points"


@dataclass(frozen=True)
class RawPoints:
    """Validated raw points: `first`, `second` are (lat, lon) for geographic input, else (x, y);
    `times` are seconds (epoch seconds for ISO-8601 text), or None when no point has a time."""

    first: np.ndarray
    second: np.ndarray
    times: np.ndarray | None
    geographic: bool

    def __len__(self) -> int:
        return len(self.first)


def parse_points(text: str, geographic: bool, flag: str = "--points") -> RawPoints:
    """``"lat,lon[,time] ..."`` (geographic) or ``"x,y[,time] ..."`` -> `RawPoints`.

    A time is ISO-8601 without spaces (``2026-01-26T15:57:02Z``; no offset means UTC) or a number
    of seconds; either every point has one or none has, and they must increase.

    Raises:
        InputError: one line naming the 1-based point and the field (a wrong count of numbers, a
            value that is not a finite number, lat/lon out of range, a bad or non-increasing time).
    """
    names = ("lat", "lon") if geographic else ("x", "y")
    items = text.replace(";", " ").split()
    if not items:
        raise InputError(f"{flag} is empty; give points as \"{names[0]},{names[1]} {names[0]},{names[1]} ...\"")
    first, second, times = [], [], []
    for i, item in enumerate(items, 1):
        fields = item.split(",")
        if len(fields) not in (2, 3):
            raise InputError(f"{flag} point {i} {item!r}: expected \"{names[0]},{names[1]}\" or "
                             f"\"{names[0]},{names[1]},time\", got {len(fields)} field(s)")
        a, b = (_coordinate(fields[k], names[k], i, flag) for k in (0, 1))
        if geographic and abs(a) > 90:
            raise InputError(f"{flag} point {i}: lat {a:g} outside [-90, 90] (points are lat,lon)")
        if geographic and abs(b) > 180:
            raise InputError(f"{flag} point {i}: lon {b:g} outside [-180, 180]")
        first.append(a)
        second.append(b)
        times.append(_time(fields[2], i, flag) if len(fields) == 3 else None)
    timed = [t is not None for t in times]
    if any(timed) and not all(timed):
        i = timed.index(not timed[0]) + 1
        raise InputError(f"{flag} point {i}: give a time for every point or for none "
                         f"(point 1 {'has' if timed[0] else 'has none'})")
    stamps = np.asarray(times, dtype=np.float64) if all(timed) else None
    if stamps is not None and len(stamps) > 1 and not (np.diff(stamps) > 0).all():
        i = int(np.argmax(np.diff(stamps) <= 0)) + 2
        raise InputError(f"{flag} point {i}: time is not after point {i - 1}'s (times must increase)")
    return RawPoints(np.asarray(first), np.asarray(second), stamps, geographic)


def positions(points: RawPoints, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """The points in grid coordinates (metres in the grid's CRS for lat/lon)."""
    if points.geographic:
        if grid.crs is None:
            raise InputError("the model's grid is planar (no CRS): give --points as x,y, not lat,lon")
        from gridcast.ingest.projection import project

        return project(points.second, points.first, grid.crs)
    return points.first.astype(np.float64), points.second.astype(np.float64)


def points_track(points: RawPoints, grid: Grid, *, max_gap: float | None = None, collapse: bool = False,
                 log: Callable[[str], None] | None = None) -> Track:
    """The points as one track on `grid`, prepared like a model's training tracks.

    With times: resampled at the grid's step and split at gaps over `max_gap` by the ingest
    pipeline (the last part is the prefix, said in a note); without: one cell per point. Then
    consecutive repeats are dropped if `collapse`.
    """
    if points.times is None:
        col, row = grid.to_cells(*positions(points, grid))
        track = Track(POINTS_TRACK, np.column_stack([col, row]))
        return collapse_repeats(track) if collapse else track
    import pandas as pd

    from gridcast.ingest.columns import ColumnMap
    from gridcast.ingest.pipeline import grid_tracks

    a, b = ("lat", "lon") if points.geographic else ("x", "y")
    frame = pd.DataFrame({"track": POINTS_TRACK, "time": points.times, a: points.first, b: points.second})
    columns = ColumnMap(time="time", **{a: a, b: b})
    gridded = grid_tracks(frame, cell_size=None, step=grid.step, columns=columns, max_gap=max_gap, like=grid,
                          collapse=collapse, min_points=1, strict=True)
    tracks = gridded.tracks(min_len=1)
    if len(tracks) > 1 and log is not None:
        log(f"the points were split at gaps > {max_gap:g} s into {len(tracks)} parts; the last one "
            f"({len(tracks[-1])} cells) is the prefix")
    return tracks[-1]


def _coordinate(text: str, name: str, i: int, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{flag} point {i}: {name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{flag} point {i}: {name} {text!r} is not finite")
    if abs(value) > MAX_COORD:
        raise InputError(f"{flag} point {i}: {name} {value:g} is too large to place on a grid")
    return value


def _time(text: str, i: int, flag: str) -> float:
    """Seconds: a number as it is, ISO-8601 text as seconds since 1970 UTC (no offset: UTC)."""
    try:
        value = float(text)
    except ValueError:
        try:
            stamp = datetime.fromisoformat(text)
        except ValueError:
            raise InputError(f"{flag} point {i}: time {text!r} is neither ISO-8601 "
                             f"(e.g. 2026-01-26T15:57:02Z) nor a number of seconds") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        value = stamp.timestamp()
    if not math.isfinite(value) or abs(value) > MAX_TIME:
        raise InputError(f"{flag} point {i}: time {text!r} is not a usable number of seconds")
    return value
