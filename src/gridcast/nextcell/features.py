"""What the network reads at each step: token ids of cells, and continuous features of where and when.

Every step's input is the current cell as an embedding of its id (what the model has learned about
that place) plus its position relative to the training data's centre and the last move (what it can
say about places it has never seen), optionally the time of day and week. `CellVocab` maps cells to
ids (the one cell -> id lookup of the package), `MoveClasses` maps displacements to classes,
`Normalisation` keeps positions near [-1, 1], and `window_geometry` describes the moves around the
current cell for the fusion head.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

PAD, END, UNKNOWN = 0, 1, 2
RESERVED = 3  # ids below this are not cells
CONTINUOUS_FEATURES = 4  # relative col, relative row, last move dx, dy
TIME_FEATURES = 6  # sin/cos time of day, sin/cos day of week, times known, log minutes since the last cell
DWELL_FEATURES = 2  # log1p steps spent in the current cell so far, log1p steps the previous cell was held
GEOMETRY_FEATURES = 2  # per window cell: -distance from where the last move points, -length of the move
NO_CELL = np.iinfo(np.int64).min  # "no previous cell" (the first step of a track has no order-2 context)

Cell = tuple[int, int]


def cell_keys(cells: np.ndarray) -> np.ndarray:
    """One int64 per (col, row) cell, ordered like the rows of `np.unique(cells, axis=0)` (col, then
    row): the one packing behind every sorted cell lookup (`CellVocab`, `dwell.Dwell`)."""
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    return (cells[:, 0] << 32) + (cells[:, 1] + (1 << 31))


class CellVocab:
    """Cell (col, row) <-> integer id. Ids 0, 1, 2 are padding, end-of-route and unknown.

    `ids` looks up many cells at once (vectorised, for tracks and beams); `index` is the same
    mapping as a dict, for code that looks up one cell at a time in Python (streaming, the fusion
    context), where a dict lookup beats any NumPy call.
    """

    def __init__(self, cells: np.ndarray) -> None:
        cells = np.unique(np.asarray(cells, dtype=np.int64).reshape(-1, 2), axis=0)
        self.cells = cells
        #: (col, row) -> token id, for one-at-a-time lookups
        self.index: dict[Cell, int] = {(int(c), int(r)): i + RESERVED for i, (c, r) in enumerate(cells)}
        self._sorted = self._keys(cells)

    def __len__(self) -> int:
        return len(self.cells) + RESERVED

    @staticmethod
    def _keys(cells: np.ndarray) -> np.ndarray:
        return cell_keys(cells)

    def ids(self, cells: np.ndarray) -> np.ndarray:
        """Token ids of (n, 2) cells (UNKNOWN for cells outside the vocabulary), vectorised."""
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        out = np.full(len(cells), UNKNOWN, dtype=np.int64)
        if len(self.cells) == 0 or len(cells) == 0:
            return out
        keys = self._keys(cells)
        pos = np.clip(np.searchsorted(self._sorted, keys), 0, len(self._sorted) - 1)
        hit = self._sorted[pos] == keys
        out[hit] = pos[hit] + RESERVED
        return out

    def cell(self, token: int) -> Cell:
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


def dwell_counts(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per step of a track, causally: how many steps it has already stayed in the current cell (0 on
    entering it) and how many extra steps it stayed in the previous cell before leaving (0 when the
    prefix holds no earlier cell). At a fixed step most steps are stays: the first count says how
    long it has been here (a bus stop, a den), the second how fast it moves (cells held k steps
    each). On collapsed tracks both are always 0, so the inputs change nothing there."""
    cells = np.asarray(cells).reshape(-1, 2)
    n = len(cells)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    index = np.arange(n)
    entered = np.concatenate([[True], np.any(cells[1:] != cells[:-1], axis=1)])
    start = np.maximum.accumulate(np.where(entered, index, 0))
    run = index - start
    held_before = np.where(entered & (index > 0), np.concatenate([[0], run[:-1]]), 0)
    return run.astype(np.int64), held_before[start].astype(np.int64)


def advance_dwell(run: np.ndarray, previous: np.ndarray, stayed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`dwell_counts` one step on, per row (beams): a stay adds a step, a move starts a new count and
    remembers how long the cell it left was held."""
    stayed = np.asarray(stayed, dtype=bool)
    return np.where(stayed, run + 1, 0), np.where(stayed, previous, run)


def came_from(cells: np.ndarray, moves_only: bool = False) -> np.ndarray:
    """Per step of a track (n, 2), the cell the fusion head reads as "where it came from" (the last
    move of its geometry): the previous step's cell, or with `moves_only` the last cell *different*
    from the current one, so that a pause at a fixed step keeps the direction it arrived from;
    `NO_CELL` rows where there is none."""
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    n = len(cells)
    out = np.full((n, 2), NO_CELL, dtype=np.int64)
    if n < 2:
        return out
    if not moves_only:
        out[1:] = cells[:-1]
        return out
    index = np.arange(n)
    entered = np.concatenate([[True], np.any(cells[1:] != cells[:-1], axis=1)])
    start = np.maximum.accumulate(np.where(entered, index, 0))  # where each step's stay began
    arrived = start > 0
    out[arrived] = cells[start[arrived] - 1]
    return out


def advance_came(came: np.ndarray, last: np.ndarray, new: np.ndarray, moves_only: bool = False) -> np.ndarray:
    """`came_from` one step on, per row (beams, samples): the row's `last` cell, or with
    `moves_only` its old `came` where the row stays in `last`."""
    last = np.asarray(last, dtype=np.int64).reshape(-1, 2)
    if not moves_only:
        return last.copy()
    stayed = np.all(np.asarray(new).reshape(-1, 2) == last, axis=1)
    return np.where(stayed[:, None], np.asarray(came, dtype=np.int64).reshape(-1, 2), last)


def dwell_features(run: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """(n, 2) network inputs of `dwell_counts`, log1p-scaled (a stay of 1 or 100 steps both matter)."""
    counts = np.stack([np.asarray(run, np.float64), np.asarray(previous, np.float64)], axis=-1).reshape(-1, 2)
    return np.log1p(counts).astype(np.float32)


def window_moves(radius: int) -> np.ndarray:
    """(M, 2) displacements of the (2R+1)^2 window, in `MoveClasses` order."""
    return MoveClasses(radius).moves


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
