"""The real-commute benchmark runner (GeoLife, UCI): every cell kind and seed beside the baselines.

The data and its protocol come from `gridcast.datasets.geolife` / `gridcast.datasets.uci` as a
`CommuteData` (tracks split per person by time); this module trains, scores every predictor on the
same test steps, and reports: the `gridcast evaluate --json` shape for the best kind (**contract**),
every kind, per-person results, paired differences, and the text / markdown tables.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from gridcast.datasets.geolife import HORIZON, VAL_FRACTION, CommuteData
from gridcast.errors import InputError
from gridcast.kinds import CELL_KINDS
from gridcast.metrics import bootstrap_interval
from gridcast.nextcell.baselines import default_baselines
from gridcast.nextcell.calibration import calibration_error
from gridcast.nextcell.evaluation import (
    RANK_METRICS,
    baseline_ranks,
    metric_values,
    model_ranks,
    paired_difference,
    route_errors,
)
from gridcast.nextcell.forecaster import Ensemble, Forecaster
from gridcast.tracks import split_by_track


@dataclass
class ModelSpec:
    """What to train for each cell kind (the defaults are the benchmark's winning settings)."""

    hidden: int = 64
    embed: int = 32
    dropout: float = 0.2
    head: str = "fusion"
    time_features: bool = False  # measured: no gain on GeoLife or UCI (docs/benchmarks-geolife.md)
    min_tracks: int = 2
    max_move: int = 2
    epochs: int = 60
    lr: float = 5e-3
    patience: int = 8
    batch_size: int = 16
    fit_defaults: bool = False  # True: train exactly as `gridcast fit` / `Forecaster()` do (the fields above unused)

    def config(self, kind: str) -> dict:
        if self.fit_defaults:
            return {"cell": kind}
        return {"cell": kind, "target": "cell", "hidden": self.hidden, "embed": self.embed, "dropout": self.dropout,
                "head": self.head, "time_features": self.time_features, "min_tracks": self.min_tracks,
                "max_move": self.max_move}

    def train(self, seed: int) -> dict:
        if self.fit_defaults:
            return {"seed": seed}
        return {"epochs": self.epochs, "lr": self.lr, "patience": self.patience, "batch_size": self.batch_size,
                "seed": seed}


def early_stopping_split(data: CommuteData) -> tuple[list, list]:
    """(training, validation) tracks a benchmark model is fitted on: the dataset's own validation
    split, or else `VAL_FRACTION` of its training tracks drawn once with seed 0, so that seeds
    differ only in their seed."""
    if data.val:
        return data.train, data.val
    return split_by_track(data.train, VAL_FRACTION, seed=0)


def run_benchmark(data: CommuteData, kinds: tuple[str, ...] = CELL_KINDS, seeds: tuple[int, ...] = (0, 1, 2),
                  spec: ModelSpec | None = None, horizon: int = HORIZON, log: Callable[[str], None] | None = None,
                  n_boot: int = 1000) -> dict:
    """Train every kind with every seed, score beside the baselines on the same test steps.

    Returns the `gridcast evaluate --json` shape (**contract**) for the best kind, plus details:
    ``{"model": {...}, "baselines": {...}, "n": int, "best_kind": str, "models": {kind: {...}},
    "paired": {kind: {baseline: {metric: {"diff", "lo", "hi"}}}}, "users": {person: {"model",
    "baselines", "n"}}, "sizes": {...}, "protocol": {...}, "seconds": float}``.
    Model metrics are means over seeds (``<metric>_std`` beside them; ``ece`` and ``ece_floor`` too,
    and every baseline's ``ece``); their intervals and the paired
    differences use each step's metric averaged over seeds. With several seeds, ``models`` also holds
    ``"<kind>-ensemble"``: the same trained models with their probabilities averaged (`Ensemble`).
    Route errors (ADE/FDE) carry intervals from resampling test tracks; a kind's are those of its point
    forecast (``"route": "point forecast"``; the greedy rollout's beside them as ``ade_greedy``,
    ``fde_greedy``), a seed ensemble's those of its greedy rollout. ``strongest_baseline`` names
    the best baseline per metric (highest acc@k/MRR, lowest ADE/FDE); ``paired`` holds model minus
    baseline for each of them (ADE/FDE in metres on a metric grid, else cells: negative = model better).
    The data's ``protocol["mode"]`` (collapsed | fixed) is passed through to ``"protocol"``.
    """
    spec = spec or ModelSpec()
    say = log or (lambda _m: None)
    started = time.perf_counter()
    test = [t for t in data.test if len(t) >= 2]
    if not test or not data.train:
        raise InputError(f"{data.name}: the split left {len(data.train)} training and {len(test)} test tracks")
    groups = np.concatenate([np.full(len(t) - 1, i) for i, t in enumerate(test)])
    users = np.array([data.user_of[t.id] for t in test])
    step_users = np.concatenate([np.full(len(t) - 1, data.user_of[t.id], dtype=object) for t in test])
    metres = data.grid.cell_size if data.grid is not None and data.grid.metric else None

    def summary(values: dict[str, np.ndarray], ade: np.ndarray, fde: np.ndarray, mask: np.ndarray | None = None,
                track_mask: np.ndarray | None = None) -> dict:
        out = {}
        for key in RANK_METRICS:
            v = values[key] if mask is None else values[key][mask]
            g = groups if mask is None else groups[mask]
            out[key] = float(v.mean()) if len(v) else float("nan")
            out[f"{key}_ci95"] = list(bootstrap_interval(v, g, n_boot=n_boot)) if len(v) else [float("nan")] * 2
        a = ade if track_mask is None else ade[track_mask]
        f = fde if track_mask is None else fde[track_mask]
        out["ade_cells"] = float(a.mean()) if len(a) else float("nan")
        out["fde_cells"] = float(f.mean()) if len(f) else float("nan")
        for key, v in (("ade_cells", a), ("fde_cells", f)):  # one value per test track: resample tracks
            out[f"{key}_ci95"] = list(bootstrap_interval(v, n_boot=n_boot)) if len(v) else [float("nan")] * 2
        if metres:
            out["ade"], out["fde"] = out["ade_cells"] * metres, out["fde_cells"] * metres
            out["ade_ci95"] = [x * metres for x in out["ade_cells_ci95"]]
            out["fde_ci95"] = [x * metres for x in out["fde_cells_ci95"]]
        return out

    # baselines: fitted on every track before the test period (train + validation), like the model
    seen = data.train + data.val
    base_values, base_summary, base_routes = {}, {}, {}
    for b in default_baselines():
        b.fit(seen)
        ranks = np.concatenate([baseline_ranks(b, t.cells) for t in test])
        ade, fde = route_errors(b.rollout, test, 0.5, horizon)
        base_values[b.name] = {k: metric_values(ranks, k) for k in RANK_METRICS}
        base_routes[b.name] = (ade, fde)  # one entry per test track (every track has a part to continue)
        base_summary[b.name] = summary(base_values[b.name], ade, fde)
        base_summary[b.name]["ece"] = calibration_error(b, test, baseline=True)
        say(f"  {b.name:<20} acc@1 {base_summary[b.name]['acc@1']:.3f}  acc@5 {base_summary[b.name]['acc@5']:.3f}  "
            f"mrr {base_summary[b.name]['mrr']:.3f}")

    fit_train, fit_val = early_stopping_split(data)
    models, model_values, per_seed, routes = {}, {}, {}, {}
    names = []
    for kind in kinds:
        runs, nlls, ades, fdes, members, greedy, eces = [], [], [], [], [], [], []
        for seed in seeds:
            torch.manual_seed(seed)
            model = Forecaster(grid=data.grid, **spec.config(kind))
            model.fit(fit_train, val_tracks=fit_val, **spec.train(seed))
            ranks, nll = model_ranks(model, test)
            flat = np.concatenate(ranks)
            runs.append({k: metric_values(flat, k) for k in RANK_METRICS})
            finite = np.concatenate(nll)
            nlls.append(float(finite[np.isfinite(finite)].mean()))
            ade, fde = point_route_errors(model, test, 0.5, horizon)
            ades.append(ade)
            fdes.append(fde)
            greedy.append(route_errors(model.rollout, test, 0.5, horizon, with_times=True))
            eces.append(calibration_error(model, test, floor=True))
            members.append(model)
            say(f"  {kind} seed {seed}: acc@1 {runs[-1]['acc@1'].mean():.3f}  acc@5 {runs[-1]['acc@5'].mean():.3f}  "
                f"mrr {runs[-1]['mrr'].mean():.3f}  ({len(model.result_.history)} epochs, "
                f"{time.perf_counter() - started:.0f} s)")
        values = {k: np.mean([r[k] for r in runs], axis=0) for k in RANK_METRICS}
        model_values[kind] = values
        routes[kind] = (np.mean(ades, axis=0), np.mean(fdes, axis=0))
        s = summary(values, *routes[kind])
        for k in RANK_METRICS:
            s[f"{k}_std"] = float(np.std([r[k].mean() for r in runs]))
        s["nll"] = float(np.mean(nlls))
        s["ece"], s["ece_std"] = float(np.mean([e for e, _ in eces])), float(np.std([e for e, _ in eces]))
        s["ece_floor"] = float(np.mean([f for _, f in eces]))
        s["seeds"] = list(seeds)
        s["route"] = "point forecast"
        for key, j in (("ade", 0), ("fde", 1)):  # the greedy rollout's route, as it was reported before
            s[f"{key}_cells_greedy"] = float(np.mean([g[j].mean() for g in greedy]))
            if metres:
                s[f"{key}_greedy"] = s[f"{key}_cells_greedy"] * metres
        models[kind] = s
        names.append(kind)
        per_seed[kind] = [{k: float(r[k].mean()) for k in RANK_METRICS} for r in runs]
        if len(members) > 1:  # the same models, probabilities averaged: no extra training
            ensemble = Ensemble(members)
            ranks, nll = model_ranks(ensemble, test)
            flat = np.concatenate(ranks)
            name = f"{kind}-ensemble"
            model_values[name] = {k: metric_values(flat, k) for k in RANK_METRICS}
            routes[name] = route_errors(ensemble.rollout, test, 0.5, horizon, with_times=True)
            models[name] = summary(model_values[name], *routes[name])
            finite = np.concatenate(nll)
            models[name]["nll"] = float(finite[np.isfinite(finite)].mean())
            models[name]["seeds"] = list(seeds)
            models[name]["route"] = "greedy rollout"  # sampling needs one network: ensembles roll out greedily
            names.append(name)
            say(f"  {name}: acc@1 {models[name]['acc@1']:.3f}  acc@5 {models[name]['acc@5']:.3f}  "
                f"mrr {models[name]['mrr']:.3f}")

    route_key = {"ade": 0, "fde": 1}  # lower is better; one value per test track
    strongest = {k: max(base_summary, key=lambda b: base_summary[b][k]) for k in RANK_METRICS}
    strongest.update({k: min(base_summary, key=lambda b: base_summary[b][f"{k}_cells"]) for k in route_key})
    unit = metres or 1.0
    paired = {}
    for kind in names:
        paired[kind] = {}
        for b in sorted(set(strongest.values()) | {"markov2", "markov2_spatial"}):
            paired[kind][b] = {k: paired_difference([model_values[kind][k][groups == i] for i in range(len(test))],
                                                    [base_values[b][k][groups == i] for i in range(len(test))],
                                                    "values", n_boot=n_boot) for k in RANK_METRICS}
            for k, j in route_key.items():  # model minus baseline, in metres on a metric grid (< 0: model better)
                paired[kind][b][k] = paired_difference([np.array([v * unit]) for v in routes[kind][j]],
                                                       [np.array([v * unit]) for v in base_routes[b][j]],
                                                       "values", n_boot=n_boot)
    best = max(names, key=lambda k: models[k]["mrr"]) if names else None
    result = {"model": models[best] if best else {}, "baselines": base_summary,
              "n": int(len(groups)), "best_kind": best, "models": models, "per_seed": per_seed,
              "strongest_baseline": strongest, "paired": paired}
    result["users"] = {}
    for person in sorted(set(users)):
        mask = step_users == person
        track_mask = users == person
        entry = {"baselines": {b: summary(base_values[b], *base_routes[b], mask, track_mask) for b in base_values},
                 "n": int(mask.sum())}
        if best:
            entry["model"] = summary(model_values[best], *routes[best], mask, track_mask)
        result["users"][person] = entry
    result["sizes"] = data.sizes()
    result["protocol"] = {**data.protocol, "dataset": data.name, "kinds": list(kinds), "seeds": list(seeds),
                          "model": spec.config("<kind>"), "train": spec.train(-1),
                          "fit_defaults": spec.fit_defaults}
    result["ingest"] = data.report
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def point_route_errors(model: Forecaster, tracks: list, cut: float = 0.5, horizon: int = HORIZON,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-track ADE/FDE (cells) of the model's point forecast (`sampling.point_forecasts`, the
    answer to "where will it be"), on the same prefixes and horizons as `route_errors`: from the
    first `cut` of each track, up to `horizon` cells, given that the route goes on that long."""
    from gridcast.nextcell.sampling import point_forecasts

    prefixes, times, truths = [], [], []
    for track in tracks:
        n_obs = max(1, int(len(track) * cut))
        truth = track.cells[n_obs:n_obs + horizon].astype(np.float64)
        if len(truth) == 0:
            continue
        prefixes.append(track.cells[:n_obs])
        times.append(None if track.times is None else track.times[:n_obs])
        truths.append(truth)
    if not truths:
        return np.zeros(0), np.zeros(0)
    timed = getattr(model.config, "time_features", False)
    points = point_forecasts(model, prefixes, max(len(t) for t in truths), times=times if timed else None,
                             seed=seed, continuing=True)
    ade, fde = [], []
    for point, truth in zip(points, truths):
        d = np.linalg.norm(np.asarray(point, dtype=np.float64)[:len(truth)] - truth, axis=1)
        ade.append(d.mean())
        fde.append(d[-1])
    return np.asarray(ade), np.asarray(fde)


def _ci(m: dict, key: str) -> str:
    lo, hi = m.get(f"{key}_ci95", [float("nan")] * 2)
    std = m.get(f"{key}_std")
    core = f"{m[key]:.3f}" + (f" ± {std:.3f}" if std is not None else "")
    return f"{core} [{lo:.3f}, {hi:.3f}]"


def _route(m: dict, key: str) -> str:
    key = key if key in m else f"{key}_cells"
    lo, hi = m.get(f"{key}_ci95", [float("nan")] * 2)
    return f"{m[key]:.0f} [{lo:.0f}, {hi:.0f}]"


def rows(result: dict) -> list[tuple[str, dict]]:
    """(name, metrics) of every model kind, then every baseline."""
    out = [(f"{kind.upper()} ({len(m.get('seeds', []))} seeds{', mean' if 'ensemble' not in kind else ''})", m)
           for kind, m in result["models"].items()]
    return out + list(result["baselines"].items())


def text_report(result: dict) -> str:
    """A plain-text table: Acc@1/Acc@5/MRR with 95% intervals, route error, paired differences."""
    proto = result["protocol"]
    unit = "cells" if proto.get("mode", "collapsed") == "collapsed" else "steps"
    lines = [f"{proto['dataset']} ({proto.get('mode', 'collapsed')}): {result['n']} test transitions on "
             f"{result['sizes']['test_tracks']} test tracks ({proto['cell_size']:.0f} m, {proto['step']:.0f} s, "
             f"{proto['split']}); route: {proto['horizon']} {unit}",
             f"{'':<24}{'acc@1':>26}{'acc@5':>26}{'mrr':>26}{'ade m':>9}{'fde m':>9}"]
    for name, m in rows(result):
        lines.append(f"{name:<24}" + "".join(f"{_ci(m, k):>26}" for k in ("acc@1", "acc@5", "mrr"))
                     + f"{m.get('ade', m['ade_cells']):>9.0f}{m.get('fde', m['fde_cells']):>9.0f}")
    lines.append("paired differences, model minus baseline [95% interval over test tracks]:")
    for kind, per in result["paired"].items():
        for base, diffs in per.items():
            lines.append(f"  {kind} - {base:<20}" + "".join(
                f"  {k} {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]" if k not in ("ade", "fde") else
                f"  {k} {d['diff']:+.0f} [{d['lo']:+.0f}, {d['hi']:+.0f}]" for k, d in diffs.items()))
    lines.append("strongest baseline per metric: " + ", ".join(f"{k} {b}" for k, b in result["strongest_baseline"].items()))
    lines.append(f"({result['seconds']:.0f} s{'; --quick: a protocol check, not a result' if result.get('quick') else ''})")
    return "\n".join(lines)


def markdown_table(result: dict) -> str:
    """The README/doc table of one benchmark result."""
    proto = result["protocol"]
    unit = "cells" if proto.get("mode", "collapsed") == "collapsed" else "steps"
    head = (f"| method | Acc@1 | Acc@5 | MRR | ADE (m), {proto['horizon']} {unit} | FDE (m) |\n"
            "|---|---|---|---|---|---|")
    body = [f"| {name} | " + " | ".join(_ci(m, k) for k in ("acc@1", "acc@5", "mrr"))
            + " | " + " | ".join(_route(m, k) for k in ("ade", "fde")) + " |" for name, m in rows(result)]
    return "\n".join([head, *body])


def versus_strongest(result: dict, kind: str | None = None) -> str:
    """The both-modes summary table: per metric, the model (`kind`, default the best kind), the strongest
    baseline and their paired difference with its 95% interval, and whether the interval clears zero."""
    kind = kind or result["best_kind"]
    model = result["models"][kind]
    lines = ["| metric | model | strongest baseline | model - baseline [95%] | verdict |", "|---|---|---|---|---|"]
    for key, base in result["strongest_baseline"].items():
        d = result["paired"][kind][base][key]
        better = d["lo"] > 0 if key not in ("ade", "fde") else d["hi"] < 0
        worse = d["hi"] < 0 if key not in ("ade", "fde") else d["lo"] > 0
        fmt = "{:.3f}" if key not in ("ade", "fde") else "{:.0f}"
        sign = "{:+.3f}" if key not in ("ade", "fde") else "{:+.0f}"
        got = model.get(key, model.get(f"{key}_cells"))
        theirs = result["baselines"][base].get(key, result["baselines"][base].get(f"{key}_cells"))
        verdict = "beats" if better else ("loses" if worse else "tie (interval spans 0)")
        lines.append(f"| {key} | {fmt.format(got)} | {base} {fmt.format(theirs)} | {sign.format(d['diff'])} "
                     f"[{sign.format(d['lo'])}, {sign.format(d['hi'])}] | {verdict} |")
    return "\n".join(lines)
