"""The far-move check: one LSTM at `gridcast fit` defaults on a benchmark's split, its point forecast,
greedy route, calibration and how often its sampled steps jump more than 10 cells (far10), beside
the strongest baseline's route. docs/benchmarks-fixed-step.md, "Far moves decayed with distance".

    DATA=/path/to/shared/data python benchmarks/far_moves.py geolife fixed 0 '{"far": "shared"}'
"""
import json
import os
import sys
import time

import numpy as np

from gridcast.bench.commute import point_route_errors
from gridcast.nextcell.baselines import default_baselines
from gridcast.nextcell.calibration import calibration_error
from gridcast.nextcell.evaluation import metric_values, model_ranks, route_errors
from gridcast.nextcell.sampling import POINT_TOP_P, sample_routes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_data import fit_lstm, load  # noqa: E402

name, mode, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
settings = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
t0 = time.time()
data = load(name, mode)
test = [t for t in data.test if len(t) >= 2]
metres = data.grid.cell_size
m = fit_lstm(data, seed, **settings)
ranks, nll = model_ranks(m, test)
flat = np.concatenate(ranks)
out = {"name": name, "mode": mode, "seed": seed, "settings": settings, "T": m.temperature,
       "acc@1": float(metric_values(flat, "acc@1").mean()),
       "acc@5": float(metric_values(flat, "acc@5").mean()), "mrr": float(metric_values(flat, "mrr").mean()),
       "nll": float(np.nanmean(np.concatenate(nll)[np.isfinite(np.concatenate(nll))]))}
out["ece"], out["ece_floor"] = calibration_error(m, test, floor=True)
ade, fde = point_route_errors(m, test, 0.5, 10)
out["ade"], out["fde"] = ade.mean() * metres, fde.mean() * metres
g = route_errors(m.rollout, test, 0.5, 10, with_times=True)
out["ade_greedy"], out["fde_greedy"] = g[0].mean() * metres, g[1].mean() * metres
prefixes = [t.cells[:max(1, int(len(t) * 0.5))] for t in test]
prefixes = [p for p, t in zip(prefixes, test) if len(t) > len(p)]
s = sample_routes(m, prefixes, 10, n=20, seed=0, continuing=True, top_p=POINT_TOP_P)
jumps = np.concatenate([np.abs(np.diff(np.concatenate([np.repeat(p[-1:][None], 20, 0), x.cells], 1), axis=1)).max(-1).ravel()
                        for p, x in zip(prefixes, s)])
out["far10"] = float((jumps > 10).mean())
out["far3"] = float((jumps > 3).mean())
cuts = [max(1, int(len(t) * 0.5)) for t in test]
truth = np.concatenate([np.abs(np.diff(t.cells[c - 1:c + 10], axis=0)).max(-1) for t, c in zip(test, cuts)])
out["truth_far10"] = float((truth > 10).mean())
out["truth_far3"] = float((truth > 3).mean())
best = []
for b in default_baselines():
    b.fit(data.train + data.val)
    a, f = route_errors(b.rollout, test, 0.5, 10)
    best.append((a.mean() * metres, f.mean() * metres, b.name))
out["best_base_ade"] = min(best)
out["best_base_fde"] = min(best, key=lambda x: x[1])
out["seconds"] = round(time.time() - t0)
print(json.dumps(out, default=float))
