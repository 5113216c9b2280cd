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
from gridcast.nextcell.features import (
    CONTINUOUS_FEATURES,
    END,
    PAD,
    RESERVED,
    TIME_FEATURES,
    UNKNOWN,
    advance_dwell,
    dwell_counts,
    step_features,
)
from gridcast.nextcell.forecaster import Forecaster, NextCell, Route

__all__ = ["beam_many", "rollout_many", "predict_many", "Prediction", "checked_prefixes"]

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
    return _search(model, prefixes, horizon, width, times, chunk)[0]


def _search(model: Forecaster, prefixes: list[np.ndarray], horizon: int, width: int,
            times: list[np.ndarray | None] | None, chunk: int | None, next_k: int = 0
            ) -> tuple[list[list[Route]], list[tuple[list[NextCell], float]]]:
    """Beams of every prefix, and with ``next_k`` also each prefix's top-`next_k` next cells and
    probability of ending, read off the search's first step (the same encoding pass)."""
    model.check_fitted()
    if horizon < 1 or width < 1:
        raise InputError(f"horizon and beam width must be >= 1, got {horizon} and {width}")
    prefixes = checked_prefixes(prefixes, times)
    if chunk is None:
        outputs = len(model.vocab_) if model.config.target == "cell" else len(model.moves_) + 25
        chunk = max(1, ROWS_PER_CHUNK // (width * outputs))
    model.net_.eval()
    routes: list[list[Route]] = []
    nexts: list[tuple[list[NextCell], float]] = []
    for start in range(0, len(prefixes), chunk):
        part_times = None if times is None else times[start:start + chunk]
        part_routes, part_nexts = _beam_chunk(model, prefixes[start:start + chunk], part_times, horizon, width, next_k)
        routes += part_routes
        nexts += part_nexts
    return routes, nexts


@dataclass
class Prediction:
    """What `gridcast predict MODEL DATA` prints for one track: the top-k next cells, the
    probability that the route ends here instead, and the most probable continuations."""

    next: list[NextCell]
    p_end: float
    routes: list[Route]


def predict_many(model: Forecaster, prefixes: list[np.ndarray], horizon: int, width: int = 5, k: int = 5,
                 times: list[np.ndarray | None] | None = None, exact: bool = True,
                 chunk: int | None = None) -> list[Prediction]:
    """`Forecaster.predict_next_with_end` and `beam_many` for every prefix, in one call.

    Args:
        k: next-cell candidates per prefix; width, horizon, times, chunk: as in `beam_many`.
        exact: True: the next cells come from each prefix's own pass, bit for bit what
            `predict_next_with_end` returns (what `gridcast predict` prints), at the cost of a second
            pass over every prefix. False: they come from the first step of the beam search's batched
            pass (the network runs once per prefix); equal up to float rounding of the batched
            matmuls, which moves the last digits of the probabilities.
    """
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    routes, nexts = _search(model, prefixes, horizon, width, times, chunk, next_k=0 if exact else k)
    if exact:
        nexts = [model.predict_next_with_end(p, k, None if times is None else times[i])
                 for i, p in enumerate(prefixes)]
    return [Prediction(cells, p_end, track_routes) for (cells, p_end), track_routes in zip(nexts, routes)]


def rollout_many(model: Forecaster, prefixes: list[np.ndarray], horizon: int,
                 times: list[np.ndarray | None] | None = None, chunk: int | None = None) -> list[list[tuple[int, int]]]:
    """`Forecaster.rollout` for every prefix: the greedy continuation (a beam of width 1)."""
    return [r[0].cells if r else [] for r in beam_many(model, prefixes, horizon, 1, times, chunk)]


@dataclass
class _Finished:
    """The best finished routes per track: p (N, W) float64 (-1 = empty slot), length, cells."""

    p: Tensor
    length: Tensor
    cells: Tensor  # (N, W, horizon, 2) int64


@torch.no_grad()
def _encode(model: Forecaster, prefixes: list[np.ndarray], times: list | None):
    """Head outputs after each prefix's last cell (N, O), the recurrent state, the time inputs
    of each prefix's last step (N, 6) or None, and each prefix's dwell counts at its last step
    ((N,), (N,)), all from one packed pass."""
    n = len(prefixes)
    sizes = np.array([len(p) for p in prefixes])
    longest = int(sizes.max())
    flat = np.concatenate(prefixes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    track = np.repeat(np.arange(n), sizes)
    position = np.arange(len(flat)) - np.repeat(starts, sizes)
    timed = getattr(model.config, "time_features", False)
    if timed or getattr(model.config, "dwell_features", False):  # per track: inputs depend on its own times / stays
        rows = np.concatenate([model.encode(p, None if times is None else times[i])[1]
                               for i, p in enumerate(prefixes)])
    else:
        previous = np.concatenate([flat[:1], flat[:-1]])
        previous[starts] = flat[starts]                # a track's first move is zero, as in sequence_features
        rows = step_features(flat, previous, model.norm_)
    ids = torch.full((n, longest), PAD, dtype=torch.long)
    features = torch.zeros(n, longest, rows.shape[1])
    ids[track, position] = torch.from_numpy(model.vocab_.ids(flat))
    features[track, position] = torch.from_numpy(rows)
    lengths = torch.from_numpy(sizes)
    net = model.net_
    out = net.recurrent(net.inputs(ids, features), lengths=lengths)
    last_h = out.output[torch.arange(n), lengths - 1]
    clock = features[torch.arange(n), lengths - 1, CONTINUOUS_FEATURES:CONTINUOUS_FEATURES + TIME_FEATURES].numpy() \
        if timed else None
    counts = [dwell_counts(p) for p in prefixes]
    dwell = (np.array([r[-1] for r, _ in counts], np.int64), np.array([h[-1] for _, h in counts], np.int64))
    return net.head(last_h), out.state, clock, dwell


@torch.no_grad()
def _beam_chunk(model: Forecaster, prefixes: list[np.ndarray], times: list | None, horizon: int, width: int,
                next_k: int = 0) -> tuple[list[list[Route]], list[tuple[list[NextCell], float]]]:
    n = len(prefixes)
    lstm = model.config.cell == "lstm"
    plain_cells = model.config.target == "cell" and not getattr(model, "fusion", False)
    output, state, clock, (run, held) = _encode(model, prefixes, times)
    last = np.stack([p[-1] for p in prefixes])                                   # (N, 2) per beam row
    before = np.concatenate([model.came_from(p)[-1:] for p in prefixes])         # the head's "came from"
    beams = 1                                                                   # beams per track so far
    logps = torch.zeros(n, 1, dtype=torch.float64)                              # (N, beams); -inf = no beam
    open_cells = torch.zeros(n, 1, horizon, 2, dtype=torch.long)
    finished = _Finished(torch.full((n, width), -1.0, dtype=torch.float64), torch.zeros(n, width, dtype=torch.long),
                         torch.zeros(n, width, horizon, 2, dtype=torch.long))
    steps_done = 0
    track = torch.arange(n)
    nexts: list[tuple[list[NextCell], float]] = []
    for step in range(horizon):
        if not bool(torch.isfinite(logps).any()):
            break
        cands, logp, end = _distribution(model, output, last, before, run + 1)  # (N*B, C, 2), (N*B, C), (N*B,)
        if step == 0 and next_k:
            nexts = _top_next(cands, logp, end, next_k)
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
        previous, last = last[rows_np], new_cells
        before = model.advance_came(before[rows_np], previous, new_cells)
        run, held = advance_dwell(run[rows_np], held[rows_np], np.all(new_cells == previous, axis=1))
        new_open = open_cells.view(n * beams, horizon, 2).index_select(0, row.reshape(-1)).view(n, slots, horizon, 2)
        new_open[:, :, step] = torch.from_numpy(new_cells).view(n, slots, 2)
        open_cells, logps, beams = new_open, keep_values, slots
        steps_done = step + 1
        flat_rows = row.reshape(-1)
        state = tuple(s.index_select(1, flat_rows) for s in state) if lstm else state.index_select(1, flat_rows)
        if step + 1 == horizon:
            break  # the last step's state would be used by nobody (Forecaster.beam computes it anyway)
        token = (j_np + RESERVED) if plain_cells else model.vocab_.ids(new_cells)
        # time inputs ahead repeat those of the prefix's last step; dwell counts follow each beam
        step_rows = model.step_inputs(new_cells, previous, None if clock is None else np.repeat(clock, slots, axis=0),
                                      (run, held))
        features = torch.from_numpy(step_rows)
        output, state = model.net_.step(torch.from_numpy(np.asarray(token, dtype=np.int64)), features, state)
    return _collect(finished, logps, open_cells, steps_done, width), nexts


def _distribution(model: Forecaster, output: Tensor, last: np.ndarray, before: np.ndarray, spent: np.ndarray):
    """`Forecaster.distribution`; for the plain cell head in place on the head output (which is
    ours to overwrite), saving a copy of the largest tensor of the search. Same ops, same numbers."""
    if model.config.target != "cell" or getattr(model, "fusion", False) or not model.config.learns_end:
        return model.distribution(output, last, before, spent) if model.config.target == "cell" \
            else model.distribution(output, last)
    if model.temperature != 1.0:  # calibration, as in `Forecaster.distribution`
        output.div_(model.temperature)
    output[:, PAD] = -math.inf
    output[:, UNKNOWN] = -math.inf
    logp = torch.log_softmax(output, dim=-1)
    cells = model.vocab_.cells
    return np.broadcast_to(cells, (len(output),) + cells.shape), logp[:, RESERVED:], logp[:, END]


def _top_next(cands: np.ndarray, logp: Tensor, end: Tensor, k: int) -> list[tuple[list[NextCell], float]]:
    """Per row, the k most probable next cells and the probability of ending, as
    `Forecaster.predict_next_with_end` reads them off a distribution."""
    out = []
    for row in range(len(logp)):
        top = torch.topk(logp[row], min(k, int(torch.isfinite(logp[row]).sum())))
        cells = [NextCell((int(cands[row, j, 0]), int(cands[row, j, 1])), float(math.exp(v)))
                 for v, j in zip(top.values.tolist(), top.indices.tolist())]
        out.append((cells, float(math.exp(float(end[row])))))
    return out


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


def checked_prefixes(prefixes: list[np.ndarray], times: list | None = None) -> list[np.ndarray]:
    """Prefixes as (n, 2) int64 cell arrays, each with at least one cell, and (when given) one times
    array per prefix: what every batched search and sampler needs before it starts."""
    prefixes = [np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in prefixes]
    for i, p in enumerate(prefixes):
        if len(p) == 0:
            raise InputError(f"prefix {i} is empty: give at least one cell")
    if times is not None and len(times) != len(prefixes):
        raise InputError(f"{len(times)} time arrays for {len(prefixes)} prefixes")
    return prefixes
