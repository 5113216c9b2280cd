"""Route pace at a fixed step: how far the model's point forecast, its sampled routes and the Markov-2
with dwell rollout travel in the steps after the benchmark's route cut (half of each test track),
against the truth, for tracks moving at the cut (dwell 0) and staying there; and the share of
sampled steps that stay, step by step, beside the truth's. Also P(stay) against the stay rate by
(dwell, previous cell's hold) on every test step, teacher-forced. docs/benchmarks-fixed-step.md,
"Route pace at a fixed step". Prints one JSON object (metres).

    DATA=/path/to/shared/data python benchmarks/route_pace.py geolife fixed [SEED]
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from gridcast.nextcell.baselines import MarkovDwell
from gridcast.nextcell.evaluation import route_cases
from gridcast.nextcell.features import dwell_counts
from gridcast.nextcell.sampling import POINT_TOP_P, point_forecasts, sample_routes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_data import fit_lstm, load  # noqa: E402

HORIZON, SAMPLES = 10, 20


def p_stay_along(model, track) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per step: dwell count, previous cell's hold, the model's P(stay) and whether it stayed."""
    here, nxt = track.cells[:-1], track.cells[1:]
    cands, logp, _ = model.step_distributions(here)
    same = np.all(cands == here[:, None, :], axis=2) & np.isfinite(logp)
    run, held = dwell_counts(here)
    return run, held, np.where(same, np.exp(logp), 0.0).sum(1), np.all(nxt == here, axis=1)


def main() -> None:
    name, mode = sys.argv[1], sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    data = load(name, mode)
    metres = data.grid.cell_size
    test = [t for t in data.test if len(t) >= 3]
    model = fit_lstm(data, seed)
    chain = MarkovDwell(2).fit(data.train + data.val)
    cases = route_cases(test, 0.5, HORIZON)
    prefixes = [c.prefix for c in cases]
    points = point_forecasts(model, prefixes, HORIZON, seed=0, continuing=True)
    samples = sample_routes(model, prefixes, HORIZON, n=SAMPLES, seed=0, continuing=True, top_p=POINT_TOP_P)
    rows = []
    stays_sampled, stays_true = [], []
    for case, point, drawn in zip(cases, points, samples):
        h, start = len(case.truth), case.prefix[-1].astype(float)
        truth = case.truth.astype(float)
        roll = np.asarray(chain.rollout(case.prefix, h), float)[:h]
        point = np.asarray(point, float)[:h]
        moving = dwell_counts(case.prefix)[0][-1] == 0
        ends = drawn.cells[:, h - 1].astype(float)
        rows.append({"moving": bool(moving), "fde_model": np.linalg.norm(point[-1] - truth[-1]),
                     "fde_chain": np.linalg.norm(roll[-1] - truth[-1]),
                     "travel_truth": np.linalg.norm(truth[-1] - start), "travel_point": np.linalg.norm(point[-1] - start),
                     "travel_chain": np.linalg.norm(roll[-1] - start),
                     "travel_samples": np.linalg.norm(ends - start, axis=1).mean()})
        if moving and h == HORIZON:
            paths = np.concatenate([np.repeat(case.prefix[-1:][None], SAMPLES, 0), drawn.cells[:, :HORIZON]], 1)
            stays_sampled.append(np.all(paths[:, 1:] == paths[:, :-1], axis=2).mean(0))
            path = np.vstack([case.prefix[-1:], case.truth])
            stays_true.append(np.all(path[1:] == path[:-1], axis=1))
    out: dict = {"name": name, "mode": mode, "seed": seed, "cases": len(rows)}
    for label, keep in (("moving", True), ("staying", False)):
        part = [r for r in rows if r["moving"] == keep]
        out[label] = {"cases": len(part), **{k: round(float(np.mean([r[k] for r in part])) * metres)
                                             for k in rows[0] if k != "moving"}} if part else {"cases": 0}
    out["stay_share_by_step_moving"] = {"samples": np.round(np.mean(stays_sampled, 0), 2).tolist(),
                                        "truth": np.round(np.mean(stays_true, 0), 2).tolist()}
    run, held, p, stayed = (np.concatenate(x) for x in zip(*(p_stay_along(model, t) for t in test)))
    groups = {"run 0, held 0": (run == 0) & (held == 0), "run 0, held 1+": (run == 0) & (held >= 1),
              "run 1, held 0": (run == 1) & (held == 0), "run 1, held 1+": (run == 1) & (held >= 1),
              "run 2-4": (run >= 2) & (run <= 4), "run 5+": run >= 5}
    out["teacher_forced"] = {k: {"steps": int(g.sum()), "p_stay": round(float(p[g].mean()), 3),
                                 "stay_rate": round(float(stayed[g].mean()), 3)} for k, g in groups.items() if g.any()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
