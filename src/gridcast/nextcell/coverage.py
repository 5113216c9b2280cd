"""How far a prefix lies outside the area a model was trained on.

A forecaster asked about a place it never saw still answers, with confident-looking numbers, from
cells it has no ids for: that answer is extrapolation, and the user must be told, in units they
can judge (metres where the grid knows metres, else cells). Coverage is the extent of the
training cells (their bounding box, each cell counted as its whole square): simple, cheap, and
what "outside the model's grid coverage" means to someone looking at a map of the training data.

    >>> import numpy as np
    >>> area = Coverage.of_cells(np.array([[0, 0], [4, 2]]), grid=None)
    >>> area.outside_by(np.array([[2.0, 1.0], [7.0, 1.0]]))
    array([0. , 2.5])
    >>> area.describe(2.5)
    '2.5 cells'
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridcast.grid import Grid


@dataclass(frozen=True)
class Coverage:
    """The training cells' extent, in cell units: ``[low, high]`` corners per axis (cell edges)."""

    low: np.ndarray
    high: np.ndarray
    grid: Grid | None

    @classmethod
    def of_cells(cls, cells: np.ndarray, grid: Grid | None) -> "Coverage":
        cells = np.asarray(cells, dtype=np.float64).reshape(-1, 2)
        return cls(cells.min(axis=0) - 0.5, cells.max(axis=0) + 0.5, grid)

    @classmethod
    def of_model(cls, model) -> "Coverage | None":
        """The extent of a fitted model's training tracks (its vocabulary if it kept no tracks);
        None when it knows neither."""
        tracks = getattr(model, "train_tracks_", None) or []
        cells = [t.cells for t in tracks if len(t)]
        if not cells and getattr(model, "vocab_", None) is not None:
            cells = [model.vocab_.cells]
        cells = [c for c in cells if len(c)]
        return cls.of_cells(np.concatenate(cells), model.grid) if cells else None

    def outside_by(self, cells: np.ndarray) -> np.ndarray:
        """Distance (in cells) of each position, given in cell units (col, row; may be fractional),
        from the extent: 0 inside."""
        pos = np.asarray(cells, dtype=np.float64).reshape(-1, 2)
        gap = np.maximum(np.maximum(self.low - pos, pos - self.high), 0.0)
        return np.hypot(gap[:, 0], gap[:, 1])

    def in_cells(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Positions in grid coordinates -> fractional cell units (what `outside_by` takes)."""
        g = self.grid
        return np.column_stack([(np.asarray(x) - g.origin_x) / g.cell_size, (np.asarray(y) - g.origin_y) / g.cell_size])

    def describe(self, cells: float) -> str:
        """A distance in cells, said in metres too where the grid knows metres."""
        if self.grid is not None and self.grid.metric:
            return f"{cells * self.grid.cell_size:,.0f} m ({cells:.3g} cells)"
        return f"{cells:.3g} cells"

    def tracks_warning(self, tracks: list[tuple[str, np.ndarray]]) -> str | None:
        """One line for many prefixes ``[(track id, positions in cell units), ...]``: how many lie
        outside the extent and how far the farthest does; None when all lie inside."""
        gaps = [(float(self.outside_by(cells).max(initial=0.0)), name) for name, cells in tracks]
        outside = [(gap, name) for gap, name in gaps if gap > 0]
        if not outside:
            return None
        gap, name = max(outside)
        return (f"{len(outside)} of {len(tracks)} track(s) lie outside the model's training area; the farthest, "
                f"track {name}, reaches {self.describe(gap)} beyond the training cells' extent "
                f"({self._extent()}); answers there are extrapolation")

    def _extent(self) -> str:
        lo, hi = self.low + 0.5, self.high - 0.5
        return f"cols {int(lo[0])}..{int(hi[0])}, rows {int(lo[1])}..{int(hi[1])}"

    def warning(self, cells: np.ndarray, what: str = "the prefix") -> str | None:
        """One line saying how far outside the extent `what` lies (positions in cell units, as
        `outside_by` takes), naming its farthest point; None when it lies inside."""
        gap = self.outside_by(cells)
        if not len(gap) or gap.max() <= 0:
            return None
        far = int(np.argmax(gap))
        return (f"{what} lies outside the model's training area: point {far + 1} of {len(gap)} is "
                f"{self.describe(float(gap[far]))} beyond the training cells' extent "
                f"({self._extent()}); "
                f"answers there are extrapolation")
