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

from .insight import FitSettings, RealData, fit_forecaster, next_cell_metrics
from .insight_gradients import decay, hidden_gradient_norms, windows
from .insight_memory import MemoryBudget, memory_experiment
from .training import EpochLog, TrainingError

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
                  settings: FitSettings | None = None, cap: int = 64, refine: int = 1, seed: int = 0,
                  log=lambda *a: None) -> dict:
    """Each LSTM variant and the GRU on the recall task (max delay) and on real trips (next cell)."""
    variants = variants or GATE_VARIANTS
    log("recall task:")
    memory = memory_experiment(variants, budget, cap=cap, refine=refine, seeds=(seed,), log=log)
    log("real trips:")
    tracks, histories = {}, {}
    for label, spec in variants.items():
        kind, options = _options(spec)
        model = fit_forecaster(data.train, kind, seed, settings, grid=data.grid, **options)
        metrics = next_cell_metrics(model, data.test)
        history = model.result_.history
        metrics["final_train_loss"] = history[-1].train_loss if history else float("nan")
        metrics["best_val_loss"] = model.result_.best_val_loss
        tracks[label] = metrics
        histories[label] = history
        log(f"  {label}: acc@1 {metrics['acc@1']:.3f}, nll {metrics['nll']:.3f}")
    return {"memory": memory, "tracks": tracks, "histories": histories}


def _read_log(path: Path) -> list[EpochLog]:
    if not path.exists():
        return []
    return [EpochLog(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def activation_ablation(data: RealData, settings: FitSettings | None = None, seed: int = 0, length: int = 60,
                        lrs: tuple[float, ...] = (5e-3, 5e-2), log=lambda *a: None) -> dict:
    """tanh vs ReLU RNN on real trips, with and without clipping, at the usual and a 10x learning rate.

    A run whose loss becomes NaN/inf is reported as diverged (with the epoch); its epoch log up to
    then is kept. Gradient reach (|dLoss/dh_{T-k}|) is measured at initialisation and after the
    clipped run at the usual learning rate.
    """
    from dataclasses import replace

    base = settings or FitSettings()
    runs, histories, reach = {}, {}, {}
    for label, spec in ACTIVATIONS.items():
        kind, options = _options(spec)
        for lr in lrs:
            for clip in (base.clip_norm, 0.0):
                name = f"{label} lr={lr:g} {'clip' if clip > 0 else 'no clip'}"
                with tempfile.TemporaryDirectory() as tmp:
                    log_path = Path(tmp) / "log.jsonl"
                    try:
                        model = fit_forecaster(data.train, kind, seed, replace(base, clip_norm=clip, lr=lr),
                                               grid=data.grid, log_path=log_path, **options)
                        history, diverged = model.result_.history, None
                    except TrainingError:
                        model, history = None, _read_log(log_path)
                        diverged = len(history) + 1
                row = {"lr": lr, "clip_norm": clip, "diverged_at_epoch": diverged,
                       "grad_norm_before_clip_max": max((h.grad_norm_max for h in history), default=float("nan")),
                       "final_train_loss": history[-1].train_loss if history else float("nan"),
                       "min_train_loss": min((h.train_loss for h in history), default=float("nan"))}
                if model is not None:
                    row.update({k: v for k, v in next_cell_metrics(model, data.test).items()})
                    if lr == lrs[0] and clip > 0:
                        reach[f"{label} trained"] = hidden_gradient_norms(model.net_, *windows(model, data.train + data.test, length))["hidden"]
                runs[name] = row
                histories[name] = history
                log(f"  {name}: " + (f"diverged at epoch {diverged}" if diverged else
                                     f"acc@1 {row['acc@1']:.3f}, max grad norm {row['grad_norm_before_clip_max']:.3g}"))
        untrained = fit_forecaster(data.train, kind, seed, replace(base, epochs=0), grid=data.grid, **options)
        reach[f"{label} init"] = hidden_gradient_norms(untrained.net_, *windows(untrained, data.train + data.test, length))["hidden"]
    decays = {name: decay(curve) for name, curve in reach.items()}
    return {"runs": runs, "histories": histories, "reach": {k: v.tolist() for k, v in reach.items()},
            "decay_1_50": decays}


def summarise_gate_ablation(result: dict) -> dict:
    """The JSON view: per variant, max delay on the recall task and next-cell numbers on real trips."""
    out = {}
    for label, row in result["memory"]["kinds"].items():
        t = result["tracks"].get(label, {})
        out[label] = {"max_delay": row["max_delay"],
                      **{k: t[k] for k in ("acc@1", "acc@5", "nll", "final_train_loss", "best_val_loss") if k in t}}
    return out


def _finite(values) -> list[float]:
    return [float(v) for v in values if np.isfinite(v)]
