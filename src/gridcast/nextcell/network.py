"""The network behind a `Forecaster`: cell features in, a distribution over the next cell out.

Every step's input is the current cell as an embedding of its id (what the model has learned about
that place) plus its position relative to the training data's centre and the last move (what it can
say about places it has never seen). A `Recurrent` stack carries the route so far; one linear head
reads the next step out, in one of three ways (``target``):

* ``cell``:   a softmax over the cells seen in training plus an end-of-route token;
* ``move``:   a softmax over displacements in [-R, R]^2 plus end-of-route (larger jumps are clipped);
* ``offset``: a 2-D Gaussian over the continuous displacement, in cells.

The ``cell`` target has two heads (``head``):

* ``plain``:  the softmax above, over cell ids only (the original model; still the dataclass default
  so that older checkpoints and callers that build the network by hand keep their behaviour);
* ``fusion``: cell-id logits + move logits + a Markov prior, in one softmax (see `fusion_logits`).
  Why: on real commutes a plain cell-id softmax does not beat an order-2 Markov chain (its counts are
  exactly the statistic a commute repeats), it cannot name a cell it never saw, and it ignores
  that the next cell is nearly always a neighbour. The fusion head starts from the Markov counts
  (gated by the recurrent state, so the network decides when to trust them), adds a move
  distribution over the (2R+1)^2 window around the current cell (which also names unseen cells)
  and keeps the cell-id logits for what only the route so far can tell.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gridcast.errors import InputError
from gridcast.nn.recurrent import Recurrent

PAD, END, UNKNOWN = 0, 1, 2
RESERVED = 3  # ids below this are not cells
CONTINUOUS_FEATURES = 4  # relative col, relative row, last move dx, dy
TIME_FEATURES = 6  # sin/cos time of day, sin/cos day of week, times known, log minutes since the last cell
PRIOR_FEATURES = 6  # per candidate: p2, p1, log1p n2, log1p n1, [n2 > 0], [n1 > 0]
EVIDENCE_FEATURES = 2  # per step: log1p of the order-2 and order-1 context totals
GEOMETRY_FEATURES = 2  # per window cell: -distance from where the last move points, -length of the move
NO_CELL = np.iinfo(np.int64).min  # "no previous cell" (the first step of a track has no order-2 context)


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
    head: str = "plain"         # cell target: plain (cell-id softmax) | fusion (cell ids + moves + Markov prior)
    time_features: bool = False  # time of day / day of week / time since the last cell as inputs (needs times)
    min_tracks: int = 1         # a cell enters the vocabulary when this many training tracks visit it

    def __post_init__(self) -> None:
        checks = {
            "cell": self.cell in ("rnn", "lstm", "gru"),
            "target": self.target in ("cell", "move", "offset"),
            "init_state": self.init_state in ("zeros", "learned", "noise"),
            "offset_loss": self.offset_loss in ("gaussian", "mse"),
            "head": self.head in ("plain", "fusion"),
        }
        for name, ok in checks.items():
            if not ok:
                raise InputError(f"invalid {name} {getattr(self, name)!r}")
        if self.head == "fusion" and self.target != "cell":
            raise InputError(f"head 'fusion' needs target 'cell', got {self.target!r}")
        for name in ("hidden", "layers", "embed", "max_move", "min_tracks"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def input_size(self) -> int:
        return self.embed + CONTINUOUS_FEATURES + (TIME_FEATURES if self.time_features else 0)

    @classmethod
    def from_dict(cls, d: dict) -> "ForecasterConfig":
        """Settings saved by any version; fields added later take their defaults, which are the old
        behaviour (so an old checkpoint rebuilds the network it was trained with)."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown model settings {sorted(unknown)}")
        return cls(**d)


def recommended(target: str) -> dict:
    """The settings `gridcast fit` adds by default for `target`: the winners of the real-commute
    benchmarks (docs/benchmarks-geolife.md). The dataclass defaults stay those of the original
    plain model, so code that builds `ForecasterNet` by hand and old checkpoints keep working."""
    if target == "cell":
        # Time inputs: no gain measured. min_tracks 2 helped only GeoLife, where it was tuned; UCI and
        # the Liverpool demo (3 seeds each) did better with every training cell given an id.
        return {"head": "fusion", "time_features": False, "min_tracks": 1}
    return {}


class CellVocab:
    """Cell (col, row) <-> integer id. Ids 0, 1, 2 are padding, end-of-route and unknown."""

    def __init__(self, cells: np.ndarray) -> None:
        cells = np.unique(np.asarray(cells, dtype=np.int64).reshape(-1, 2), axis=0)
        self.cells = cells
        self._index = {(int(c), int(r)): i + RESERVED for i, (c, r) in enumerate(cells)}

    def __len__(self) -> int:
        return len(self.cells) + RESERVED

    @staticmethod
    def _keys(cells: np.ndarray) -> np.ndarray:
        """One int64 per cell, ordered like the rows of `np.unique(cells, axis=0)` (col, then row)."""
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        return (cells[:, 0] << 32) + (cells[:, 1] + (1 << 31))

    def ids(self, cells: np.ndarray) -> np.ndarray:
        """Token ids of (n, 2) cells (UNKNOWN for cells outside the vocabulary), vectorised."""
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        out = np.full(len(cells), UNKNOWN, dtype=np.int64)
        if len(self.cells) == 0 or len(cells) == 0:
            return out
        if not hasattr(self, "_sorted"):
            self._sorted = self._keys(self.cells)
        keys = self._keys(cells)
        pos = np.clip(np.searchsorted(self._sorted, keys), 0, len(self._sorted) - 1)
        hit = self._sorted[pos] == keys
        out[hit] = pos[hit] + RESERVED
        return out

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


def time_features(times: np.ndarray | None, n: int) -> np.ndarray:
    """(n, 6) periodic time inputs: where in the day and the week each step is, and how long since the
    previous cell (log minutes). Commutes repeat by the clock, and dwell time tells walking from driving.

    Times are read as seconds of the local clock (shift UTC logs by their offset before). Without
    times (``None``, e.g. a hand-typed prefix) every column is zero, including the "known" flag, and
    the network was trained to handle that (a share of training tracks hides its times)."""
    out = np.zeros((n, TIME_FEATURES), dtype=np.float32)
    if times is None or n == 0:
        return out
    t = np.asarray(times, dtype=np.float64)[:n]
    if not np.isfinite(t).all():
        return out
    day = 2 * math.pi * np.mod(t, 86400.0) / 86400.0
    week = 2 * math.pi * np.mod(np.floor(t / 86400.0) + 3, 7) / 7  # 1970-01-01 was a Thursday: Monday = 0
    gap = np.diff(t, prepend=t[:1]) / 60.0
    out[:, 0], out[:, 1] = np.sin(day), np.cos(day)
    out[:, 2], out[:, 3] = np.sin(week), np.cos(week)
    out[:, 4] = 1.0
    out[:, 5] = np.log1p(np.clip(gap, 0.0, 1e4))
    return out


Cell = tuple[int, int]


class MarkovPrior:
    """Order-1 and order-2 transition counts of training tracks, as per-candidate features.

    `entries(before, last, exclude)` lists, for the step at `last` (coming from `before`), every cell
    that followed `last` in training with six features (probabilities and log counts of order 2 and
    1, and whether each count is non-zero), plus the evidence behind them (log totals of both
    contexts). `exclude` removes one track's own transitions (leave-one-track-out): while training,
    each track sees the counts of the *other* tracks, as a test track will, so the network learns
    how far to trust counts rather than learning that they always contain the answer.
    """

    def __init__(self, tracks: list[np.ndarray]) -> None:
        self.n1: dict[Cell, Counter] = defaultdict(Counter)
        self.n2: dict[tuple[Cell, Cell], Counter] = defaultdict(Counter)
        for cells in tracks:
            c1, c2 = self.transitions(cells)
            for k, v in c1.items():
                self.n1[k].update(v)
            for k, v in c2.items():
                self.n2[k].update(v)
        self.t1 = {k: sum(v.values()) for k, v in self.n1.items()}
        self.t2 = {k: sum(v.values()) for k, v in self.n2.items()}

    @staticmethod
    def transitions(cells: np.ndarray) -> tuple[dict, dict]:
        """One track's own order-1 and order-2 transition counts."""
        cells = [(int(c), int(r)) for c, r in np.asarray(cells).reshape(-1, 2)]
        c1: dict[Cell, Counter] = defaultdict(Counter)
        c2: dict[tuple[Cell, Cell], Counter] = defaultdict(Counter)
        for t in range(1, len(cells)):
            c1[cells[t - 1]][cells[t]] += 1
            if t >= 2:
                c2[(cells[t - 2], cells[t - 1])][cells[t]] += 1
        return c1, c2

    def entries(self, before: Cell | None, last: Cell, exclude: tuple[dict, dict] | None = None
                ) -> tuple[list[Cell], np.ndarray, np.ndarray]:
        """Candidates, their (k, 6) features and the (2,) evidence of the step at `last`."""
        own1 = exclude[0].get(last) if exclude else None
        counts1 = self.n1.get(last)
        if not counts1:
            return [], np.zeros((0, PRIOR_FEATURES), np.float32), np.zeros(EVIDENCE_FEATURES, np.float32)
        key2 = (before, last) if before is not None else None
        counts2 = self.n2.get(key2) if key2 is not None else None
        own2 = exclude[1].get(key2) if exclude and key2 is not None else None
        total1 = self.t1[last] - (sum(own1.values()) if own1 else 0)
        total2 = (self.t2[key2] if counts2 else 0) - (sum(own2.values()) if own2 and counts2 else 0)
        cells, feats = [], []
        for cell, n in counts1.items():
            n1 = n - (own1.get(cell, 0) if own1 else 0)
            if n1 <= 0:
                continue
            n2 = (counts2.get(cell, 0) - (own2.get(cell, 0) if own2 else 0)) if counts2 else 0
            cells.append(cell)
            feats.append((n2 / total2 if total2 > 0 else 0.0, n1 / total1, math.log1p(n2), math.log1p(n1),
                          float(n2 > 0), 1.0))
        evidence = np.array([math.log1p(max(total2, 0)), math.log1p(max(total1, 0))], dtype=np.float32)
        return cells, np.asarray(feats, dtype=np.float32).reshape(-1, PRIOR_FEATURES), evidence


def window_moves(radius: int) -> np.ndarray:
    """(M, 2) displacements of the (2R+1)^2 window, in `MoveClasses` order."""
    return MoveClasses(radius).moves


def fusion_size(vocab_size: int, radius: int) -> int:
    """Head outputs of the fusion head: cell logits, window-move logits, a far-move logit, prior gates
    and geometry gates."""
    return vocab_size + (2 * radius + 1) ** 2 + 1 + PRIOR_FEATURES + GEOMETRY_FEATURES


def window_geometry(moves: np.ndarray, last_moves: np.ndarray) -> np.ndarray:
    """(N, M, 2) geometric features of each window move given each step's last move: minus the
    distance from the constant-velocity aim point and minus the move's length. A heading is the
    best guess where counts are silent (new places); giving it as features (gated by the network)
    means the move logits need not learn geometry from scratch on a few hundred trips."""
    moves = np.asarray(moves, dtype=np.float32)
    last = np.asarray(last_moves, dtype=np.float32).reshape(-1, 1, 2)
    aim = -np.linalg.norm(moves[None] - last, axis=-1)
    size = np.broadcast_to(-np.linalg.norm(moves, axis=-1)[None], aim.shape)
    return np.stack([aim, size], axis=-1).astype(np.float32)


def fusion_logits(outputs: Tensor, vocab_size: int, window_ids: Tensor, entry_row: Tensor, entry_slot: Tensor,
                  entry_features: Tensor, evidence: Tensor, evidence_weight: Tensor,
                  geometry: Tensor | None = None) -> Tensor:
    """Combine the fusion head's outputs into one logit per candidate next cell.

    Candidates are the V vocabulary slots (ids; PAD and UNKNOWN are impossible) followed by M window
    slots: the cell at ``last + move`` for each move of the window, used only when that cell is
    not in the vocabulary (an unseen cell can still be named). For a vocabulary cell,

        logit = a[cell] + (m[move] if the cell is in the window else m_far) + g . prior_features(cell)

    and for an unseen window cell ``logit = a[UNKNOWN] + m[move] + g . prior_features``, where a are
    cell-id logits, m move logits (plus gated `window_geometry` features) and g = W h + W_e evidence
    the prior gates (one weight per prior feature: the network learns when to believe the counts).

    Args:
        outputs: (N, fusion_size) head outputs of N steps.
        window_ids: (N, M) vocabulary id of each window cell, or -1 when it is not in the vocabulary.
        entry_row, entry_slot, entry_features: the Markov prior, sparse: step row, candidate slot in
            [0, V + M), and (E, 6) features.
        evidence: (N, 2) log totals of the prior's contexts; evidence_weight: (2, 6).
        geometry: (N, M, 2) `window_geometry` (optional; older fusion checkpoints have no gates for it).
    Returns:
        (N, V + M) logits; impossible slots are -inf.
    """
    n_moves = window_ids.shape[1]
    a = outputs[:, :vocab_size]
    m = outputs[:, vocab_size:vocab_size + n_moves]
    far = outputs[:, vocab_size + n_moves:vocab_size + n_moves + 1]
    gates = outputs[:, vocab_size + n_moves + 1:vocab_size + n_moves + 1 + PRIOR_FEATURES] + evidence @ evidence_weight
    if geometry is not None:
        geometry_gates = outputs[:, vocab_size + n_moves + 1 + PRIOR_FEATURES:]
        m = m + (geometry * geometry_gates[:, None, :]).sum(-1)
    in_vocab = window_ids >= 0
    not_end = torch.ones(vocab_size, dtype=a.dtype, device=a.device)
    not_end[END] = 0.0  # ending the route is no move
    cells = a + far * not_end
    cells = cells.scatter_add(1, window_ids.clamp(min=0), torch.where(in_vocab, m - far, torch.zeros_like(m)))
    extra = (m + a[:, UNKNOWN:UNKNOWN + 1]).masked_fill(in_vocab, -math.inf)
    logits = torch.cat([cells, extra], dim=1)
    if entry_row.numel():
        prior = (gates.index_select(0, entry_row) * entry_features).sum(-1)
        logits = logits.index_put((entry_row, entry_slot), prior, accumulate=True)
    impossible = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
    impossible[[PAD, UNKNOWN]] = True
    return logits.masked_fill(impossible, -math.inf)


class ForecasterNet(nn.Module):
    """Embedding + continuous features -> Recurrent(cell) -> head."""

    def __init__(self, config: ForecasterConfig, vocab_size: int, output_size: int) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(vocab_size, config.embed, padding_idx=PAD)
        self.input_dropout = nn.Dropout(config.dropout)
        self.recurrent = Recurrent(config.cell, config.input_size, config.hidden,
                                   num_layers=config.layers, dropout=config.dropout if config.layers > 1 else 0.0,
                                   init_state=config.init_state)
        self.head = nn.Linear(config.hidden, output_size)
        if config.head == "fusion":
            self.evidence_weight = nn.Parameter(torch.zeros(EVIDENCE_FEATURES, PRIOR_FEATURES))
            with torch.no_grad():  # start near "trust the order-2 counts, then order 1, then the heading"
                start = output_size - PRIOR_FEATURES - GEOMETRY_FEATURES
                self.head.bias[start:] = torch.tensor([2.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 0.5])

    def inputs(self, ids: Tensor, features: Tensor) -> Tensor:
        return self.input_dropout(torch.cat([self.embedding(ids), features], dim=-1))

    def forward(self, ids: Tensor, features: Tensor, lengths: Tensor | None = None, state=None,
                return_gates: bool = False):
        """(B, T) ids and (B, T, F) features -> (B, T, output) head outputs, final state, gates."""
        out = self.recurrent(self.inputs(ids, features), lengths=lengths, state=state, return_gates=return_gates)
        return self.head(out.output), out.state, out.gates

    @torch.no_grad()
    def step(self, ids: Tensor, features: Tensor, state=None):
        """One step for a batch of (B,) ids and (B, F) features -> (B, output), new state."""
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
