"""Live tracks of one model: each new point is one step of `StreamingPredictor` (O(1) per point,
whatever the track's length), bounded by an LRU of `max_tracks` and an idle expiry.

The predictor keeps the recurrent states; this table keeps the order of use, when each track was
last seen (wall clock, so it survives a restart) and how many points it has had, and counts every
eviction for /metrics. Not thread-safe: the app calls it from its event loop only.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from gridcast.nextcell.forecaster import NextCell
from gridcast.nextcell.streaming import StreamingPredictor
from gridcast.serve.limits import MAX_TOP_K


class Sessions:
    """Live tracks of one model."""

    def __init__(self, model, max_tracks: int, idle_seconds: float | None, collapse: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        # the predictor never evicts by itself: this table does, and counts it
        self.stream = StreamingPredictor(model, k=5, max_tracks=max_tracks + 1)
        self.max_tracks, self.idle_seconds, self.collapse, self.clock = max_tracks, idle_seconds, collapse, clock
        self.seen: OrderedDict[str, list] = OrderedDict()  # id -> [last seen (wall s), points seen, last cell, answer]
        self.evicted_lru = 0
        self.evicted_idle = 0

    def __len__(self) -> int:
        return len(self.seen)

    def expire(self, now: float | None = None) -> int:
        """Drop tracks idle longer than `idle_seconds` (least recently seen first)."""
        if self.idle_seconds is None:
            return 0
        limit = (self.clock() if now is None else now) - self.idle_seconds
        dropped = 0
        while self.seen:
            track, entry = next(iter(self.seen.items()))
            if entry[0] >= limit:
                break
            self._drop(track)
            dropped += 1
        self.evicted_idle += dropped
        return dropped

    def delete(self, track: str) -> bool:
        """Forget a track; True if it was live."""
        if track not in self.seen:
            return False
        self._drop(track)
        return True

    def _drop(self, track: str) -> None:
        del self.seen[track]
        self.stream.reset(track)

    def update(self, track: str, cells: np.ndarray, times: list[float | None], top_k: int
               ) -> tuple[int, list[NextCell]]:
        """Feed a track's new points in order -> (points seen so far, top_k next cells after the last).

        With a collapsing model a point in the track's current cell is not fed (its training tracks
        had no repeats), nor counted."""
        now = self.clock()
        self.expire(now)
        entry = self.seen.get(track)
        if entry is None:
            if len(self.seen) >= self.max_tracks:
                self._drop(next(iter(self.seen)))
                self.evicted_lru += 1
            entry = self.seen[track] = [now, 0, None, None]
        else:
            self.seen.move_to_end(track)
            entry[0] = now
        fed = [(cell, t) for cell, t in zip(map(tuple, cells.tolist()), times)]
        if self.collapse:
            kept, last = [], entry[2]
            for cell, t in fed:
                if cell != last:
                    kept.append((cell, t))
                    last = cell
            fed = kept
        nexts: list[NextCell] | None = None
        if fed:
            stream = self.stream
            if len(fed) > 1:  # nobody asked for the answers in between
                stream.feed_many(track, np.asarray([cell for cell, _ in fed[:-1]], np.int64), [t for _, t in fed[:-1]])
            # a collapsing model may be asked again after repeats only: keep the widest answer
            stream.k = MAX_TOP_K if self.collapse else top_k
            nexts = stream.update(track, *fed[-1])
            entry[1] += len(fed)
            entry[2] = fed[-1][0]
        if nexts is not None:
            entry[3] = nexts
        # every point repeated the current cell of a collapsing model: the answer after it stands
        return entry[1], (entry[3] or [])[:top_k]

    def states(self) -> list[list]:
        """Every live track as ``[id, seen entry, predictor state]``, least recently seen first."""
        return [[track, [e[0], e[1], None if e[2] is None else list(e[2]),
                         [[n.cell[0], n.cell[1], n.p] for n in e[3] or []]], self.stream.state_of(track)]
                for track, e in self.seen.items()]

    def restore(self, saved: list[list]) -> int:
        """Put back what `states` returned (up to `max_tracks`, the most recent kept); returns how many."""
        for track, entry, state in saved[-self.max_tracks:]:
            self.stream.restore(track, state)
            answer = [NextCell((int(c), int(r)), float(p)) for c, r, p in entry[3]]
            self.seen[track] = [float(entry[0]), int(entry[1]), None if entry[2] is None else tuple(entry[2]), answer]
        return len(self.seen)
