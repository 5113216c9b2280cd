"""Multi-horizon accuracy and calibration check: one LSTM at `gridcast fit` defaults on a
benchmark's split; ``acc@1+k`` the old way (the most frequent of 20 nucleus samples for the model,
the greedy rollout for baselines) and the new way (`evaluate`: the mode of each predictor's marginal,
``acc@1+1`` from the next-step ranks); ECE on the test tracks for post-hoc maps fitted on the
*validation* tracks only (never chosen on a test set). docs/benchmarks-fixed-step.md, "Horizons".

    DATA=/path/to/shared/data python benchmarks/horizon_calibration.py geolife fixed 0
"""
import json
import os
import sys
import time

import numpy as np

from gridcast.bench.commute import early_stopping_split
from gridcast.metrics import ece
from gridcast.nextcell.baselines import default_baselines
from gridcast.nextcell.calibration import top1_along
from gridcast.nextcell.evaluation import (
    HORIZONS,
    _rollout,
    evaluate,
    horizon_accuracy,
    horizon_cases,
    horizon_stride,
)
from gridcast.nextcell.sampling import POINT_TOP_P, modal_cells, sample_routes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_data import fit_lstm, load  # noqa: E402


def top1(model, tracks):
    parts = [top1_along(model, t.cells, t.times) for t in tracks if len(t) >= 2]
    return np.concatenate([c for c, _ in parts]), np.concatenate([k for _, k in parts])


def binning(conf, correct, bins=15):
    """Histogram binning (equal-mass bins on validation): confidence -> the bin's accuracy."""
    edges = np.quantile(conf, np.linspace(0, 1, bins + 1))[1:-1]
    ids = np.searchsorted(edges, conf)
    acc = np.array([correct[ids == b].mean() if (ids == b).any() else np.nan for b in range(bins)])
    acc = np.where(np.isnan(acc), np.nanmean(acc), acc)
    return lambda c: acc[np.searchsorted(edges, c)]


def isotonic(conf, correct):
    """Pool-adjacent-violators on validation; linear interpolation between the fitted levels."""
    order = np.argsort(conf)
    x, y = conf[order], correct[order].astype(float)
    levels, weights, xs = [], [], []
    for xi, yi in zip(x, y):
        levels.append(yi)
        weights.append(1.0)
        xs.append([xi])
        while len(levels) > 1 and levels[-2] > levels[-1]:
            w = weights[-2] + weights[-1]
            levels[-2] = (levels[-2] * weights[-2] + levels[-1] * weights[-1]) / w
            weights[-2] = w
            xs[-2] += xs[-1]
            for stack in (levels, weights, xs):
                stack.pop()
    centres = np.array([np.mean(v) for v in xs])
    return lambda c: np.interp(c, centres, np.array(levels))


name, mode, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.time()
data = load(name, mode)
test = [t for t in data.test if len(t) >= 2]
fval = early_stopping_split(data)[1]
m = fit_lstm(data, seed)
out = {"name": name, "mode": mode, "seed": seed, "T": m.temperature, "fit_s": round(time.time() - t0)}
baselines = default_baselines()
for b in baselines:
    b.fit(data.train + data.val)
t1 = time.time()
new = evaluate(m, baselines, test, grid=data.grid, horizon=10)
out["eval_s"] = round(time.time() - t1)
ahead = horizon_cases(test, horizon_stride(test))
drawn = sample_routes(m, [c.prefix for c in ahead], max(HORIZONS), n=20, seed=0,
                      times=[c.times for c in ahead] if m.config.time_features else None,
                      continuing=True, top_p=POINT_TOP_P)
old = {"model": horizon_accuracy([modal_cells(s.cells) for s in drawn], ahead)}
for b in baselines:
    old[b.name] = horizon_accuracy([_rollout(b.rollout, c, False) for c in ahead], ahead)
keys = ["acc@1"] + [f"acc@1+{k}" for k in HORIZONS]
out["new"] = {"model": {k: new["model"].get(k) for k in keys + ["ece"]}}
out["new"].update({n: {k: v.get(k) for k in keys} for n, v in new["baselines"].items()})
out["old"] = old
# calibration: maps fitted on the validation tracks, ECE on test
vc, vk = top1(m, fval)
tc, tk = top1(m, test)
stays = np.concatenate([np.all(t.cells[1:] == t.cells[:-1], 1) for t in fval if len(t) >= 2])
out["val_steps"], out["val_stay_share"] = int(len(vc)), float(stays.mean())
out["ece_val_T"] = ece(vc, vk)
out["ece_test"] = {"temperature": ece(tc, tk), "hist15": ece(binning(vc, vk)(tc), tk),
                   "isotonic": ece(isotonic(vc, vk)(tc), tk)}
rng = np.random.default_rng(0)  # ECE of a perfectly calibrated predictor with these confidences: the noise floor
out["ece_floor"] = float(np.mean([ece(tc, rng.random(len(tc)) < tc) for _ in range(200)]))
out["test_steps"] = int(len(tc))
out["test_conf_mean"], out["test_acc"] = float(tc.mean()), float(tk.mean())
out["seconds"] = round(time.time() - t0)
print(json.dumps(out, default=float))
