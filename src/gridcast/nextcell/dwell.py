"""How long tracks stay in a cell: the hazard behind the `MarkovDwell` baseline and the fusion head's
stay term (`stay_features`).

At a fixed time step most steps are stays, and whether the next one is a stay depends on how long
the track has already been here: a den, a desk or a bus stop is left at its own pace. Transition
counts cannot say it (their order-2 context after a stay is (here, here) whatever the dwell), so
the per-cell hazard of leaving after n steps, from training runs, is its own statistic.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from gridcast.nextcell.features import Cell

STAY_FEATURES = 2  # per step: log-odds of staying, this cell's hazard (shrunk to all cells') and all cells'
HISTOGRAM_COLUMNS = 5  # `Dwell.histogram_` rows: col, row, run length, ended 0/1, count
LOG_ODDS_CLIP = 8.0  # |log-odds| at most this: a hazard of exactly 0 or 1 (collapsed tracks) stays finite


def runs(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start index, length) of each run of equal consecutive cells."""
    cells = np.asarray(cells).reshape(-1, 2)
    if len(cells) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.flatnonzero(np.any(cells[1:] != cells[:-1], axis=1)) + 1])
    return starts, np.diff(np.append(starts, len(cells)))


def run_lengths(cells: np.ndarray) -> tuple[dict[Cell, list[int]], dict[Cell, list[int]]]:
    """Per cell, the lengths of the runs that ended (the track moved on) and of all runs. A track's
    last run is *censored*: it was cut (at a gap, or where the data stops), not ended."""
    ended: dict[Cell, list[int]] = {}
    lasted: dict[Cell, list[int]] = {}
    cells = np.asarray(cells).reshape(-1, 2)
    starts, lengths = runs(cells)
    for i, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist())):
        cell = (int(cells[start, 0]), int(cells[start, 1]))
        lasted.setdefault(cell, []).append(length)
        if i < len(starts) - 1:
            ended.setdefault(cell, []).append(length)
    return ended, lasted


def _table(ended: list[int], lasted: list[int], size: int = 0, ended_weights=None, lasted_weights=None
           ) -> tuple[np.ndarray, np.ndarray]:
    """(runs that ended after exactly n steps, runs that lasted at least n steps), index n; the
    weights, when given, are how many runs each length stands for."""
    size = max(max(lasted, default=0) + 1, size)
    lasting = np.bincount(np.asarray(lasted, np.int64), weights=lasted_weights, minlength=size)
    at_risk = np.cumsum(lasting[::-1])[::-1]
    ending = np.bincount(np.asarray(ended, np.int64), weights=ended_weights, minlength=size)
    return ending.astype(np.float64), at_risk.astype(np.float64)


class Dwell:
    """How many steps a track stays in a cell: a discrete hazard per cell, from training runs.

    ``hazard(cell, n)`` = P(the run ends after step n | it lasted n steps), estimated per cell and
    shrunk towards the hazard of all cells (`prior` pseudo-runs), so a cell seen once is not
    trusted blindly. A censored run counts as "lasted at least this long" only. Beyond the longest
    run seen anywhere the hazard is the overall rate of moves per step (a geometric tail).
    `exclude` (`run_lengths` of one track) leaves that track's own runs out, as `MarkovPrior` leaves
    its transitions out while training. Everything comes from `histogram_`, how many runs of each
    length each cell had (and whether they ended), which is what a model directory stores
    (`from_histogram`): an aggregate, like the transition counts, not anybody's track.
    """

    def __init__(self, tracks: list[np.ndarray], prior: float = 1.0) -> None:
        counts: Counter[tuple[int, int, int, int]] = Counter()
        for cells in tracks:
            track_ended, track_lasted = run_lengths(cells)
            for cell, lengths in track_lasted.items():
                ended = Counter(track_ended.get(cell, []))
                for length, n in Counter(lengths).items():
                    stopped = min(ended[length], n)
                    ended[length] -= stopped
                    if stopped:
                        counts[(cell[0], cell[1], length, 1)] += stopped
                    if n - stopped:
                        counts[(cell[0], cell[1], length, 0)] += n - stopped
        rows = np.array([(*key, n) for key, n in counts.items()], np.int64).reshape(-1, HISTOGRAM_COLUMNS)
        self._build(rows, prior)

    @classmethod
    def from_histogram(cls, rows: np.ndarray, prior: float = 1.0) -> "Dwell":
        """The `Dwell` whose `histogram_` is `rows` (checked by `model_check.check_dwell_histogram`)."""
        self = cls.__new__(cls)
        self._build(np.asarray(rows, np.int64).reshape(-1, HISTOGRAM_COLUMNS), prior)
        return self

    def _build(self, rows: np.ndarray, prior: float) -> None:
        self.prior = prior
        #: (R, 5) int64 rows (col, row, run length, ended 0/1, how many such runs)
        self.histogram_ = rows
        order = np.lexsort((rows[:, 1], rows[:, 0]))
        rows = rows[order]
        self.cells_ = {}
        if len(rows):
            cuts = np.flatnonzero(np.any(np.diff(rows[:, :2], axis=0) != 0, axis=1)) + 1
            for part in np.split(rows, cuts):
                ended = part[part[:, 3] == 1]
                self.cells_[(int(part[0, 0]), int(part[0, 1]))] = _table(
                    ended[:, 2].tolist(), part[:, 2].tolist(), 0, ended[:, 4], part[:, 4])
        ended = rows[rows[:, 3] == 1]
        self.global_ = _table(ended[:, 2].tolist(), rows[:, 2].tolist(), 0, ended[:, 4], rows[:, 4])
        steps = float((rows[:, 2] * rows[:, 4]).sum())
        self.tail_ = float(ended[:, 4].sum()) / steps if steps else 1.0
        self._remaining: dict[Cell, np.ndarray] = {}
        self._stay_tables: dict[Cell, list[float]] = {}
        self._shared: list[float] | None = None

    def _global(self, n: int) -> float:
        ended, at_risk = self.global_
        return ended[n] / at_risk[n] if n < len(at_risk) and at_risk[n] > 0 else self.tail_

    def hazard(self, cell: Cell, n: int, exclude: tuple[dict, dict] | None = None) -> float:
        """P(leave `cell` after step n | stayed n steps), n >= 1."""
        ended, at_risk = self.cells_.get(cell, (np.zeros(1), np.zeros(1)))
        e, r = (float(ended[n]), float(at_risk[n])) if n < len(at_risk) else (0.0, 0.0)
        if exclude is not None and cell in exclude[1]:
            own_e, own_r = _table(exclude[0].get(cell, []), exclude[1][cell], n + 1)
            e, r = max(e - own_e[n], 0.0), max(r - own_r[n], 0.0)
        shared = self._global(n)
        return (e + self.prior * shared) / (r + self.prior) if r + self.prior > 0 else shared

    def hazards(self, cell: Cell, size: int) -> np.ndarray:
        """`hazard(cell, n)` for n = 0..size-1 at once (n = 0 unused)."""
        pad = lambda a: np.concatenate([a, np.zeros(max(0, size - len(a)))])[:size]  # noqa: E731
        ended, at_risk = (pad(a) for a in self.cells_.get(cell, (np.zeros(1), np.zeros(1))))
        g_ended, g_risk = (pad(a) for a in self.global_)
        shared = np.where(g_risk > 0, g_ended / np.maximum(g_risk, 1.0), self.tail_)
        weight = at_risk + self.prior
        return np.where(weight > 0, (ended + self.prior * shared) / np.maximum(weight, 1e-12), shared)

    def remaining(self, cell: Cell, n: int, cap: int) -> int:
        """Expected further stays in `cell` after n steps there, rounded (at most `cap`):
        R(n) = (1 - h(n)) (1 + R(n + 1)), the geometric tail's (1 - h) / h beyond the data."""
        table = self._remaining.get(cell)
        if table is None:
            size = max(len(self.cells_.get(cell, ((), ()))[1]), len(self.global_[1])) + 1
            hazards = self.hazards(cell, size).tolist()
            values = [0.0] * (size + 1)
            tail = self.tail_
            values[size] = (1.0 - tail) / tail if tail > 0 else float(cap)
            for k in range(size - 1, 0, -1):
                values[k] = (1.0 - hazards[k]) * (1.0 + values[k + 1])
            table = self._remaining[cell] = np.asarray(values)
        value = table[n] if n < len(table) else table[-1]
        return int(min(cap, round(value)))

    def stay_features(self, cell: Cell, spent: int, exclude: tuple[dict, dict] | None = None) -> tuple[float, float]:
        """The fusion head's stay term inputs at a step standing in `cell` for `spent` >= 1 steps:
        the log-odds of staying on, from this cell's hazard (shrunk to all cells', so an unseen cell
        gets all cells') and from all cells' alone.

        Without `exclude` (every prediction) the values come from per-cell tables filled on first
        use with these same scalar computations: a live track asks for one per point. Beyond a
        cell's longest run its own counts are zero, so the cell's value is all cells' there."""
        if exclude is not None:
            return _log_odds_stay(self.hazard(cell, spent, exclude)), _log_odds_stay(self._global(spent))
        shared = self._shared_log_odds()
        tail = shared[min(spent, len(shared) - 1)]
        if cell not in self.cells_:  # an unseen cell: all cells' hazard (no table: live tracks roam)
            return tail, tail
        table = self._stay_tables.get(cell)
        if table is None:  # at most one per training cell, each as long as its longest run
            table = self._stay_tables[cell] = [_log_odds_stay(self.hazard(cell, k)) for k in range(len(self.cells_[cell][1]))]
        return (table[spent] if spent < len(table) else tail), tail

    def _shared_log_odds(self) -> list[float]:
        """All cells' log-odds of staying on after n steps, n = 0 .. the longest run + 1 (the tail)."""
        if self._shared is None:
            self._shared = [_log_odds_stay(self._global(k)) for k in range(len(self.global_[1]) + 1)]
        return self._shared


def _log_odds_stay(hazard: float) -> float:
    """log((1 - h) / h), clipped to +-`LOG_ODDS_CLIP`.

    >>> _log_odds_stay(0.5), _log_odds_stay(1.0)
    (0.0, -8.0)
    """
    h = min(max(hazard, 0.0), 1.0)
    if h <= 0.0:
        return LOG_ODDS_CLIP
    if h >= 1.0:
        return -LOG_ODDS_CLIP
    return float(min(max(math.log((1.0 - h) / h), -LOG_ODDS_CLIP), LOG_ODDS_CLIP))
