"""The fit loop: AdamW, gradient-norm clipping, LR on plateau, early stopping, JSONL log, progress.

Gradient clipping is on by default (the seed notes: gates tame vanishing gradients, not exploding
ones) and the norm *before* clipping is logged every epoch, so exploding gradients are visible.
"""
from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from .errors import GridcastError


class TrainingError(GridcastError):
    """Training cannot go on (e.g. the loss became NaN); the message names the epoch and batch."""


@dataclass
class TrainConfig:
    """Optimisation settings; saved with the model."""

    epochs: int = 40            # upper bound; early stopping usually ends sooner
    batch_size: int = 32        # tracks (or track chunks) per step
    lr: float = 3e-3            # AdamW learning rate
    weight_decay: float = 1e-4
    clip_norm: float = 1.0      # max global gradient norm; 0 disables clipping
    patience: int = 6           # epochs without validation improvement before stopping
    max_len: int = 256          # longer tracks are cut into chunks of this many steps for training
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float | None
    grad_norm_mean: float
    grad_norm_max: float
    clipped_fraction: float
    lr: float
    seconds: float


@dataclass
class TrainResult:
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float | None = None
    stopped_early: bool = False


def seed_everything(seed: int) -> None:
    """Fix every RNG a run touches, so the same seed and data give the same model."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def fit(model: nn.Module, batches: Callable[[np.random.Generator], Iterable], val_batches: list,
        loss_fn: Callable[[nn.Module, object], torch.Tensor], config: TrainConfig,
        log_path: str | Path | None = None, on_improve: Callable[[int], None] | None = None,
        progress: bool = False, description: str = "fit") -> TrainResult:
    """Train `model` in place and leave it at its best validation epoch.

    Args:
        batches: called once per epoch with a seeded generator; yields training batches.
        val_batches: fixed validation batches (split by track upstream). Empty -> train loss decides.
        loss_fn: ``loss_fn(model, batch) -> scalar``.
        log_path: JSONL file, one line per epoch (appended).
        on_improve: called with the epoch number after each new best (e.g. to write a checkpoint).
    """
    from tqdm.auto import tqdm

    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    result, best_state, waited = TrainResult(), None, 0
    log = open(log_path, "a", encoding="utf-8") if log_path else None
    bar = tqdm(range(1, config.epochs + 1), desc=description, disable=True if not progress else None,  # None: only on a terminal
               leave=False, unit="epoch")
    try:
        for epoch in bar:
            started = time.perf_counter()
            model.train()
            losses, norms = [], []
            for index, batch in enumerate(batches(rng)):
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model, batch)
                if not torch.isfinite(loss):
                    raise TrainingError(f"loss became {loss.item()} at epoch {epoch}, batch {index + 1}; "
                                        "the best model so far is kept (try a lower --lr)")
                loss.backward()
                limit = config.clip_norm if config.clip_norm > 0 else math.inf
                norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), limit)))
                optimizer.step()
                losses.append(float(loss.detach()))
            val_loss = _evaluate(model, val_batches, loss_fn)
            monitored = val_loss if val_loss is not None else float(np.mean(losses))
            scheduler.step(monitored)
            entry = EpochLog(epoch, float(np.mean(losses)), val_loss, float(np.mean(norms)), float(np.max(norms)),
                             float(np.mean(np.asarray(norms) > config.clip_norm)) if config.clip_norm > 0 else 0.0,
                             optimizer.param_groups[0]["lr"], time.perf_counter() - started)
            result.history.append(entry)
            if log:
                log.write(json.dumps(asdict(entry)) + "\n")
                log.flush()
            bar.set_postfix(train=f"{entry.train_loss:.3f}", val="-" if val_loss is None else f"{val_loss:.3f}")
            if result.best_val_loss is None or monitored < result.best_val_loss - 1e-6:
                result.best_val_loss, result.best_epoch, waited = monitored, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
                if on_improve:
                    on_improve(epoch)
            else:
                waited += 1
                if waited >= config.patience:
                    result.stopped_early = True
                    break
    finally:
        bar.close()
        if log:
            log.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
    return result


@torch.no_grad()
def _evaluate(model: nn.Module, batches: list, loss_fn) -> float | None:
    if not batches:
        return None
    model.eval()
    total, weight = 0.0, 0.0
    for batch in batches:
        n = float(getattr(batch, "weight", 1.0))
        total += float(loss_fn(model, batch)) * n
        weight += n
    return total / max(weight, 1e-12)
