"""The result of ingestion: gridded, resampled tracks in one table, with their grid and report.

`GriddedTracks.tracks()` is the one way from that table to the `Track` objects the models train
on (optionally collapsed to cell changes, short tracks left out).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gridcast.grid import Grid
from gridcast.ingest.report import IngestReport
from gridcast.tracks import Track, collapse_repeats, tracks_from_frame

FRAME_COLUMNS = ("track", "step", "time", "col", "row", "x", "y")  # contract


@dataclass
class GriddedTracks:
    """Gridded, resampled tracks. `frame` columns: track, step, time, col, row, x, y (contract)."""

    frame: pd.DataFrame
    grid: Grid
    report: IngestReport
    meta: dict = field(default_factory=dict)

    def tracks(self, collapse: bool = False, min_len: int = 2) -> list[Track]:
        """The tracks in first-seen order; `collapse` drops consecutive repeats of a cell, and
        tracks with fewer than `min_len` cells (after collapsing) are left out (2: one transition)."""
        tracks = tracks_from_frame(self.frame)
        if collapse:
            tracks = [collapse_repeats(t) for t in tracks]
        return [t for t in tracks if len(t) >= min_len]

    def _runs(self, columns: tuple[str, str], dtype) -> list[tuple[str, np.ndarray]]:
        f = self.frame
        if len(f) == 0:
            return []
        codes, uniques = pd.factorize(f["track"], sort=False)
        order = np.lexsort((f["step"].to_numpy(), codes))
        codes = codes[order]
        vals = np.column_stack([f[c].to_numpy()[order] for c in columns]).astype(dtype)
        cut = np.flatnonzero(codes[1:] != codes[:-1]) + 1
        starts = np.concatenate([[0], cut])
        return [(str(uniques[codes[s]]), v) for s, v in zip(starts, np.split(vals, cut))]

    def sequences(self) -> list[tuple[str, np.ndarray]]:
        """[(track id, (n, 2) int64 array of (col, row))] in track order."""
        return self._runs(("col", "row"), np.int64)

    def positions(self) -> list[tuple[str, np.ndarray]]:
        """[(track id, (n, 2) float64 array of (x, y))] in track order."""
        return self._runs(("x", "y"), np.float64)
