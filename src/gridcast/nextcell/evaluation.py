"""Evaluate a forecaster beside its baselines on the same held-out tracks.

Two questions, one table:

* **next cell**: for every step of every test track, where does the true next cell rank?
  -> ``acc@1``, ``acc@5``, ``mrr`` (and ``nll`` for the model, over next cells it can output);
* **rest of the route**: from the first half of each test track, continue greedily for as many
  steps as the track really had -> ``ade_cells``/``fde_cells``, and ``ade``/``fde`` in metres when the
  grid is metric.

Bootstrap intervals resample whole test tracks. `paired_difference` compares two predictors on the
very same steps (model minus baseline), resampling tracks for both at once: the honest test of
"beats", since both share every hard and easy trip. `verdict` says it in one line per metric
(`gridcast evaluate` and `gridcast demo` both print it).

Baselines are fitted on the tracks the model saw before the test period (its training *and*
validation tracks, stored in the model directory), whatever the model's head: `evaluate` fits any
baseline passed unfitted on exactly those.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.metrics import MISS_RANK, bootstrap_interval, per_example_errors, ranking_metrics
from gridcast.nextcell.baselines import CellBaseline
from gridcast.nextcell.calibration import calibration_error
from gridcast.nextcell.forecaster import Forecaster
from gridcast.nextcell.sampling import (
    DEFAULT_SAMPLES,
    MARGINAL_SAMPLES,
    POINT_TOP_P,
    marginal_modes,
    point_forecast,
    sample_routes,
)
from gridcast.tracks import Track

RANK_METRICS = ("acc@1", "acc@5", "mrr")
HORIZONS = (1, 5, 10)  # steps ahead at which ``acc@1+k`` is measured
MAX_HORIZON_CASES = 60  # prefixes continued for acc@1+k at most (evenly spaced steps): keeps evaluate fast
MARGINAL_PATHS = 32  # a baseline's likeliest paths its +k marginal is summed over (the rest is pruned)
LOWER_IS_BETTER = ("ade", "fde", "nll", "ece")  # prefixes: ade_cells, fde_cells too


def baseline_ranks(baseline: CellBaseline, cells: np.ndarray) -> np.ndarray:
    """Rank of each true next cell under a baseline's scores (ties count against the truth)."""
    ranks = np.empty(len(cells) - 1, dtype=np.int64)
    for t in range(1, len(cells)):
        scores = baseline.scores(cells[:t])
        true = scores.get((int(cells[t, 0]), int(cells[t, 1])))
        values = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
        ranks[t - 1] = MISS_RANK if true is None else int((values >= true).sum())
    return ranks


def route_errors(rollout: Callable[[np.ndarray, int], list], tracks: list[Track], cut: float = 0.5,
                 horizon: int | None = None, with_times: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-track mean and final distance (in cells) between the continuation and the real route.

    From the first `cut` of each track, continue for `horizon` cells (default: as many as the track
    really had; fewer where the track ends sooner). `with_times`: pass the observed part's times
    to ``rollout(prefix, n, times=...)`` (models with time inputs)."""
    cases = route_cases(tracks, cut, horizon)
    return _errors([_rollout(rollout, c, with_times) for c in cases], cases)


@dataclass
class RouteCase:
    """One track cut for the route metrics: what was observed and what really followed."""

    prefix: np.ndarray
    times: np.ndarray | None
    truth: np.ndarray  # (h, 2) the cells that really came next (h >= 1)


def route_cases(tracks: list[Track], cut: float = 0.5, horizon: int | None = None) -> list[RouteCase]:
    """The first `cut` of each track observed, the rest (at most `horizon` cells) to predict;
    tracks with nothing left to predict are skipped."""
    cases = []
    for track in tracks:
        n_obs = max(1, int(len(track) * cut))
        truth = track.cells[n_obs:]
        if horizon is not None:
            truth = truth[:horizon]
        if len(truth):
            cases.append(RouteCase(track.cells[:n_obs], None if track.times is None else track.times[:n_obs], truth))
    return cases


def _rollout(rollout: Callable, case: RouteCase, with_times: bool) -> np.ndarray:
    """A predictor's continuation for `case`, as (h, 2) cells: a route that ends early (or at once)
    stays at its last cell."""
    n = len(case.truth)
    predicted = rollout(case.prefix, n, times=case.times) if with_times else rollout(case.prefix, n)
    return _padded(np.asarray(predicted, dtype=np.int64).reshape(-1, 2), case)


def _padded(predicted: np.ndarray, case: RouteCase) -> np.ndarray:
    n = len(case.truth)
    if len(predicted) == 0:
        predicted = case.prefix[-1:]
    if len(predicted) < n:
        predicted = np.concatenate([predicted, np.repeat(predicted[-1:], n - len(predicted), axis=0)])
    return predicted[:n]


def _errors(predicted: list[np.ndarray], cases: list[RouteCase]) -> tuple[np.ndarray, np.ndarray]:
    ade, fde = [], []
    for route, case in zip(predicted, cases):
        errors = per_example_errors(route[None].astype(np.float64), case.truth[None].astype(np.float64))
        ade.append(errors["ade"][0])
        fde.append(errors["fde"][0])
    return np.asarray(ade), np.asarray(fde)


def horizon_cases(tracks: list[Track], stride: int = 1) -> list[RouteCase]:
    """Every `stride`-th step of every track as a prefix, with the next ``max(HORIZONS)`` true cells:
    the cases of ``acc@1+k`` (a step counts for k when its track goes on for k more cells)."""
    longest = max(HORIZONS)
    cases = []
    for track in tracks:
        for t in range(1, len(track), stride):
            times = None if track.times is None else track.times[:t]
            cases.append(RouteCase(track.cells[:t], times, track.cells[t:t + longest]))
    return cases


def horizon_stride(tracks: list[Track]) -> int:
    """The stride between the steps taken as ``acc@1+k`` prefixes, so that at most
    ``MAX_HORIZON_CASES`` are continued (each costs `samples` sampled routes)."""
    steps = sum(max(0, len(t) - 1) for t in tracks)
    return max(1, -(-steps // MAX_HORIZON_CASES))


def horizon_accuracy(predicted: list[np.ndarray], cases: list[RouteCase]) -> dict[str, float]:
    """``acc@1+k`` for k in `HORIZONS`: the share of cases, among those that really go on for k
    steps, whose predicted cell k steps after the prefix is the true one (the key is left out where
    no case goes on for k steps)."""
    out = {}
    for k in HORIZONS:
        hits = [bool(np.array_equal(p[k - 1], c.truth[k - 1])) for p, c in zip(predicted, cases) if len(c.truth) >= k]
        if hits:
            out[f"acc@1+{k}"] = float(np.mean(hits))
    return out


def _route_metrics(ade: np.ndarray, fde: np.ndarray, grid: Grid | None, suffix: str = "") -> dict[str, float]:
    """``ade_cells``/``fde_cells`` (and ``ade``/``fde`` in metres on a metric grid), with `suffix`."""
    metrics = {f"ade_cells{suffix}": float(ade.mean()) if len(ade) else float("nan"),
               f"fde_cells{suffix}": float(fde.mean()) if len(fde) else float("nan")}
    if grid is not None and grid.metric:
        metrics[f"ade{suffix}"] = metrics[f"ade_cells{suffix}"] * grid.cell_size
        metrics[f"fde{suffix}"] = metrics[f"fde_cells{suffix}"] * grid.cell_size
    return metrics


def model_routes(model: Forecaster, cases: list[RouteCase], samples: int = DEFAULT_SAMPLES, seed: int = 0,
                 grid: Grid | None = None) -> dict[str, float]:
    """The model's route metrics: ``ade``/``fde`` of its point forecast (`sampling.point_forecast`:
    the per-step medoid of `samples` continuations drawn from the ``POINT_TOP_P`` nucleus, given
    that the route goes on as long as the truth does, as the baselines' rollouts do),
    ``ade_greedy``/``fde_greedy`` of the greedy rollout (what ``ade``/``fde`` were before), and
    ``ade_best_of_N``/``fde_best_of_N`` (the sample nearest the truth, each measure on its own).
    Seeded: reproducible."""
    if not cases:
        return {}
    timed = getattr(model.config, "time_features", False)
    times = [c.times for c in cases] if timed else None
    drawn = sample_routes(model, [c.prefix for c in cases], max(len(c.truth) for c in cases), n=samples,
                          seed=seed, times=times, continuing=True, top_p=POINT_TOP_P)
    points = [point_forecast(s.cells)[:len(c.truth)] for s, c in zip(drawn, cases)]
    metrics = _route_metrics(*_errors(points, cases), grid)
    greedy = [_rollout(model.rollout, c, True) for c in cases]
    metrics.update(_route_metrics(*_errors(greedy, cases), grid, "_greedy"))
    best_ade, best_fde = [], []
    for s, c in zip(drawn, cases):
        d = np.linalg.norm(s.cells[:, :len(c.truth)].astype(np.float64) - c.truth[None].astype(np.float64), axis=2)
        best_ade.append(d.mean(axis=1).min())
        best_fde.append(d[:, -1].min())
    metrics.update(_route_metrics(np.asarray(best_ade), np.asarray(best_fde), grid, f"_best_of_{samples}"))
    return metrics


def model_horizons(model: Forecaster, cases: list[RouteCase], samples: int = MARGINAL_SAMPLES,
                   seed: int = 0) -> dict[str, float]:
    """``acc@1+k`` of the model: the mode of its marginal distribution of the cell k steps ahead
    (`sampling.marginal_modes`, over `samples` sampled paths, given that the route goes on)."""
    if not cases:
        return horizon_accuracy([], [])
    times = [c.times for c in cases] if getattr(model.config, "time_features", False) else None
    modes = marginal_modes(model, [c.prefix for c in cases], max(HORIZONS), n=samples, seed=seed, times=times,
                           continuing=True)
    return horizon_accuracy(modes, cases)


def baseline_marginal_modes(baseline: CellBaseline, prefix: np.ndarray, horizon: int,
                            width: int = MARGINAL_PATHS) -> np.ndarray:
    """Per step k the mode of a baseline's marginal distribution of the cell k steps ahead (horizon, 2):
    its scores normalised to transition probabilities and propagated exactly along its `width` likeliest
    paths (exact for stay and constant velocity, which name one cell). A path whose baseline names no
    cell stays where it is. Ties (to 1e-12) go to the smallest (col, row), as its rollout breaks them, and
    paths tied in probability are kept in the order of their cells: the answer never depends on the
    order the baseline was fitted in or its scores came."""
    start = [tuple(int(v) for v in c) for c in np.asarray(prefix, dtype=np.int64).reshape(-1, 2)]
    paths: list[tuple[list, float]] = [([], 1.0)]
    out = np.empty((horizon, 2), dtype=np.int64)
    for k in range(horizon):
        grown: list[tuple[list, float]] = []
        for path, p in paths:
            scores = baseline.scores(np.asarray(start + path))
            total = sum(scores.values())
            if not scores or total <= 0:
                grown.append((path + [(start + path)[-1]], p))
                continue
            grown += [(path + [cell], p * score / total) for cell, score in scores.items() if score > 0]
        mass: dict = {}
        for path, p in grown:
            mass[path[-1]] = mass.get(path[-1], 0.0) + p
        out[k] = min(mass.items(), key=lambda kv: (-round(kv[1], 12), kv[0]))[0]
        paths = sorted(grown, key=lambda pp: (-round(pp[1], 12), pp[0]))[:width]
    return out


def _with_next_step(horizons: dict[str, float], ranks: list[np.ndarray]) -> dict[str, float]:
    """``acc@1+1`` is next-step ``acc@1`` on every test step: the marginal one step ahead *is* the
    next-step distribution, so it is taken from the ranks themselves (equal by construction, not
    re-estimated on the thinned cases)."""
    flat = np.concatenate(ranks) if ranks else np.zeros(0)
    if len(flat):
        horizons["acc@1+1"] = float(np.mean(flat <= 1))
    return horizons


def _summarise(ranks: list[np.ndarray], routes: dict[str, float], with_intervals: bool) -> dict[str, float]:
    flat = np.concatenate(ranks) if ranks else np.zeros(0)
    metrics = ranking_metrics(flat)
    metrics.update(routes)
    if with_intervals and len(flat):
        groups = np.concatenate([np.full(len(r), i) for i, r in enumerate(ranks)])
        for key, values in (("acc@1", flat <= 1), ("acc@5", flat <= 5), ("mrr", 1.0 / flat)):
            metrics[f"{key}_ci95"] = list(bootstrap_interval(values.astype(np.float64), groups))
    return metrics


def model_ranks(model: Forecaster, tracks: list[Track]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-track ranks and NLL of each true next cell under `model` (tracks' times passed along)."""
    out = [model.ranks_along(t.cells, times=t.times) for t in tracks]
    return [r for r, _ in out], [n for _, n in out]


def paired_difference(ours: list[np.ndarray], theirs: list[np.ndarray], metric: str, n_boot: int = 1000,
                      seed: int = 0) -> dict[str, float]:
    """Difference of a ranking metric, ours minus theirs, on the same steps, with a 95% bootstrap
    interval that resamples whole tracks (the same tracks for both predictors).

    Args:
        ours, theirs: per-track arrays of 1-based ranks (`MISS_RANK` for misses); ``ours`` may also
            hold per-step metric *values* averaged over seeds (floats in [0, 1]) when `metric` is
            given as ``"values"``, and then ``theirs`` too.
    Returns:
        {"diff", "lo", "hi"}.
    """
    def values(per_track: list[np.ndarray]) -> np.ndarray:
        flat = np.concatenate(per_track).astype(np.float64) if per_track else np.zeros(0)
        return flat if metric == "values" else metric_values(flat, metric)

    a, b = values(ours), values(theirs)
    if len(a) != len(b):
        raise ValueError(f"paired predictors must cover the same steps, got {len(a)} and {len(b)}")
    groups = np.concatenate([np.full(len(r), i) for i, r in enumerate(ours)]) if ours else np.zeros(0)
    lo, hi = bootstrap_interval(a - b, groups, n_boot=n_boot, seed=seed)
    return {"diff": float((a - b).mean()) if len(a) else float("nan"), "lo": lo, "hi": hi}


def metric_values(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Per-step contribution of each rank to `metric` (its mean is the metric)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if metric == "acc@1":
        return (ranks <= 1).astype(np.float64)
    if metric == "acc@5":
        return (ranks <= 5).astype(np.float64)
    if metric == "mrr":
        return 1.0 / ranks
    raise ValueError(f"unknown ranking metric {metric!r}")


def evaluate(model: Forecaster | None, baselines: list[CellBaseline], tracks: list[Track],
             grid: Grid | None = None, cut: float = 0.5, intervals: bool = False, horizon: int | None = None,
             samples: int = DEFAULT_SAMPLES, seed: int = 0) -> dict:
    """The **contract** shape of ``gridcast evaluate --json``:
    ``{"model": {metric: value}, "baselines": {name: {metric: value}}, "n": int}`` (n = next-cell steps).
    `horizon`: continue routes for at most this many cells (default: the rest of each track).
    The model's ``ade``/``fde`` are its point forecast's, from `samples` continuations drawn with
    `seed` (`model_routes`); baselines' are their greedy rollouts'; both report ``acc@1+k``.

    Baselines not yet fitted are fitted here on ``model.train_tracks_`` (every track the model saw
    before the test period: training and validation); without a model that stored its tracks, an
    unfitted baseline is an `InputError` saying to call ``baseline.fit(training_tracks)`` first."""
    tracks = [t for t in tracks if len(t) >= 2]
    fit_unfitted(baselines, model)
    cases = route_cases(tracks, cut, horizon)
    ahead = horizon_cases(tracks, horizon_stride(tracks))
    result: dict = {"baselines": {}}
    if model is not None:
        ranks, nll = model_ranks(model, tracks) if tracks else ((), ())
        routes = model_routes(model, cases, samples, seed, grid) if cases else _route_metrics(*_errors([], []), grid)
        routes.update(_with_next_step(model_horizons(model, ahead, seed=seed), list(ranks)))
        result["model"] = _summarise(list(ranks), routes, intervals)
        finite = np.concatenate(nll) if nll else np.zeros(0)
        finite = finite[np.isfinite(finite)]
        result["model"]["nll"] = float(finite.mean()) if len(finite) else float("nan")
        result["model"]["ece"], result["model"]["ece_floor"] = calibration_error(model, tracks, floor=True)
    for baseline in baselines:
        ranks = [baseline_ranks(baseline, t.cells) for t in tracks]
        predicted = [_rollout(baseline.rollout, c, False) for c in cases]
        routes = _route_metrics(*_errors(predicted, cases), grid)
        modes = [baseline_marginal_modes(baseline, c.prefix, len(c.truth)) for c in ahead]
        routes.update(_with_next_step(horizon_accuracy(modes, ahead), ranks))
        result["baselines"][baseline.name] = _summarise(ranks, routes, intervals)
        result["baselines"][baseline.name]["ece"] = calibration_error(baseline, tracks, baseline=True)
    result["n"] = int(sum(len(t) - 1 for t in tracks))
    return result


def fit_unfitted(baselines: list[CellBaseline], model: Forecaster | None) -> None:
    """Fit every baseline that is not fitted yet on the model's stored tracks (in place)."""
    unfitted = [b for b in baselines if not getattr(b, "fitted", True)]  # duck-typed baselines: taken as fitted
    if not unfitted:
        return
    seen = getattr(model, "train_tracks_", None) if model is not None else None
    if not seen:
        names = ", ".join(b.name for b in unfitted)
        raise InputError(f"baselines {names} are not fitted and there is no fitted model whose training tracks "
                         "they could be fitted on: call baseline.fit(training_tracks) first")
    for baseline in unfitted:
        baseline.fit(seen)


def lower_is_better(metric: str) -> bool:
    """Errors (ade, fde, nll, ece, and their _cells forms) are better low; ranking metrics high."""
    return metric.startswith(LOWER_IS_BETTER)


def best_baseline(result: dict, metric: str = "acc@1") -> tuple[str, float]:
    """The strongest baseline on `metric` (higher is better for ranking metrics, lower for errors);
    NaN values (a metric a baseline could not measure) never win."""
    items = [(name, m[metric]) for name, m in result["baselines"].items()
             if metric in m and m[metric] is not None and np.isfinite(m[metric])]
    if not items:
        raise KeyError(f"no baseline measured {metric!r}")
    pick = min if lower_is_better(metric) else max
    return pick(items, key=lambda kv: kv[1])


def verdict(table: dict, metric: str) -> str:
    """One honest line: does the best model beat the strongest baseline on `metric`?

    `table`: ``{"models": {name: {metric: value}}, "baselines": {name: {metric: value}}}`` (the demo's
    shape; `gridcast evaluate` passes its one model as ``{"models": {label: result["model"]}}``).
    A tie within 1e-9 relative says "ties", never "beats"."""
    name, value = best_baseline({"baselines": table["baselines"]}, metric)
    lower = lower_is_better(metric)
    measured = {k: m[metric] for k, m in table["models"].items()
                if m.get(metric) is not None and np.isfinite(m[metric])}
    if not measured:
        return f"{metric}: no model measured it; the strongest baseline {name} has {value:.3f}"
    kind = (min if lower else max)(measured, key=measured.get)
    ours = measured[kind]
    if np.isclose(ours, value, rtol=1e-9, atol=0.0):
        word = "ties"
    else:
        word = "beats" if (ours < value if lower else ours > value) else "does NOT beat"
    return f"{metric}: best model {kind} {ours:.3f} {word} the strongest baseline {name} {value:.3f}"
