"""Request points -> what the library takes: a prefix track for `predict` (gridded and prepared
exactly as ``gridcast predict --points`` does) or one cell per point for the live sessions."""
from __future__ import annotations

import numpy as np

from gridcast.errors import InputError
from gridcast.ingest.points import RawPoints, positions
from gridcast.serve.schemas import Point


class FieldError(InputError):
    """A request field that the model cannot use: its path (``points[3]``) and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def cells_of(points: list[Point]) -> np.ndarray:
    return np.asarray([p.cell for p in points], dtype=np.int64).reshape(-1, 2)


def raw_points(points: list[Point], grid, field: str = "points") -> RawPoints:
    """Positions (lat/lon or x/y, all of one kind) -> `RawPoints`, checked against the model's grid:
    a time for every point or none, increasing."""
    kind = points[0].kind
    for i, p in enumerate(points):
        if p.kind != kind:
            raise FieldError(f"{field}[{i}]", f"mixes a {p.kind} point with {field}[0]'s {kind}; give one kind")
    if kind == "cell":
        raise FieldError(f"{field}[0]", "cells are not positions")
    geographic = kind == "latlon"
    first = [p.lat if geographic else p.x for p in points]
    second = [p.lon if geographic else p.y for p in points]
    return raw_arrays(kind, first, second, [p.time for p in points], grid, field)


def raw_arrays(kind: str, first, second, times: list[float | None], grid, field: str = "points") -> RawPoints:
    """Validated coordinates of one kind (``latlon`` or ``xy``) -> `RawPoints`, checked against the
    model's grid (the part of `raw_points` that a fast path over whole arrays shares with it)."""
    if grid is None:
        raise FieldError(f"{field}[0]", "this model was fitted on bare cells (no grid): give {\"cell\": [col, row]}")
    geographic = kind == "latlon"
    if geographic and grid.crs is None:
        raise FieldError(f"{field}[0]", "this model's grid is planar (no CRS): give x, y, not lat, lon")
    if not geographic and grid.crs is not None:
        raise FieldError(f"{field}[0]", "this model's grid is geographic: give lat, lon (or cells)")
    timed = [t is not None for t in times]
    if any(timed) and not all(timed):
        i = timed.index(not timed[0])
        raise FieldError(f"{field}[{i}].time", "give a time for every point or for none")
    stamps = np.asarray(times, dtype=np.float64) if all(timed) else None
    if stamps is not None and len(stamps) > 1 and not (np.diff(stamps) > 0).all():
        i = int(np.argmax(np.diff(stamps) <= 0)) + 1
        raise FieldError(f"{field}[{i}].time", f"must be after {field}[{i - 1}].time (times increase)")
    return RawPoints(np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64), stamps, geographic)


def raw_cells(raw: RawPoints, grid) -> tuple[np.ndarray, list[float | None]]:
    """One cell per position (no resampling) and its time."""
    col, row = grid.to_cells(*positions(raw, grid))
    times = [None] * len(raw.first) if raw.times is None else raw.times.tolist()
    return np.column_stack([col, row]).astype(np.int64), times


def session_cells(points: list[Point], grid) -> tuple[np.ndarray, list[float | None]]:
    """One cell per point (no resampling: a live track posts points as they come) and its time."""
    if points[0].kind == "cell" and all(p.kind == "cell" for p in points):
        return cells_of(points), [p.time for p in points]
    return raw_cells(raw_points(points, grid), grid)
