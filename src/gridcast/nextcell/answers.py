"""Answers in the user's coordinates: cells as lon/lat (or planar x/y) and the time of every step ahead.

A forecaster thinks in cells; a user asked in GPS positions and clock times. `Place` turns a
model's cells back into the coordinates its input came in (the cell centre, through the grid and,
for a grid projected from lat/lon, the inverse projection), and route steps into times at the
grid's step. `answer_json` is the **contract** document of ``gridcast predict --json``: the keys
that existed before (`cell`, `p`, `cells`, `ended`, `p_end`) never change; `Place` only adds.

    >>> from gridcast.grid import Grid
    >>> place = Place(Grid(cell_size=2.0, step=10.0), timed=True)
    >>> place.coords([(1, 0), (2, 1)])
    [[2.0, 0.0], [4.0, 2.0]]
    >>> place.times_after(100.0, 2)
    [110.0, 120.0]
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

import numpy as np

from gridcast.grid import Grid

#: Decimal places of lon/lat in answers: 1e-7 degrees is about 1 cm, far below any cell.
DEGREE_DIGITS = 7


@dataclass(frozen=True)
class Place:
    """Where a model's answers are written.

    Attributes:
        grid: the model's grid. One with a CRS answers in WGS84 lon/lat (its cells came from
            lat/lon, or from x/y in that CRS, which lon/lat then locate on a map); a planar grid
            (no CRS) answers in its own x/y units.
        timed: route cells are at fixed steps of `grid.step` seconds, so the k-th cell ahead is at
            the prefix's last time + k * step. False for collapsed tracks (a cell *change* has no
            known time) and for grids without a step.
    """

    grid: Grid
    timed: bool = True

    @property
    def geographic(self) -> bool:
        return self.grid.crs is not None

    @property
    def keys(self) -> tuple[str, str]:
        """The two coordinate keys of a point in answers, in coordinate order."""
        return ("lon", "lat") if self.geographic else ("x", "y")

    @property
    def has_times(self) -> bool:
        return self.timed and self.grid.step is not None

    def coords(self, cells: Sequence | np.ndarray) -> list[list[float]]:
        """Cell centres as ``[[lon, lat], ...]`` (or ``[[x, y], ...]``), one per cell."""
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        x, y = self.grid.to_centres(cells[:, 0], cells[:, 1])
        if self.geographic:
            from gridcast.ingest.projection import unproject

            lon, lat = unproject(x, y, self.grid.crs)
            return np.round(np.column_stack([lon, lat]), DEGREE_DIGITS).tolist()
        return np.column_stack([x, y]).tolist()

    def cells(self, coords: Sequence | np.ndarray) -> np.ndarray:
        """The cells holding ``[[lon, lat], ...]`` (or ``[[x, y], ...]``): the inverse of `coords`."""
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
        x, y = coords[:, 0], coords[:, 1]
        if self.geographic:
            from gridcast.ingest.projection import project

            x, y = project(x, y, self.grid.crs)
        return np.column_stack(self.grid.to_cells(x, y))

    def times_after(self, last_time: float, n: int) -> list:
        """The times of the `n` steps after `last_time`: ISO-8601 UTC on a geographic grid
        (times are seconds since 1970 there), seconds on a planar one."""
        seconds = [float(last_time) + k * float(self.grid.step) for k in range(1, n + 1)]
        return [iso_utc(t) for t in seconds] if self.geographic else seconds

    def times_of(self, times: Sequence[float]) -> list:
        """Known times (seconds), written as answers write times: ISO-8601 UTC, or seconds when planar."""
        return [iso_utc(t) for t in times] if self.geographic else [float(t) for t in times]


def iso_utc(seconds: float) -> str:
    """Seconds since 1970 -> ``2026-01-26T15:57:32Z`` (milliseconds shown only when there are any).

    >>> iso_utc(0.0), iso_utc(1.25)
    ('1970-01-01T00:00:00Z', '1970-01-01T00:00:01.250Z')
    """
    stamp = datetime.fromtimestamp(float(seconds), tz=timezone.utc)
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    if stamp.microsecond:
        text += f".{stamp.microsecond // 1000:03d}"
    return text + "Z"


def answer_json(nexts, p_end: float, routes, place: Place | None = None, last_time: float | None = None,
                point: Sequence | None = None, samples: Sequence | None = None) -> dict:
    """The **contract** shape of ``predict --json`` for one prefix.

    `nexts`: `NextCell`s, `routes`: `Route`s. With a `place`, each next cell gains its centre
    (``"lon", "lat"`` or ``"x", "y"``) and each route ``"coords"``; with a `last_time` too (the
    prefix's last time, seconds) and fixed steps, each route gains ``"times"``, one per cell.
    `point`: the point forecast's cells (one per step ahead) -> ``"point": {"cells", "coords",
    "times"}`` (coords and times as for routes); `samples`: sampled routes as ``(cells, ended)``
    pairs (a sample that drew the end of route stops there) -> ``"samples": [{"cells", "ended",
    "coords"}, ...]``.

    >>> doc = answer_json([], 0.0, [], point=[(1, 0), (2, 0)], samples=[([(1, 0)], True)])
    >>> doc["point"], doc["samples"]
    ({'cells': [[1, 0], [2, 0]]}, [{'cells': [[1, 0]], 'ended': True}])
    """
    doc = {"next": [{"cell": list(n.cell), "p": n.p} for n in nexts],
           "routes": [{"cells": [list(c) for c in r.cells], "p": r.p, "ended": r.ended} for r in routes],
           "p_end": p_end}
    if point is not None:
        doc["point"] = _path(point, place, last_time)
    if samples is not None:
        doc["samples"] = [{**_path(cells, place, None), "ended": bool(ended)} for cells, ended in samples]
    if place is None:
        return doc
    keys = place.keys
    centres = place.coords([n.cell for n in nexts])
    for entry, centre in zip(doc["next"], centres):
        entry.update(zip(keys, centre))
    for entry, route in zip(doc["routes"], routes):
        entry["coords"] = place.coords(route.cells)
        if last_time is not None and place.has_times:
            entry["times"] = place.times_after(last_time, len(route.cells))
    return doc


def _path(cells: Sequence, place: Place | None, last_time: float | None) -> dict:
    """``{"cells"}`` plus ``"coords"`` (with a place) and ``"times"`` (with a last time at fixed steps)."""
    cells = [[int(c), int(r)] for c, r in np.asarray(cells, dtype=np.int64).reshape(-1, 2)]
    out: dict = {"cells": cells}
    if place is not None:
        out["coords"] = place.coords(cells)
        if last_time is not None and place.has_times:
            out["times"] = place.times_after(last_time, len(cells))
    return out
