"""Simple predictors every model is shown beside, fitted on the same training tracks.

Each baseline scores candidate next cells given a prefix (`scores`) and continues a route greedily
(`rollout`). A model that cannot beat these has learned nothing worth its cost, and the tables say so.
The Markov baselines count transitions with `prior.count_transitions`, the counter behind the fusion
head's prior, so "the counts" mean the same thing for both.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from gridcast.nextcell.features import Cell
from gridcast.nextcell.prior import by_last_cell, count_transitions
from gridcast.tracks import Track


def _cell(row) -> Cell:
    return int(row[0]), int(row[1])


class CellBaseline:
    """Interface: ``fit(tracks) -> self``, ``scores(prefix) -> {cell: score}``, ``rollout(prefix, n)``."""

    name = "baseline"

    def fit(self, tracks: list[Track]) -> "CellBaseline":
        return self

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

    def __init__(self, order: int = 2, spatial: bool = False, fill: int = 10) -> None:
        self.order = order
        self.spatial = spatial
        self.fill = fill
        self.name = f"markov{order}" + ("_spatial" if spatial else "")

    def fit(self, tracks: list[Track]) -> "Markov":
        self.counts_: list[dict[tuple, Counter]] = count_transitions((t.cells for t in tracks), self.order)
        self.global_ = self.counts_[0][()]
        followers = {c for counter in self.counts_[1].values() for c in counter}
        known = np.array(sorted(followers | {k[0] for k in self.counts_[1]}), dtype=np.int64)
        self.known_cells_ = known.reshape(-1, 2)
        return self

    def scores(self, prefix: np.ndarray) -> dict[Cell, float]:
        cells = [_cell(c) for c in np.asarray(prefix).reshape(-1, 2)]
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
        cells = np.asarray(prefix, dtype=np.int64).reshape(-1, 2)
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


def default_baselines() -> list[CellBaseline]:
    """The baselines shown beside every next-cell model (evaluate, demo, the GeoLife/UCI benchmarks)."""
    return [MostFrequentNext(), Markov(1), Markov(2), Markov(2, spatial=True), MarkovNeighbours(2), Stay(),
            ConstantVelocity()]
