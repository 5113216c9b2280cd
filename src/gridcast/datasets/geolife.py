"""Next-cell forecasting on real commutes: GeoLife (and any per-person GPS log) beside its baselines.

Protocol (why each choice):

* **grid 250 m, step 60 s, tracks split at gaps > 10 min** (as in shared/data/BASELINES.md): at
  60 s a walker crosses a 250 m cell in ~3 steps and a car in less than one, so cells change at a
  human pace; 250 m is about a city block, coarse enough that a commute visits the same cells on
  most days (users 001/005 visit 63/30 cells on >= 10 different days), fine enough to tell streets.
  Finer grids (100 m) make most test cells unseen; coarser ones make "next cell" trivial.
* **cell-change sequences** (consecutive repeats collapsed): the question is "which cell next",
  not "how long does it stay"; otherwise "stay" wins every metric.
* **split per person by time, never by window**: each person's days in order, the first 70% train,
  the next 10% validation (early stopping), the last 20% test; a track belongs to the day it
  starts on (local clock). No step of a test track, nor any track after the test period starts,
  is seen in training (`check_no_leakage`). Datasets without whole days of history (UCI: short
  trips) split per person by track start instead.
* **times on the local clock**: GeoLife logs UTC; Beijing is UTC+8, so "day" and "time of day"
  are shifted by 8 h (a UTC day boundary would fall in the middle of the morning commute).
* **metrics**: Acc@1, Acc@5, MRR of every true next cell of the test tracks (unseen cells count
  as misses for every predictor); route error: from the first half of each test track, a greedy
  continuation of up to 10 cells (ADE/FDE in cells and metres). 95% intervals by bootstrap over
  test tracks; model-minus-baseline differences paired on the same steps.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.tracks import Track, collapse_repeats, split_by_track, tracks_from_frame

CELL_SIZE, STEP, MAX_GAP = 250.0, 60.0, 600.0
GEOLIFE_FILE = "geolife_sample.txt.gz"
GEOLIFE_COLUMNS = {"track": "uid", "time": "datetime", "lat": "lat", "lon": "lng"}
GEOLIFE_UTC_OFFSET_H = 8.0  # GeoLife times are UTC; the people live in Beijing
DAY_FRACTIONS = (0.7, 0.1, 0.2)
HORIZON = 10  # cells of route continuation scored
VAL_FRACTION = 0.15  # data without a validation period: this share of training trips stops training early


@dataclass
class CommuteData:
    """Cell-change tracks of several people, split per person by time.

    Attributes:
        train, val, test: tracks (times on the local clock, seconds).
        user_of: track id -> person.
        grid: the grid all tracks live on.
        report: the ingestion report (`IngestReport.to_json()` shape).
        protocol: how the split was made (for the benchmark output).
    """

    name: str
    train: list[Track]
    val: list[Track]
    test: list[Track]
    user_of: dict[str, str]
    grid: Grid
    report: dict
    protocol: dict = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """Tracks and next-cell transitions per split (a protocol check)."""
        out = {}
        for name in ("train", "val", "test"):
            tracks = getattr(self, name)
            out[f"{name}_tracks"] = len(tracks)
            out[f"{name}_transitions"] = int(sum(len(t) - 1 for t in tracks))
        return out


def user_map(track_ids: list[str], originals: dict[str, str]) -> dict[str, str]:
    """Gridded track id -> person. Gap splitting renames track "T" to "T#1", "T#2"...; `originals`
    maps the raw track ids to people (for GeoLife, the raw track id *is* the person)."""
    out = {}
    for tid in track_ids:
        base = tid if tid in originals else tid.rsplit("#", 1)[0]
        if base not in originals:
            raise InputError(f"track {tid!r}: no person known for it")
        out[tid] = originals[base]
    return out


def cell_tracks(source, columns: dict[str, str], cell_size: float = CELL_SIZE, step: float = STEP,
                max_gap: float = MAX_GAP, utc_offset_h: float = 0.0):
    """Raw GPS (path or DataFrame) -> (cell-change tracks with local-clock times, gridded table).

    Only `gridcast.ingest.grid_tracks` and column names: the same call serves any dataset."""
    from gridcast.ingest.pipeline import ColumnMap, grid_tracks

    gridded = grid_tracks(source, cell_size=cell_size, step=step, columns=ColumnMap(**columns), max_gap=max_gap)
    tracks = []
    for t in tracks_from_frame(gridded.frame):
        times = None if t.times is None else t.times + utc_offset_h * 3600.0
        t = collapse_repeats(Track(t.id, t.cells, times))
        if len(t) >= 2:
            tracks.append(t)
    return tracks, gridded


def split_per_user(tracks: list[Track], user_of: dict[str, str], fractions: tuple[float, ...],
                   by: str = "day") -> list[list[Track]]:
    """Split each person's tracks in time order into len(fractions) parts.

    ``by="day"``: the person's distinct local days (of track starts) are cut by `fractions`, each
    track follows its start day, so a day is never shared between parts. ``by="track"``: the
    person's trips by start time are cut instead (for data with a few trips per person); trips
    that start at the same second are one unit and stay together (UCI holds such groups, some
    of them exact duplicates, which would otherwise leak a test trip into training).
    Part sizes are rounded (a person with 1 unit puts it in the first part)."""
    if by not in ("day", "track"):
        raise InputError(f"split by 'day' or 'track', got {by!r}")
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise InputError(f"split fractions must sum to 1, got {fractions}")
    parts: list[list[Track]] = [[] for _ in fractions]
    people: dict[str, list[Track]] = {}
    for t in tracks:
        people.setdefault(user_of[t.id], []).append(t)
    bounds_of = np.cumsum((0.0,) + tuple(fractions))
    for person in sorted(people):
        own = sorted(people[person], key=lambda t: (t.times[0] if t.times is not None else 0.0, t.id))
        if by == "day":
            unit = [int(np.floor(t.times[0] / 86400.0)) for t in own]
        else:
            unit = [int(round(t.times[0])) if t.times is not None else i for i, t in enumerate(own)]
        order = sorted(set(unit))
        bounds = np.round(bounds_of * len(order)).astype(int)
        rank = {u: i for i, u in enumerate(order)}
        for t, u in zip(own, unit):
            part = int(np.searchsorted(bounds[1:], rank[u], side="right"))
            parts[min(part, len(parts) - 1)].append(t)
    return parts


def check_no_leakage(train: list[Track], test: list[Track], user_of: dict[str, str], whole_days: bool = True) -> None:
    """Raise if a test track (or an exact copy of one) is in training, or a person's training track
    reaches into that person's test period (the model would have seen the future).

    `whole_days`: training tracks must *end* before the first test track starts (day split);
    otherwise they must *start* before it (trip split of overlapping trips)."""
    shared = {t.id for t in train} & {t.id for t in test}
    if shared:
        raise AssertionError(f"tracks in both train and test: {sorted(shared)[:5]}")
    seen = {(t.cells.tobytes(), None if t.times is None else t.times.tobytes()) for t in train}
    copies = [t.id for t in test if (t.cells.tobytes(), None if t.times is None else t.times.tobytes()) in seen]
    if copies:
        raise AssertionError(f"test tracks with an exact copy in training: {copies[:5]}")
    first_test: dict[str, float] = {}
    for t in test:
        if t.times is not None:
            first_test[user_of[t.id]] = min(first_test.get(user_of[t.id], np.inf), float(t.times[0]))
    for t in train:
        limit = first_test.get(user_of[t.id])
        if limit is None or t.times is None:
            continue
        if (float(t.times[-1]) > limit) if whole_days else (float(t.times[0]) >= limit):
            raise AssertionError(f"training track {t.id} reaches into its person's test period")


def load_geolife(data_dir: str | Path, cell_size: float = CELL_SIZE, step: float = STEP, max_gap: float = MAX_GAP,
                 utc_offset_h: float = GEOLIFE_UTC_OFFSET_H, fractions: tuple[float, float, float] = DAY_FRACTIONS,
                 columns: dict[str, str] | None = None, filename: str = GEOLIFE_FILE) -> CommuteData:
    """GeoLife users' GPS (shared/data/geolife_skmob) -> `CommuteData` split per person by day."""
    path = Path(data_dir)
    source = path / filename if path.is_dir() else path
    if not source.exists():
        raise InputError(f"{source}: no such file (expected the GeoLife sample {filename} in {path})")
    columns = dict(columns or GEOLIFE_COLUMNS)
    tracks, gridded = cell_tracks(source, columns, cell_size, step, max_gap, utc_offset_h)
    originals = {tid.rsplit("#", 1)[0]: tid.rsplit("#", 1)[0] for tid in (t.id for t in tracks)}
    user_of = user_map([t.id for t in tracks], originals)
    train, val, test = split_per_user(tracks, user_of, fractions, by="day")
    check_no_leakage(train + val, test, user_of)
    protocol = {"cell_size": cell_size, "step": step, "max_gap": max_gap, "utc_offset_h": utc_offset_h,
                "split": f"per person by local day: {fractions}", "sequences": "cell changes (repeats collapsed)",
                "horizon": HORIZON}
    return CommuteData("geolife", train, val, test, user_of, gridded.grid, gridded.report.to_json(), protocol)


# ---------------------------------------------------------------------------------- benchmark
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

    def config(self, kind: str) -> dict:
        return {"cell": kind, "target": "cell", "hidden": self.hidden, "embed": self.embed, "dropout": self.dropout,
                "head": self.head, "time_features": self.time_features, "min_tracks": self.min_tracks,
                "max_move": self.max_move}

    def train(self, seed: int) -> dict:
        return {"epochs": self.epochs, "lr": self.lr, "patience": self.patience, "batch_size": self.batch_size,
                "seed": seed}


def run_benchmark(data: CommuteData, kinds: tuple[str, ...] = ("lstm", "gru", "rnn"), seeds: tuple[int, ...] = (0, 1, 2),
                  spec: ModelSpec | None = None, horizon: int = HORIZON, log: Callable[[str], None] | None = None,
                  n_boot: int = 1000) -> dict:
    """Train every kind with every seed, score beside the baselines on the same test steps.

    Returns the `gridcast evaluate --json` shape (**contract**) for the best kind, plus details:
    ``{"model": {...}, "baselines": {...}, "n": int, "best_kind": str, "models": {kind: {...}},
    "paired": {kind: {baseline: {metric: {"diff", "lo", "hi"}}}}, "users": {person: {"model",
    "baselines", "n"}}, "sizes": {...}, "protocol": {...}, "seconds": float}``.
    Model metrics are means over seeds (``<metric>_std`` beside them); their intervals and the paired
    differences use each step's metric averaged over seeds. With several seeds, ``models`` also holds
    ``"<kind>-ensemble"``: the same trained models with their probabilities averaged (`Ensemble`).
    Route errors (ADE/FDE) carry intervals from resampling test tracks.
    """
    import torch

    from gridcast.nextcell.baselines import default_baselines
    from gridcast.nextcell.evaluation import RANK_METRICS, baseline_ranks, metric_values, model_ranks, paired_difference, route_errors
    from gridcast.nextcell.forecaster import Ensemble, Forecaster
    from gridcast.metrics import bootstrap_interval

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
        say(f"  {b.name:<20} acc@1 {base_summary[b.name]['acc@1']:.3f}  acc@5 {base_summary[b.name]['acc@5']:.3f}  "
            f"mrr {base_summary[b.name]['mrr']:.3f}")

    fit_train, fit_val = data.train, data.val
    if not fit_val:  # one early-stopping split for every seed, so seeds differ only in their seed
        fit_train, fit_val = split_by_track(data.train, VAL_FRACTION, seed=0)
    models, model_values, per_seed, routes = {}, {}, {}, {}
    names = []
    for kind in kinds:
        runs, nlls, ades, fdes, members = [], [], [], [], []
        for seed in seeds:
            torch.manual_seed(seed)
            model = Forecaster(grid=data.grid, **spec.config(kind))
            model.fit(fit_train, val_tracks=fit_val, **spec.train(seed))
            ranks, nll = model_ranks(model, test)
            flat = np.concatenate(ranks)
            runs.append({k: metric_values(flat, k) for k in RANK_METRICS})
            finite = np.concatenate(nll)
            nlls.append(float(finite[np.isfinite(finite)].mean()))
            ade, fde = route_errors(model.rollout, test, 0.5, horizon, with_times=True)
            ades.append(ade)
            fdes.append(fde)
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
        s["seeds"] = list(seeds)
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
            names.append(name)
            say(f"  {name}: acc@1 {models[name]['acc@1']:.3f}  acc@5 {models[name]['acc@5']:.3f}  "
                f"mrr {models[name]['mrr']:.3f}")

    strongest = {k: max(base_summary, key=lambda b: base_summary[b][k]) for k in RANK_METRICS}
    paired = {}
    for kind in names:
        paired[kind] = {}
        for b in sorted(set(strongest.values()) | {"markov2", "markov2_spatial"}):
            paired[kind][b] = {k: paired_difference([model_values[kind][k][groups == i] for i in range(len(test))],
                                                    [base_values[b][k][groups == i] for i in range(len(test))],
                                                    "values", n_boot=n_boot) for k in RANK_METRICS}
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
                          "model": spec.config("<kind>"), "train": spec.train(-1)}
    result["ingest"] = data.report
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


# ------------------------------------------------------------------------------------ reports
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
    lines = [f"{proto['dataset']}: {result['n']} test transitions on {result['sizes']['test_tracks']} test tracks "
             f"({proto['cell_size']:.0f} m, {proto['step']:.0f} s, {proto['split']}); route: {proto['horizon']} cells",
             f"{'':<24}{'acc@1':>26}{'acc@5':>26}{'mrr':>26}{'ade m':>9}{'fde m':>9}"]
    for name, m in rows(result):
        lines.append(f"{name:<24}" + "".join(f"{_ci(m, k):>26}" for k in ("acc@1", "acc@5", "mrr"))
                     + f"{m.get('ade', m['ade_cells']):>9.0f}{m.get('fde', m['fde_cells']):>9.0f}")
    lines.append("paired differences, model minus baseline [95% interval over test tracks]:")
    for kind, per in result["paired"].items():
        for base, diffs in per.items():
            lines.append(f"  {kind} - {base:<20}" + "".join(
                f"  {k} {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]" for k, d in diffs.items()))
    lines.append(f"({result['seconds']:.0f} s{'; --quick: a protocol check, not a result' if result.get('quick') else ''})")
    return "\n".join(lines)


def markdown_table(result: dict) -> str:
    """The README/doc table of one benchmark result."""
    head = "| method | Acc@1 | Acc@5 | MRR | ADE (m), 10 cells | FDE (m) |\n|---|---|---|---|---|---|"
    body = [f"| {name} | " + " | ".join(_ci(m, k) for k in ("acc@1", "acc@5", "mrr"))
            + " | " + " | ".join(_route(m, k) for k in ("ade", "fde")) + " |" for name, m in rows(result)]
    return "\n".join([head, *body])
