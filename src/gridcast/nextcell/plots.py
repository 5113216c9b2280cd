"""Figures people would rather look at than read (matplotlib, Agg backend: no screen needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gridcast.grid import Grid  # noqa: E402
from gridcast.nextcell.forecaster import Route  # noqa: E402
from gridcast.tracks import Track  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def route_label(rank: int, route: Route, top_p: float) -> str:
    """A legend entry people can read: how likely beside the top route, and per step.

    Whole-route probabilities of long routes are tiny (1e-7 says little); "0.4x as likely as #1"
    and the geometric-mean probability per step do not shrink with the route's length.

    >>> route_label(1, Route([(1, 0), (2, 0)], 0.09, False), 0.36)
    '#2: 0.25x as likely as #1 (p = 0.09, 0.30 per step)'
    >>> route_label(0, Route([], 0.31, True), 0.31)
    '#1: most probable, ends at once [end] (p = 0.31)'
    """
    steps = len(route.cells) + (1 if route.ended else 0)
    likely = "most probable" if rank == 0 else f"{route.p / top_p:.2g}x as likely as #1" if top_p > 0 else "p = 0"
    if not route.cells:
        return f"#{rank + 1}: {likely}, ends at once [end] (p = {route.p:.2g})"
    per_step = route.p ** (1.0 / steps) if steps and route.p > 0 else 0.0
    ends = ", then ends [end]" if route.ended else ""
    return f"#{rank + 1}: {likely}{ends} (p = {route.p:.2g}, {per_step:.2f} per step)"


def _axes(grid: Grid | None, anchor: np.ndarray) -> tuple[Callable[[np.ndarray], np.ndarray], str, str]:
    """Cells -> plotted coordinates and the axis labels: metres from the last observed cell on a
    projected grid, the data's own x / y on a planar one, cell indices without a grid."""
    if grid is None:
        return (lambda cells: np.asarray(cells, dtype=np.float64).reshape(-1, 2)), "column (cells)", "row (cells)"
    cells_to = lambda cells: np.stack(grid.to_centres(*np.asarray(cells).reshape(-1, 2).T), axis=1)  # noqa: E731
    if grid.metric:
        origin = cells_to(anchor)[0]
        return ((lambda cells: cells_to(cells) - origin), "metres east of the last observed cell",
                "metres north of the last observed cell")
    return cells_to, "x", "y"


def plot_route_prediction(path: str | Path, observed: np.ndarray, truth: np.ndarray, routes: list[Route],
                          background: list[Track] = (), title: str = "", unit: str = "cells",
                          grid: Grid | None = None) -> Path:
    """`route_figure` written to `path` (PNG)."""
    return _save(route_figure(observed, truth, routes, background, title, unit, grid), path)


def route_figure(observed: np.ndarray, truth: np.ndarray, routes: list[Route], background: list[Track] = (),
                 title: str = "", unit: str = "cells", grid: Grid | None = None):
    """A held-out trip on the grid: what was seen, what really came next, and the predicted routes.

    Every route listed is drawn: one that ends at once (the beam's "[end]" right after the prefix)
    is a marker on the last observed cell, labelled, never dropped. Cells of the training tracks
    are drawn faintly underneath, so one sees whether a prediction follows a known road or wanders.
    With `grid`, axes are in metres from the last observed cell (projected grids) or the data's
    x / y (planar), and the title says the cell size; without, in cell indices (`unit` names them).
    """
    fig, ax = plt.subplots(figsize=(7, 6))
    observed = np.asarray(observed).reshape(-1, 2)
    truth = np.asarray(truth).reshape(-1, 2)
    to_xy, xlabel, ylabel = _axes(grid, observed[-1:])
    if grid is None:
        xlabel, ylabel = f"column ({unit})", f"row ({unit})"
    shown = np.concatenate([observed, truth] + [np.asarray(r.cells).reshape(-1, 2) for r in routes])
    low, high = shown.min(axis=0), shown.max(axis=0)
    margin = np.maximum(3, 0.15 * (high - low))
    low, high = low - margin, high + margin  # the view: this trip, not every training cell far away
    if len(background):
        seen = np.unique(np.concatenate([t.cells for t in background]), axis=0)
        seen = seen[((seen >= low) & (seen <= high)).all(axis=1)]
        if len(seen):
            xy = to_xy(seen)
            ax.scatter(xy[:, 0], xy[:, 1], s=60, marker="s", color="0.9", label="cells of training trips", zorder=0)
    xy = to_xy(observed)
    ax.plot(xy[:, 0], xy[:, 1], "o-", color="tab:blue", label="observed", zorder=3)
    if len(truth):
        joined = to_xy(np.concatenate([observed[-1:], truth]))
        ax.plot(joined[:, 0], joined[:, 1], "o-", color="tab:green", label="what really came next", zorder=2)
    step = float(grid.cell_size) if grid is not None else 1.0
    top_p = max((r.p for r in routes), default=0.0)
    for rank, route in enumerate(routes):
        jitter = 0.08 * (rank + 1) * step  # overlapping routes stay apart
        cells = to_xy(np.concatenate([observed[-1:], np.asarray(route.cells).reshape(-1, 2)])) + jitter
        alpha = max(0.25, 1.0 - 0.25 * rank)
        label = route_label(rank, route, top_p)
        if len(cells) == 1:  # ends right after the prefix: a marker where it ends, not nothing
            ax.plot(cells[:, 0], cells[:, 1], marker="X", markersize=12, linestyle="none", color="tab:red",
                    alpha=alpha, label=label, zorder=5)
        else:
            ax.plot(cells[:, 0], cells[:, 1], "x--", color="tab:red", alpha=alpha, label=label, zorder=4)
        if route.ended:
            ax.annotate(f"#{rank + 1} [end]", cells[-1], xytext=(6, 6 + 10 * rank), textcoords="offset points",
                        fontsize=8, color="tab:red", zorder=6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(True, alpha=0.3)
    return fig


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
