"""Figures of the insight measurements (matplotlib, Agg backend; small PNGs for docs/img)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"rnn": "tab:blue", "lstm": "tab:orange", "gru": "tab:green"}
GATE_ROWS = {
    "lstm": ("forget", "input", "output", "cell", "hidden"),
    "gru": ("update", "reset", "hidden"),
    "rnn": ("hidden",),
}
DPI = 90


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _color(label: str, index: int) -> str:
    return COLORS.get(label, f"C{(index + 3) % 10}")


def plot_gates(path: str | Path, cells: np.ndarray, traces: dict[str, np.ndarray], kind: str, title: str = "",
               max_units: int = 64) -> Path:
    """The trip on the grid (coloured by step) above one heatmap per gate/state: unit x time step.

    Gates live in [0, 1] (dark = closed, bright = open); states are signed (red/blue).
    """
    rows = [name for name in GATE_ROWS.get(kind, tuple(traces)) if name in traces]
    steps = len(cells)
    fig = plt.figure(figsize=(9, 3.2 + 1.25 * len(rows)))
    grid = fig.add_gridspec(1 + len(rows), 2, height_ratios=[3.0] + [1.1] * len(rows), width_ratios=[40, 1],
                            hspace=0.45, wspace=0.03)
    ax = fig.add_subplot(grid[0, 0])
    cells = np.asarray(cells)
    ax.plot(cells[:, 0], cells[:, 1], "-", color="0.75", zorder=1)
    dots = ax.scatter(cells[:, 0], cells[:, 1], c=np.arange(steps), cmap="viridis", s=28, marker="s", zorder=2)
    ax.annotate("start", cells[0], textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.annotate("end", cells[-1], textcoords="offset points", xytext=(6, -8), fontsize=8)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("column (cells)", fontsize=8)
    ax.set_ylabel("row (cells)", fontsize=8)
    ax.set_title(title or f"{kind.upper()} gates along one trip", fontsize=10)
    fig.colorbar(dots, cax=fig.add_subplot(grid[0, 1]), label="time step")
    for r, name in enumerate(rows, start=1):
        values = traces[name][:, :max_units].T  # (units, steps)
        hax = fig.add_subplot(grid[r, 0])
        signed = name in ("cell", "hidden", "candidate")
        limit = max(float(np.abs(values).max()), 1e-6) if signed else 1.0
        image = hax.imshow(values, aspect="auto", interpolation="nearest", cmap="RdBu_r" if signed else "magma",
                           vmin=-limit if signed else 0.0, vmax=limit)
        hax.set_ylabel(f"{name}\nunit", fontsize=8)
        hax.tick_params(labelsize=7)
        if r < len(rows):
            hax.set_xticklabels([])
        else:
            hax.set_xlabel("time step along the trip", fontsize=8)
        fig.colorbar(image, cax=fig.add_subplot(grid[r, 1]))
    return _save(fig, path)


def plot_gradients(path: str | Path, result: dict) -> Path:
    """|dLoss/dh_{T-k}| against k, log scale: at initialisation (left) and after training (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, prefix, label in ((axes[0], "init_", "at initialisation"), (axes[1], "", "after training")):
        for index, (kind, row) in enumerate(result["kinds"].items()):
            color = _color(kind, index)
            for curve in row[f"{prefix}norm_by_k_by_seed"]:
                ax.plot(np.maximum(curve, 1e-30), color=color, alpha=0.25, lw=0.8)
            ax.plot(np.maximum(row[f"{prefix}norm_by_k"], 1e-30), color=color, lw=2,
                    label=f"{kind.upper()} h (1->50: /{row[f'{prefix}decay_1_50']:.2g})")
            if f"{prefix}cell_norm_by_k" in row:
                ax.plot(np.maximum(row[f"{prefix}cell_norm_by_k"], 1e-30), "--", color=color, lw=1.5,
                        label=f"{kind.upper()} cell state c")
        ax.set_yscale("log")
        ax.set_xlabel("k (steps back from the last step)")
        ax.set_title(label)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("|dLoss / dh(T-k)|  (geometric mean over seeds)")
    seeds = len(result["settings"]["seeds"])
    fig.suptitle(f"How far back does the gradient reach? Real route-14 windows, {seeds} seeds (thin lines)", fontsize=10)
    return _save(fig, path)


def plot_clipping(path: str | Path, histories: dict[str, list], clip_norm: float) -> Path:
    """Global gradient norm per epoch before clipping, and what clipping lets through."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for index, (kind, history) in enumerate(histories.items()):
        if not history:
            continue
        epochs = [h.epoch for h in history]
        before = np.array([h.grad_norm_max for h in history])
        color = _color(kind, index)
        ax.plot(epochs, before, color=color, label=f"{kind} before clipping")
        if clip_norm > 0:
            ax.plot(epochs, np.minimum(before, clip_norm), ":", color=color, lw=2, label=f"{kind} after clipping")
    if clip_norm > 0:
        ax.axhline(clip_norm, color="k", lw=0.8, ls="--", label=f"clip norm {clip_norm:g}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("global gradient norm (max per epoch)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_memory(path: str | Path, result: dict, title: str = "") -> Path:
    """Recall accuracy against delay for each kind, with the 95 % bar and chance."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for index, (label, row) in enumerate(result["kinds"].items()):
        capped = all(r.get("first_failure", 0) is None for r in row["runs"])
        seeds = row.get("max_delay_by_seed", [row["max_delay"]])
        text = f"{label}: max delay {row['max_delay']}{'+ (cap)' if capped else ''}"
        if len(seeds) > 1:
            text += f" (seeds: {', '.join(map(str, seeds))})"
        for s_index, run in enumerate(row["runs"]):
            delays = sorted(int(d) for d in run["accuracy_by_delay"])
            accs = [run["accuracy_by_delay"][str(d)] for d in delays]
            jitter = 1.0 + 0.03 * (s_index - (len(row["runs"]) - 1) / 2)  # side by side on the log axis
            ax.plot([d * jitter for d in delays], accs, "o-", color=_color(label, index), alpha=1.0 if s_index == 0 else 0.45,
                    ms=5 if s_index == 0 else 3.5, label=text if s_index == 0 else None)
    ax.axhline(0.95, color="k", ls="--", lw=0.8, label="95 %")
    ax.axhline(result["settings"]["chance"], color="0.5", ls=":", lw=1, label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("delay k (distractor steps between the start cell and the question)")
    ax.set_ylabel("recall accuracy (fresh trips)")
    ax.set_ylim(0, 1.05)
    s = result["settings"]
    ax.set_title(title or f"Recall the start cell: hidden {s['hidden']}, <= {s['steps']} Adam steps, "
                          f"{s['side']}x{s['side']} grid", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def _style(label: str, index: int) -> dict:
    """Colour by cell family, dashes for 'no clip', darker for the larger learning rate."""
    if label.startswith(("rnn_tanh", "rnn_relu")):
        family = "Blues" if label.startswith("rnn_tanh") else "Reds"
        strong = "lr=0.05" in label
        return {"color": plt.get_cmap(family)(0.9 if strong else 0.55), "ls": "--" if "no clip" in label else "-",
                "lw": 1.6}
    return {"color": _color(label, index), "ls": "-", "lw": 1.4}


def plot_loss_curves(path: str | Path, histories: dict[str, list], title: str = "", norms: bool = True) -> Path:
    """Training loss (left) and gradient norm before clipping (right) per epoch for each variant.
    The loss axis turns logarithmic when a run spans more than two decades (a blow-up)."""
    fig, axes = plt.subplots(1, 2 if norms else 1, figsize=(11 if norms else 6, 3.8), squeeze=False)
    loss_ax = axes[0, 0]
    losses = []
    for index, (label, history) in enumerate(histories.items()):
        if not history:
            continue
        epochs = [h.epoch for h in history]
        style = _style(label, index)
        loss_ax.plot(epochs, [h.train_loss for h in history], label=label, **style)
        losses += [h.train_loss for h in history if np.isfinite(h.train_loss)]
        if norms:
            axes[0, 1].plot(epochs, [h.grad_norm_max for h in history], label=label, **style)
    if losses and min(losses) > 0 and max(losses) / min(losses) > 100:
        loss_ax.set_yscale("log")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss")
    loss_ax.legend(fontsize=7)
    loss_ax.grid(True, alpha=0.3)
    if norms:
        axes[0, 1].set_yscale("log")
        axes[0, 1].set_xlabel("epoch")
        axes[0, 1].set_ylabel("gradient norm before clipping")
        axes[0, 1].grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_bars(path: str | Path, panels: list[tuple[str, dict[str, float], dict[str, float] | None]], title: str = "",
              reference: dict[int, tuple[float, str]] | None = None) -> Path:
    """Side-by-side bar panels: (y label, {name: value}, {name: error} or None); `reference` draws a
    horizontal line (value, label) on a panel by index, e.g. the strongest baseline."""
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for p, (label, values, errors) in enumerate(panels):
        ax = axes.flat[p]
        names = list(values)
        ax.bar(names, [values[n] for n in names], yerr=[errors[n] for n in names] if errors else None, capsize=3,
               color=[_color(n, i) for i, n in enumerate(names)])
        for i, n in enumerate(names):
            ax.annotate(f"{values[n]:.3g}", (i, values[n]), ha="center", va="bottom", fontsize=8,
                        textcoords="offset points", xytext=(0, 2))
        if reference and p in reference:
            ax.axhline(reference[p][0], color="k", ls="--", lw=0.8, label=reference[p][1])
            ax.legend(fontsize=7)
        ax.set_ylabel(label, fontsize=9)
        ax.tick_params(axis="x", labelsize=8, rotation=20)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_gradient_curves(path: str | Path, curves: dict[str, np.ndarray], title: str = "") -> Path:
    """A few |dLoss/dh_{T-k}| curves on one log axis (ablations)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for index, (label, curve) in enumerate(curves.items()):
        style = _style(label, index)
        style["ls"] = ":" if label.endswith("init") else "-"
        ax.plot(np.maximum(curve, 1e-30), label=label, **style)
    ax.set_yscale("log")
    ax.set_xlabel("k (steps back from the last step)")
    ax.set_ylabel("|dLoss / dh(T-k)|")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)
