"""Track order, duplicates, gap splitting and resampling at a fixed time step, all vectorised.

Why no per-track loop: real inputs range from a few long tracks (one person's year) to a million
short trips; a Python loop over tracks is fine for the first and minutes for the second. Every step
here is a handful of numpy passes over all points at once.

Resampled times are the multiples of `step` (counted from time 0) that fall inside a track part's
own time span, so (a) no point is ever invented before a part's first or after its last fix, and
(b) all tracks share the same clock ticks (time-of-day features and multi-agent scenes line up).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridcast.errors import InputError
from gridcast.ingest.memory import check_gridding


@dataclass
class Ordered:
    """Points sorted by (track, time) with duplicates removed."""

    order: np.ndarray | None  # indices into the validated arrays in (track, time) order without
    #                            duplicates; None when that is simply 0..n-1 (no copies needed)
    duplicates: np.ndarray  # indices (into validated arrays) of dropped duplicate-time rows
    unsorted_tracks: np.ndarray  # track codes whose times were out of order


def order_points(code: np.ndarray, t: np.ndarray) -> Ordered:
    """Stable sort by (track, time); rows repeating a (track, time) pair keep only the first in file order.

    Already-ordered input (the common case: a log written track by track, in time) costs two
    comparisons per point and no copies.
    """
    n = len(code)
    order: np.ndarray | None = None
    if n > 1 and np.any(code[1:] < code[:-1]):
        order = np.argsort(code, kind="stable")  # timsort: cheap when tracks are mostly contiguous
    cs, ts = (code, t) if order is None else (code[order], t[order])
    same = cs[1:] == cs[:-1]
    down = same & (ts[1:] < ts[:-1])
    unsorted = np.unique(cs[1:][down]) if down.any() else np.zeros(0, code.dtype)
    if len(unsorted):
        if order is None:
            order = np.arange(n)
        # re-sort only the rows of affected tracks; their positions, as a set, stay the same
        pos = np.flatnonzero(np.isin(cs, unsorted))
        sub = np.lexsort((ts[pos], cs[pos]))  # stable: equal times keep file order
        order[pos] = order[pos][sub]
        cs, ts = code[order], t[order]
        same = cs[1:] == cs[:-1]
    dup = np.zeros(n, bool)
    dup[1:] = same & (ts[1:] == ts[:-1])
    if not dup.any():
        return Ordered(order=order, duplicates=np.zeros(0, np.int64), unsorted_tracks=unsorted)
    if order is None:
        order = np.arange(n)
    return Ordered(order=order[~dup], duplicates=order[dup], unsorted_tracks=unsorted)


@dataclass
class Parts:
    """Contiguous runs of sorted points forming one output track each."""

    start: np.ndarray  # first point index of each part (into the sorted arrays)
    stop: np.ndarray  # one past the last
    track: np.ndarray  # track code of each part
    ordinal: np.ndarray  # 1-based part number within its track
    count: np.ndarray  # parts per track code (indexed like `track`'s codes' parts)


def split_parts(code: np.ndarray, t: np.ndarray, max_gap: float | None) -> Parts:
    """Split sorted points where the track changes or time jumps by more than `max_gap` seconds."""
    n = len(code)
    brk = np.ones(n, bool)
    if n > 1:
        brk[1:] = code[1:] != code[:-1]
        if max_gap is not None:
            brk[1:] |= np.diff(t) > max_gap
    start = np.flatnonzero(brk)
    stop = np.append(start[1:], n).astype(np.int64)
    track = code[start]
    new_track = np.ones(len(start), bool)
    new_track[1:] = track[1:] != track[:-1]
    first_of_track = np.flatnonzero(new_track)
    group = np.cumsum(new_track) - 1
    ordinal = np.arange(len(start)) - first_of_track[group] + 1
    count = np.diff(np.append(first_of_track, len(start)))[group]
    return Parts(start=start, stop=stop, track=track, ordinal=ordinal, count=count)


@dataclass
class Resampled:
    """Resampled points: for output point k, position = (1 - w) * p[left] + w * p[right]."""

    part: np.ndarray  # part index of each output point
    time: np.ndarray
    left: np.ndarray  # index into sorted points
    right: np.ndarray
    weight: np.ndarray


def resample(t: np.ndarray, parts: Parts, step: float | None, n_raw: int,
             memory_limit: float | None = None) -> Resampled:
    """Times and interpolation weights at multiples of `step` inside each part's span.

    With `step=None` every point is kept as it is (weight 0 on itself). The number of points is
    known before any is built, so `memory_limit` (bytes, see `gridcast.ingest.memory`) refuses a job
    that would not fit before it allocates anything.
    """
    n = len(t)
    if step is None:
        idx = np.arange(n)
        part = np.repeat(np.arange(len(parts.start)), parts.stop - parts.start)
        return Resampled(part=part, time=t.copy(), left=idx, right=idx, weight=np.zeros(n))
    s, e = t[parts.start], t[parts.stop - 1]
    if len(t) and max(abs(float(t.min())), abs(float(t.max()))) / step > 2.0**62:
        raise InputError(f"a time step of {step:g} s is too small for times as large as {np.abs(t).max():g} s")
    first_f = np.ceil(s / step)
    last_f = np.floor(e / step)
    size_f = np.maximum(last_f - first_f + 1, 0)
    total = float(size_f.sum())
    if len(s):
        worst = int(np.argmax(e - s))
        check_gridding(total, n_raw, step, float(e[worst] - s[worst]), memory_limit)
    first = first_f.astype(np.int64)
    size = size_f.astype(np.int64)
    n_out = int(size.sum())
    part = np.repeat(np.arange(len(parts.start)), size)
    out_start = np.cumsum(size) - size
    tick = first[part] + (np.arange(n_out) - out_start[part])
    time = np.clip(tick * step, s[part], e[part])  # clip: guard against the last ulp
    # Locate each tick among its part's points with one global searchsorted on exact int64 keys:
    # key = (offset of the part) + (tick index of a point's time relative to the part's first tick).
    # (ceil(t / step) never exceeds floor(e / step) + 1 for t <= e, so keys stay inside their part's range)
    span = np.floor(e / step).astype(np.int64) - first + 2
    off = np.cumsum(span) - span - first
    key = np.ceil(t / step).astype(np.int64)
    key += np.repeat(off, parts.stop - parts.start)
    tick_key = tick + off[part]
    left = np.searchsorted(key, tick_key, side="right") - 1
    left = np.clip(left, parts.start[part], parts.stop[part] - 1)
    right = np.minimum(left + 1, parts.stop[part] - 1)
    dt = t[right] - t[left]
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(dt > 0, (time - t[left]) / dt, 0.0)
    w = np.clip(w, 0.0, 1.0)
    return Resampled(part=part, time=time, left=left, right=right, weight=w)


def steps_within(part: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal `part` values (part is sorted)."""
    n = len(part)
    if n == 0:
        return np.zeros(0, np.int64)
    new = np.ones(n, bool)
    new[1:] = part[1:] != part[:-1]
    starts = np.flatnonzero(new)
    return np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
