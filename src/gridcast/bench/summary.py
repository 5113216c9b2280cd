"""Summaries of the continuous benchmarks' results over seeds and scenes (ETH/UCY, mouse)."""
from __future__ import annotations

import numpy as np


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one value) of per-seed results."""
    arr = np.asarray(values, np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def seed_summary(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Per-seed {ade, fde} -> their means and standard deviations over seeds."""
    ade_m, ade_s = mean_std([r["ade"] for r in per_seed])
    fde_m, fde_s = mean_std([r["fde"] for r in per_seed])
    return {"ade": ade_m, "fde": fde_m, "ade_std": ade_s, "fde_std": fde_s}


def summarise(per_scene_seed: dict[str, list[dict[str, float]]]) -> dict:
    """{scene: [per-seed {ade, fde}]} -> {"scenes": {scene: mean/std}, "avg": mean/std of the
    per-seed average over scenes} (the std of AVG is over seeds, not over scenes)."""
    scenes = {s: seed_summary(v) for s, v in per_scene_seed.items()}
    n_seeds = len(next(iter(per_scene_seed.values())))
    avg_per_seed = [{m: float(np.mean([per_scene_seed[s][i][m] for s in per_scene_seed])) for m in ("ade", "fde")}
                    for i in range(n_seeds)]
    return {"scenes": scenes, "avg": seed_summary(avg_per_seed)}


def baseline_entry(per_scene: dict[str, dict[str, float]]) -> dict:
    """A deterministic baseline's {scene: {ade, fde}} with its average over scenes."""
    return {"scenes": per_scene,
            "avg": {m: float(np.mean([v[m] for v in per_scene.values()])) for m in ("ade", "fde")}}
