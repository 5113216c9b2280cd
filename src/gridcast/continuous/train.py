"""Training: `fit` (AdamW, clipping, cosine learning rate, early stopping on validation ADE, an
optional moving average of the weights) and the validation scores it judges epochs by."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from gridcast.continuous.config import ContinuousConfig
from gridcast.continuous.features import Prepared, jittered
from gridcast.continuous.model import ContinuousForecaster, batched_outputs, euclid, losses
from gridcast.continuous.symmetry import augment
from gridcast.errors import GridcastError


def _moving_average(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``model``'s weights, updated after every step (None for
    decay 0). Why: the last steps' weights wander around the minimum with the noise of the batches;
    their average sits nearer its middle, like an ensemble of the last few hundred steps for free."""
    if decay <= 0:
        return None
    if decay >= 1:
        raise ValueError(f"ema must be in [0, 1), got {decay}")
    ema = torch.optim.swa_utils.get_ema_multi_avg_fn(decay)
    return torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=ema)


def fit(train: Prepared, val: Prepared, cfg: ContinuousConfig, log=None,
        max_seconds: float | None = None) -> tuple[ContinuousForecaster, dict]:
    """AdamW with gradient-norm clipping and a cosine learning rate.

    Keeps the weights (their moving average if ``cfg.ema`` > 0) of the epoch with the best
    validation ADE of the deterministic head, and separately those with the best validation
    best-of-K ADE of the mixture, ``info["sampler"]``: the two outputs peak at different epochs
    (a held-out scene may want the near-CVM average of the first epoch for its one trajectory while
    the mixture is still learning its spread). Stops after ``patience`` epochs without improvement
    of the deterministic head (or after ``max_seconds``); the mixture is the best of the epochs run.
    Returns the deterministic model and a small history."""
    if cfg.neighbours > 0 and (not cfg.canonical or cfg.speed_aug > 0):
        raise ValueError("neighbour context needs the canonical frame and no speed augmentation")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = ContinuousForecaster(cfg)
    averaged = _moving_average(model, cfg.ema)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr * 0.05)
    n = len(train.feats)
    best = {"ade": math.inf, "best_of_modes": math.inf}
    kept: dict[str, dict] = {}
    stale, history = 0, []
    start = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        data = jittered(train, cfg, rng) if cfg.obs_noise > 0 else train
        for i in range(0, n, cfg.batch):
            idx = order[i: i + cfg.batch]
            feats, cv, target, nb = augment(data.feats[idx], data.cv[idx], data.target[idx], cfg, gen,
                                            None if data.nb is None else data.nb[idx])
            ctx = data.ctx[idx] if data.ctx is not None else None
            parts = losses(model(feats, cv, ctx, nb), target, cfg.mode_weight)
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            if averaged is not None:
                averaged.update_parameters(model)
            total += float(parts["total"].detach()) * len(idx)
        sched.step()
        judged = averaged.module if averaged is not None else model
        scores = validation_scores(judged, val)
        history.append({"epoch": epoch, "train_loss": total / n, **{f"val_{k}": v for k, v in scores.items()}})
        if log:
            log(f"epoch {epoch:3d} loss {total / n:.4f} val ade {scores['ade']:.4f}")
        improved = [key for key, value in scores.items() if value < best[key] - 1e-5]
        if improved:  # one copy serves both heads when they improve in the same epoch
            state = copy.deepcopy(judged.state_dict())
            for key in improved:
                best[key], kept[key] = scores[key], state
        stale = 0 if "ade" in improved else stale + 1
        if stale >= cfg.patience or (max_seconds and time.perf_counter() - start > max_seconds):
            break
    if history and "ade" not in kept:  # NaN < best is never true: no epoch was finite, keep no weights
        raise GridcastError(f"no epoch of {len(history)} reached a finite validation ADE (last: "
                            f"{history[-1].get('val_ade')}); try a lower learning rate")
    if "ade" in kept:
        model.load_state_dict(kept["ade"])
    model.eval()
    sampler = model
    if kept.get("best_of_modes", kept.get("ade")) is not kept.get("ade"):  # the mixture peaked in another epoch
        sampler = ContinuousForecaster(cfg)
        sampler.load_state_dict(kept["best_of_modes"])
        sampler.eval()
    return model, {"history": history, "best_val_ade": best["ade"], "epochs_run": len(history),
                   "seconds": time.perf_counter() - start, "config": asdict(cfg), "sampler": sampler}


def validation_scores(model: ContinuousForecaster, data: Prepared) -> dict[str, float]:
    """Deterministic ADE and (with a mixture) the best-of-K ADE over its components, in the
    model's scaled local frame (rotation keeps distances)."""
    out = batched_outputs([model], data)
    scores = {"ade": float(euclid(out["mean"][0], data.target).mean())}
    if "modes" in out:
        per_mode = euclid(out["modes"][0], data.target.unsqueeze(1)).mean(-1)  # (N, K)
        scores["best_of_modes"] = float(per_mode.min(dim=1).values.mean())
    return scores
