"""The grid: metres <-> integer cells.

A grid is data, not a side effect of the data it was built from: it is saved next to every gridded
file and every model, and reused exactly (`--like`) so that cell ids mean the same thing on the
training set, the test set and in production.

Cell (col, row) covers the square of side `cell_size` centred on
`origin + (col, row) * cell_size`, so `origin` is the centre of cell (0, 0). With `cell_size=1` and
origin (0, 0), integer coordinates map to themselves: planar input that is already in grid units
keeps its numbers.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from gridcast.errors import InputError


@dataclass(frozen=True)
class Grid:
    """A square grid in a metric (or planar) coordinate system.

    Args:
        cell_size: side of a cell, in the units of the coordinates (metres for projected GPS).
        origin_x, origin_y: centre of cell (0, 0).
        crs: the projected CRS the coordinates live in (e.g. ``"EPSG:32630"``); ``None`` for
            planar input such as pixels or pedestrian world coordinates.
        step: the time step in seconds the tracks were resampled at, if any.

    Example:
        >>> g = Grid(cell_size=100.0, origin_x=500.0, origin_y=0.0)
        >>> g.to_cells(np.array([520.0, 730.0]), np.array([0.0, -60.0]))
        (array([0, 2]), array([ 0, -1]))
    """

    cell_size: float
    origin_x: float = 0.0
    origin_y: float = 0.0
    crs: str | None = None
    step: float | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.cell_size, (int, float)) and math.isfinite(self.cell_size) and self.cell_size > 0):
            raise InputError(f"grid cell size must be a positive number, got {self.cell_size!r}")
        for name in ("origin_x", "origin_y"):
            if not math.isfinite(getattr(self, name)):
                raise InputError(f"grid {name} must be finite, got {getattr(self, name)!r}")
        if self.step is not None and not (math.isfinite(self.step) and self.step > 0):
            raise InputError(f"grid time step must be a positive number of seconds, got {self.step!r}")

    @classmethod
    def covering(cls, x: np.ndarray, y: np.ndarray, cell_size: float, **kwargs) -> "Grid":
        """A grid whose origin is snapped to a multiple of `cell_size` at the data's lower-left corner.

        Snapping keeps the grid stable when the data grows a little: nearby datasets get the same cells.
        """
        if len(x) == 0:
            raise InputError("cannot build a grid from no points")
        ox = math.floor(float(np.min(x)) / cell_size) * cell_size
        oy = math.floor(float(np.min(y)) / cell_size) * cell_size
        return cls(cell_size=float(cell_size), origin_x=ox, origin_y=oy, **kwargs)

    def to_cells(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer cell indices (col, row) of points in grid coordinates."""
        col = np.floor((np.asarray(x, dtype=np.float64) - self.origin_x) / self.cell_size + 0.5)
        row = np.floor((np.asarray(y, dtype=np.float64) - self.origin_y) / self.cell_size + 0.5)
        return col.astype(np.int64), row.astype(np.int64)

    def to_centres(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates of cell centres; the inverse of `to_cells` up to half a cell."""
        x = self.origin_x + np.asarray(col, dtype=np.float64) * self.cell_size
        y = self.origin_y + np.asarray(row, dtype=np.float64) * self.cell_size
        return x, y

    @property
    def metric(self) -> bool:
        """True when grid units are metres (a projected CRS), so errors can be reported in metres."""
        return self.crs is not None

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["extra"]:
            d.pop("extra")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Grid":
        try:
            return cls(
                cell_size=float(d["cell_size"]),
                origin_x=float(d.get("origin_x", 0.0)),
                origin_y=float(d.get("origin_y", 0.0)),
                crs=d.get("crs"),
                step=None if d.get("step") is None else float(d["step"]),
                extra=dict(d.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"invalid grid description {d!r}: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Grid":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid grid JSON: {exc}") from None
