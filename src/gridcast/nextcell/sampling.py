"""Sampled routes, and the point forecast of "where will it be" that they give.

Beam search answers "which way": the likeliest *sequences*. At a fixed time step that is the
wrong answer for "where will it be at t + k": most steps are stays, so the likeliest sequence is
"stay forever" even when nearly every real trip moves on. Sampling continuations step by step
from the model's (calibrated) distribution draws from the distribution of *positions* at every
step instead, and the per-step geometric medoid of the samples (the sampled cell with the least
total distance to the others) estimates the position that minimises the expected distance to the
truth, which is what ADE/FDE measure. The medoid is a cell the samples really visit, so it never
sits in a field between two roads the way a mean position can.

Sampling is batched like `batch.beam_many`: ``prefixes x n`` rows advance together, one recurrent
step and one head per step. The random numbers of each prefix come from a generator keyed by the
seed and the prefix itself, so a prefix gets the same samples alone (``predict --track``), in a
file (``predict DATA``, ``evaluate``) and whatever the order of the tracks.
A sample that draws the end of route stays at its last cell for the remaining steps.

Example:
    >>> import numpy as np
    >>> from gridcast.nextcell import Forecaster
    >>> from gridcast.tracks import Track
    >>> route = np.array([[x, 3] for x in range(14, 0, -1)])
    >>> f = Forecaster(cell="gru", hidden=16).fit([Track(str(i), route) for i in range(8)], epochs=20)
    >>> s = sample_routes(f, [route[:3]], horizon=4, n=8, seed=0)[0]
    >>> s.cells.shape
    (8, 4, 2)
    >>> point_forecast(s.cells).shape
    (4, 2)
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from gridcast.errors import InputError
from gridcast.nextcell.batch import checked_prefixes
from gridcast.nextcell.features import (
    CONTINUOUS_FEATURES,
    PAD,
    RESERVED,
    TIME_FEATURES,
    advance_dwell,
    dwell_counts,
)
from gridcast.nextcell.forecaster import Forecaster

__all__ = ["SampledRoutes", "sample_routes", "point_forecast", "modal_cells", "expected_distance", "POINT_METHODS",
           "DEFAULT_SAMPLES", "POINT_TOP_P", "point_forecasts", "marginal_modes", "MARGINAL_SAMPLES"]

#: samples per prefix where a caller does not say (evaluate's point forecast and best-of-N)
DEFAULT_SAMPLES = 20
#: the point forecasts `point_forecast` knows: "medoid" (default) and "mean" (rounded expected position)
POINT_METHODS = ("medoid", "mean")
#: the nucleus the point forecast samples from: the network's long tail (every cell of the vocabulary
#: keeps a little mass) compounds over a route into jumps across the map; measured against 0.95 and
#: 1.0 on the Liverpool demo (collapsed) and at a fixed 30 s step (docs/contracts.md, README)
POINT_TOP_P = 0.9
#: sampled paths per prefix that `marginal_modes` averages the model's step distributions over
MARGINAL_SAMPLES = 100
NUCLEUS_MAX = 64  # candidates a nucleus holds at most (a top-k, so no full sort per step)
ROWS_PER_CHUNK = 8_000_000  # rows x outputs per chunk: bounds the head's memory (~100 MB), as in batch


@dataclass
class SampledRoutes:
    """n sampled continuations of one prefix.

    Attributes:
        cells: (n, horizon, 2) int64; a sample that ended repeats its last cell to the horizon.
        ended: (n,) the step (0-based) at which each sample drew the end of route; -1 for none.
    """

    cells: np.ndarray
    ended: np.ndarray

    def route(self, i: int) -> list[tuple[int, int]]:
        """Sample `i` up to its end (the cells it really visited before ending)."""
        stop = int(self.ended[i]) if self.ended[i] >= 0 else self.cells.shape[1]
        return [(int(c), int(r)) for c, r in self.cells[i, :stop]]


def sample_routes(model: Forecaster, prefixes: list[np.ndarray], horizon: int, n: int = DEFAULT_SAMPLES,
                  seed: int = 0, times: list[np.ndarray | None] | None = None, chunk: int | None = None,
                  continuing: bool = False, top_p: float = 1.0,
                  marginals: list | None = None) -> list[SampledRoutes]:
    """`n` continuations of `horizon` steps for every prefix, drawn from the model's distribution.

    Args:
        prefixes: one (n_i, 2) array of cells per track (lengths >= 1).
        times: per prefix its times in seconds, or None (models with time features; as in `beam`).
        seed: with the prefix's cells, keys its random numbers: the same prefix and seed give the same
            samples, whatever else is in the batch.
        chunk: prefixes sampled together (default: as many as fit ``ROWS_PER_CHUNK``).
        continuing: sample given that the route goes on for the whole horizon (the end of route is
            never drawn; the other candidates keep their relative probabilities). For "where will it
            be after k more steps" when it is known to keep moving, as in `evaluate`'s routes.
        top_p: draw from the smallest set of candidates holding this much probability (nucleus
            sampling; 1.0: from all of them).
        marginals: when a list, gets per prefix a (horizon, 2) array: per step the cell with the
            most mass in the mean of the step distributions along the sampled paths (`marginal_modes`).
    """
    model.check_fitted()
    if not 0.0 < top_p <= 1.0:
        raise InputError(f"top_p must be in (0, 1], got {top_p}")
    if horizon < 1 or n < 1:
        raise InputError(f"horizon and samples must be >= 1, got {horizon} and {n}")
    prefixes = checked_prefixes(prefixes, times)
    if chunk is None:
        outputs = model.output_size() + 25 * (model.config.target == "offset")
        chunk = max(1, ROWS_PER_CHUNK // (n * outputs))
    model.net_.eval()
    out: list[SampledRoutes] = []
    for start in range(0, len(prefixes), chunk):
        part_times = None if times is None else times[start:start + chunk]
        part = prefixes[start:start + chunk]
        uniforms = np.stack([_uniforms(q, seed, n, horizon) for q in part])   # (P, n, horizon)
        out += _sample_chunk(model, part, part_times, horizon, n, uniforms, continuing, top_p, marginals)
    return out


@torch.no_grad()
def _encode_last(model: Forecaster, prefixes: list[np.ndarray], times: list | None):
    """Head outputs after each prefix's last cell (P, O), the recurrent state and the last
    step's inputs (P, F), from one packed pass over inputs built by `Forecaster.encode`."""
    sizes = np.array([len(p) for p in prefixes])
    encoded = [model.encode(p, None if times is None else times[i]) for i, p in enumerate(prefixes)]
    ids = torch.full((len(prefixes), int(sizes.max())), PAD, dtype=torch.long)
    features = torch.zeros(len(prefixes), int(sizes.max()), encoded[0][1].shape[1])
    for i, (token, rows) in enumerate(encoded):
        ids[i, :len(token)] = torch.from_numpy(token)
        features[i, :len(rows)] = torch.from_numpy(rows)
    lengths = torch.from_numpy(sizes)
    net = model.net_
    result = net.recurrent(net.inputs(ids, features), lengths=lengths)
    rows = torch.arange(len(prefixes))
    return net.head(result.output[rows, lengths - 1]), result.state, features[rows, lengths - 1].numpy()


@torch.no_grad()
def _sample_chunk(model: Forecaster, prefixes: list[np.ndarray], times: list | None, horizon: int, n: int,
                  uniforms: np.ndarray, continuing: bool, top_p: float,
                  marginals: list | None = None) -> list[SampledRoutes]:
    output, state, last_inputs = _encode_last(model, prefixes, times)
    p = len(prefixes)
    rows = np.repeat(np.arange(p), n)                                        # sample row -> prefix
    index = torch.from_numpy(rows)
    output = output.index_select(0, index)
    lstm = model.config.cell == "lstm"
    state = tuple(s.index_select(1, index) for s in state) if lstm else state.index_select(1, index)
    clock = last_inputs[rows, CONTINUOUS_FEATURES:CONTINUOUS_FEATURES + TIME_FEATURES] \
        if model.config.time_features else None                              # time inputs ahead repeat the last step's
    counts = [dwell_counts(q) for q in prefixes]                             # dwell inputs follow each sample
    run = np.array([r[-1] for r, _ in counts], np.int64)[rows]
    held = np.array([h[-1] for _, h in counts], np.int64)[rows]
    last = np.stack([q[-1] for q in prefixes])[rows]
    before = np.concatenate([model.came_from(q)[-1:] for q in prefixes])[rows]   # the head's "came from"
    plain_cells = model.config.target == "cell" and not model.fusion
    cells = np.empty((p * n, horizon, 2), dtype=np.int64)
    ended = np.full(p * n, -1, dtype=np.int64)
    modes = np.empty((p, horizon, 2), dtype=np.int64)
    for step in range(horizon):
        cands, logp, end = model.distribution(output, last, before, run + 1) if model.config.target == "cell" \
            else model.distribution(output, last)
        end = torch.full_like(end, -math.inf) if continuing else end
        scores = torch.cat([logp.float(), end.float()[:, None]], dim=1)
        probs = torch.exp(scores - scores.max(dim=1, keepdim=True).values.clamp(min=-1e30))
        probs = torch.nan_to_num(probs, nan=0.0)
        dead = probs.sum(dim=1) <= 0                                          # nothing possible: the route ends
        probs[dead, -1] = 1.0
        if top_p < 1.0:
            probs = _nucleus(probs, top_p)
        if marginals is not None:
            modes[:, step] = _marginal_modes(probs, cands, last, ended >= 0, n)
        pick = _draw(probs, torch.from_numpy(uniforms[:, :, step].reshape(-1)))
        stops = (pick == scores.shape[1] - 1) & (ended < 0)
        ended[stops] = step
        j = np.minimum(pick, scores.shape[1] - 2)
        drawn = np.asarray(cands[np.arange(len(pick)), j], dtype=np.int64)
        new = np.where((ended >= 0)[:, None], last, drawn)                   # an ended sample stays where it is
        cells[:, step] = new
        if step + 1 == horizon:
            break
        token = (j + RESERVED) if plain_cells else model.vocab_.ids(new)
        run, held = advance_dwell(run, held, np.all(new == last, axis=1))
        inputs = model.step_inputs(new, last, clock, (run, held))
        before, last = model.advance_came(before, last, new), new
        output, state = model.net_.step(torch.from_numpy(np.asarray(token, dtype=np.int64)),
                                        torch.from_numpy(inputs), state)
    cells = cells.reshape(p, n, horizon, 2)
    ended = ended.reshape(p, n)
    if marginals is not None:
        marginals.extend(modes)
    return [SampledRoutes(cells[i], ended[i]) for i in range(p)]


def _marginal_modes(probs: torch.Tensor, cands: np.ndarray, last: np.ndarray, stopped: np.ndarray,
                    n: int) -> np.ndarray:
    """Per prefix (rows ``i*n .. i*n+n-1``) the cell with the most mass in the mean of its rows' step
    distributions (the end of route and a sample that already ended keep their mass on the last cell:
    a route that ends is still there). Each row contributes its ``NUCLEUS_MAX`` most probable
    candidates; ties go to the smallest (col, row)."""
    k = min(NUCLEUS_MAX, probs.shape[1])
    total = probs.sum(dim=1, keepdim=True).clamp(min=1e-300)
    top, order = (probs / total).double().topk(k, dim=1)
    top, order = top.numpy(), order.numpy()
    rows = np.arange(len(order))[:, None]
    end = order == probs.shape[1] - 1
    where = np.asarray(cands[rows, np.minimum(order, probs.shape[1] - 2)], dtype=np.int64)
    where = np.where(end[..., None], last[:, None, :], where)
    where[stopped] = last[stopped][:, None, :]
    top[stopped] = 0.0
    top[stopped, 0] = 1.0
    out = np.empty((len(order) // n, 2), dtype=np.int64)
    for i in range(len(out)):
        cells = where[i * n:(i + 1) * n].reshape(-1, 2)
        unique, inverse = np.unique(cells, axis=0, return_inverse=True)
        mass = np.bincount(inverse.reshape(-1), weights=top[i * n:(i + 1) * n].reshape(-1), minlength=len(unique))
        out[i] = unique[int(np.argmax(mass))]
    return out


def marginal_modes(model: Forecaster, prefixes: list[np.ndarray], horizon: int, n: int = MARGINAL_SAMPLES,
                   seed: int = 0, times: list[np.ndarray | None] | None = None,
                   continuing: bool = False, top_p: float = POINT_TOP_P) -> list[np.ndarray]:
    """Per prefix and step k the mode of the model's marginal distribution of the cell k steps ahead:
    "which cell at t + k". The marginal is estimated as the mean of the step-k distributions along
    `n` paths sampled step by step (the marginal in expectation, with far less noise than counting
    sampled cells); at k = 1 every path shares the prefix, so the mode is exactly the top of the
    next-step distribution. `top_p`: the nucleus both the paths and the averaged distributions are
    cut to (default the point forecast's: the long tail compounds over a route into jumps across
    the map). Seeded as `sample_routes`."""
    out: list[np.ndarray] = []
    sample_routes(model, prefixes, horizon, n=n, seed=seed, times=times, continuing=continuing, top_p=top_p,
                  marginals=out)
    return out


def _uniforms(prefix: np.ndarray, seed: int, n: int, horizon: int) -> np.ndarray:
    """(n, horizon) uniforms for one prefix, from a generator keyed by the seed and the prefix's
    cells: a prefix gets the same samples alone, in a file or in another order."""
    key = zlib.crc32(np.ascontiguousarray(prefix, dtype=np.int64).tobytes())
    return np.random.default_rng([int(seed), key, len(prefix)]).random((n, horizon))


def _draw(probs: torch.Tensor, u: torch.Tensor) -> np.ndarray:
    """Per row, the candidate whose cumulative share of the row's mass first exceeds u (inverse CDF)."""
    cum = probs.double().cumsum(dim=1)
    below = cum < (u.double().clamp(min=1e-12) * cum[:, -1])[:, None]  # a zero-mass candidate is never drawn
    pick = below.sum(dim=1).clamp(max=probs.shape[1] - 1)
    return pick.numpy()


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Per row, keep only the smallest most-probable set of candidates holding `top_p` of the row's
    mass (at most ``NUCLEUS_MAX`` of them; the most probable always stays), zero elsewhere."""
    k = min(NUCLEUS_MAX, probs.shape[1])
    ordered, order = probs.topk(k, dim=1)
    cum = ordered.cumsum(dim=1)
    outside = (cum - ordered) > top_p * probs.sum(dim=1, keepdim=True)
    return torch.zeros_like(probs).scatter_(1, order, ordered.masked_fill(outside, 0.0))


def point_forecasts(model: Forecaster, prefixes: list[np.ndarray], horizon: int,
                    times: list[np.ndarray | None] | None = None, samples: int = DEFAULT_SAMPLES,
                    seed: int = 0, continuing: bool = False) -> list[np.ndarray]:
    """The point forecast (horizon, 2) of every prefix, as `gridcast predict` makes it: the per-step
    medoid of `samples` routes drawn from the ``POINT_TOP_P`` nucleus; a sample that ends stays
    where it ended (a trip that reaches its terminus is there). `continuing`: given that the route
    goes on for the whole horizon (what `evaluate` measures, where the truth is known to go on)."""
    drawn = sample_routes(model, prefixes, horizon, n=samples, seed=seed, times=times, continuing=continuing,
                          top_p=POINT_TOP_P)
    return [point_forecast(s.cells) for s in drawn]


def point_forecast(samples: np.ndarray, method: str = "medoid") -> np.ndarray:
    """The cell per step that best answers "where will it be" under the samples (n, horizon, 2).

    ``"medoid"``: per step the sampled cell with the least total Euclidean distance to all samples
    (the sample nearest the geometric median, which minimises the expected distance; ties go to the
    first sample); ``"mean"``: the mean position rounded to a cell (minimises squared distance).

    >>> s = np.array([[[0, 0], [0, 0]], [[0, 0], [4, 0]], [[0, 0], [5, 0]]])
    >>> point_forecast(s).tolist(), point_forecast(s, "mean").tolist()
    ([[0, 0], [4, 0]], [[0, 0], [3, 0]])
    """
    samples = np.asarray(samples, dtype=np.int64)
    if samples.ndim != 3 or samples.shape[2] != 2 or samples.shape[0] == 0:
        raise InputError(f"samples must be (n >= 1, horizon, 2), got shape {samples.shape}")
    if method == "mean":
        return np.rint(samples.mean(axis=0)).astype(np.int64)
    if method != "medoid":
        raise InputError(f"unknown point forecast {method!r}: choose one of {', '.join(POINT_METHODS)}")
    per_step = samples.transpose(1, 0, 2).astype(np.float64)                 # (horizon, n, 2)
    dist = np.linalg.norm(per_step[:, :, None, :] - per_step[:, None, :, :], axis=-1).sum(axis=2)
    best = dist.argmin(axis=1)
    return samples[best, np.arange(samples.shape[1])]


def modal_cells(samples: np.ndarray) -> np.ndarray:
    """Per step the most frequent sampled cell (horizon, 2): the answer to "which cell at t + k"
    (acc@1 at a horizon); ties go to the cell sampled first."""
    samples = np.asarray(samples, dtype=np.int64)
    out = np.empty(samples.shape[1:], dtype=np.int64)
    for k in range(samples.shape[1]):
        values, first, counts = np.unique(samples[:, k], axis=0, return_index=True, return_counts=True)
        best = max(range(len(values)), key=lambda i: (counts[i], -first[i]))
        out[k] = values[best]
    return out


def expected_distance(point: np.ndarray, outcomes: np.ndarray, weights: np.ndarray) -> float:
    """Mean over steps of the expected Euclidean distance from `point` (horizon, 2) to a known
    distribution of routes: `outcomes` (m, horizon, 2) with probabilities `weights` (m,)."""
    d = np.linalg.norm(np.asarray(outcomes, np.float64) - np.asarray(point, np.float64)[None], axis=-1)
    return float((np.asarray(weights, np.float64) @ d).mean() / max(math.fsum(weights), 1e-300))
