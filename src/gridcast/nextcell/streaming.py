"""Next-cell prediction point by point, for many live tracks at once.

The hidden state *is* the memory of a recurrent model, so a live track needs only
its state and its last cell: each new point costs one step, O(1), whatever the track's length.
`Forecaster.predict_next` re-reads the whole prefix and pays PyTorch's per-op dispatch (~5-10 us per
op, ~15 ops a step) for vectors of 64 numbers; here a step is a dozen NumPy calls on weights packed
once at construction:

* the embedding and the input projection are folded into one table: ``table[id] = W_ie e_id + b``,
  so the cell id costs a row lookup instead of an embedding plus a matmul;
* the hidden state and the four continuous features sit in one vector ``z = [h, features]`` and all
  gates come from one matmul ``z @ W`` with ``W = [W_hh; W_if]^T`` pre-transposed and contiguous;
* sigmoids are computed as ``0.5 + 0.5 tanh(x / 2)`` with the 1/2 folded into the packed weights, so
  all gates take a single ``tanh`` call;
* the head's bias carries ``-inf`` for the padding and unknown tokens, so masking is free;
* the fusion head (`_PackedFusion`) reads its Markov counts, window and geometry from tables built
  once (per context, per cell, per last move), so its per-point context is a few dictionary
  lookups instead of the Python loops `Forecaster.distribution` runs; about a dozen more NumPy
  calls a point.

State lives in an LRU dictionary bounded by ``max_tracks`` (least recently updated track evicted
first), and tracks idle for more than ``idle_seconds`` are dropped as new points arrive. Not
thread-safe: one predictor per thread (it reuses scratch buffers).

Example:
    >>> stream = StreamingPredictor(model, k=3)              # doctest: +SKIP
    >>> stream.update("bus-12", (14, 3))                     # doctest: +SKIP
    [NextCell(cell=(13, 3), p=0.81), ...]
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import numpy as np
import torch

from gridcast.errors import InputError
from gridcast.nextcell.dwell import STAY_FEATURES
from gridcast.nextcell.features import (
    CONTINUOUS_FEATURES,
    END,
    GEOMETRY_FEATURES,
    NO_CELL,
    PAD,
    RESERVED,
    TIME_FEATURES,
    UNKNOWN,
    window_geometry,
)
from gridcast.nextcell.forecaster import Forecaster, NextCell
from gridcast.nextcell.prior import PRIOR_FEATURES

__all__ = ["StreamingPredictor"]


class _TrackState:
    """One live track: per layer ``z = [h, layer input]`` (and ``c`` for LSTM), its last two cells,
    the time of its last point (for time features), its dwell counts (`features.dwell_counts`: steps
    stayed in this cell, steps the previous one was held) and when it was last updated (for eviction)."""

    __slots__ = ("z", "c", "last", "before", "time", "seen", "run", "held")

    def __init__(self, z: list[np.ndarray], c: list[np.ndarray] | None, last: tuple[int, int], seen: float):
        self.z, self.c, self.last, self.seen = z, c, last, seen
        self.before: tuple[int, int] | None = None
        self.time: float | None = None
        self.run, self.held = 0, 0


class _PackedLayer:
    """One recurrent layer's weights, arranged for ``pre = bias + z @ weight`` on ``z = [h, input]``.

    Gate columns: LSTM ``i f g o`` (i, f, o halved for the tanh form of the sigmoid); GRU
    ``r z n_x n_h`` (r, z halved; the candidate's input and hidden parts kept apart because the
    reset gate multiplies only the hidden part); RNN ``h``.
    """

    def __init__(self, kind: str, cell, hidden: int, input_cols: slice) -> None:
        w_ih = cell.weight_ih.detach().double()[:, input_cols]
        w_hh = cell.weight_hh.detach().double()
        zeros = torch.zeros(w_ih.shape[0], dtype=torch.float64)
        b_ih = cell.bias_ih.detach().double() if cell.bias else zeros
        b_hh = cell.bias_hh.detach().double() if cell.bias else zeros
        H = hidden
        if kind == "lstm":
            weight = torch.cat([w_hh.t(), w_ih.t()])               # (H + U, 4H)
            bias = b_ih + b_hh
            scale = torch.full((4 * H,), 0.5, dtype=torch.float64)
            scale[2 * H:3 * H] = 1.0                               # g is a tanh already
        elif kind == "gru":
            u = w_ih.shape[1]
            weight = torch.zeros(H + u, 4 * H, dtype=torch.float64)
            weight[:H, :2 * H] = w_hh[:2 * H].t()                  # r, z: hidden part
            weight[H:, :2 * H] = w_ih[:2 * H].t()                  # r, z: input part
            weight[H:, 2 * H:3 * H] = w_ih[2 * H:].t()             # n: input part
            weight[:H, 3 * H:] = w_hh[2 * H:].t()                  # n: hidden part (reset-gated)
            bias = torch.cat([b_ih[:2 * H] + b_hh[:2 * H], b_ih[2 * H:], b_hh[2 * H:]])
            scale = torch.ones(4 * H, dtype=torch.float64)
            scale[:2 * H] = 0.5
        else:
            weight, bias = torch.cat([w_hh.t(), w_ih.t()]), b_ih + b_hh
            scale = torch.ones(H, dtype=torch.float64)
        self.weight = np.ascontiguousarray((weight * scale).numpy(), dtype=np.float32)
        self.bias = np.ascontiguousarray((bias * scale).numpy(), dtype=np.float32)
        self.scale = scale
        # All of W_ih: layer 0 folds its embedding columns into the per-cell table.
        self.embedding_weight = cell.weight_ih.detach().double()


class _PackedFusion:
    """The fusion head (`network.fusion_logits`) for one step, on tables built once from the model.

    Per point, what `Forecaster.distribution` rebuilds in Python (window ids, Markov entries, evidence,
    geometry) is a dictionary lookup here:

    * per current cell: which window moves land on vocabulary cells (their ids) and which name an
      unseen cell; eager for every vocabulary cell, cached (bounded) for cells outside it;
    * per Markov context, ``cur`` and ``(before, cur)``: the candidates' slots and their prior
      features in two CSR tables (see `_pack_prior`), with the evidence already multiplied by the
      evidence weights (``evidence @ W_e``, a per-context bias of the six prior gates);
    * per last move ``(dx, dy)``: the (M, 2) `window_geometry` (cached for small moves).

    The head's outputs are turned into the candidates' logits in place, in the layout of
    `fusion_logits` (V vocabulary slots, then M window slots), with the same float32 operations:
    ``(a + far) + (m - far)`` for a window cell in the vocabulary, ``m + a[UNKNOWN]`` for an unseen
    one, ``+ gates . features`` for each Markov candidate (as the order-1 part plus the order-2
    part, so a sum may differ from the model's in the last bit).
    """

    GEOMETRY_CACHE = 8       # last moves with |dx|, |dy| <= this keep their geometry
    UNSEEN_CACHE = 4096      # windows of cells outside the vocabulary kept at most

    def __init__(self, model: Forecaster, head_width: int) -> None:
        vocab = model.vocab_
        self.V = V = len(vocab)
        moves = model.moves_.moves
        self.M = M = len(moves)
        self.radius = radius = int(model.config.max_move)
        self.side = 2 * radius + 1
        self.moves = moves
        self.move_list = [(int(dx), int(dy)) for dx, dy in moves]
        self.cells = [(int(c), int(r)) for c, r in vocab.cells]
        self.far = V + M
        self.gates = slice(V + M + 1, V + M + 1 + PRIOR_FEATURES)
        geo = V + M + 1 + PRIOR_FEATURES
        self.geometry_gates = slice(geo, geo + GEOMETRY_FEATURES)
        self.has_geometry = head_width >= geo + GEOMETRY_FEATURES
        # far="distance" heads: far cells' logits fall with log(chebyshev distance / R) (`network.far_distance`)
        self.decay = geo + GEOMETRY_FEATURES if model.config.far == "distance" else None
        # the stay term (`dwell.Dwell.stay_features`) on the move (0, 0): its gates are the head's last outputs
        self.dwell = model.dwell_ if model.stay_term else None
        self.move_context = model.move_context  # `before` is where the track came from (`features.came_from`)
        self.stay_gates = slice(head_width - STAY_FEATURES, head_width)
        self.centre = M // 2
        self.cell_array = np.asarray(vocab.cells, np.int64).reshape(-1, 2)
        self.ids = vocab.index
        self._vocab = vocab
        self.m = np.empty(M, np.float32)
        self.mass = np.empty(V + M, np.float32)
        self.inverse_temperature = np.float32(1.0 / model.temperature)  # calibration (1: none)
        # Windows of the vocabulary cells, all at once.
        if len(vocab.cells):
            window = vocab.ids((vocab.cells[:, None, :] + moves[None]).reshape(-1, 2)).reshape(-1, M)
        else:
            window = np.zeros((0, M), np.int64)
        self.windows: dict[tuple[int, int], tuple] = {}
        for cell, row in zip(self.cells, window):
            self.windows[cell] = self._window_entry(row)
        self.unseen: dict[tuple[int, int], tuple] = {}  # windows of cells outside the vocabulary, bounded
        self._pack_prior(model.prior_, model.net_.evidence_weight.detach().numpy().astype(np.float32))
        self.geometry: dict[tuple[int, int], np.ndarray] = {}
        self.gates_now = np.empty(PRIOR_FEATURES, np.float32)

    def _pack_prior(self, prior, evidence_weight: np.ndarray) -> None:
        """`MarkovPrior.entries` of every context, as two CSR tables (O(distinct transitions) memory).

        Order 1, per current cell: every cell that followed it, its slot and the features
        ``(0, p1, 0, log1p n1, 0, 1)``. Order 2, per ``(before, cur)``: only the followers with
        ``n2 > 0``, with what they add, ``(p2, 0, log1p n2, 0, 1, 0)``; any other follower's features
        are the order-1 row as they are. Each context also gets its gate bias ``evidence @ W_e``.
        """
        V, R, side = self.V, self.radius, self.side
        keys1, sizes, cur_rows, cells, n1 = [], [], [], [], []
        for cur, counts in prior.n1.items():
            followers = [(cell, n) for cell, n in counts.items() if n > 0]
            if followers:
                keys1.append(cur)
                sizes.append(len(followers))
                cur_rows += [cur] * len(followers)
                cells += [cell for cell, _ in followers]
                n1 += [n for _, n in followers]
        move = np.asarray(cells, np.int64).reshape(-1, 2) - np.asarray(cur_rows, np.int64).reshape(-1, 2)
        ids = self._vocab.ids(np.asarray(cells, np.int64).reshape(-1, 2))
        slots = np.where(ids != UNKNOWN, ids, V + (move[:, 0] + R) * side + (move[:, 1] + R))
        keep = (ids != UNKNOWN) | (np.abs(move).max(axis=1, initial=0) <= R)  # unseen and out of reach: no slot
        n1 = np.asarray(n1, np.float64)
        total1 = np.repeat(np.array([prior.t1[c] for c in keys1], np.float64), sizes).reshape(-1)
        f1 = np.zeros((len(n1), PRIOR_FEATURES), np.float64)
        f1[:, 1], f1[:, 3], f1[:, 5] = n1 / total1, np.log1p(n1), 1.0
        self.slots1 = np.ascontiguousarray(slots[keep], np.int64)
        self.features1 = np.ascontiguousarray(f1[keep], np.float32)
        # Per current cell, its kept followers are rows [first, first + count) of the order-1 table.
        count = np.add.reduceat(keep.astype(np.int64), np.cumsum([0] + sizes[:-1])) if sizes else np.zeros(0, np.int64)
        first = np.cumsum(count) - count
        self.prior1, self.prior2 = {}, {}
        bias_rows = []
        for cur, a, k in zip(keys1, first.tolist(), count.tolist()):
            if k:                                            # else nothing nameable follows this cell
                self.prior1[cur] = (a, a + k, len(bias_rows))
                bias_rows.append((0.0, math.log1p(prior.t1[cur])))
        slot_of = {(c, cell): slot for c, cell, slot, ok in zip(cur_rows, cells, slots.tolist(), keep.tolist()) if ok}
        slots2, n2, total2 = [], [], []
        for key, counts in prior.n2.items():
            before, cur = key
            if cur not in self.prior1 or not counts:
                continue
            start = len(slots2)
            for cell, n in counts.items():
                slot = slot_of.get((cur, cell))
                if n > 0 and slot is not None:
                    slots2.append(slot)
                    n2.append(n)
            total = prior.t2[key]
            total2 += [total] * (len(slots2) - start)
            self.prior2[key] = (start, len(slots2), len(bias_rows))
            bias_rows.append((math.log1p(max(total, 0)), math.log1p(prior.t1[cur])))
        n2 = np.asarray(n2, np.float64)
        f2 = np.zeros((len(n2), PRIOR_FEATURES), np.float64)
        if len(n2):
            f2[:, 0], f2[:, 2], f2[:, 4] = n2 / np.asarray(total2, np.float64), np.log1p(n2), 1.0
        self.slots2 = np.asarray(slots2, np.int64)
        self.features2 = np.ascontiguousarray(f2, np.float32)
        evidence = torch.from_numpy(np.asarray(bias_rows, np.float32).reshape(-1, 2))
        self.gate_bias = (evidence @ torch.from_numpy(evidence_weight)).numpy()

    def _window_entry(self, row: np.ndarray) -> tuple:
        """(vocabulary ids in the window, their moves, -inf/0 mask of the unseen slots, candidates)."""
        row = np.asarray(row, np.int64)
        inside = np.flatnonzero(row != UNKNOWN)
        mask = np.zeros(self.M, np.float32)
        mask[inside] = -np.inf
        count = self.V - RESERVED + self.M - len(inside)  # finite candidates: vocabulary + unseen window cells
        return row[inside].copy(), inside, mask, count, len(inside) > 0

    def window(self, cell: tuple[int, int]) -> tuple:
        entry = self.windows.get(cell)
        if entry is None:  # outside the vocabulary: its window may still reach into it
            entry = self.unseen.get(cell)
            if entry is None:
                ids = self.ids
                entry = self._window_entry([ids.get((cell[0] + dx, cell[1] + dy), UNKNOWN)
                                            for dx, dy in self.move_list])
                if len(self.unseen) >= self.UNSEEN_CACHE:
                    self.unseen.clear()
                self.unseen[cell] = entry
        return entry

    def geometry_of(self, dx: int, dy: int) -> np.ndarray:
        geometry = self.geometry.get((dx, dy))
        if geometry is None:
            geometry = np.ascontiguousarray(window_geometry(self.moves, np.array([[dx, dy]]))[0])
            if max(abs(dx), abs(dy)) <= self.GEOMETRY_CACHE:
                self.geometry[(dx, dy)] = geometry
        return geometry

    def top(self, o: np.ndarray, before: tuple[int, int] | None, cur: tuple[int, int], k: int,
            spent: int = 1) -> list[NextCell]:
        """Head outputs ``o`` (overwritten) -> the k most probable next cells, standing `spent` steps in `cur`."""
        V, M = self.V, self.M
        m = self.m
        if self.has_geometry:
            if before is None:
                geometry = self.geometry_of(0, 0)
            else:
                geometry = self.geometry_of(cur[0] - before[0], cur[1] - before[1])
            np.dot(geometry, o[self.geometry_gates], out=m)
            m += o[V:V + M]
        else:
            m[:] = o[V:V + M]
        if self.dwell is not None:
            stay = np.asarray(self.dwell.stay_features(cur, spent), np.float32)
            m[self.centre] += np.dot(stay, o[self.stay_gates])
        far = o[self.far]
        a_end, a_unknown = o[END], o[UNKNOWN]
        entry = self.prior1.get(cur)
        if entry is not None:
            previous = cur if self.move_context and spent > 1 else before  # `Forecaster._previous_step`
            entry2 = self.prior2.get((previous, cur)) if previous is not None else None
            gates = self.gates_now
            np.add(o[self.gates], self.gate_bias[(entry2 or entry)[2]], out=gates)
        wid, inside, mask, count, any_inside = self.window(cur)
        cells = o[:V]
        cells += far                                       # a + far (END excepted: ending is no move)
        o[END] = a_end
        if self.decay is not None and len(self.cell_array):  # - softplus(b) * far_distance (0 in the window)
            cheb = np.abs(self.cell_array - np.asarray(cur, np.int64)).max(axis=1).astype(np.float32)
            decay = np.float32(np.logaddexp(0.0, o[self.decay]))
            radius = np.float32(self.radius)
            cells[RESERVED:] -= decay * np.log(np.maximum(cheb, radius) / radius)
        if any_inside:
            cells[wid] += m[inside] - far                  # window cells in the vocabulary: (a + far) + (m - far)
        extra = o[V:V + M]
        np.add(m, a_unknown, out=extra)                    # unseen window cells: m + a[UNKNOWN]
        if any_inside:
            extra += mask                                  # ... and -inf where the cell has an id
        if entry is not None:                              # + gates . prior features, per Markov candidate
            start, stop = entry[0], entry[1]
            o[self.slots1[start:stop]] += np.dot(self.features1[start:stop], gates)
            if entry2 is not None and entry2[1] > entry2[0]:
                start, stop = entry2[0], entry2[1]
                o[self.slots2[start:stop]] += np.dot(self.features2[start:stop], gates)
        o[PAD] = -np.inf
        o[UNKNOWN] = -np.inf
        logits = o[:V + M]
        if self.inverse_temperature != 1.0:
            logits *= self.inverse_temperature             # calibration, as in `Forecaster.distribution`
        mass = self.mass
        np.subtract(logits, logits.max(), out=mass)
        np.exp(mass, out=mass)
        total = float(mass.sum())
        cand = mass[RESERVED:]
        found = []
        for _ in range(min(k, count)):
            j = int(cand.argmax())
            found.append((j, float(cand[j]) / total))
            cand[j] = -1.0
        first_move = V - RESERVED
        out = []
        for j, p in found:
            if j < first_move:
                out.append(NextCell(self.cells[j], p))
            else:
                dx, dy = self.move_list[j - first_move]
                out.append(NextCell((cur[0] + dx, cur[1] + dy), p))
        return out


class StreamingPredictor:
    """Top-k next cells for live tracks, updated one point at a time.

    Args:
        model: a fitted `Forecaster`, any cell kind and layer count, with or without time features.
            Targets ``cell`` (plain and fusion heads) and ``move`` take the fast path; ``offset``
            targets go through the model's own distribution code (same answers, slower). The
            fusion head's tables are built from the model's Markov counts (``prior_``) at
            construction: build a new predictor after refitting.
        k: how many next cells each update returns.
        max_tracks: at most this many tracks keep state; the least recently updated is evicted.
        idle_seconds: drop a track not updated for this long (None: only ``max_tracks`` bounds memory).
        clock: the time source for idle eviction when `update` is given no ``t``.

    A track seen for the first time starts from the model's initial state, exactly like a new prefix
    in `Forecaster.predict_next`; after n points the answer equals ``predict_next(first n cells, k)``
    (with ``times=`` the n times when every point came with ``t``).
    """

    def __init__(self, model: Forecaster, k: int = 5, max_tracks: int = 10_000,
                 idle_seconds: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        model.check_fitted()
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        if max_tracks < 1:
            raise InputError(f"max_tracks must be >= 1, got {max_tracks}")
        if idle_seconds is not None and not idle_seconds > 0:
            raise InputError(f"idle_seconds must be > 0 or None, got {idle_seconds}")
        self.model, self.k, self.max_tracks, self.idle_seconds = model, int(k), int(max_tracks), idle_seconds
        self._clock = clock
        self._tracks: OrderedDict[Hashable, _TrackState] = OrderedDict()
        self._pack(model)

    # --------------------------------------------------------------------------------- packing
    @torch.no_grad()
    def _pack(self, model: Forecaster) -> None:
        net, config = model.net_, model.config
        rec = net.recurrent
        self._kind, self._hidden, self._layers = config.cell, config.hidden, config.layers
        self._relu = config.cell == "rnn" and getattr(rec.layers[0], "nonlinearity", "tanh") == "relu"
        embed = config.embed
        H = self._hidden
        self._packed = []
        for index, cell in enumerate(rec.layers):
            cols = slice(embed, None) if index == 0 else slice(None)
            self._packed.append(_PackedLayer(self._kind, cell, H, cols))
        # Layer 0: the embedding's contribution and the bias, one row per cell id.
        first = self._packed[0]
        emb = net.embedding.weight.detach().double()
        w_e = first.embedding_weight[:, :embed]
        if self._kind == "gru":
            proj = emb @ w_e.t()                                           # (V, 3H): r, z, n_x
            proj = torch.cat([proj, torch.zeros(len(emb), H, dtype=torch.float64)], dim=1)
        else:
            proj = emb @ w_e.t()
        table = (proj * first.scale) + torch.from_numpy(first.bias).double()
        self._table = np.ascontiguousarray(table.numpy(), dtype=np.float32)
        # Initial state (the model's, at evaluation: learned or zeros).
        h0 = rec.h0.detach().numpy().astype(np.float32) if rec.init_state == "learned" else np.zeros((self._layers, H), np.float32)
        learned_c0 = rec.init_state == "learned" and rec.is_lstm
        c0 = rec.c0.detach().numpy().astype(np.float32) if learned_c0 else np.zeros((self._layers, H), np.float32)
        self._h0, self._c0 = h0, c0
        self._input_sizes = [len(p.weight) - H for p in self._packed]
        # Head, with masked tokens as -inf bias so they never win and weigh nothing in the softmax.
        self._target = config.target
        self._head_w = np.ascontiguousarray(net.head.weight.detach().numpy().T, dtype=np.float32)
        head_b = net.head.bias.detach().numpy().astype(np.float32).copy()
        if self._target == "cell" and not getattr(model, "fusion", False):
            head_b[[PAD, UNKNOWN]] = -np.inf
            self._head_w[:, [PAD, UNKNOWN]] = 0.0
            self._first, self._count = RESERVED, len(model.vocab_.cells)
            self._cells = [tuple(int(v) for v in c) for c in model.vocab_.cells]
        elif self._target == "move":
            moves = model.moves_
            self._first, self._count = 0, moves.end
            self._moves = [tuple(int(v) for v in m) for m in moves.moves]
        self._head_b = head_b
        # Calibration of the softmax paths (offset targets go through `Forecaster.distribution`).
        self._inverse_temperature = np.float32(1.0 / model.temperature)
        self._fusion = bool(getattr(model, "fusion", False))
        self._move_context = bool(getattr(model, "move_context", False))  # `features.came_from`
        self._fused_head = _PackedFusion(model, self._head_w.shape[1]) if self._fusion else None
        self._time_features = bool(getattr(config, "time_features", False))
        self._dwell_features = bool(getattr(config, "dwell_features", False))
        self._dwell_at = H + CONTINUOUS_FEATURES + (TIME_FEATURES if self._time_features else 0)
        self._ids = model.vocab_.index
        norm = model.norm_
        self._centre = (float(norm.centre[0]), float(norm.centre[1]))
        self._scale, self._move_scale = float(norm.scale), float(norm.move_scale)
        width = self._packed[0].weight.shape[1]
        self._pre = np.empty(width, np.float32)     # scratch: gate pre-activations
        self._gate = np.empty(width, np.float32)    # scratch: sigmoid values
        self._tmp = np.empty(H, np.float32)
        self._logits = np.empty(self._head_w.shape[1], np.float32)
        self._mass = np.empty(self._head_w.shape[1], np.float32)

    # ---------------------------------------------------------------------------------- tracks
    def __len__(self) -> int:
        return len(self._tracks)

    def __contains__(self, track_id: Hashable) -> bool:
        return track_id in self._tracks

    def reset(self, track_id: Hashable) -> bool:
        """Forget a track (its next point starts a new route). True if it was known."""
        return self._tracks.pop(track_id, None) is not None

    def state_of(self, track_id: Hashable) -> dict | None:
        """A live track's whole state as plain JSON-able values (None if unknown), so a service can
        write it to disk and `restore` it after a restart: the next answer is then bit-identical."""
        s = self._tracks.get(track_id)
        if s is None:
            return None
        return {"z": [v.tolist() for v in s.z], "c": None if s.c is None else [v.tolist() for v in s.c],
                "last": list(s.last), "before": None if s.before is None else list(s.before), "time": s.time,
                "seen": s.seen, "run": s.run, "held": s.held}

    def restore(self, track_id: Hashable, state: dict) -> None:
        """Put back a state written by `state_of` (as the most recently updated track).

        Raises:
            InputError: the state does not fit this model (layer count or widths differ).
        """
        try:
            z = [np.asarray(v, dtype=np.float32) for v in state["z"]]
            c = None if state["c"] is None else [np.asarray(v, dtype=np.float32) for v in state["c"]]
            if [len(v) for v in z] != [self._hidden + n for n in self._input_sizes] or \
                    (c is None) != (self._kind != "lstm") or (c is not None and any(len(v) != self._hidden for v in c)):
                raise ValueError("layer sizes differ")
            s = _TrackState(z, c, (int(state["last"][0]), int(state["last"][1])), float(state["seen"]))
            s.before = None if state["before"] is None else (int(state["before"][0]), int(state["before"][1]))
            s.time = None if state["time"] is None else float(state["time"])
            s.run, s.held = int(state["run"]), int(state["held"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InputError(f"track {track_id!r}: saved state does not fit this model ({exc})") from None
        self._tracks[track_id] = s
        self._tracks.move_to_end(track_id)

    def evict_idle(self, now: float | None = None) -> int:
        """Drop tracks not updated for ``idle_seconds`` (oldest first); returns how many."""
        if self.idle_seconds is None:
            return 0
        limit = (self._clock() if now is None else now) - self.idle_seconds
        tracks, dropped = self._tracks, 0
        while tracks:
            oldest = next(iter(tracks.values()))
            if oldest.seen >= limit:
                break
            tracks.popitem(last=False)
            dropped += 1
        return dropped

    def _new_track(self, cell: tuple[int, int], now: float) -> _TrackState:
        H = self._hidden
        z = []
        for layer, size in enumerate(self._input_sizes):
            v = np.zeros(H + size, np.float32)  # [h, layer input]; the input part is written each step
            v[:H] = self._h0[layer]
            z.append(v)
        c = [self._c0[layer].copy() for layer in range(self._layers)] if self._kind == "lstm" else None
        return _TrackState(z, c, cell, now)

    # ---------------------------------------------------------------------------------- update
    def update(self, track_id: Hashable, cell: Sequence[int], t: float | None = None) -> list[NextCell]:
        """Feed the track's next cell ``(col, row)``; return the k most probable next cells.

        Args:
            t: the point's time in seconds (the data's clock). It feeds models with time features
                and dates the point for idle eviction; without it eviction uses ``clock()`` and
                the time inputs are zero, as in ``predict_next(..., times=None)``. Give times in
                non-decreasing order across tracks (eviction drops the least recent first).
        """
        return self._top(*self._advance(track_id, cell, t))

    def feed(self, track_id: Hashable, cell: Sequence[int], t: float | None = None) -> None:
        """As `update`, without the answer: for points whose next cells nobody asked for (all but the
        last of a batch), which skips the head, the costliest part of a step with the fusion head."""
        self._advance(track_id, cell, t)

    def feed_many(self, track_id: Hashable, cells: np.ndarray, times: Sequence[float | None] | None = None) -> None:
        """`feed` each of `cells` ((n, 2) ints) in order, with `times` (n, or None): the same states
        bit for bit, with the continuous inputs of all points computed in one go (a live track's
        1,000-point batch spends its time in the layers, not in Python arithmetic per point)."""
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        times = [None] * len(cells) if times is None else list(times)
        if len(cells) == 0:
            return
        if len(cells) < 3 or self._time_features or self._dwell_features or self.idle_seconds is not None:
            for cell, t in zip(cells.tolist(), times):  # what varies per point beyond the position
                self._advance(track_id, cell, t)
            return
        self._advance(track_id, cells[0].tolist(), times[0])  # creates or moves the track, as `feed`
        state = self._tracks[track_id]
        rest = cells[1:]
        pairs = list(map(tuple, rest.tolist()))
        previous = np.concatenate([np.asarray([state.last], np.int64), rest[:-1]])
        # as `_step`, in float64 and stored as float32: Python's int/float maths are these IEEE ops
        position = (rest - np.asarray(self._centre)) / self._scale
        move = np.clip((rest - previous) / self._move_scale, -3.0, 3.0)
        inputs = np.concatenate([position, move], axis=1).astype(np.float32)
        ids, H = self._ids, self._hidden
        z0 = state.z[0][H:H + CONTINUOUS_FEATURES]
        last, run, held, before = state.last, state.run, state.held, state.before
        moves_only = self._move_context
        for cell, row in zip(pairs, inputs):
            if cell == last:  # `features.advance_dwell`, one track
                run += 1
            else:
                run, held = 0, run
            np.copyto(z0, row)
            self._layers_step(state, ids.get(cell, UNKNOWN))
            if cell != last or not moves_only:  # `features.advance_came`
                before = last
            last = cell
        state.last, state.before, state.run, state.held = last, before, run, held
        last_time = times[-1]
        state.seen = self._clock() if last_time is None else last_time

    def _advance(self, track_id: Hashable, cell: Sequence[int], t: float | None) -> tuple[np.ndarray, _TrackState]:
        col, row = int(cell[0]), int(cell[1])
        now = self._clock() if t is None else t
        tracks = self._tracks
        state = tracks.get(track_id)
        if state is None:
            state = self._new_track((col, row), now)
            tracks[track_id] = state
            if len(tracks) > self.max_tracks:
                tracks.popitem(last=False)
        else:
            tracks.move_to_end(track_id)
            state.seen = now
            if state.last != (col, row) or not self._move_context:  # `features.advance_came`
                state.before = state.last
            if state.last == (col, row):  # `features.advance_dwell`, one track
                state.run += 1
            else:
                state.run, state.held = 0, state.run
        if self.idle_seconds is not None:
            self.evict_idle(now)
        if self._time_features:
            self._write_time(state, t)
        if self._dwell_features:  # as `features.dwell_features`: log1p in float64, stored as float32
            z0, at = state.z[0], self._dwell_at
            z0[at], z0[at + 1] = math.log1p(state.run), math.log1p(state.held)
        h = self._step(state, col, row)
        state.last = (col, row)
        return h, state

    def _write_time(self, state: _TrackState, t: float | None) -> None:
        """The six time inputs of `features.time_features` for this point, after the four others."""
        z = state.z[0]
        base = self._hidden + CONTINUOUS_FEATURES
        if t is None or not math.isfinite(t):
            z[base:base + TIME_FEATURES] = 0.0
            return
        day = 2 * math.pi * (t % 86400.0) / 86400.0       # Python's % floors like np.mod
        week = 2 * math.pi * ((math.floor(t / 86400.0) + 3) % 7) / 7
        gap = 0.0 if state.time is None else (t - state.time) / 60.0
        z[base], z[base + 1] = math.sin(day), math.cos(day)
        z[base + 2], z[base + 3] = math.sin(week), math.cos(week)
        z[base + 4] = 1.0
        z[base + 5] = math.log1p(min(max(gap, 0.0), 1e4))
        state.time = t

    def _step(self, state: _TrackState, col: int, row: int) -> np.ndarray:
        """Advance every layer by one step; returns the top layer's new hidden state (a view)."""
        H = self._hidden
        z0 = state.z[0]
        last_col, last_row = state.last
        ms = self._move_scale
        # Continuous features exactly as `features.step_features` (float64 maths, stored as float32).
        z0[H] = (col - self._centre[0]) / self._scale
        z0[H + 1] = (row - self._centre[1]) / self._scale
        z0[H + 2] = min(3.0, max(-3.0, (col - last_col) / ms))
        z0[H + 3] = min(3.0, max(-3.0, (row - last_row) / ms))
        return self._layers_step(state, self._ids.get((col, row), UNKNOWN))

    def _layers_step(self, state: _TrackState, token: int) -> np.ndarray:
        """Every layer's step once layer 0's continuous inputs are written; the top layer's h (a view)."""
        H = self._hidden
        for layer, packed in enumerate(self._packed):
            z = state.z[layer]
            if layer > 0:
                np.copyto(z[H:], state.z[layer - 1][:H])
            pre, gate, tmp = self._pre, self._gate, self._tmp
            np.dot(z, packed.weight, out=pre)
            pre += self._table[token] if layer == 0 else packed.bias
            h = z[:H]
            if self._kind == "lstm":
                np.tanh(pre, out=pre)                      # g = tanh; i, f, o = tanh of half
                np.multiply(pre, 0.5, out=gate)
                gate += 0.5                                # i, f, o = 0.5 + 0.5 tanh(x / 2) = sigma(x)
                c = state.c[layer]
                c *= gate[H:2 * H]                         # c = f * c_prev
                np.multiply(gate[:H], pre[2 * H:3 * H], out=tmp)
                c += tmp                                   #     + i * g
                np.tanh(c, out=tmp)
                np.multiply(gate[3 * H:], tmp, out=h)      # h = o * tanh(c)
            elif self._kind == "gru":
                np.tanh(pre[:2 * H], out=gate[:2 * H])
                gate[:2 * H] *= 0.5
                gate[:2 * H] += 0.5                        # r, z = sigma(...)
                np.multiply(gate[:H], pre[3 * H:], out=tmp)  # r * (W_hn h + b_hn)
                tmp += pre[2 * H:3 * H]
                np.tanh(tmp, out=tmp)                      # n = tanh(W_in x + b_in + r * (...))
                h -= tmp
                h *= gate[H:2 * H]
                h += tmp                                   # h = n + z * (h - n) = (1 - z) n + z h
            elif self._relu:
                np.maximum(pre, 0.0, out=h)
            else:
                np.tanh(pre, out=h)
        return state.z[-1][:H]

    def _top(self, h: np.ndarray, state: _TrackState) -> list[NextCell]:
        logits = self._logits
        np.dot(h, self._head_w, out=logits)
        logits += self._head_b
        col, row = state.last
        if self._fused_head is not None:
            return self._fused_head.top(logits, state.before, state.last, self.k, state.run + 1)
        if self._target == "offset":
            return self._top_general(logits, state)
        # Softmax numerators e^(l - max) once; their sum (END included) normalises. The top k are
        # then k argmax passes over the candidates (argmax is a fast SIMD scan; for k << n this
        # beats argpartition + sort by ~3x), each winner knocked out with -1 < any e^x.
        if self._inverse_temperature != 1.0:
            logits *= self._inverse_temperature
        mass = self._mass
        np.subtract(logits, logits[logits.argmax()], out=mass)
        np.exp(mass, out=mass)
        total = float(mass.sum())
        cand = mass[self._first:self._first + self._count]
        found = []
        for _ in range(min(self.k, self._count)):
            j = int(cand.argmax())
            found.append((j, float(cand[j]) / total))
            cand[j] = -1.0
        if self._target == "cell":
            cells = self._cells
            return [NextCell(cells[j], p) for j, p in found]
        moves = self._moves
        return [NextCell((col + moves[j][0], row + moves[j][1]), p) for j, p in found]

    def _top_general(self, logits: np.ndarray, state: _TrackState) -> list[NextCell]:
        """Offset targets (and `bench_stream`'s baseline for the fusion head): the model's own
        distribution code, not the fast path."""
        outputs = torch.from_numpy(logits.copy())[None]
        last = np.array([state.last], dtype=np.int64)
        before = np.array([state.before if state.before is not None else (NO_CELL, NO_CELL)], dtype=np.int64)
        if self._fusion:
            cands, logp, _ = self.model.distribution(outputs, last, before, np.array([state.run + 1]))
        else:
            cands, logp, _ = self.model.distribution(outputs, last)
        top = torch.topk(logp[0], min(self.k, int(torch.isfinite(logp[0]).sum())))
        return [NextCell((int(cands[0, j, 0]), int(cands[0, j, 1])), math.exp(v))
                for v, j in zip(top.values.tolist(), top.indices.tolist())]
