"""Temperature scaling: one number, fitted on held-out tracks, that makes the model's probabilities honest.

Why a temperature: a network trained to convergence on a few hundred trips is overconfident (its
top cell's p runs ahead of how often it is right). Dividing every logit by one T > 0 fixes the
confidence without moving any ranking (greedy rollouts, acc@k and MRR are unchanged; beam route
probabilities, ``p`` values, ``nll`` and ``ece`` change). One parameter cannot overfit a small
validation split, unlike per-class or histogram binning calibrators, and it is the same operation
on every head (plain, fusion, move), so every prediction path applies it the same way.

T minimises the validation negative log-likelihood (summed over steps) plus a weak prior that
keeps it near 1, ``(log T)^2 / (2 * 0.5^2)``: the MAP temperature under log T ~ N(0, 0.5^2). Why the
prior: a small validation split (a few trips, nearly every step certain) otherwise drives T to an
extreme that its few uncertain steps cannot argue against (on the repeated-route case, 3 validation
trips pushed T to 0.25 and a 0.58 / 0.42 split at the shared start to 0.80 / 0.20); with thousands of
steps the prior weighs nothing. T is searched on a log-spaced grid (T = 1 among its points) and
refined by a parabola through the best three points: two passes over the validation batches (the
grid, then the NLL at the refined T), memory bounded by one batch of logits (the cell vocabulary
can hold thousands of cells).

Example:
    >>> import torch
    >>> logits = torch.tensor([[4.0, 0.0]] * 1000)     # p(first) = 0.98 ...
    >>> targets = torch.tensor([0] * 700 + [1] * 300)   # ... but right 7 times in 10
    >>> t = fit_temperature(lambda: [(logits, targets)])
    >>> t.temperature > 1, round(float(torch.softmax(logits[0] / t.temperature, 0)[0]), 1)
    (True, 0.7)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gridcast.metrics import ece, ece_floor

__all__ = ["Calibration", "fit_temperature", "NO_CALIBRATION", "GRID", "top1_along", "baseline_top1_along",
           "calibration_error", "plot_reliability"]

#: the temperatures tried (about 0.25 .. 8, 5% apart, 1 among them); the fit is refined between them
GRID = 1.05 ** np.arange(-28, 44, dtype=np.float64)
PRIOR_SD = 0.5  # log T ~ N(0, PRIOR_SD^2): a split of a few steps cannot push T far from 1


@dataclass
class Calibration:
    """A fitted temperature and what it did on the steps it was fitted on (saved in config.json)."""

    method: str = "temperature"    # "temperature" | "none"
    temperature: float = 1.0
    steps: int = 0                 # validation steps it was fitted on
    nll_before: float | None = None  # mean validation NLL at T = 1 ...
    nll_after: float | None = None   # ... and at the fitted T

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Calibration":
        """What a checkpoint saved; a checkpoint without it (older than calibration) predicts at T = 1."""
        if not d:
            return NO_CALIBRATION
        known = {k: d[k] for k in ("method", "temperature", "steps", "nll_before", "nll_after") if k in d}
        calibration = cls(**known)
        if not (math.isfinite(float(calibration.temperature)) and calibration.temperature > 0):
            raise ValueError(f"calibration temperature must be a positive number, got {calibration.temperature!r}")
        calibration.temperature = float(calibration.temperature)
        return calibration


NO_CALIBRATION = Calibration(method="none")


def fit_temperature(batches: Callable[[], Iterable[tuple[Tensor, Tensor]]], grid: np.ndarray = GRID) -> Calibration:
    """The temperature minimising the NLL (with the prior on log T, see the module) of the
    (logits (N, C), target index (N,)) pairs that ``batches()`` yields (called twice: the grid,
    then the exact NLL at the refined T).

    Rows whose target has logit -inf (a cell the head cannot name) are left out: no temperature
    changes them. Without any usable row the answer is T = 1 (``method`` "none")."""
    losses, steps = _mean_nlls(batches(), grid)
    if steps == 0:
        return NO_CALIBRATION
    objective = _objective(losses, steps, np.log(grid))
    best = int(np.argmin(objective))
    log_t = math.log(grid[best])
    if 0 < best < len(grid) - 1:  # parabola through the best point and its neighbours (in log T)
        x = np.log(grid[best - 1:best + 2])
        a, b, _ = np.polyfit(x, objective[best - 1:best + 2], 2)
        if a > 0:
            log_t = float(np.clip(-b / (2 * a), x[0], x[2]))
    temperature = math.exp(log_t)
    before = float(losses[int(np.argmin(np.abs(np.log(grid))))])  # T = 1 is a grid point
    after = float(_mean_nlls(batches(), np.array([temperature]))[0][0])
    if _objective(after, steps, log_t) > objective[best]:  # the parabola overshot: keep the grid's best
        temperature, after = float(grid[best]), float(losses[best])
    return Calibration("temperature", temperature, steps, before, after)


def _objective(mean_nll, steps: int, log_t):
    """Summed validation NLL plus the prior's penalty on log T (what the fit minimises)."""
    return np.asarray(mean_nll) * steps + np.square(log_t) / (2 * PRIOR_SD ** 2)


@torch.no_grad()
def _mean_nlls(batches: Iterable[tuple[Tensor, Tensor]], grid: np.ndarray) -> tuple[np.ndarray, int]:
    """Mean NLL at each temperature of `grid`, and the number of usable rows."""
    inverse = (1.0 / np.asarray(grid, dtype=np.float64)).tolist()
    totals = np.zeros(len(inverse))
    steps = 0
    for logits, targets in batches:
        logits = logits.double()
        true = logits.gather(1, targets.reshape(-1, 1))[:, 0]
        keep = torch.isfinite(true)
        if not bool(keep.any()):
            continue
        logits, true = logits[keep], true[keep]
        steps += len(true)
        for g, b in enumerate(inverse):
            totals[g] += float((torch.logsumexp(logits * b, dim=1) - true * b).sum())
    return totals / max(steps, 1), steps


def scaled_log_softmax(logits: Tensor, temperature: float) -> Tensor:
    """``log_softmax(logits / T)``, and exactly ``log_softmax(logits)`` at T = 1 (old models predict
    bit for bit as before)."""
    return F.log_softmax(logits if temperature == 1.0 else logits / temperature, dim=-1)


def top1_along(predictor, cells: np.ndarray, times: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For every step of a track: the probability of the predictor's top next cell and whether that
    cell is the one that came next (what ``ece`` is computed from; one causal pass, as
    `Forecaster.ranks_along`). `predictor`: a `Forecaster` or an `Ensemble`."""
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    if len(cells) < 2:
        return np.zeros(0), np.zeros(0, dtype=bool)
    cands, logp, _ = predictor.step_distributions(cells[:-1], None if times is None else np.asarray(times)[:-1])
    best = np.argmax(logp, axis=1)
    rows = np.arange(len(best))
    confidence = np.exp(logp[rows, best])
    correct = np.all(cands[rows, best] == cells[1:], axis=1) & np.isfinite(logp[rows, best])
    return confidence, correct


def baseline_top1_along(baseline, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """As `top1_along` for a baseline, its scores normalised to a distribution over the cells it
    names (the Markov chains' scores are transition frequencies; stay and constant velocity name one
    cell with certainty). Ties go to the smallest (col, row), as the baselines' rollouts break them."""
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    confidence = np.zeros(max(len(cells) - 1, 0))
    correct = np.zeros(len(confidence), dtype=bool)
    for t in range(1, len(cells)):
        scores = baseline.scores(cells[:t])
        total = sum(scores.values())
        if not scores or total <= 0:
            continue  # names no cell: confidence 0, a miss
        best, score = min(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        confidence[t - 1] = score / total
        correct[t - 1] = best == (int(cells[t, 0]), int(cells[t, 1]))
    return confidence, correct


def calibration_error(predictor, tracks: list, baseline: bool = False, floor: bool = False):
    """``ece`` of a forecaster (or ensemble), or with `baseline` of a `CellBaseline`, over every
    next-cell step of `tracks` (the steps ``acc@1`` counts). With `floor`: ``(ece, ece_floor)``,
    the second what a perfectly calibrated predictor with the same confidences would show
    (`gridcast.metrics.ece_floor`)."""
    parts = [baseline_top1_along(predictor, t.cells) if baseline else top1_along(predictor, t.cells, t.times)
             for t in tracks if len(t) >= 2]
    if not parts:
        return (float("nan"), float("nan")) if floor else float("nan")
    confidences = np.concatenate([c for c, _ in parts])
    error = ece(confidences, np.concatenate([k for _, k in parts]))
    return (error, ece_floor(confidences)) if floor else error


def plot_reliability(path, series: dict[str, tuple[np.ndarray, np.ndarray]], bins: int = 15, title: str = ""):
    """The reliability diagram: per confidence bin, how often the top cell was right against how
    sure the predictor was (the diagonal is perfect calibration), one line per predictor in
    `series` ({label: (confidences, correct)}), its ``ece`` in the legend, and below it how many
    steps fell in each bin. matplotlib is imported here, so this module stays light."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gridcast.metrics import reliability

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    width = 1.0 / bins
    centres = (np.arange(bins) + 0.5) * width
    for i, (label, (confidences, correct)) in enumerate(series.items()):
        mean_conf, accuracy, counts = reliability(confidences, correct, bins)
        used = counts > 0
        top.plot(mean_conf[used], accuracy[used], marker="o", label=f"{label} (ECE {ece(confidences, correct, bins):.3f})")
        offset = (i - (len(series) - 1) / 2) * width / max(len(series), 1)
        bottom.bar(centres + offset, counts, width=width / max(len(series), 1), label=label)
    top.set_ylabel("accuracy of the top cell")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize=8)
    top.set_title(title or "reliability of the top next cell")
    bottom.set_xlabel(f"predicted probability of the top cell ({bins} equal-width bins)")
    bottom.set_ylabel("steps")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
