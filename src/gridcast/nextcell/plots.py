"""Figures people would rather look at than read (matplotlib, Agg backend: no screen needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gridcast.nextcell.forecaster import Route  # noqa: E402
from gridcast.tracks import Track  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_route_prediction(path: str | Path, observed: np.ndarray, truth: np.ndarray, routes: list[Route],
                          background: list[Track] = (), title: str = "", unit: str = "cells") -> Path:
    """A held-out trip on the grid: what was seen, what really came next, and the predicted routes.

    Cells of the training tracks are drawn faintly underneath, so one sees whether a prediction
    follows a known road or wanders.
    """
    fig, ax = plt.subplots(figsize=(7, 6))
    observed = np.asarray(observed).reshape(-1, 2)
    truth = np.asarray(truth).reshape(-1, 2)
    shown = np.concatenate([observed, truth] + [np.asarray(r.cells).reshape(-1, 2) for r in routes])
    low, high = shown.min(axis=0), shown.max(axis=0)
    margin = np.maximum(3, 0.15 * (high - low))
    low, high = low - margin, high + margin  # the view: this trip, not every training cell far away
    if len(background):
        seen = np.unique(np.concatenate([t.cells for t in background]), axis=0)
        seen = seen[((seen >= low) & (seen <= high)).all(axis=1)]
        ax.scatter(seen[:, 0], seen[:, 1], s=60, marker="s", color="0.9", label="cells of training trips", zorder=0)
    ax.plot(observed[:, 0], observed[:, 1], "o-", color="tab:blue", label="observed", zorder=3)
    if len(truth):
        joined = np.concatenate([observed[-1:], truth])
        ax.plot(joined[:, 0], joined[:, 1], "o-", color="tab:green", label="what really came next", zorder=2)
    for rank, route in enumerate(routes):
        if not route.cells:
            continue
        cells = np.concatenate([observed[-1:], np.asarray(route.cells)])
        jitter = 0.08 * (rank + 1)
        ax.plot(cells[:, 0] + jitter, cells[:, 1] + jitter, "x--", color="tab:red", alpha=max(0.25, 1.0 - 0.25 * rank),
                label=f"predicted #{rank + 1} (p = {route.p:.2g}{', ends' if route.ended else ''})", zorder=4)
    ax.set_xlabel(f"column ({unit})")
    ax.set_ylabel(f"row ({unit})")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_training_curves(path: str | Path, histories: dict[str, list]) -> Path:
    """Train/validation loss and pre-clipping gradient norm per epoch, one line per model."""
    fig, (loss_ax, norm_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for name, history in histories.items():
        epochs = [h.epoch for h in history]
        line = loss_ax.plot(epochs, [h.train_loss for h in history], label=f"{name} train")[0]
        if history and history[0].val_loss is not None:
            loss_ax.plot(epochs, [h.val_loss for h in history], "--", color=line.get_color(), label=f"{name} val")
        norm_ax.plot(epochs, [h.grad_norm_max for h in history], color=line.get_color(), label=f"{name} max")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.legend(fontsize=8)
    norm_ax.set_xlabel("epoch")
    norm_ax.set_ylabel("gradient norm before clipping")
    norm_ax.set_yscale("log")
    norm_ax.legend(fontsize=8)
    return _save(fig, path)
