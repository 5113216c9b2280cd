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

from typing import Callable

import numpy as np

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.metrics import MISS_RANK, bootstrap_interval, per_example_errors, ranking_metrics
from gridcast.nextcell.baselines import CellBaseline
from gridcast.nextcell.calibration import calibration_error
from gridcast.nextcell.forecaster import Forecaster
from gridcast.tracks import Track

RANK_METRICS = ("acc@1", "acc@5", "mrr")
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
    ade, fde = [], []
    for track in tracks:
        n_obs = max(1, int(len(track) * cut))
        truth = track.cells[n_obs:].astype(np.float64)
        if horizon is not None:
            truth = truth[:horizon]
        if len(truth) == 0:
            continue
        if with_times:
            times = None if track.times is None else track.times[:n_obs]
            predicted = rollout(track.cells[:n_obs], len(truth), times=times)
        else:
            predicted = rollout(track.cells[:n_obs], len(truth))
        predicted = np.asarray(predicted, dtype=np.float64).reshape(-1, 2)
        if len(predicted) == 0:
            predicted = track.cells[n_obs - 1:n_obs].astype(np.float64)
        if len(predicted) < len(truth):  # the route ended early: it stays at its last cell
            predicted = np.concatenate([predicted, np.repeat(predicted[-1:], len(truth) - len(predicted), axis=0)])
        errors = per_example_errors(predicted[None, : len(truth)], truth[None])
        ade.append(errors["ade"][0])
        fde.append(errors["fde"][0])
    return np.asarray(ade), np.asarray(fde)


def _summarise(ranks: list[np.ndarray], ade: np.ndarray, fde: np.ndarray, grid: Grid | None,
               with_intervals: bool) -> dict[str, float]:
    flat = np.concatenate(ranks) if ranks else np.zeros(0)
    metrics = ranking_metrics(flat)
    metrics["ade_cells"] = float(ade.mean()) if len(ade) else float("nan")
    metrics["fde_cells"] = float(fde.mean()) if len(fde) else float("nan")
    if grid is not None and grid.metric:
        metrics["ade"] = metrics["ade_cells"] * grid.cell_size
        metrics["fde"] = metrics["fde_cells"] * grid.cell_size
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
             grid: Grid | None = None, cut: float = 0.5, intervals: bool = False, horizon: int | None = None) -> dict:
    """The **contract** shape of ``gridcast evaluate --json``:
    ``{"model": {metric: value}, "baselines": {name: {metric: value}}, "n": int}`` (n = next-cell steps).
    `horizon`: continue routes for at most this many cells (default: the rest of each track).

    Baselines not yet fitted are fitted here on ``model.train_tracks_`` (every track the model saw
    before the test period: training and validation); without a model that stored its tracks, an
    unfitted baseline is an `InputError` saying to call ``baseline.fit(training_tracks)`` first."""
    tracks = [t for t in tracks if len(t) >= 2]
    fit_unfitted(baselines, model)
    result: dict = {"baselines": {}}
    if model is not None:
        ranks, nll = model_ranks(model, tracks) if tracks else ((), ())
        ade, fde = route_errors(model.rollout, tracks, cut, horizon, with_times=True)
        result["model"] = _summarise(list(ranks), ade, fde, grid, intervals)
        finite = np.concatenate(nll) if nll else np.zeros(0)
        finite = finite[np.isfinite(finite)]
        result["model"]["nll"] = float(finite.mean()) if len(finite) else float("nan")
        result["model"]["ece"] = calibration_error(model, tracks)
    for baseline in baselines:
        ranks = [baseline_ranks(baseline, t.cells) for t in tracks]
        ade, fde = route_errors(baseline.rollout, tracks, cut, horizon)
        result["baselines"][baseline.name] = _summarise(ranks, ade, fde, grid, intervals)
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
