"""Beam search and greedy rollout for many tracks at once, equal to `Forecaster.beam` per track.

`Forecaster.beam` batches the beams of one prefix; serving thousands of tracks that way pays
Python and PyTorch dispatch per track and per step. Here every track of a chunk advances together:
prefixes are encoded in one packed pass, then each step is one recurrent step and one head over all
``tracks x beams`` rows, and the bookkeeping (which beams survive, which routes end, the best
finished routes so far) is done with tensor ops over all tracks instead of Python loops.

Same rules as `Forecaster.beam`, step by step, so the results are the same routes with the same
probabilities (up to float rounding of the batched matmuls):

* a route's score is the sum of its log-probabilities in float64; ending is one more candidate;
* each step keeps the ``width`` best continuations, skipping those no better than the worst of
  ``width`` finished routes; a track whose beams all end (or fall below that floor) stops;
* the answer is the finished routes followed by the open ones, best first (stable on ties).

One shortcut keeps this cheap: a track's ``width`` best continuations can only come from each beam's
own ``width`` best cells, so the float64 scores are formed for ``beams x width`` candidates instead
of ``beams x cells``.

Example:
    >>> routes = beam_many(model, [track_a, track_b], horizon=12, width=5)   # doctest: +SKIP
    >>> routes[0][0].cells, routes[0][0].p                                    # doctest: +SKIP
"""
from __future__ import annotations

import gc
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gridcast.errors import InputError
from gridcast.nextcell.forecaster import Forecaster, Route, _check_times
from gridcast.nextcell.network import CONTINUOUS_FEATURES, END, NO_CELL, PAD, RESERVED, UNKNOWN, step_features

__all__ = ["beam_many", "rollout_many"]

ROWS_PER_CHUNK = 8_000_000  # tracks x beams x outputs per chunk: bounds the head's memory (~100 MB)


def beam_many(model: Forecaster, prefixes: list[np.ndarray], horizon: int, width: int = 5,
              times: list[np.ndarray | None] | None = None, chunk: int | None = None) -> list[list[Route]]:
    """`Forecaster.beam` for every prefix: the `width` most probable continuations of each.

    Args:
        prefixes: one (n_i, 2) array of cells per track (any lengths >= 1).
        times: per prefix its times in seconds, or None (models with time features; as in `beam`).
        chunk: tracks advanced together (default: as many as fit ``ROWS_PER_CHUNK``).
    Returns: per prefix, up to `width` routes, most probable first.
    """
    model._check_fitted()
    if horizon < 1 or width < 1:
        raise InputError(f"horizon and beam width must be >= 1, got {horizon} and {width}")
    prefixes = [np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in prefixes]
    for i, p in enumerate(prefixes):
        if len(p) == 0:
            raise InputError(f"prefix {i} is empty: give at least one cell")
    if times is not None and len(times) != len(prefixes):
        raise InputError(f"{len(times)} time arrays for {len(prefixes)} prefixes")
    if chunk is None:
        outputs = len(model.vocab_) if model.config.target == "cell" else len(model.moves_) + 25
        chunk = max(1, ROWS_PER_CHUNK // (width * outputs))
    lookup = _CellLookup(model.vocab_.cells)
    model.net_.eval()
    routes: list[list[Route]] = []
    for start in range(0, len(prefixes), chunk):
        part_times = None if times is None else times[start:start + chunk]
        routes += _beam_chunk(model, prefixes[start:start + chunk], part_times, horizon, width, lookup)
    return routes


def rollout_many(model: Forecaster, prefixes: list[np.ndarray], horizon: int,
                 times: list[np.ndarray | None] | None = None, chunk: int | None = None) -> list[list[tuple[int, int]]]:
    """`Forecaster.rollout` for every prefix: the greedy continuation (a beam of width 1)."""
    return [r[0].cells if r else [] for r in beam_many(model, prefixes, horizon, 1, times, chunk)]


class _CellLookup:
    """Vectorised `CellVocab.ids`: cells (n, 2) -> token ids, via a sorted key array."""

    def __init__(self, cells: np.ndarray) -> None:
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        self.lo = cells.min(axis=0) if len(cells) else np.zeros(2, np.int64)
        self.span = int(cells[:, 1].max() - self.lo[1] + 1) if len(cells) else 1
        keys = self._keys(cells)
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]

    def _keys(self, cells: np.ndarray) -> np.ndarray:
        return (cells[:, 0] - self.lo[0]) * self.span + (cells[:, 1] - self.lo[1])

    def ids(self, cells: np.ndarray) -> np.ndarray:
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        out = np.full(len(cells), UNKNOWN, dtype=np.int64)
        if len(self.keys) == 0:
            return out
        inside = (cells[:, 1] >= self.lo[1]) & (cells[:, 1] < self.lo[1] + self.span) & (cells[:, 0] >= self.lo[0])
        keys = self._keys(cells)
        pos = np.clip(np.searchsorted(self.keys, keys), 0, len(self.keys) - 1)
        hit = inside & (self.keys[pos] == keys)
        out[hit] = self.order[pos[hit]] + RESERVED
        return out


@dataclass
class _Finished:
    """The best finished routes per track: p (N, W) float64 (-1 = empty slot), length, cells."""

    p: Tensor
    length: Tensor
    cells: Tensor  # (N, W, horizon, 2) int64


@torch.no_grad()
def _encode(model: Forecaster, prefixes: list[np.ndarray], times: list | None, lookup: _CellLookup):
    """Head outputs after each prefix's last cell (N, O), the recurrent state, and the time inputs
    of each prefix's last step (N, 6) or None, all from one packed pass."""
    n = len(prefixes)
    sizes = np.array([len(p) for p in prefixes])
    longest = int(sizes.max())
    flat = np.concatenate(prefixes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    track = np.repeat(np.arange(n), sizes)
    position = np.arange(len(flat)) - np.repeat(starts, sizes)
    if getattr(model.config, "time_features", False):  # per track: time inputs depend on its own times
        rows = np.concatenate([model._features(p, None if times is None else _check_times(times[i], len(p)))
                               for i, p in enumerate(prefixes)])
    else:
        previous = np.concatenate([flat[:1], flat[:-1]])
        previous[starts] = flat[starts]                # a track's first move is zero, as in sequence_features
        rows = step_features(flat, previous, model.norm_)
    ids = torch.full((n, longest), PAD, dtype=torch.long)
    features = torch.zeros(n, longest, rows.shape[1])
    ids[track, position] = torch.from_numpy(lookup.ids(flat))
    features[track, position] = torch.from_numpy(rows)
    lengths = torch.from_numpy(sizes)
    net = model.net_
    out = net.recurrent(net.inputs(ids, features), lengths=lengths)
    last_h = out.output[torch.arange(n), lengths - 1]
    clock = features[torch.arange(n), lengths - 1, CONTINUOUS_FEATURES:].numpy() if rows.shape[1] > CONTINUOUS_FEATURES else None
    return net.head(last_h), out.state, clock


@torch.no_grad()
def _beam_chunk(model: Forecaster, prefixes: list[np.ndarray], times: list | None, horizon: int, width: int,
                lookup: _CellLookup) -> list[list[Route]]:
    n = len(prefixes)
    lstm = model.config.cell == "lstm"
    plain_cells = model.config.target == "cell" and not getattr(model, "fusion", False)
    output, state, clock = _encode(model, prefixes, times, lookup)
    last = np.stack([p[-1] for p in prefixes])                                   # (N, 2) per beam row
    before = np.stack([p[-2] if len(p) > 1 else np.array([NO_CELL, NO_CELL]) for p in prefixes])
    beams = 1                                                                   # beams per track so far
    logps = torch.zeros(n, 1, dtype=torch.float64)                              # (N, beams); -inf = no beam
    open_cells = torch.zeros(n, 1, horizon, 2, dtype=torch.long)
    finished = _Finished(torch.full((n, width), -1.0, dtype=torch.float64), torch.zeros(n, width, dtype=torch.long),
                         torch.zeros(n, width, horizon, 2, dtype=torch.long))
    steps_done = 0
    track = torch.arange(n)
    for step in range(horizon):
        if not bool(torch.isfinite(logps).any()):
            break
        cands, logp, end = _distribution(model, output, last, before)           # (N*B, C, 2), (N*B, C), (N*B,)
        c = logp.shape[1]
        kk = min(width, c)
        top_lp, top_j = logp.topk(kk, dim=1)                                    # each beam's kk best cells
        cell_scores = (logps.reshape(-1, 1) + top_lp.double()).view(n, beams * kk)
        end_scores = (logps.reshape(-1) + end.double()).view(n, beams)
        scores = torch.cat([cell_scores, end_scores], dim=1)                    # (N, B*kk + B)
        top = scores.topk(min(width, scores.shape[1]), dim=1)
        values, index = top.values, top.indices                                 # (N, W')
        full = finished.p[:, -1] >= 0                                           # `width` routes finished
        floor = torch.where(full, finished.p[:, -1].clamp(min=1e-320).log(), torch.full_like(values[:, 0], -math.inf))
        valid = torch.isfinite(values) & (values > floor[:, None])
        is_end = index >= beams * kk
        ending = valid & is_end
        kept = valid & ~is_end
        if bool(ending.any()):
            parent = torch.where(is_end, index - beams * kk, 0)
            _add_finished(finished, values, ending, open_cells, parent, step, width)
        # Surviving beams, compacted to the front in score order.
        slots = values.shape[1]
        rank = torch.where(kept, torch.arange(slots), slots + torch.arange(slots)).argsort(dim=1)
        keep_values = torch.where(kept, values, torch.full_like(values, -math.inf)).gather(1, rank)
        keep_index = index.gather(1, rank).clamp(max=beams * kk - 1)
        parent = keep_index // kk                                                # beam within the track
        row = track[:, None] * beams + parent                                   # (N, W') flat parent rows
        j = top_j.view(n, beams, kk)[track[:, None], parent, keep_index % kk]  # candidate index
        rows_np, j_np = row.reshape(-1).numpy(), j.reshape(-1).numpy()
        new_cells = np.asarray(cands[rows_np, j_np], dtype=np.int64)            # (N*W', 2)
        before, last = last[rows_np], new_cells
        new_open = open_cells.view(n * beams, horizon, 2).index_select(0, row.reshape(-1)).view(n, slots, horizon, 2)
        new_open[:, :, step] = torch.from_numpy(new_cells).view(n, slots, 2)
        open_cells, logps, beams = new_open, keep_values, slots
        steps_done = step + 1
        flat_rows = row.reshape(-1)
        state = tuple(s.index_select(1, flat_rows) for s in state) if lstm else state.index_select(1, flat_rows)
        if step + 1 == horizon:
            break  # the last step's state would be used by nobody (Forecaster.beam computes it anyway)
        token = (j_np + RESERVED) if plain_cells else lookup.ids(new_cells)
        step_rows = step_features(new_cells, before, model.norm_)
        if clock is not None:  # time inputs ahead repeat those of the prefix's last step
            step_rows = np.concatenate([step_rows, np.repeat(clock, slots, axis=0)], axis=1)
        features = torch.from_numpy(step_rows)
        output, state = model.net_.step(torch.from_numpy(np.asarray(token, dtype=np.int64)), features, state)
    return _collect(finished, logps, open_cells, steps_done, width)


def _distribution(model: Forecaster, output: Tensor, last: np.ndarray, before: np.ndarray):
    """`Forecaster._distribution`; for the plain cell head in place on the head output (which is
    ours to overwrite), saving a copy of the largest tensor of the search. Same ops, same numbers."""
    if model.config.target != "cell" or getattr(model, "fusion", False):
        return model._distribution(output, last, before) if model.config.target == "cell" else model._distribution(output, last)
    output[:, PAD] = -math.inf
    output[:, UNKNOWN] = -math.inf
    logp = torch.log_softmax(output, dim=-1)
    cells = model.vocab_.cells
    return np.broadcast_to(cells, (len(output),) + cells.shape), logp[:, RESERVED:], logp[:, END]


def _add_finished(finished: _Finished, values: Tensor, ending: Tensor, open_cells: Tensor, parent: Tensor,
                  step: int, width: int) -> None:
    """Merge this step's ended routes into the best `width` finished ones (old first on ties)."""
    n = values.shape[0]
    new_p = torch.where(ending, values.exp(), torch.full_like(values, -1.0))
    new_cells = open_cells[torch.arange(n)[:, None], parent]                   # (N, W', horizon, 2)
    new_len = torch.full_like(parent, step)
    p = torch.cat([finished.p, new_p], dim=1)
    order = p.argsort(dim=1, descending=True, stable=True)[:, :width]
    finished.p = p.gather(1, order)
    finished.length = torch.cat([finished.length, new_len], dim=1).gather(1, order)
    cells = torch.cat([finished.cells, new_cells], dim=1)
    finished.cells = cells[torch.arange(n)[:, None], order]


def _collect(finished: _Finished, logps: Tensor, open_cells: Tensor, steps: int, width: int) -> list[list[Route]]:
    """Finished then open routes per track, best first, as `Route` objects.

    Hundreds of thousands of small tuples are made here; the cyclic garbage collector would walk
    every live object several times meanwhile (it was a quarter of the whole search), so it is
    paused: nothing made here can form a cycle.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        fin_p, fin_len = finished.p.tolist(), finished.length.tolist()
        fin_cells = finished.cells.numpy()
        open_p = logps.exp().tolist()
        open_ok = torch.isfinite(logps).tolist()
        open_cells = open_cells[:, :, :steps].numpy()
        result = []
        for t in range(len(fin_p)):
            routes = [Route(list(map(tuple, fin_cells[t, s, :fin_len[t][s]].tolist())), fin_p[t][s], True)
                      for s in range(width) if fin_p[t][s] >= 0]
            routes += [Route(list(map(tuple, open_cells[t, s].tolist())), open_p[t][s], False)
                       for s in range(len(open_p[t])) if open_ok[t][s]]
            routes.sort(key=lambda r: -r.p)
            result.append(routes[:width])
        return result
    finally:
        if paused:
            gc.enable()
