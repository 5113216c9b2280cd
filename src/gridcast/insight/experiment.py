"""The shared set-up of every insight experiment: the real data, one training budget, fitting a
next-cell forecaster (optionally with a cell variant) and scoring it.

Experiments run on one thread (`one_thread`): the machines this runs on are shared, and one-thread
timings are the ones that compare fairly between cell kinds.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.insight.gates import set_forget_bias
from gridcast.kinds import CELL_KINDS
from gridcast.metrics import ranking_metrics
from gridcast.nextcell.config import CellForecasterConfig
from gridcast.nextcell.forecaster import Forecaster
from gridcast.nextcell.training import TrainConfig
from gridcast.nn.recurrent import Recurrent
from gridcast.tracks import Track, split_by_track

FIGURE_ORDER = ("rnn", "lstm", "gru")  # simplest cell first: the order the figures and tables read best in
#: every kind of `gridcast.kinds.CELL_KINDS`, in figure order (a kind added there lands at the end)
KINDS: tuple[str, ...] = tuple(k for k in FIGURE_ORDER if k in CELL_KINDS) + \
    tuple(k for k in CELL_KINDS if k not in FIGURE_ORDER)


def one_thread() -> None:
    """Pin torch to one thread so experiments neither fight nor depend on the machine's load."""
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------ the data
@dataclass
class RealData:
    """Training and test trips on their grid (the `gridcast demo` protocol)."""

    train: list[Track]
    test: list[Track]
    grid: Grid | None
    name: str = "Liverpool bus route 14"


@functools.lru_cache(maxsize=1)
def liverpool() -> RealData:
    """The bundled route-14 trips, split by time as `gridcast demo` does (11 earliest train, 5 latest test)."""
    try:
        from gridcast.datasets.liverpool import load_liverpool

        train, test, grid, _ = load_liverpool()
    except ImportError as exc:  # gridcast.ingest missing in a partial install
        raise InputError(f"the bundled Liverpool data cannot be gridded here ({exc})") from None
    return RealData(train, test, grid)


def pick_track(data: RealData) -> Track:
    """The default trip to trace: the longest held-out route-14 trip (the one the demo plots)."""
    return max(data.test, key=len)


# ------------------------------------------------------------------------------------- fitting
@dataclass
class FitSettings:
    """One training budget, shared by every cell kind that is compared (fairness by construction)."""

    epochs: int = 80            # each epoch is one pass over the (few) training trips
    hidden: int = 64
    embed: int = 16
    lr: float = 5e-3
    clip_norm: float = 1.0      # 0 disables clipping (the tanh-vs-ReLU stability experiment)
    val_fraction: float = 0.2
    dropout: float = 0.1
    patience: int = 1000        # effectively off: the budget, not early stopping, ends training
    extra: dict = field(default_factory=dict)


def fit_forecaster(tracks: list[Track], kind: str, seed: int = 0, settings: FitSettings | None = None,
                   grid: Grid | None = None, forget_bias: float | None = None, log_path=None,
                   **cell_options) -> Forecaster:
    """Train a next-cell `Forecaster` on `tracks`; `cell_options` select a cell variant.

    ``Forecaster`` builds its network from a config that has no cell variants, so a variant is made
    by building the standard network untrained, swapping in a `Recurrent` with the variant's cells,
    and training that (`Forecaster.fit_network`). `forget_bias` sets the LSTM forget gate's bias
    (split evenly between ``bias_ih`` and ``bias_hh``) at initialisation. `log_path` keeps the epoch
    log (JSONL), which survives a `TrainingError` when the loss blows up.
    """
    s = settings or FitSettings()
    config = CellForecasterConfig(cell=kind, target="cell", hidden=s.hidden, embed=s.embed, dropout=s.dropout)
    train, val = split_by_track(tracks, s.val_fraction, seed)
    train_config = TrainConfig(epochs=s.epochs, lr=s.lr, clip_norm=s.clip_norm, patience=s.patience, seed=seed)
    model = Forecaster(config, grid=grid)
    if not cell_options and forget_bias is None:
        return model.fit(train, val_tracks=val, train=train_config, log_path=log_path)
    model.fit(train, val_tracks=val, train=TrainConfig(epochs=0, seed=seed))  # vocabulary, normalisation, net
    torch.manual_seed(seed)
    old = model.net_.recurrent
    model.net_.recurrent = Recurrent(kind, old.input_size, old.hidden_size, num_layers=old.num_layers,
                                     init_state=old.init_state, **cell_options)
    if forget_bias is not None:
        set_forget_bias(model.net_.recurrent, forget_bias)
    model.fit_network(train, val, train_config, log_path=log_path)
    return model


def count_parameters(module: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def next_cell_metrics(model: Forecaster, tracks: list[Track]) -> dict[str, float]:
    """``acc@1``, ``acc@5``, ``mrr``, ``nll`` over every step of `tracks` (one causal pass each)."""
    ranks, nll = zip(*(model.ranks_along(t.cells) for t in tracks if len(t) >= 2))
    metrics = ranking_metrics(np.concatenate(ranks))
    finite = np.concatenate(nll)
    finite = finite[np.isfinite(finite)]
    metrics["nll"] = float(finite.mean()) if len(finite) else float("nan")
    return metrics
