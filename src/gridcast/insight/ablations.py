"""Ablations for the notes' two "why" questions, on the recall task and on real route-14 trips.

* "Isn't the input gate redundant with the forget gate?": the standard LSTM beside an LSTM without
  a forget gate (f = 1: the cell only accumulates), one with the gates coupled (f = 1 - i: one
  decision for writing and forgetting, GRU-style), the GRU itself, and the standard LSTM with its
  forget bias started at +1 (f starts near 0.73 instead of 0.5 -- a common initialisation).
* "Why tanh and not ReLU?": the same RNN with either nonlinearity, trained with and without
  gradient clipping: does the loss blow up, how large do gradients get, how far back do they reach.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from gridcast.insight.experiment import FitSettings, RealData, fit_forecaster, next_cell_metrics
from gridcast.insight.gradients import decay, hidden_gradient_norms, windows
from gridcast.insight.memory import MemoryBudget, memory_experiment
from gridcast.nextcell.training import EpochLog, TrainingError

GATE_VARIANTS: dict[str, dict] = {
    "lstm": {"kind": "lstm"},
    "lstm_no_forget": {"kind": "lstm", "variant": "no_forget"},
    "lstm_coupled": {"kind": "lstm", "variant": "coupled"},
    "lstm_forget_bias_1": {"kind": "lstm", "forget_bias": 1.0},
    "gru": {"kind": "gru"},
}
ACTIVATIONS: dict[str, dict] = {
    "rnn_tanh": {"kind": "rnn", "nonlinearity": "tanh"},
    "rnn_relu": {"kind": "rnn", "nonlinearity": "relu"},
}


def _options(spec: dict) -> tuple[str, dict]:
    return spec["kind"], {k: v for k, v in spec.items() if k != "kind"}


def gate_ablation(data: RealData, variants: dict[str, dict] | None = None, budget: MemoryBudget | None = None,
                  settings: FitSettings | None = None, cap: int = 64, refine: int = 1, seeds: tuple[int, ...] = (0,),
                  log=lambda *a: None) -> dict:
    """Each LSTM variant and the GRU on the recall task (max delay) and on real trips (next cell);
    real-trip metrics are the mean (and std) over `seeds`."""
    variants = variants or GATE_VARIANTS
    log("recall task:")
    memory = memory_experiment(variants, budget, cap=cap, refine=refine, seeds=seeds, log=log)
    log("real trips:")
    tracks, histories = {}, {}
    for label, spec in variants.items():
        kind, options = _options(spec)
        runs = []
        for seed in seeds:
            model = fit_forecaster(data.train, kind, seed, settings, grid=data.grid, **options)
            metrics = next_cell_metrics(model, data.test)
            history = model.result_.history
            metrics["final_train_loss"] = history[-1].train_loss if history else float("nan")
            metrics["best_val_loss"] = model.result_.best_val_loss if model.result_.best_val_loss is not None else float("nan")
            metrics["grad_norm_before_clip_max"] = max((h.grad_norm_max for h in history), default=float("nan"))
            runs.append(metrics)
            histories.setdefault(label, history)
        tracks[label] = _mean_std(runs)
        log(f"  {label}: acc@1 {tracks[label]['acc@1']:.3f} ± {tracks[label]['acc@1_std']:.3f}, "
            f"nll {tracks[label]['nll']:.3f}")
    return {"memory": memory, "tracks": tracks, "histories": histories}


def _mean_std(runs: list[dict]) -> dict:
    row = {}
    for key in runs[0]:
        values = np.array([r[key] for r in runs], dtype=np.float64)
        row[key] = float(values.mean())
        row[f"{key}_std"] = float(values.std())
    return row


def _read_log(path: Path) -> list[EpochLog]:
    if not path.exists():
        return []
    return [EpochLog(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def _fit_or_diverge(data: RealData, kind: str, seed: int, settings: FitSettings, options: dict):
    """(model or None, epoch log, epoch at which the loss became NaN/inf or None)."""
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "log.jsonl"
        try:
            model = fit_forecaster(data.train, kind, seed, settings, grid=data.grid, log_path=log_path, **options)
            return model, model.result_.history, None
        except TrainingError:
            history = _read_log(log_path)
            return None, history, len(history) + 1


def activation_ablation(data: RealData, settings: FitSettings | None = None, seeds: tuple[int, ...] = (0,),
                        length: int = 60, lrs: tuple[float, ...] = (5e-3, 5e-2), log=lambda *a: None) -> dict:
    """tanh vs ReLU RNN on real trips, with and without clipping, at the usual and a 10x learning rate.

    A run whose loss becomes NaN/inf counts as diverged (with its epoch); its log up to then is kept.
    Gradient reach (|dLoss/dh_{T-k}|) is measured at initialisation and after the clipped run at the
    usual learning rate (first seed).
    """
    from dataclasses import replace

    base = settings or FitSettings()
    runs, histories, reach = {}, {}, {}
    for label, spec in ACTIVATIONS.items():
        kind, options = _options(spec)
        for lr in lrs:
            for clip in (base.clip_norm, 0.0):
                name = f"{label} lr={lr:g} {'clip' if clip > 0 else 'no clip'}"
                per_seed = []
                for seed in seeds:
                    model, history, diverged = _fit_or_diverge(data, kind, seed, replace(base, clip_norm=clip, lr=lr), options)
                    metrics = next_cell_metrics(model, data.test) if model is not None else {}
                    per_seed.append({"diverged_at_epoch": diverged, "acc@1": metrics.get("acc@1", float("nan")),
                                     "nll": metrics.get("nll", float("nan")),
                                     "grad_norm_before_clip_max": max((h.grad_norm_max for h in history), default=float("nan")),
                                     "final_train_loss": history[-1].train_loss if history else float("nan")})
                    histories.setdefault(name, history)
                    if model is not None and lr == lrs[0] and clip > 0 and seed == seeds[0]:
                        sample = windows(model, data.train + data.test, length)
                        reach[f"{label} trained"] = hidden_gradient_norms(model.net_, *sample)["hidden"]
                finished = [r for r in per_seed if r["diverged_at_epoch"] is None]
                row = {"lr": lr, "clip_norm": clip, "seeds": len(seeds),
                       "diverged": sum(r["diverged_at_epoch"] is not None for r in per_seed),
                       "diverged_at_epoch": [r["diverged_at_epoch"] for r in per_seed],
                       "grad_norm_before_clip_max": float(np.nanmax([r["grad_norm_before_clip_max"] for r in per_seed])),
                       "acc@1": float(np.mean([r["acc@1"] for r in finished])) if finished else float("nan"),
                       "nll": float(np.mean([r["nll"] for r in finished])) if finished else float("nan"),
                       "final_train_loss": float(np.mean([r["final_train_loss"] for r in per_seed])),
                       "by_seed": per_seed}
                runs[name] = row
                log(f"  {name}: acc@1 {row['acc@1']:.3f}, final train loss {row['final_train_loss']:.3f}, "
                    f"max grad norm {row['grad_norm_before_clip_max']:.3g}, diverged in {row['diverged']}/{len(seeds)}")
        untrained = fit_forecaster(data.train, kind, seeds[0], replace(base, epochs=0), grid=data.grid, **options)
        reach[f"{label} init"] = hidden_gradient_norms(untrained.net_, *windows(untrained, data.train + data.test, length))["hidden"]
    decays = {name: decay(curve) for name, curve in reach.items()}
    return {"runs": runs, "histories": histories, "reach": {k: v.tolist() for k, v in reach.items()},
            "decay_1_50": decays}


def summarise_gate_ablation(result: dict) -> dict:
    """The JSON view: per variant, max delay on the recall task and next-cell numbers on real trips."""
    out = {}
    for label, row in result["memory"]["kinds"].items():
        t = result["tracks"].get(label, {})
        out[label] = {"max_delay": row["max_delay"], "max_delay_by_seed": row["max_delay_by_seed"],
                      "reached_cap": all(r["first_failure"] is None for r in row["runs"]),
                      **{k: t[k] for k in ("acc@1", "acc@1_std", "acc@5", "nll", "nll_std", "final_train_loss",
                                           "best_val_loss", "grad_norm_before_clip_max") if k in t}}
    return out
