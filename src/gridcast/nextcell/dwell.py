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

from gridcast.nextcell.features import Cell, cell_keys

STAY_FEATURES = 2  # per step: log-odds of staying, this cell's hazard (shrunk to all cells') and all cells'
HISTOGRAM_COLUMNS = 5  # `Dwell.histogram_` rows: col, row, run length, ended 0/1, count
MAX_RUN = 10_000  # longer runs count as lasting this long: hazards beyond it are the geometric tail
UNSEEN_KEPT = 100_000  # cells asked about that no run was in, remembered at most (then asked again)
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


def _table(ended, lasted, size: int = 0, ended_weights=None, lasted_weights=None) -> tuple[np.ndarray, np.ndarray]:
    """(runs that ended after exactly n steps, runs that lasted at least n steps), index n, from the
    run lengths (lists or arrays); the weights, when given, are how many runs each length stands for."""
    ended, lasted = np.asarray(ended, np.int64), np.asarray(lasted, np.int64)
    size = max(int(lasted.max()) + 1 if len(lasted) else 1, size)
    lasting = np.bincount(lasted, weights=lasted_weights, minlength=size)
    at_risk = np.cumsum(lasting[::-1])[::-1]
    ending = np.bincount(ended, weights=ended_weights, minlength=size)
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
            cells = np.asarray(cells).reshape(-1, 2)
            starts, lengths = runs(cells)
            last = len(starts) - 1  # the track's last run is censored (cut), the others ended
            for i, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist())):
                counts[(int(cells[start, 0]), int(cells[start, 1]), length, int(i < last))] += 1
        rows = np.array([(*key, n) for key, n in counts.items()], np.int64).reshape(-1, HISTOGRAM_COLUMNS)
        self._build(rows, prior)

    @classmethod
    def from_histogram(cls, rows: np.ndarray, prior: float = 1.0) -> "Dwell":
        """The `Dwell` whose `histogram_` is `rows` (checked by `model_check.check_dwell_histogram`)."""
        self = cls.__new__(cls)
        self._build(np.asarray(rows, np.int64).reshape(-1, HISTOGRAM_COLUMNS), prior)
        return self

    def _build(self, rows: np.ndarray, prior: float) -> None:
        """Index the rows by cell (sorted keys, one slice each); a cell's tables are built when it is
        first asked about, so loading a model costs one sort, not a table per cell."""
        self.prior = prior
        #: (R, 5) int64 rows (col, row, run length, ended 0/1, how many such runs)
        self.histogram_ = rows
        steps = float((rows[:, 2].astype(np.float64) * rows[:, 4]).sum())
        self.tail_ = float(rows[rows[:, 3] == 1, 4].sum()) / steps if steps else 1.0
        # Runs beyond MAX_RUN steps count as lasting MAX_RUN (censored): the hazards below it are exact,
        # beyond it the geometric tail holds, and no table is longer than MAX_RUN + 1.
        long = rows[:, 2] > MAX_RUN
        rows = np.column_stack([rows[:, :2], np.minimum(rows[:, 2], MAX_RUN), np.where(long, 0, rows[:, 3]), rows[:, 4]])
        keys = cell_keys(rows[:, :2])
        order = np.argsort(keys, kind="stable")
        self._rows, keys = rows[order], keys[order]
        self._keys, self._starts = np.unique(keys, return_index=True)
        self._ends = np.append(self._starts[1:], len(keys))
        ended = self._rows[self._rows[:, 3] == 1]
        self.global_ = _table(ended[:, 2], self._rows[:, 2], 0, ended[:, 4], self._rows[:, 4])
        self._tables: dict[Cell, tuple[np.ndarray, np.ndarray] | None] = {}
        self._remaining: dict[Cell, np.ndarray] = {}
        self._stay_tables: dict[Cell, list[float]] = {}
        self._shared: list[float] = []

    def _table_of(self, cell: Cell) -> tuple[np.ndarray, np.ndarray] | None:
        """(ended, at risk) by run length of `cell` (see `_table`); None for a cell no run was in."""
        if cell in self._tables:
            return self._tables[cell]
        key = cell_keys(np.array([cell], np.int64))[0]
        i = int(np.searchsorted(self._keys, key))
        table = None
        if i < len(self._keys) and self._keys[i] == key:
            part = self._rows[self._starts[i]:self._ends[i]]
            ended = part[part[:, 3] == 1]
            table = _table(ended[:, 2], part[:, 2], 0, ended[:, 4], part[:, 4])
        if table is not None or len(self._tables) < UNSEEN_KEPT:  # unseen cells: a bounded memory of them
            self._tables[cell] = table
        return table

    def _global(self, n: int) -> float:
        ended, at_risk = self.global_
        return ended[n] / at_risk[n] if n < len(at_risk) and at_risk[n] > 0 else self.tail_

    def hazard(self, cell: Cell, n: int, exclude: tuple[dict, dict] | None = None) -> float:
        """P(leave `cell` after step n | stayed n steps), n >= 1."""
        ended, at_risk = self._table_of(cell) or (np.zeros(1), np.zeros(1))
        e, r = (float(ended[n]), float(at_risk[n])) if n < len(at_risk) else (0.0, 0.0)
        if exclude is not None and cell in exclude[1]:
            own_e, own_r = _table(exclude[0].get(cell, []), exclude[1][cell], n + 1)
            e, r = max(e - own_e[n], 0.0), max(r - own_r[n], 0.0)
        shared = self._global(n)
        return (e + self.prior * shared) / (r + self.prior) if r + self.prior > 0 else shared

    def hazards(self, cell: Cell, size: int) -> np.ndarray:
        """`hazard(cell, n)` for n = 0..size-1 at once (n = 0 unused)."""
        pad = lambda a: np.concatenate([a, np.zeros(max(0, size - len(a)))])[:size]  # noqa: E731
        ended, at_risk = (pad(a) for a in (self._table_of(cell) or (np.zeros(1), np.zeros(1))))
        g_ended, g_risk = (pad(a) for a in self.global_)
        shared = np.where(g_risk > 0, g_ended / np.maximum(g_risk, 1.0), self.tail_)
        weight = at_risk + self.prior
        return np.where(weight > 0, (ended + self.prior * shared) / np.maximum(weight, 1e-12), shared)

    def remaining(self, cell: Cell, n: int, cap: int) -> int:
        """Expected further stays in `cell` after n steps there, rounded (at most `cap`):
        R(n) = (1 - h(n)) (1 + R(n + 1)), the geometric tail's (1 - h) / h beyond the data."""
        table = self._remaining.get(cell)
        if table is None:
            size = max(len((self._table_of(cell) or ((), ()))[1]), len(self.global_[1])) + 1
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

        Without `exclude` (every prediction) the values come from per-cell tables filled, as far
        as they are asked for, with these same scalar computations: a live track asks for one per
        point, and a crafted or huge model cannot make the first answer fill a table as long as its
        longest run. Beyond a cell's longest run its own counts are zero: all cells' value."""
        if exclude is not None:
            return _log_odds_stay(self.hazard(cell, spent, exclude)), _log_odds_stay(self._global(spent))
        tail = self._filled(self._shared, min(spent, len(self.global_[1])), lambda k: self._global(k))
        own = self._table_of(cell)
        if own is None or spent >= len(own[1]):  # unseen cells get no table: live tracks roam
            return tail, tail
        return self._filled(self._stay_tables.setdefault(cell, []), spent, lambda k: self.hazard(cell, k)), tail

    @staticmethod
    def _filled(table: list[float], n: int, hazard) -> float:
        """``table[n]``, the log-odds of staying on of ``hazard(n)``, filling the table up to n first."""
        while len(table) <= n:
            table.append(_log_odds_stay(hazard(len(table))))
        return table[n]


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
