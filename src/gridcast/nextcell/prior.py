"""Transition counts of training tracks: the one counter behind the fusion head's Markov prior and
the Markov baselines (`baselines.Markov`, `MostFrequentNext`, `MarkovNeighbours`).

On real commutes the counts of "which cell followed this one (and the one before)" are exactly the
statistic a route repeats, so both the baselines and the network start from them.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable

import numpy as np

from gridcast.nextcell.features import Cell

PRIOR_FEATURES = 6  # per candidate: p2, p1, log1p n2, log1p n1, [n2 > 0], [n1 > 0]
EVIDENCE_FEATURES = 2  # per step: log1p of the order-2 and order-1 context totals

Context = tuple[Cell, ...]


def count_transitions(tracks: Iterable[np.ndarray], order: int) -> list[defaultdict[Context, Counter]]:
    """``counts[k][context][next]``: how often `next` followed the `k` cells of `context`, for every
    k in 0..order (k = 0: the context ``()``, i.e. how often each cell was reached at all).

    Contexts and followers keep the order of their first appearance (tracks in order, steps in
    order), so whatever iterates the counts sees the same order every time."""
    counts: list[defaultdict[Context, Counter]] = [defaultdict(Counter) for _ in range(order + 1)]
    for track in tracks:
        cells = [(int(c), int(r)) for c, r in np.asarray(track).reshape(-1, 2)]
        for t in range(1, len(cells)):
            nxt = cells[t]
            for k in range(0, min(order, t) + 1):
                counts[k][tuple(cells[t - k:t])][nxt] += 1
    return counts


def by_last_cell(counts: dict[Context, Counter]) -> defaultdict[Cell, Counter]:
    """Order-1 counts keyed by the cell itself instead of a one-cell context."""
    return defaultdict(Counter, {context[0]: counter for context, counter in counts.items()})


class MarkovPrior:
    """Order-1 and order-2 transition counts of training tracks, as per-candidate features.

    `entries(before, last, exclude)` lists, for the step at `last` (coming from `before`), every cell
    that followed `last` in training with six features (probabilities and log counts of order 2 and
    1, and whether each count is non-zero), plus the evidence behind them (log totals of both
    contexts). `exclude` removes one track's own transitions (leave-one-track-out): while training,
    each track sees the counts of the *other* tracks, as a test track will, so the network learns
    how far to trust counts rather than learning that they always contain the answer.

    Attributes: ``n1[last][next]`` and ``n2[(before, last)][next]`` counts, ``t1``/``t2`` their totals.
    """

    def __init__(self, tracks: list[np.ndarray]) -> None:
        self.n1, self.n2 = self.transitions_of(tracks)
        self.t1 = {k: sum(v.values()) for k, v in self.n1.items()}
        self.t2 = {k: sum(v.values()) for k, v in self.n2.items()}

    @staticmethod
    def transitions_of(tracks: Iterable[np.ndarray]) -> tuple[defaultdict, defaultdict]:
        """Order-1 counts keyed by cell and order-2 counts keyed by (before, last), of `tracks`."""
        counts = count_transitions(tracks, 2)
        return by_last_cell(counts[1]), counts[2]

    @classmethod
    def transitions(cls, cells: np.ndarray) -> tuple[dict, dict]:
        """One track's own order-1 and order-2 transition counts (what `exclude` takes)."""
        return cls.transitions_of([cells])

    def entries(self, before: Cell | None, last: Cell, exclude: tuple[dict, dict] | None = None
                ) -> tuple[list[Cell], np.ndarray, np.ndarray]:
        """Candidates, their (k, 6) features and the (2,) evidence of the step at `last`."""
        own1 = exclude[0].get(last) if exclude else None
        counts1 = self.n1.get(last)
        if not counts1:
            return [], np.zeros((0, PRIOR_FEATURES), np.float32), np.zeros(EVIDENCE_FEATURES, np.float32)
        key2 = (before, last) if before is not None else None
        counts2 = self.n2.get(key2) if key2 is not None else None
        own2 = exclude[1].get(key2) if exclude and key2 is not None else None
        total1 = self.t1[last] - (sum(own1.values()) if own1 else 0)
        total2 = (self.t2[key2] if counts2 else 0) - (sum(own2.values()) if own2 and counts2 else 0)
        cells, feats = [], []
        for cell, n in counts1.items():
            n1 = n - (own1.get(cell, 0) if own1 else 0)
            if n1 <= 0:
                continue
            n2 = (counts2.get(cell, 0) - (own2.get(cell, 0) if own2 else 0)) if counts2 else 0
            cells.append(cell)
            feats.append((n2 / total2 if total2 > 0 else 0.0, n1 / total1, math.log1p(n2), math.log1p(n1),
                          float(n2 > 0), 1.0))
        evidence = np.array([math.log1p(max(total2, 0)), math.log1p(max(total1, 0))], dtype=np.float32)
        return cells, np.asarray(feats, dtype=np.float32).reshape(-1, PRIOR_FEATURES), evidence
