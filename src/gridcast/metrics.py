"""Evaluation metrics under their contract names (docs/contracts.md); every caller computes them here.

Next cell: ``acc@1``, ``acc@5``, ``mrr``, ``nll``, ``ece`` (top-1 calibration). Continuation: ``ade``/``fde`` (metres where the
grid knows metres, else the data's own units) and ``ade_cells``/``fde_cells`` (grid units).
Functions return per-example arrays where that makes paired bootstrap intervals possible.
"""
from __future__ import annotations

import numpy as np

MISS_RANK = 2**31 - 1  # rank given to a truth the predictor cannot name: a miss at every k


def displacement_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Euclidean error per example and step: (N, T, 2) x (N, T, 2) -> (N, T)."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.shape[-1] != 2:
        raise ValueError(f"pred and true must both be (N, T, 2), got {pred.shape} and {true.shape}")
    return np.linalg.norm(pred - true, axis=-1)


def per_example_errors(pred: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    """Per-example ADE and FDE, (N,) each, from (N, T, 2) paths: kept per example so that scenes,
    windows, users or tracks can be pooled and bootstrapped."""
    d = displacement_errors(pred, true)
    return {"ade": d.mean(axis=1), "fde": d[:, -1]}


def ade(pred: np.ndarray, true: np.ndarray) -> float:
    """Average displacement error over all examples and steps."""
    return float(displacement_errors(pred, true).mean())


def fde(pred: np.ndarray, true: np.ndarray) -> float:
    """Final displacement error: the error at the last step, averaged over examples."""
    return float(displacement_errors(pred, true)[:, -1].mean())


def min_of_k(samples: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best-of-K per example: samples (K, N, T, 2) -> per-example (ADE, FDE) of the sample with the
    lowest ADE and, separately, the lowest FDE (the usual reporting; both are minima over K)."""
    errors = _sample_errors(samples, true)  # (K, N, T)
    return errors.mean(axis=2).min(axis=0), errors[:, :, -1].min(axis=0)


def best_of_k(samples: np.ndarray, true: np.ndarray, groups: np.ndarray | None = None) -> dict[str, float]:
    """Best-of-K ADE/FDE. Per example (``groups`` None): each example takes its own best sample
    (Social-STGCNN, Trajectron++). Per group (sgan): one sample index per group (a scene window),
    the one with the lowest summed error over the group's examples, chosen separately for ADE and FDE."""
    d = _sample_errors(samples, true)
    a, f = d.mean(axis=2), d[:, :, -1]  # (K, N)
    if groups is None:
        return {"ade": float(a.min(axis=0).mean()), "fde": float(f.min(axis=0).mean())}
    _, g = np.unique(groups, return_inverse=True)
    n_g = int(g.max()) + 1
    sums_a = np.stack([np.bincount(g, weights=row, minlength=n_g) for row in a])  # (K, G)
    sums_f = np.stack([np.bincount(g, weights=row, minlength=n_g) for row in f])
    counts = np.bincount(g, minlength=n_g)
    return {"ade": float(sums_a.min(axis=0).sum() / counts.sum()),
            "fde": float(sums_f.min(axis=0).sum() / counts.sum())}


def _sample_errors(samples: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(K, N, T, 2) samples against (N, T, 2) truth -> (K, N, T) Euclidean errors."""
    return np.linalg.norm(np.asarray(samples, np.float64) - np.asarray(true, np.float64)[None], axis=-1)


def ranks_of_truth(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based rank of the true class in each row of `scores` (N, C); ties count against the truth.

    A truth of -1 (a class the model cannot output, e.g. an unseen cell) gets `MISS_RANK`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.int64)
    ranks = np.full(len(truth), MISS_RANK, dtype=np.int64)
    known = truth >= 0
    if known.any():
        rows = np.nonzero(known)[0]
        true_scores = scores[rows, truth[rows]]
        ranks[rows] = (scores[rows] >= true_scores[:, None]).sum(axis=1)
    return ranks


def ranking_metrics(ranks: np.ndarray) -> dict[str, float]:
    """``acc@1``, ``acc@5`` and ``mrr`` from 1-based ranks (misses carry a rank past the end)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        return {"acc@1": float("nan"), "acc@5": float("nan"), "mrr": float("nan")}
    return {"acc@1": float((ranks <= 1).mean()), "acc@5": float((ranks <= 5).mean()), "mrr": float((1.0 / ranks).mean())}


def bootstrap_interval(values: np.ndarray, groups: np.ndarray | None = None, n_boot: int = 1000,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling whole groups (e.g. test tracks) when given.

    Resampling by track, not by step, keeps the interval honest: steps of one trip are not independent.
    """
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if groups is None:
        groups = np.arange(len(values))
    _, group_index = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = group_index.max() + 1 if len(values) else 0
    if n_groups == 0:
        return float("nan"), float("nan")
    sums = np.bincount(group_index, weights=values, minlength=n_groups)
    counts = np.bincount(group_index, minlength=n_groups).astype(np.float64)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


ECE_BINS = 15  # contract: ``ece`` is top-1 expected calibration error over 15 equal-width bins


def reliability(confidences: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin of (0, 1]: mean confidence, accuracy and count (NaN where a
    bin is empty); what the reliability diagram draws and `ece` sums. Bin b holds (b/B, (b+1)/B]."""
    confidences = np.asarray(confidences, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    if confidences.shape != correct.shape:
        raise ValueError(f"confidences and correct must have one value per step, got {confidences.shape} "
                         f"and {correct.shape}")
    index = np.clip(np.ceil(confidences * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidences, minlength=bins) / counts
        accuracy = np.bincount(index, weights=correct, minlength=bins) / counts
    return mean_conf, accuracy, counts


def ece(confidences: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-1 expected calibration error: over equal-width bins of the top prediction's probability,
    the step-weighted mean of |accuracy - mean confidence| (0: "p = 0.7" is right 70% of the time).

    >>> round(ece([0.7] * 10, [1] * 7 + [0] * 3), 6), round(ece([0.9, 0.9], [1, 0]), 6)
    (0.0, 0.4)
    """
    mean_conf, accuracy, counts = reliability(confidences, correct, bins)
    if counts.sum() == 0:
        return float("nan")
    used = counts > 0
    return float((counts[used] * np.abs(accuracy[used] - mean_conf[used])).sum() / counts.sum())


ECE_FLOOR_DRAWS = 200  # simulated test sets behind `ece_floor`


def ece_floor(confidences: np.ndarray, bins: int = ECE_BINS, draws: int = ECE_FLOOR_DRAWS, seed: int = 0) -> float:
    """The ``ece`` a *perfectly calibrated* predictor would still show with these confidences on
    this many steps: the mean ECE over `draws` test sets whose outcomes are drawn right with exactly
    the stated probability. Why: ECE is biased upwards on small test sets (a bin of 20 steps at
    p = 0.5 is off by ~0.1 by chance alone), so an ECE near its floor says nothing about
    miscalibration, and a goal below the floor cannot be told apart from noise.

    >>> p = np.full(100_000, 0.7)
    >>> ece_floor(p) < 0.01 < ece_floor(p[:100])
    True
    """
    confidences = np.asarray(confidences, dtype=np.float64).reshape(-1)
    if len(confidences) == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    return float(np.mean([ece(confidences, rng.random(len(confidences)) < confidences, bins) for _ in range(draws)]))
