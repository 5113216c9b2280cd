"""Tracks as the models see them: one id, a sequence of grid cells, optionally their times.

`gridcast.ingest` turns raw points into a gridded table; this module turns that table (or a user's
``--track "x,y x,y ..."`` string) into `Track` objects, and splits them *by track*, never by window,
so that no step of a test track is ever seen in training.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gridcast.errors import InputError

if TYPE_CHECKING:  # pandas is imported where a frame is read, so `gridcast --help` stays light
    import pandas as pd


@dataclass
class Track:
    """One trip on the grid.

    Attributes:
        id: the track id (string).
        cells: (n, 2) int64 array of (col, row).
        times: (n,) float64 seconds (epoch or relative), or None when unknown.
    """

    id: str
    cells: np.ndarray
    times: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.cells = np.asarray(self.cells, dtype=np.int64).reshape(-1, 2)
        if self.times is not None:
            self.times = np.asarray(self.times, dtype=np.float64)
            if len(self.times) != len(self.cells):
                raise InputError(f"track {self.id}: {len(self.times)} times for {len(self.cells)} cells")

    def __len__(self) -> int:
        return len(self.cells)

    def head(self, n: int) -> "Track":
        return Track(self.id, self.cells[:n], None if self.times is None else self.times[:n])


def collapse_mask(col: np.ndarray, row: np.ndarray, part: np.ndarray | None = None) -> np.ndarray:
    """Mask keeping the first of each run of equal cells (within each run of equal `part`).

    The one definition of "collapse": a sequence of cell *changes* asks "which cell next" rather
    than "where at t+1". The ingest pipeline applies it to all points at once (with `part`), a
    `Track` through `collapse_repeats`.
    """
    keep = np.ones(len(col), bool)
    if len(col) > 1:
        keep[1:] = (col[1:] != col[:-1]) | (row[1:] != row[:-1])
        if part is not None:
            keep[1:] |= part[1:] != part[:-1]
    return keep


def collapse_repeats(track: Track) -> Track:
    """`track` without consecutive repeats of the same cell (`collapse_mask`)."""
    if len(track) == 0:
        return track
    keep = collapse_mask(track.cells[:, 0], track.cells[:, 1])
    return Track(track.id, track.cells[keep], None if track.times is None else track.times[keep])


def tracks_from_frame(frame: pd.DataFrame) -> list[Track]:
    """Gridded table (contract columns track, step, time, col, row) -> tracks in first-seen order."""
    import pandas as pd

    missing = [c for c in ("track", "col", "row") if c not in frame.columns]
    if missing:
        raise InputError(f"gridded data lacks column(s) {missing}; has {list(frame.columns)}")
    order = ["track", "step"] if "step" in frame.columns else ["track"]
    frame = frame.sort_values(order, kind="stable")
    times = None
    if "time" in frame.columns:
        t = frame["time"]
        if pd.api.types.is_datetime64_any_dtype(t):
            times = (t.astype("datetime64[ns]").astype("int64") / 1e9).to_numpy()
        else:
            times = pd.to_numeric(t, errors="coerce").to_numpy(dtype=np.float64)
    cells = frame[["col", "row"]].to_numpy(dtype=np.int64)
    ids = frame["track"].astype(str).to_numpy()
    first_seen = pd.unique(frame["track"].astype(str))
    bounds = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(ids)]])
    by_id = {ids[s]: Track(ids[s], cells[s:e], None if times is None else times[s:e]) for s, e in zip(starts, ends)}
    return [by_id[i] for i in first_seen if i in by_id]


MAX_TRACK_CELL = 2**31 - 1  # a cell index beyond int32 is no grid cell anyone means (1e20 overflowed int64)


def parse_track(text: str) -> np.ndarray:
    """``"14,3 13,3 12,3"`` -> array [[14, 3], [13, 3], [12, 3]]; a clear error for anything else."""
    points = text.replace(";", " ").split()
    if not points:
        raise InputError("--track is empty; give cells as \"x,y x,y ...\"")
    cells = []
    for i, point in enumerate(points, 1):
        parts = point.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise InputError(f"--track point {i} {point!r} is not \"x,y\" (two numbers separated by a comma)") from None
        if not (np.isfinite(x) and np.isfinite(y)) or x != int(x) or y != int(y):
            raise InputError(f"--track point {i} {point!r} must be integer grid cells")
        if max(abs(x), abs(y)) > MAX_TRACK_CELL:
            raise InputError(f"--track point {i} {point!r} is out of range (cells are within +-{MAX_TRACK_CELL})")
        cells.append((int(x), int(y)))
    return np.asarray(cells, dtype=np.int64)


def split_by_track(tracks: list[Track], val_fraction: float, seed: int) -> tuple[list[Track], list[Track]]:
    """Random split of whole tracks (never of windows). Keeps at least one track on each side when possible."""
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"validation fraction must be in [0, 1), got {val_fraction}")
    if len(tracks) < 2 or val_fraction == 0.0:
        return list(tracks), []
    order = np.random.default_rng(seed).permutation(len(tracks))
    n_val = min(len(tracks) - 1, max(1, int(round(val_fraction * len(tracks)))))
    val_ids = set(order[:n_val].tolist())
    return ([t for i, t in enumerate(tracks) if i not in val_ids], [t for i, t in enumerate(tracks) if i in val_ids])


def split_by_time(tracks: list[Track], fractions: tuple[float, ...]) -> list[list[Track]]:
    """Chronological split by each track's start time: earlier trips train, later ones test.

    The honest split for one person's history: the model never sees a trip that starts after any
    trip it is tested on. Tracks without times keep their given order.
    """
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise InputError(f"split fractions must sum to 1, got {fractions}")
    starts = [t.times[0] if t.times is not None and len(t.times) else i for i, t in enumerate(tracks)]
    order = np.argsort(np.asarray(starts, dtype=np.float64), kind="stable")
    bounds = np.round(np.cumsum((0.0,) + tuple(fractions)) * len(tracks)).astype(int)
    return [[tracks[i] for i in order[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]
