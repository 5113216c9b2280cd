"""The network behind a `Forecaster`: cell features in, a distribution over the next cell out.

Inputs come from `features` (cell-id embedding + position, last move, optional time). A `Recurrent`
stack carries the route so far; one linear head reads the next step out, in one of three ways
(``target``):

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
  (`prior.MarkovPrior`, gated by the recurrent state, so the network decides when to trust them),
  adds a move distribution over the (2R+1)^2 window around the current cell (which also names
  unseen cells) and keeps the cell-id logits for what only the route so far can tell.
  A move out of the window goes to a vocabulary cell through one "far" logit. The original head
  (``far="shared"``, still what old checkpoints load as) gives every far cell that same logit,
  however far it is: with thousands of cells the far mass lands anywhere on the map, and sampled
  routes jumped across it (GeoLife at a fixed step: 1% of sampled steps > 10 cells, fishers
  collapsed: 10%; the truth: none). ``far="distance"`` (`gridcast fit`'s default) decays each far
  cell's logit by a learned, per-step rate times log(distance / R) (`far_distance`).
  ``stay_prior`` (`gridcast fit`'s default where tracks stay in cells) adds a gated stay term on the
  move (0, 0): each cell's log-odds of staying on after the steps already spent there
  (`dwell.Dwell`), which the dwell-blind counts cannot give.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gridcast.nextcell.config import CellForecasterConfig
from gridcast.nextcell.dwell import STAY_FEATURES
from gridcast.nextcell.features import END, GEOMETRY_FEATURES, PAD, RESERVED, UNKNOWN
from gridcast.nextcell.prior import EVIDENCE_FEATURES, PRIOR_FEATURES
from gridcast.nn.recurrent import Recurrent

FAR_DECAY_START = 2.0  # initial decay: p(far cell) ~ (d / R)^-2 before training says otherwise
STAY_GATES_START = (0.5, 0.0)  # initial stay gates: (this cell's, all cells') log-odds of staying on


def fusion_size(vocab_size: int, radius: int, far: str = "shared", stay: bool = False) -> int:
    """Head outputs of the fusion head: cell logits, window-move logits, a far-move logit, prior gates,
    geometry gates, (``far="distance"``) the far-move decay and (``stay``) the stay term's gates."""
    return (vocab_size + (2 * radius + 1) ** 2 + 1 + PRIOR_FEATURES + GEOMETRY_FEATURES + (far == "distance")
            + (STAY_FEATURES if stay else 0))


def far_distance(vocab_cells: Tensor, last: Tensor, radius: int) -> Tensor:
    """(N, V - RESERVED) how far each vocabulary cell (``vocab_cells``: the real cells, in id order)
    lies outside the window around each step's cell, as log(chebyshev distance / R) clipped at 0:
    0 in the window, where the move logits already say how likely each cell is. Why a log: far moves
    on real tracks (a missed fix, a fast leg) fall off like a power of the distance, and a rate per
    log-distance lets the head learn that power.

    >>> far_distance(torch.tensor([[0, 0], [2, 0], [8, 0]]), torch.tensor([[0, 0]]), 2).exp().tolist()
    [[1.0, 1.0, 4.0]]
    """
    cells, last = vocab_cells.to(torch.float32), last.to(torch.float32)
    # one (N, V) pass per operation, in place: this runs over every training step
    dx = (cells[:, 0].contiguous() - last[:, 0:1]).abs_()
    dy = (cells[:, 1].contiguous() - last[:, 1:2]).abs_()
    return torch.maximum(dx, dy, out=dx).clamp_(min=float(radius)).log_().sub_(math.log(radius))


def fusion_logits(outputs: Tensor, vocab_size: int, window_ids: Tensor, entry_row: Tensor, entry_slot: Tensor,
                  entry_features: Tensor, evidence: Tensor, evidence_weight: Tensor,
                  geometry: Tensor | None = None, far_distances: Tensor | None = None,
                  stay: Tensor | None = None) -> Tensor:
    """Combine the fusion head's outputs into one logit per candidate next cell.

    Candidates are the V vocabulary slots (ids; PAD and UNKNOWN are impossible) followed by M window
    slots: the cell at ``last + move`` for each move of the window, used only when that cell is
    not in the vocabulary (an unseen cell can still be named). For a vocabulary cell,

        logit = a[cell] + (m[move] if the cell is in the window else m_far - b * D) + g . prior_features(cell)

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
        far_distances: (N, V - RESERVED) `far_distance` D of the vocabulary cells, for heads built with
            ``far="distance"`` (their output after the geometry gates is the decay b = softplus(.) >= 0);
            None: the shared far logit of the original head.
        stay: (N, S) `dwell.Dwell.stay_features` of each step, for heads built with ``stay_prior``
            (their last S outputs gate them): the move (0, 0) gets ``+ gates . stay``, whether the
            current cell has an id or not. Why its own term: the Markov counts' stay candidate is
            the same after one step or fifty in a cell, and one gate per prior feature cannot move
            mass from a cell's exits to staying as the stay goes on.
    Returns:
        (N, V + M) logits; impossible slots are -inf.
    """
    n_moves = window_ids.shape[1]
    a = outputs[:, :vocab_size]
    m = outputs[:, vocab_size:vocab_size + n_moves]
    far = outputs[:, vocab_size + n_moves:vocab_size + n_moves + 1]
    gates = outputs[:, vocab_size + n_moves + 1:vocab_size + n_moves + 1 + PRIOR_FEATURES] + evidence @ evidence_weight
    geo = vocab_size + n_moves + 1 + PRIOR_FEATURES
    if geometry is not None:
        geometry_gates = outputs[:, geo:geo + GEOMETRY_FEATURES]
        m = m + (geometry * geometry_gates[:, None, :]).sum(-1)
    if stay is not None:
        stay_gates = outputs[:, outputs.shape[1] - STAY_FEATURES:]
        centre = n_moves // 2  # the move (0, 0)
        m = torch.cat([m[:, :centre], m[:, centre:centre + 1] + (stay * stay_gates).sum(-1, keepdim=True),
                       m[:, centre + 1:]], dim=1)
    in_vocab = window_ids >= 0
    not_end = torch.ones(vocab_size, dtype=a.dtype, device=a.device)
    not_end[END] = 0.0  # ending the route is no move
    cells = a + far * not_end
    if far_distances is not None:  # window cells have distance 0: untouched; the reserved ids (END) too
        decay = F.softplus(outputs[:, geo + GEOMETRY_FEATURES:geo + GEOMETRY_FEATURES + 1])
        cells = torch.cat([cells[:, :RESERVED], cells[:, RESERVED:] - decay * far_distances], dim=1)
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

    def __init__(self, config: CellForecasterConfig, vocab_size: int, output_size: int) -> None:
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
            decay = config.far == "distance"
            stay = STAY_FEATURES if config.stay_prior else 0
            with torch.no_grad():  # start near "trust the order-2 counts, then order 1, then the heading"
                start = output_size - PRIOR_FEATURES - GEOMETRY_FEATURES - decay - stay
                self.head.bias[start:start + PRIOR_FEATURES + GEOMETRY_FEATURES] = torch.tensor(
                    [2.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 0.5])
                if decay:  # softplus(bias) = FAR_DECAY_START
                    self.head.bias[start + PRIOR_FEATURES + GEOMETRY_FEATURES] = math.log(math.expm1(FAR_DECAY_START))
                if stay:  # half of the cell's own log-odds of staying on: the counts already say some of it
                    self.head.bias[output_size - stay:] = torch.tensor(STAY_GATES_START)

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


def sequence_loss(config: CellForecasterConfig, outputs: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
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
