"""Shared pieces of the speed benchmarks: timing helpers and a deterministic stand-in model.

Timings on a shared machine are noisy, so every benchmark measures its baseline in the same run,
interleaving the two (A B A B ...) and comparing medians; a ratio is robust where absolute times
are not.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np
import torch

from gridcast.nextcell.config import CellForecasterConfig
from gridcast.nextcell.features import CellVocab, Normalisation
from gridcast.nextcell.forecaster import Forecaster
from gridcast.nextcell.network import ForecasterNet
from gridcast.nextcell.training import TrainConfig


def line(name: str, value: float, unit: str, baseline: str, ratio: float, **extra) -> dict:
    """One benchmark result in the contract shape of `gridcast bench speed --json`."""
    out = {"name": name, "value": float(value), "unit": unit, "baseline": baseline, "ratio": float(ratio)}
    out.update(extra)
    return out


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each function, measured in turns so load changes hit all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for r in range(repeats):
        # Every function takes every position equally often (who runs first, who runs after the
        # one that just thrashed the caches): rotate, and reverse on alternate cycles.
        k = r % len(order)
        names = order[k:] + order[:k]
        if (r // len(order)) % 2:
            names.reverse()
        for name in names:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(ours: list[float], baseline: list[float]) -> float:
    """Median over rounds of ours / baseline, each pair timed back to back.

    Load from other jobs changes on a scale of seconds; two runs timed back to back see nearly the
    same load, so their ratio cancels most of it. A ratio of medians does not: with a 2-core machine
    shared by training jobs it moved by +-20% between runs, this by a few percent.
    """
    return float(statistics.median(a / b for a, b in zip(ours, baseline)))


def random_forecaster(cell: str = "lstm", hidden: int = 64, side: int = 32, target: str = "cell",
                      layers: int = 1, embed: int = 32, seed: int = 0) -> Forecaster:
    """A fitted-looking Forecaster with random weights over a side x side block of cells.

    Speed does not depend on what the weights learned, and skipping training keeps the benchmark
    deterministic and fast. Weights are scaled up so that distributions are peaked, as trained
    ones are (random near-uniform logits would make top-k ties likely).
    """
    torch.manual_seed(seed)
    config = CellForecasterConfig(cell=cell, target=target, hidden=hidden, layers=layers, embed=embed, dropout=0.0)
    cols, rows = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    cells = np.stack([cols.ravel(), rows.ravel()], axis=1)
    model = Forecaster(config)
    model.vocab_ = CellVocab(cells)
    model.norm_ = Normalisation.fit(cells, config.max_move)
    model.train_config_ = TrainConfig()
    model.train_tracks_ = []
    size = len(model.vocab_) if target == "cell" else len(model.moves_) if target == "move" else 4
    model.net_ = ForecasterNet(config, len(model.vocab_), size)
    with torch.no_grad():
        model.net_.head.weight.mul_(4.0)
    model.net_.eval()
    return model


def random_walks(n: int, length: int, side: int = 32, seed: int = 0) -> list[np.ndarray]:
    """n tracks of king moves inside the side x side block (what the stand-in model knows)."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(-1, 2, size=(n, length, 2))
    start = rng.integers(0, side, size=(n, 1, 2))
    walks = np.clip(start + np.cumsum(steps, axis=1), 0, side - 1)
    return [w.astype(np.int64) for w in walks]
