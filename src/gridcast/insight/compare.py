"""RNN, LSTM and GRU side by side on the same data and budget: accuracy, training time per epoch,
parameter counts, and the speed of the recurrent layer alone (fused and explicit paths)."""
from __future__ import annotations

import time

import numpy as np
import torch

from gridcast.insight.experiment import (
    KINDS,
    FitSettings,
    RealData,
    count_parameters,
    fit_forecaster,
    next_cell_metrics,
)
from gridcast.nextcell.baselines import default_baselines
from gridcast.nextcell.evaluation import evaluate
from gridcast.nn.recurrent import Recurrent


def time_recurrent(kinds: tuple[str, ...], hidden: int, input_size: int, batch: int = 16, steps: int = 64,
                   repeats: int = 20, fused: bool = True) -> dict[str, float]:
    """Seconds for one forward + backward of each kind's recurrent layer alone (best of `repeats`).

    The kinds take turns, run after run, so a burst of load from other jobs on a shared machine hits
    them all alike, and the best run is the least disturbed one. Training time per epoch is reported
    beside it, but that also includes the data pipeline, the head and validation.
    """
    torch.manual_seed(0)
    layers = {kind: Recurrent(kind, input_size, hidden) for kind in kinds}
    x = torch.randn(batch, steps, input_size)
    best = {kind: float("inf") for kind in kinds}
    for attempt in range(repeats + 1):  # the first round warms up allocators and kernels
        for kind, rec in layers.items():
            started = time.perf_counter()
            rec(x, fused=fused).output.square().mean().backward()
            if attempt:
                best[kind] = min(best[kind], time.perf_counter() - started)
            rec.zero_grad(set_to_none=True)
    return best


def compare_kinds(data: RealData, kinds: tuple[str, ...] = KINDS, seeds: tuple[int, ...] = (0, 1, 2),
                  settings: FitSettings | None = None, log=lambda *a: None) -> dict:
    """Accuracy, training time per epoch and parameter count of each kind on the same data and budget.

    Returns ``{"kinds": {kind: {metric: mean, metric_std: std, "params": int, ...}}, "baselines": ...}``.
    """
    s = settings or FitSettings()
    out: dict = {"kinds": {}, "settings": {"epochs": s.epochs, "hidden": s.hidden, "lr": s.lr, "seeds": list(seeds),
                                            "train_tracks": len(data.train), "test_tracks": len(data.test)}}
    histories = {}
    for kind in kinds:
        runs = []
        for seed in seeds:
            model = fit_forecaster(data.train, kind, seed, s, grid=data.grid)
            metrics = next_cell_metrics(model, data.test)
            history = model.result_.history
            metrics["seconds_per_epoch"] = float(np.median([h.seconds for h in history]))
            metrics["seconds_per_epoch_best"] = float(np.min([h.seconds for h in history]))  # least disturbed
            metrics["final_train_loss"] = history[-1].train_loss
            runs.append(metrics)
            histories.setdefault(kind, history)
            log(f"  {kind} seed {seed}: acc@1 {metrics['acc@1']:.3f}, {metrics['seconds_per_epoch'] * 1000:.0f} ms/epoch")
        row = {}
        for key in runs[0]:
            values = np.array([r[key] for r in runs], dtype=np.float64)
            row[key] = float(values.mean())
            row[f"{key}_std"] = float(values.std())
        row["params_recurrent"] = count_parameters(model.net_.recurrent)
        row["params_total"] = count_parameters(model.net_)
        input_size = model.net_.recurrent.input_size
        out["kinds"][kind] = row
    for fused, key in ((True, "fwd_bwd_ms_fused"), (False, "fwd_bwd_ms_explicit")):
        for kind, seconds in time_recurrent(tuple(kinds), s.hidden, input_size, fused=fused).items():
            out["kinds"][kind][key] = 1000 * seconds
    baselines = [b.fit(data.train) for b in default_baselines()]
    result = evaluate(None, baselines, data.test, grid=data.grid)
    out["baselines"] = {name: {k: v for k, v in m.items() if k in ("acc@1", "acc@5", "mrr")}
                        for name, m in result["baselines"].items()}
    out["histories"] = histories
    return out
