"""Why a model loses next-step Acc@1 to "stay" at a fixed time step: the steps where its top-1 is a
move but the truth is a stay, its P(stay) against the empirical stay rate by dwell (train, validation
and test, to tell a miscalibration from a shift between periods), cells outside the vocabulary, and
where its probability mass goes (stay, the move window, far). docs/benchmarks-fixed-step.md,
"Losing Acc@1 to stay on the fishers".

    DATA=/path/to/shared/data python benchmarks/stay_diagnosis.py fishers fixed 0 '{}' [MODEL_DIR]

Trains one LSTM at `gridcast fit` defaults on the benchmark's split (as far_moves.py; the JSON
argument overrides model settings), or loads MODEL_DIR when it holds a saved model (and saves the
trained one there otherwise). Prints one JSON object.
"""
from __future__ import annotations

import json
import os
import re
import sys
from collections import defaultdict

import numpy as np

from gridcast.nextcell.features import dwell_counts

#: dwell buckets (steps already stayed in the current cell): 0 = it just moved in
DWELL_BUCKETS = ((0, 0), (1, 1), (2, 2), (3, 4), (5, 9), (10, 10**9))


def step_records(model, tracks) -> dict[str, np.ndarray]:
    """Per next step of every track (one causal pass each): P(stay) (all candidate slots naming the
    current cell), the top-1's p, whether the top-1 is the current cell, whether the truth stays,
    whether the top-1 is right, the dwell count, whether the current cell has a vocabulary id, and
    the mass on the move window and beyond it."""
    radius = model.config.max_move
    parts = defaultdict(list)
    for t in tracks:
        if len(t) < 2:
            continue
        here, nxt = t.cells[:-1], t.cells[1:]
        cands, logp, _ = model.step_distributions(here, None if t.times is None else t.times[:-1])
        p = np.exp(logp)
        dist = np.abs(cands - here[:, None, :]).max(-1)
        top = np.argmax(logp, axis=1)
        rows = np.arange(len(here))
        parts["p_stay"].append((p * (dist == 0)).sum(1))
        parts["p_top"].append(p[rows, top])
        parts["top_is_stay"].append(dist[rows, top] == 0)
        parts["truth_stay"].append(np.all(nxt == here, axis=1))
        parts["top_right"].append(np.all(cands[rows, top] == nxt, axis=1))
        parts["run"].append(dwell_counts(here)[0])
        parts["in_vocab"].append(np.array([(int(c), int(r)) in model.vocab_.index for c, r in here], dtype=bool))
        parts["p_window"].append((p * ((dist > 0) & (dist <= radius))).sum(1))
        parts["p_far"].append((p * (dist > radius)).sum(1))
    return {k: np.concatenate(v) for k, v in parts.items()}


def stay_by_dwell(records: dict[str, np.ndarray]) -> list[dict]:
    """Per dwell bucket: steps, the model's mean P(stay), the empirical stay rate, how often its top-1
    is stay, and its Acc@1 beside stay's (= the stay rate). A calibrated P(stay) matches the rate."""
    out = []
    for lo, hi in DWELL_BUCKETS:
        k = (records["run"] >= lo) & (records["run"] <= hi)
        if k.any():
            out.append({"dwell": f"{lo}" if lo == hi else f"{lo}+" if hi >= 10**9 else f"{lo}-{hi}",
                        "steps": int(k.sum()), "p_stay": _r(records["p_stay"][k]),
                        "stay_rate": _r(records["truth_stay"][k]), "top_is_stay": _r(records["top_is_stay"][k]),
                        "acc1": _r(records["top_right"][k]), "p_window": _r(records["p_window"][k]),
                        "p_far": _r(records["p_far"][k])})
    return out


def summary(records: dict[str, np.ndarray]) -> dict:
    """Acc@1 against stay, and the steps that decide the difference: top-1 a move while the truth
    stays (lost to stay) and top-1 a right move (won)."""
    move_top = ~records["top_is_stay"]
    lost = move_top & records["truth_stay"]
    out = {"steps": int(len(records["run"])), "acc1": _r(records["top_right"]), "stay_acc1": _r(records["truth_stay"]),
           "lost_share": _r(lost), "won_share": _r(move_top & records["top_right"]),
           "move_top_share": _r(move_top), "move_top_right": _r(records["top_right"][move_top]),
           "move_top_truth_stays": _r(records["truth_stay"][move_top]), "move_top_p": _r(records["p_top"][move_top]),
           "move_top_p_stay": _r(records["p_stay"][move_top])}
    if lost.any():
        out["lost"] = {"p_stay": _r(records["p_stay"][lost]), "p_top": _r(records["p_top"][lost]),
                       "dwell0_share": _r(records["run"][lost] == 0), "in_vocab": _r(records["in_vocab"][lost])}
    iv = records["in_vocab"]
    out["by_vocab"] = {name: {"steps": int(k.sum()), "acc1": _r(records["top_right"][k]),
                              "stay_rate": _r(records["truth_stay"][k]), "p_stay": _r(records["p_stay"][k])}
                       for name, k in (("in", iv), ("out", ~iv)) if k.any()}
    return out


def by_group(model, tracks, group=lambda track_id: re.split(r"[#@]", str(track_id))[0]) -> dict[str, dict]:
    """Acc@1 of the model and of stay per group of tracks (default: the id before any '#'/'@', the
    animal or person), to tell one outlier from a shift shared by all."""
    hits, stays, steps = defaultdict(int), defaultdict(int), defaultdict(int)
    for t in tracks:
        if len(t) < 2:
            continue
        r = step_records(model, [t])
        g = group(t.id)
        hits[g] += int(r["top_right"].sum())
        stays[g] += int(r["truth_stay"].sum())
        steps[g] += len(r["run"])
    return {g: {"steps": steps[g], "acc1": round(hits[g] / steps[g], 3), "stay_acc1": round(stays[g] / steps[g], 3)}
            for g in sorted(steps)}


def _r(values: np.ndarray) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    return round(float(values.mean()), 3) if len(values) else None


def main(argv: list[str]) -> dict:
    from gridcast.nextcell.forecaster import Forecaster

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_data import fit_lstm, load

    name, mode, seed = argv[0], argv[1], int(argv[2])
    settings = json.loads(argv[3]) if len(argv) > 3 else {}
    model_dir = argv[4] if len(argv) > 4 else None
    data = load(name, mode)
    if model_dir and os.path.isfile(os.path.join(model_dir, "config.json")):
        model = Forecaster.load(model_dir)
    else:
        model = fit_lstm(data, seed, **settings)
        if model_dir:
            model.save(model_dir)
    out = {"name": name, "mode": mode, "seed": seed, "settings": settings, "T": model.temperature}
    for split in ("train", "val", "test"):
        tracks = getattr(data, split)
        if tracks:
            records = step_records(model, tracks)
            out[split] = {**summary(records), "by_dwell": stay_by_dwell(records),
                          "by_group": by_group(model, tracks) if split != "train" else None}
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), default=float))
