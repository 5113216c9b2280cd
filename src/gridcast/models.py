"""The network behind a `Forecaster`: cell features in, a distribution over the next cell out.

Every step's input is the current cell as an embedding of its id (what the model has learned about
that place) plus its position relative to the training data's centre and the last move (what it can
say about places it has never seen). A `Recurrent` stack carries the route so far; one linear head
reads the next step out, in one of three ways (``target``):

* ``cell``:   a softmax over the cells seen in training plus an end-of-route token;
* ``move``:   a softmax over displacements in [-R, R]^2 plus end-of-route (larger jumps are clipped);
* ``offset``: a 2-D Gaussian over the continuous displacement, in cells.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import InputError
from .recurrent import Recurrent

PAD, END, UNKNOWN = 0, 1, 2
RESERVED = 3  # ids below this are not cells
CONTINUOUS_FEATURES = 4  # relative col, relative row, last move dx, dy


@dataclass
class ForecasterConfig:
    """Everything needed to rebuild the network; saved inside every checkpoint."""

    cell: str = "lstm"          # rnn | lstm | gru
    target: str = "cell"        # cell | move | offset
    hidden: int = 128           # hidden state size
    layers: int = 1             # stacked recurrent layers
    embed: int = 32             # cell-id embedding size
    dropout: float = 0.1        # on embeddings and between layers
    init_state: str = "zeros"   # zeros | learned | noise
    max_move: int = 2           # move target: classes cover displacements in [-R, R]^2
    offset_loss: str = "gaussian"  # offset target: gaussian (NLL) | mse

    def __post_init__(self) -> None:
        checks = {
            "cell": self.cell in ("rnn", "lstm", "gru"),
            "target": self.target in ("cell", "move", "offset"),
            "init_state": self.init_state in ("zeros", "learned", "noise"),
            "offset_loss": self.offset_loss in ("gaussian", "mse"),
        }
        for name, ok in checks.items():
            if not ok:
                raise InputError(f"invalid {name} {getattr(self, name)!r}")
        for name in ("hidden", "layers", "embed", "max_move"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ForecasterConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown model settings {sorted(unknown)}")
        return cls(**d)


class CellVocab:
    """Cell (col, row) <-> integer id. Ids 0, 1, 2 are padding, end-of-route and unknown."""

    def __init__(self, cells: np.ndarray) -> None:
        cells = np.unique(np.asarray(cells, dtype=np.int64).reshape(-1, 2), axis=0)
        self.cells = cells
        self._index = {(int(c), int(r)): i + RESERVED for i, (c, r) in enumerate(cells)}

    def __len__(self) -> int:
        return len(self.cells) + RESERVED

    def ids(self, cells: np.ndarray) -> np.ndarray:
        return np.fromiter((self._index.get((int(c), int(r)), UNKNOWN) for c, r in cells), dtype=np.int64, count=len(cells))

    def cell(self, token: int) -> tuple[int, int]:
        c, r = self.cells[token - RESERVED]
        return int(c), int(r)

    def to_list(self) -> list[list[int]]:
        return self.cells.tolist()


class MoveClasses:
    """Displacement (dx, dy) in [-R, R]^2 <-> class id; class (2R+1)^2 is end-of-route."""

    def __init__(self, radius: int) -> None:
        self.radius = radius
        self.side = 2 * radius + 1
        self.end = self.side * self.side
        d = np.arange(-radius, radius + 1)
        self.moves = np.stack(np.meshgrid(d, d, indexing="ij"), axis=-1).reshape(-1, 2)

    def __len__(self) -> int:
        return self.end + 1

    def ids(self, deltas: np.ndarray) -> np.ndarray:
        clipped = np.clip(deltas, -self.radius, self.radius) + self.radius
        return clipped[:, 0] * self.side + clipped[:, 1]


@dataclass
class Normalisation:
    """Centre and scale of the training cells, so positions enter the network near [-1, 1]."""

    centre: tuple[float, float]
    scale: float
    move_scale: float  # moves are divided by this before entering the network
    offset_std: float = 1.0  # mse offset models: residual std used for probabilities

    @classmethod
    def fit(cls, cells: np.ndarray, max_move: int) -> "Normalisation":
        cells = np.asarray(cells, dtype=np.float64)
        lo, hi = cells.min(axis=0), cells.max(axis=0)
        centre = (lo + hi) / 2
        scale = max(float((hi - lo).max()) / 2, 1.0)
        return cls(centre=(float(centre[0]), float(centre[1])), scale=scale, move_scale=float(max_move))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Normalisation":
        return cls(centre=tuple(d["centre"]), scale=float(d["scale"]), move_scale=float(d["move_scale"]),
                   offset_std=float(d.get("offset_std", 1.0)))


def step_features(cells: np.ndarray, previous: np.ndarray, norm: Normalisation) -> np.ndarray:
    """Continuous features of steps: position relative to the training centre and the move from
    each step's previous cell. Rows are independent, so this serves whole tracks and beams alike."""
    cells = np.asarray(cells, dtype=np.float64)
    rel = (cells - np.asarray(norm.centre)) / norm.scale
    moves = np.clip((cells - np.asarray(previous, dtype=np.float64)) / norm.move_scale, -3.0, 3.0)
    return np.concatenate([rel, moves], axis=1).astype(np.float32)


def sequence_features(cells: np.ndarray, norm: Normalisation) -> np.ndarray:
    """`step_features` along one track; the first step's move is zero."""
    cells = np.asarray(cells).reshape(-1, 2)
    previous = np.concatenate([cells[:1], cells[:-1]]) if len(cells) else cells
    return step_features(cells, previous, norm)


class ForecasterNet(nn.Module):
    """Embedding + continuous features -> Recurrent(cell) -> head."""

    def __init__(self, config: ForecasterConfig, vocab_size: int, output_size: int) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(vocab_size, config.embed, padding_idx=PAD)
        self.input_dropout = nn.Dropout(config.dropout)
        self.recurrent = Recurrent(config.cell, config.embed + CONTINUOUS_FEATURES, config.hidden,
                                   num_layers=config.layers, dropout=config.dropout if config.layers > 1 else 0.0,
                                   init_state=config.init_state)
        self.head = nn.Linear(config.hidden, output_size)

    def inputs(self, ids: Tensor, features: Tensor) -> Tensor:
        return self.input_dropout(torch.cat([self.embedding(ids), features], dim=-1))

    def forward(self, ids: Tensor, features: Tensor, lengths: Tensor | None = None, state=None,
                return_gates: bool = False):
        """(B, T) ids and (B, T, 4) features -> (B, T, output) head outputs, final state, gates."""
        out = self.recurrent(self.inputs(ids, features), lengths=lengths, state=state, return_gates=return_gates)
        return self.head(out.output), out.state, out.gates

    @torch.no_grad()
    def step(self, ids: Tensor, features: Tensor, state=None):
        """One step for a batch of (B,) ids and (B, 4) features -> (B, output), new state."""
        h, state = self.recurrent.step(self.inputs(ids, features), state)
        return self.head(h), state


def sequence_loss(config: ForecasterConfig, outputs: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Mean loss over valid steps. Classification targets are (B, T) ids; offsets (B, T, 2)."""
    if config.target in ("cell", "move"):
        losses = F.cross_entropy(outputs.flatten(0, 1), targets.flatten(), reduction="none").view_as(mask)
    else:
        mean, log_std = outputs[..., :2], outputs[..., 2:].clamp(-5.0, 5.0)
        if config.offset_loss == "gaussian":
            losses = (0.5 * ((targets - mean) / log_std.exp()).pow(2) + log_std).sum(-1)
        else:
            losses = (targets - mean).pow(2).sum(-1)
    mask = mask.to(losses.dtype)
    return (losses * mask).sum() / mask.sum().clamp(min=1.0)
