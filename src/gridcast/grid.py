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

import functools
import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from gridcast.errors import InputError
from gridcast.safe_files import parse_json

MIN_CELL_SIZE = 1e-9     # grid units; smaller (or larger) cells are refused wherever a grid is made or read
MAX_CELL_SIZE = 1e9
MAX_COORDINATE = 1e15    # |origin| in grid units
MAX_STEP = 1e9           # seconds (about 30 years)
MAX_CELL = 2**31 - 1     # |col| and |row| of any cell: the vocabulary packs a cell into one int64


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
        if not (_is_number(self.cell_size) and MIN_CELL_SIZE <= self.cell_size <= MAX_CELL_SIZE):
            raise InputError(f"grid cell size must be a positive number from {MIN_CELL_SIZE:g} to {MAX_CELL_SIZE:g}, "
                             f"got {self.cell_size!r}")
        for name in ("origin_x", "origin_y"):
            value = getattr(self, name)
            if not (_is_number(value) and abs(value) <= MAX_COORDINATE):
                raise InputError(f"grid {name} must be a finite number within +-{MAX_COORDINATE:g}, got {value!r}")
        if self.step is not None and not (_is_number(self.step) and 0 < self.step <= MAX_STEP):
            raise InputError(f"grid time step must be a positive number of seconds (at most {MAX_STEP:g}), got {self.step!r}")
        if self.crs is not None and not (isinstance(self.crs, str) and 0 < len(self.crs) <= 400):
            raise InputError(f"grid crs must be a CRS name such as 'EPSG:32630' (or null), got {self.crs!r}")
        if not isinstance(self.extra, dict):
            raise InputError(f"grid extra must be an object, got {self.extra!r}")

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
        with np.errstate(invalid="ignore"):
            beyond = (np.abs(col) > MAX_CELL) | (np.abs(row) > MAX_CELL)
        if beyond.any():  # NaN compares False: callers that pass NaN handle it themselves
            raise InputError(f"{int(beyond.sum())} point(s) lie more than {MAX_CELL} cells from the grid's origin "
                             f"(cell size {self.cell_size:g}): use a larger --cell-size")
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
        """A grid read from a file (a gridded file's metadata, a model's config.json): every value is
        checked, and the CRS must be one pyproj knows and projected (cells in metres)."""
        if not isinstance(d, dict):
            raise InputError(f"invalid grid description: expected an object, got {type(d).__name__}")
        if "cell_size" not in d:
            raise InputError("invalid grid description: no cell_size")
        for key in ("cell_size", "origin_x", "origin_y", "step"):
            if key in d and not (d[key] is None and key == "step") and not _is_number(d[key]):
                raise InputError(f"invalid grid {key} {d[key]!r}: expected a finite number")
        if d.get("extra") is not None and not isinstance(d["extra"], dict):
            raise InputError(f"invalid grid extra {d['extra']!r}: expected an object")
        grid = cls(
            cell_size=float(d["cell_size"]),
            origin_x=float(d.get("origin_x", 0.0)),
            origin_y=float(d.get("origin_y", 0.0)),
            crs=d.get("crs"),
            step=None if d.get("step") is None else float(d["step"]),
            extra=dict(d.get("extra") or {}),
        )
        if grid.crs is not None:
            check_projected_crs(grid.crs)
        return grid

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Grid":
        return cls.from_dict(parse_json(text, "grid JSON"))


def _is_number(value: object) -> bool:
    """A finite int or float; not a bool (``true`` is not a cell size), not a string."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)) \
        and math.isfinite(value)


@functools.lru_cache(maxsize=64)
def check_projected_crs(crs: str) -> str:
    """`crs` if pyproj knows it and it is projected (metres); an `InputError` naming it otherwise.
    Why: cells of a geographic CRS (EPSG:4326) are in degrees, and every metric would be 0."""
    import pyproj  # here: `gridcast --help` and the root stay free of it until a grid is read

    try:
        obj = pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError as exc:
        raise InputError(f"invalid grid crs {crs!r}: {str(exc).splitlines()[0][:200]}") from None
    if not obj.is_projected:
        raise InputError(f"invalid grid crs {crs!r}: not projected (its units are degrees); a grid needs a metric CRS")
    return crs
