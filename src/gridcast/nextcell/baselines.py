"""Simple predictors every model is shown beside, fitted on the same training tracks.

Each baseline scores candidate next cells given a prefix (`scores`) and continues a route greedily
(`rollout`). A model that cannot beat these has learned nothing worth its cost, and the tables say so.
The Markov baselines count transitions with `prior.count_transitions`, the counter behind the fusion
head's prior, so "the counts" mean the same thing for both.

Routes never jump across the map: a Markov rollout that reaches a context it never saw backs off
order 2 -> order 1 -> the moves made from the nearest trained cells -> constant velocity (a stay
when there is no last move), never to the globally most frequent cell. At a fixed time step most
steps are stays; `MarkovDwell` knows it (where next from the cell changes, when from each cell's
dwell times), where a plain chain on the uncollapsed sequence, run greedily, stays forever.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from gridcast.nextcell.dwell import Dwell, runs
from gridcast.nextcell.features import Cell
from gridcast.nextcell.prior import by_last_cell, count_transitions
from gridcast.tracks import Track, collapse_repeats


def _cell(row) -> Cell:
    return int(row[0]), int(row[1])


def _tail(prefix: np.ndarray, n: int) -> list[Cell]:
    """The last `n` cells of a prefix as tuples (only what a context of length n reads)."""
    return [_cell(c) for c in np.asarray(prefix).reshape(-1, 2)[-n:]]


def _most_common(counter: Counter):
    """The most frequent key; ties go to the smallest, so results never depend on the tracks' order."""
    return min(counter.items(), key=lambda kv: (-kv[1], kv[0]))[0]


class NearbyMoves:
    """The moves made from trained cells, looked up around a cell never seen as a context.

    `move_near(cell)` searches rings of growing Chebyshev radius (1..`radius`) around `cell` and
    returns the most frequent move (dx, dy) made from the cells of the first ring holding any:
    on a road network the cells next to an unknown one usually move the same way."""

    def __init__(self, order1: dict[tuple, Counter], radius: int = 3) -> None:
        self.radius = radius
        self.moves: dict[Cell, Counter] = {}
        for context, counter in order1.items():
            (c, r), = context
            moves = self.moves.setdefault((c, r), Counter())
            for (nc, nr), n in counter.items():
                moves[(nc - c, nr - r)] += n

    def move_near(self, cell: Cell) -> tuple[int, int] | None:
        c, r = cell
        for d in range(1, self.radius + 1):
            ring: Counter = Counter()
            for dc in range(-d, d + 1):
                for dr in range(-d, d + 1):
                    if max(abs(dc), abs(dr)) == d and (c + dc, r + dr) in self.moves:
                        ring.update(self.moves[(c + dc, r + dr)])
            if ring:
                return _most_common(ring)
        return None


class CellBaseline:
    """Interface: ``fit(tracks) -> self``, ``scores(prefix) -> {cell: score}``, ``rollout(prefix, n)``."""

    name = "baseline"
    needs_fit = False  # Stay and ConstantVelocity read the prefix alone

    def fit(self, tracks: list[Track]) -> "CellBaseline":
        return self

    @property
    def fitted(self) -> bool:
        """True when `scores` / `rollout` can run (always, for baselines that learn nothing)."""
        return not self.needs_fit or hasattr(self, "counts_")

    def scores(self, prefix: np.ndarray) -> dict[Cell, float]:
        raise NotImplementedError

    def rollout(self, prefix: np.ndarray, horizon: int) -> list[Cell]:
        """Greedy continuation: append the best-scored cell, repeat. Ties go to the smallest
        (col, row), so the result never depends on the order the training tracks came in."""
        cells = [_cell(c) for c in np.asarray(prefix).reshape(-1, 2)]
        out: list[Cell] = []
        for _ in range(horizon):
            scores = self.scores(np.asarray(cells))
            if not scores:
                break
            best = min(scores.items(), key=lambda kv: (-kv[1], kv[0]))[0]
            cells.append(best)
            out.append(best)
        return out


class Stay(CellBaseline):
    """The thing stays where it is."""

    name = "stay"

    def scores(self, prefix: np.ndarray) -> dict[Cell, float]:
        return {_cell(prefix[-1]): 1.0}


class ConstantVelocity(CellBaseline):
    """Repeat the last move (stays where it is after a one-cell prefix)."""

    name = "constant_velocity"

    def scores(self, prefix: np.ndarray) -> dict[Cell, float]:
        prefix = np.asarray(prefix).reshape(-1, 2)
        last = prefix[-1]
        move = last - prefix[-2] if len(prefix) > 1 else np.zeros(2, dtype=np.int64)
        return {_cell(last + move): 1.0}


class Markov(CellBaseline):
    """Order-k Markov chain over cells with back-off to shorter contexts, then global frequency.

    Args:
        order: context length k (1 = the current cell only).
        spatial: when the current cell's own statistics run out (fewer candidates than needed for a
            top-5), fill the ranking with trained cells nearest to the current cell instead of
            globally frequent ones: the next cell is nearly always close by.
    """

    needs_fit = True

    def __init__(self, order: int = 2, spatial: bool = False, fill: int = 10, radius: int = 3) -> None:
        self.order = order
        self.spatial = spatial
        self.fill = fill
        self.radius = radius
        self.name = f"markov{order}" + ("_spatial" if spatial else "")

    def fit(self, tracks: list[Track]) -> "Markov":
        self.counts_: list[dict[tuple, Counter]] = count_transitions((t.cells for t in tracks), self.order)
        self.global_ = self.counts_[0][()]
        followers = {c for counter in self.counts_[1].values() for c in counter}
        known = np.array(sorted(followers | {k[0] for k in self.counts_[1]}), dtype=np.int64)
        self.known_cells_ = known.reshape(-1, 2)
        self.nearby_ = NearbyMoves(self.counts_[1], self.radius)
        return self

    def next_cell(self, cells: list[Cell]) -> Cell:
        """The one cell a route goes to next: the most frequent follower of the longest context seen
        in training, else the nearest trained cells' most frequent move, else the last move again
        (a stay after a one-cell prefix or a stay)."""
        for k in range(min(self.order, len(cells)), 0, -1):
            counter = self.counts_[k].get(tuple(cells[-k:]))
            if counter:
                return _most_common(counter)
        last = cells[-1]
        move = self.nearby_.move_near(last)
        if move is None:
            move = (last[0] - cells[-2][0], last[1] - cells[-2][1]) if len(cells) > 1 else (0, 0)
        return last[0] + move[0], last[1] + move[1]

    def rollout(self, prefix: np.ndarray, horizon: int) -> list[Cell]:
        """`next_cell` again and again: a route that backs off spatially instead of jumping to the
        globally most frequent cell (which `scores` still ranks, far below any count, for top-k)."""
        cells = _tail(prefix, max(self.order, 2))
        out: list[Cell] = []
        for _ in range(horizon):
            cells.append(self.next_cell(cells))
            out.append(cells[-1])
        return out

    def scores(self, prefix: np.ndarray) -> dict[Cell, float]:
        cells = _tail(prefix, max(self.order, 1))
        scores: dict[Cell, float] = {}
        weight = 1.0
        for k in range(min(self.order, len(cells)), 0, -1):  # longest context first
            counter = self.counts_[k].get(tuple(cells[-k:]))
            if counter:
                total = sum(counter.values())
                for cell, n in counter.items():
                    scores.setdefault(cell, weight * n / total)
                weight *= 1e-3  # each back-off level ranks strictly below the one before
        if len(scores) < self.fill:
            if self.spatial and len(self.known_cells_):
                d = np.abs(self.known_cells_ - np.asarray(cells[-1])).max(axis=1)
                for i in np.argsort(d, kind="stable")[: self.fill * 2]:
                    scores.setdefault(_cell(self.known_cells_[i]), weight * 1e-3 / (1.0 + d[i]))
            else:
                total = sum(self.global_.values()) or 1
                for cell, n in self.global_.most_common(self.fill):
                    scores.setdefault(cell, weight * 1e-3 * n / total)
        return scores


class MostFrequentNext(CellBaseline):
    """The cells that most often followed the current cell in training, and nothing else.

    Unlike `Markov(1)` it never backs off: after a cell never left in training it names no cell at
    all (a miss), which shows how much of Markov-1's score the global back-off buys."""

    name = "most_frequent_next"
    needs_fit = True

    def fit(self, tracks: list[Track]) -> "MostFrequentNext":
        self.counts_: dict[Cell, Counter] = by_last_cell(count_transitions((t.cells for t in tracks), 1)[1])
        return self

    def scores(self, prefix: np.ndarray) -> dict[Cell, float]:
        counter = self.counts_.get(_cell(np.asarray(prefix).reshape(-1, 2)[-1]))
        if not counter:
            return {}
        total = sum(counter.values())
        return {cell: n / total for cell, n in counter.items()}


class MarkovNeighbours(Markov):
    """Markov-2 with back-off, then the cells around the current one, *seen in training or not*,
    nearest to where the last move points first (constant velocity) .

    Not among the benchmark data's published baselines: added so that a model with a move/neighbour
    output is compared with the simplest rule that also names unseen neighbouring cells, not only
    with chains that cannot."""

    def __init__(self, order: int = 2, radius: int = 2, fill: int = 10) -> None:
        super().__init__(order, spatial=False, fill=fill)
        self.radius = radius
        self.name = f"markov{order}_neighbours"
        d = np.arange(-radius, radius + 1)
        self._moves = np.stack(np.meshgrid(d, d, indexing="ij"), -1).reshape(-1, 2)
        self._moves = self._moves[np.any(self._moves != 0, axis=1)]

    def scores(self, prefix: np.ndarray) -> dict[Cell, float]:
        cells = np.asarray(prefix, dtype=np.int64).reshape(-1, 2)[-max(self.order, 2):]
        scores: dict[Cell, float] = {}
        weight = 1.0
        for k in range(min(self.order, len(cells)), 0, -1):
            counter = self.counts_[k].get(tuple(_cell(c) for c in cells[-k:]))
            if counter:
                total = sum(counter.values())
                for cell, n in counter.items():
                    scores.setdefault(cell, weight * n / total)
                weight *= 1e-3
        last = cells[-1]
        aim = last + (last - cells[-2] if len(cells) > 1 else 0)
        around = last + self._moves
        d = np.linalg.norm(around - aim, axis=1) + 0.01 * np.linalg.norm(around - last, axis=1)
        for i in np.argsort(d, kind="stable"):
            scores.setdefault(_cell(around[i]), weight * 1e-3 / (1.0 + d[i]))
        return scores


class MarkovDwell(CellBaseline):
    """Markov chain for *where* next, dwell times for *when*: the baseline of a fixed time step.

    Where: an order-k Markov chain (`Markov`, spatial back-off included) on the training tracks with
    repeats collapsed, i.e. over cell changes. When: `Dwell`, the per-cell hazard of leaving after
    the steps already spent in the current cell. Next-cell scores: the current cell gets
    1 - hazard, each other cell hazard x its Markov score. A route stays until the expected dwell
    is spent, moves to the Markov chain's next cell, and repeats: a plain chain on the uncollapsed
    sequence ranks "stay" first at nearly every step and, rolled out greedily, never moves. On
    collapsed tracks every run lasts one step and this is the collapsed Markov chain.
    """

    needs_fit = True

    def __init__(self, order: int = 1, prior: float = 1.0) -> None:
        self.order = order
        self.prior = prior
        self.name = f"markov{order}_dwell"

    def fit(self, tracks: list[Track]) -> "MarkovDwell":
        self.where_ = Markov(self.order, spatial=True).fit([collapse_repeats(t) for t in tracks])
        self.dwell_ = Dwell([t.cells for t in tracks], self.prior)
        self.counts_ = self.where_.counts_
        return self

    def _state(self, prefix: np.ndarray) -> tuple[list[Cell], int]:
        """(the last `order` distinct cells, the steps spent in the current one)."""
        cells = np.asarray(prefix).reshape(-1, 2)
        starts, lengths = runs(cells)
        return [_cell(cells[i]) for i in starts[-max(self.order, 2):]], int(lengths[-1])

    def scores(self, prefix: np.ndarray) -> dict[Cell, float]:
        changes, spent = self._state(prefix)
        here = changes[-1]
        leave = self.dwell_.hazard(here, spent)
        scores = {here: 1.0 - leave}
        for cell, score in self.where_.scores(np.asarray(changes)).items():
            scores.setdefault(cell, leave * score)
        return scores

    def rollout(self, prefix: np.ndarray, horizon: int) -> list[Cell]:
        changes, spent = self._state(prefix)
        out: list[Cell] = []
        while len(out) < horizon:
            stays = self.dwell_.remaining(changes[-1], spent, horizon - len(out))
            out.extend([changes[-1]] * stays)
            if len(out) >= horizon:
                break
            changes.append(self.where_.next_cell(changes))
            out.append(changes[-1])
            spent = 1
        return out


def default_baselines() -> list[CellBaseline]:
    """The baselines shown beside every next-cell model (evaluate, demo, the GeoLife/UCI benchmarks)."""
    return [MostFrequentNext(), Markov(1), Markov(2), Markov(2, spatial=True), MarkovNeighbours(2), Stay(),
            ConstantVelocity(), MarkovDwell(1), MarkovDwell(2)]
