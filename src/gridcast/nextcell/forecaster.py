"""`Forecaster`: fit on tracks of grid cells, predict the next cell and the rest of the route.

scikit-learn style: ``__init__`` stores settings, ``fit`` returns self, learned attributes end in
``_``. The checkpoint carries everything prediction needs (grid, vocabulary, normalisation,
settings), so ``Forecaster.load(dir)`` in a fresh process predicts exactly what the trained object did.

Example:
    >>> import numpy as np
    >>> from gridcast.nextcell import Forecaster
    >>> from gridcast.tracks import Track
    >>> route = np.array([[x, 3] for x in range(14, 0, -1)])
    >>> f = Forecaster(cell="gru", hidden=32).fit([Track(str(i), route) for i in range(8)], epochs=30)
    >>> f.predict_next(route[:3], k=1)[0].cell
    (11, 3)
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gridcast import __version__
from gridcast.errors import CheckpointError, InputError
from gridcast.grid import Grid
from gridcast.ingest.prepare import Prepared
from gridcast.metrics import MISS_RANK
from gridcast.nextcell.calibration import NO_CALIBRATION, Calibration, fit_temperature, scaled_log_softmax
from gridcast.nextcell.checkpoint import (
    CONFIG_NAME,
    LOCK_NAME,
    load_checkpoint,
    refuse_special_outputs,
    save_checkpoint,
    trainer_state_dir,
)
from gridcast.nextcell.config import CellForecasterConfig, default_config
from gridcast.nextcell.distributed import current_world, rank_share
from gridcast.nextcell.dwell import STAY_FEATURES, Dwell, run_lengths
from gridcast.nextcell.features import (
    END,
    NO_CELL,
    PAD,
    RESERVED,
    TIME_FEATURES,
    UNKNOWN,
    CellVocab,
    MoveClasses,
    Normalisation,
    advance_came,
    advance_dwell,
    came_from,
    dwell_counts,
    dwell_features,
    sequence_features,
    step_features,
    time_features,
    window_geometry,
)
from gridcast.nextcell.model_check import check_config, check_dwell_histogram, check_size, check_tensors, check_tracks
from gridcast.nextcell.network import ForecasterNet, far_distance, fusion_logits, fusion_size, sequence_loss
from gridcast.nextcell.prior import PRIOR_FEATURES, MarkovPrior
from gridcast.nextcell.training import TrainConfig, TrainResult, data_fingerprint
from gridcast.nextcell.training import fit as fit_loop
from gridcast.tracks import Track, split_by_track


@dataclass
class NextCell:
    """One candidate for the next cell."""

    cell: tuple[int, int]
    p: float


@dataclass
class Route:
    """One continuation: cells after the prefix, its probability, and whether the route ended."""

    cells: list[tuple[int, int]]
    p: float
    ended: bool


@dataclass
class Batch:
    ids: Tensor
    features: Tensor
    targets: Tensor
    mask: Tensor
    lengths: Tensor
    weight: float
    context: dict | None = None  # fusion head: window ids, sparse Markov prior, evidence (see `_context`)
    share: float = 1.0  # training: chunks in this step / a full step's; scales its gradient (`_step_share`)


NO_END_LOGIT = -1e4  # the end logit of models that never end a route: exp() of it is exactly 0
OFFSET_WINDOW = 2  # offset models spread probability over a (2W+1)^2 window around the predicted mean
HIDE_TIMES = 0.1  # share of training tracks whose times are hidden, so predicting without times works


class Forecaster:
    """Next-cell and route forecaster over grid cells with an RNN, LSTM or GRU.

    Args:
        config: a `CellForecasterConfig` (taken as it is), or its fields as keyword arguments
            (``cell``, ``target``, ``hidden``, ``layers``, ``embed``, ``dropout``, ...), which start
            from `gridcast fit`'s defaults (`config.default_config`: the fusion head for cell targets).
        grid: the grid the cells live on (stored with the model; needed for errors in metres).

    After `fit`, probabilities are temperature-scaled (`calibration_`, fitted on the validation
    tracks; ``fit(..., calibrate=False)`` keeps T = 1): every prediction path applies it.

    Besides fit / predict / beam / save / load, a public seam for the fast paths (`batch`,
    `streaming`, `gridcast.insight`), so that they compute with the model's own code: `encode`
    (cells -> network inputs), `distribution` (head outputs -> candidate cells and log p),
    `check_fitted`, `output_size` and `fit_network`.
    """

    def __init__(self, config: CellForecasterConfig | None = None, grid: Grid | None = None, **settings) -> None:
        if config is not None and settings:
            raise InputError("pass either a CellForecasterConfig or keyword settings, not both")
        self.config = config if config is not None else default_config(**settings)
        self.grid = grid
        #: how the training tracks were prepared ({"max_gap", "collapse"}); saved, and reused by
        #: `gridcast evaluate`/`predict` on raw input
        self.preprocessing: dict = {}
        #: the temperature every prediction divides the logits by (T = 1 until `fit` calibrates)
        self.calibration_: Calibration = NO_CALIBRATION

    @property
    def temperature(self) -> float:
        """The fitted calibration temperature (1: probabilities as the network gives them)."""
        return self.calibration_.temperature

    # ------------------------------------------------------------------------------ encoding
    @property
    def moves_(self) -> MoveClasses:
        return MoveClasses(self.config.max_move)

    def output_size(self) -> int:
        """Width of the network's head for this config and vocabulary (what a checkpoint stores as
        ``output_size``; needed to build a `ForecasterNet` by hand for a fitted vocabulary)."""
        if self.config.target == "cell":
            if self.config.head == "fusion":
                return fusion_size(len(self.vocab_), self.config.max_move, self.config.far, self.stay_term)
            return len(self.vocab_)
        if self.config.target == "move":
            return len(self.moves_)
        return 4  # mean (2) and log-std (2)

    @property
    def fusion(self) -> bool:
        return self.config.target == "cell" and self.config.head == "fusion"

    @property
    def stay_term(self) -> bool:
        """Whether the head adds the dwell-hazard stay term (`dwell.Dwell`, `network.fusion_logits`)."""
        return self.fusion and bool(self.config.stay_prior)

    @property
    def move_context(self) -> bool:
        """Whether the head's geometry measures candidates against the move that entered the current
        cell (`features.came_from`) rather than the last step's move (none after a stay)."""
        return self.fusion and self.config.last_move == "move"

    def came_from(self, cells: np.ndarray) -> np.ndarray:
        """Per step of `cells`, the cell the head reads as where it came from (`distribution`'s `before`)."""
        return came_from(cells, self.move_context)

    def advance_came(self, came: np.ndarray, last: np.ndarray, new: np.ndarray) -> np.ndarray:
        """`came_from` one step on, per row: rows at `last` (coming from `came`) step to `new`."""
        return advance_came(came, last, new, self.move_context)

    def _count_tracks(self, tracks: list[Track], dwell_histogram: np.ndarray | None = None) -> None:
        """The statistics of `tracks` the fusion head reads: the Markov prior and (stay term) the dwell
        hazards, from `dwell_histogram` when a model directory stored one (a stripped export's
        pseudo-tracks keep transition counts, not runs)."""
        if self.fusion:
            self.prior_ = MarkovPrior([t.cells for t in tracks])
        if self.stay_term:
            self.dwell_ = Dwell([t.cells for t in tracks]) if dwell_histogram is None \
                else Dwell.from_histogram(dwell_histogram)

    def encode(self, cells: np.ndarray, times: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A track's cells (n, 2) as the network reads them: token ids (n,) and the other per-step
        inputs (n, F) -- position, last move, and time if the model has time features (``times``:
        seconds per cell, or None). The fast paths (`batch`, `streaming`, `insight`) feed the network
        through this, so they see exactly the inputs `predict_next` sees."""
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        return self.vocab_.ids(cells), self._features(cells, _check_times(times, len(cells)))

    def _features(self, cells: np.ndarray, times: np.ndarray | None) -> np.ndarray:
        """Per-step network inputs besides the cell id: position, last move (then time and dwell, if
        configured, in that order)."""
        features = sequence_features(cells, self.norm_)
        if self.config.time_features:
            features = np.concatenate([features, time_features(times, len(cells))], axis=1)
        if self.config.dwell_features:
            features = np.concatenate([features, dwell_features(*dwell_counts(cells))], axis=1)
        return features

    def step_inputs(self, cells: np.ndarray, before: np.ndarray, clock: np.ndarray | None,
                    dwell: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        """Inputs of one step ahead for many rows (beams): `step_features` of each row's new cell, the
        time inputs `clock` (one row per row, or None) and the rows' dwell counts (None for models
        without them), laid out as `encode` lays out a track's steps."""
        parts = [step_features(cells, before, self.norm_)]
        if clock is not None:
            parts.append(np.asarray(clock, np.float32).reshape(len(parts[0]), -1))
        if self.config.dwell_features and dwell is not None:
            parts.append(dwell_features(*dwell))
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def _context(self, last: np.ndarray, before: np.ndarray, exclude: tuple | None = None,
                 spent: np.ndarray | None = None, exclude_runs: tuple | None = None,
                 unseen: np.ndarray | None = None) -> dict:
        """What the fusion head needs besides the network at steps standing at `last` (coming from
        `before`; `NO_CELL` for none): the vocabulary id of every window cell (-1: unseen) and the
        Markov prior's candidates as sparse (row, slot, features), with the evidence behind them;
        with the stay term, `Dwell.stay_features` of having stood `spent` (>= 1) steps in `last`.
        `exclude`, `exclude_runs`: one track's own transitions and runs, left out of the counts
        (training only); `unseen`: vocabulary ids the window shows as cells without an id, so that
        their window slots can be named too (`new_cell_targets`)."""
        last = np.asarray(last, dtype=np.int64).reshape(-1, 2)
        before = np.asarray(before, dtype=np.int64).reshape(-1, 2)
        n, radius = len(last), self.config.max_move
        side = 2 * radius + 1
        moves = self.moves_.moves
        window = self.vocab_.ids((last[:, None, :] + moves[None]).reshape(-1, 2)).reshape(n, len(moves))
        window[window == UNKNOWN] = -1
        if unseen is not None and len(unseen):
            window[np.isin(window, unseen)] = -1
        rows, slots, feats = [], [], []
        evidence = np.zeros((n, 2), dtype=np.float32)
        index, vocab_size = self.vocab_.index, len(self.vocab_)
        came, before = before, self._previous_step(last, before, spent)
        for i in range(n):
            here = (int(last[i, 0]), int(last[i, 1]))
            previous = None if before[i, 0] == NO_CELL else (int(before[i, 0]), int(before[i, 1]))
            cells, f, evidence[i] = self.prior_.entries(previous, here, exclude)
            for (c, r), row in zip(cells, f):
                slot = index.get((c, r))
                if slot is None:
                    dx, dy = c - here[0], r - here[1]
                    if max(abs(dx), abs(dy)) > radius:
                        continue  # an unseen cell out of reach: no slot can name it
                    slot = vocab_size + (dx + radius) * side + (dy + radius)
                rows.append(i)
                slots.append(slot)
                feats.append(row)
        last_moves = np.where(came[:, :1] == NO_CELL, 0, last - np.where(came == NO_CELL, 0, came))
        context = {"window": window, "rows": np.asarray(rows, dtype=np.int64), "slots": np.asarray(slots, dtype=np.int64),
                   "features": np.asarray(feats, dtype=np.float32).reshape(-1, PRIOR_FEATURES), "evidence": evidence,
                   "geometry": window_geometry(moves, last_moves), "last": np.ascontiguousarray(last)}
        if self.stay_term:
            if spent is None:
                raise ValueError("the stay term needs the steps spent in each step's cell")
            spent = np.asarray(spent, dtype=np.int64).reshape(-1)
            context["stay"] = np.array([self.dwell_.stay_features((int(c), int(r)), int(k), exclude_runs)
                                        for (c, r), k in zip(last, spent)], dtype=np.float32).reshape(n, STAY_FEATURES)
        return context

    def _previous_step(self, last: np.ndarray, came: np.ndarray, spent: np.ndarray | None) -> np.ndarray:
        """The cell of the step before each row (the Markov prior's order-2 context) from where the row
        came from: for a move-context model that is the row's own cell after a stay (`spent` > 1)."""
        if not self.move_context:
            return came
        if spent is None:
            raise ValueError("a move-context head needs the steps spent in each step's cell")
        return np.where((np.asarray(spent, dtype=np.int64).reshape(-1) > 1)[:, None], last, came)

    def _own_cells(self, ids: np.ndarray) -> np.ndarray:
        """Vocabulary ids among `ids` (one training track's cells) that no other training track visits."""
        own = np.unique(ids[ids >= RESERVED])
        return own[self.solo_[own - RESERVED]] if len(own) else own

    def _new_cell_slots(self, cells: np.ndarray, ids: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Per step, the window slot that also names its next cell when that cell is one of `own` (a
        cell no other training track visits, which a test track would meet as new), else -1: the
        step's target is then that cell's slot *or* the new-cell slot (`_loss` adds both)."""
        radius = self.config.max_move
        alt = np.full(len(cells), -1, dtype=np.int64)
        move = np.diff(cells, axis=0)
        near = np.isin(ids[1:], own) & (np.abs(move).max(axis=1, initial=0) <= radius)
        alt[:-1][near] = len(self.vocab_) + (move[near, 0] + radius) * (2 * radius + 1) + move[near, 1] + radius
        return alt

    def _fusion_targets(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slot of each step's next cell (vocabulary id, or window slot for an unseen neighbour;
        END after the last cell) and whether it can be named at all."""
        ids = self.vocab_.ids(cells)
        radius = self.config.max_move
        side = 2 * radius + 1
        targets = np.append(ids[1:], END)
        mask = np.ones(len(cells), dtype=bool)
        move = np.diff(cells, axis=0)
        unseen = np.flatnonzero(targets[:-1] == UNKNOWN)
        near = np.abs(move[unseen]).max(axis=1) <= radius if len(unseen) else np.zeros(0, bool)
        targets[unseen[near]] = len(self.vocab_) + (move[unseen[near], 0] + radius) * side + move[unseen[near], 1] + radius
        mask[unseen[~near]] = False
        mask[-1] &= self.config.learns_end  # end_of_route "never": the track's end is no target
        return targets, mask

    def _encode(self, track: Track, exclude_own: bool = False, hide_times: bool = False):
        cells = track.cells
        ids = self.vocab_.ids(cells)
        features = self._features(cells, None if hide_times else track.times)
        mask = np.ones(len(cells), dtype=bool)
        if self.fusion:
            targets, mask = self._fusion_targets(cells)
            before = self.came_from(cells)
            exclude = MarkovPrior.transitions(cells) if exclude_own else None
            runs = run_lengths(cells) if exclude_own and self.stay_term else None
            own = self._own_cells(ids) if exclude_own and self.config.new_cell_targets else None
            context = self._context(cells, before, exclude, spent_steps(cells), runs, own)
            if own is not None:
                context["alt"] = self._new_cell_slots(cells, ids, own)
            return ids, features, targets, mask, context
        if self.config.target == "cell":
            targets = np.append(ids[1:], END)
            mask &= targets != UNKNOWN  # a next cell never seen in training cannot be a target
            mask[-1] &= self.config.learns_end
        elif self.config.target == "move":
            targets = np.append(self.moves_.ids(np.diff(cells, axis=0)), self.moves_.end)
            mask[-1] &= self.config.learns_end
        else:
            targets = np.zeros((len(cells), 2), dtype=np.float32)
            targets[:-1] = np.diff(cells, axis=0)
            mask[-1] = False
        return ids, features, targets, mask

    def _batch(self, encoded: list) -> Batch:
        lengths = torch.tensor([len(e[0]) for e in encoded])
        steps = int(lengths.max())
        n = len(encoded)
        ids = torch.full((n, steps), PAD, dtype=torch.long)
        features = torch.zeros(n, steps, encoded[0][1].shape[1])
        offset = self.config.target == "offset"
        targets = torch.zeros(n, steps, 2) if offset else torch.zeros(n, steps, dtype=torch.long)
        mask = torch.zeros(n, steps, dtype=torch.bool)
        for i, (a, b, c, d, *_) in enumerate(encoded):
            k = len(a)
            ids[i, :k] = torch.from_numpy(a)
            features[i, :k] = torch.from_numpy(b)
            targets[i, :k] = torch.from_numpy(c)
            mask[i, :k] = torch.from_numpy(d)
        context = None
        if self.fusion:
            window = torch.full((n, steps, len(self.moves_.moves)), -1, dtype=torch.long)
            geometry = torch.zeros(n, steps, len(self.moves_.moves), 2)
            last = torch.zeros(n, steps, 2, dtype=torch.long)
            evidence = torch.zeros(n, steps, 2)
            stay = torch.zeros(n, steps, STAY_FEATURES) if self.stay_term else None
            rows, slots, feats = [], [], []
            for i, e in enumerate(encoded):
                ctx = e[4]
                k = len(e[0])
                if stay is not None:
                    stay[i, :k] = torch.from_numpy(ctx["stay"])
                window[i, :k] = torch.from_numpy(ctx["window"])
                geometry[i, :k] = torch.from_numpy(ctx["geometry"])
                last[i, :k] = torch.from_numpy(np.ascontiguousarray(ctx["last"]))
                evidence[i, :k] = torch.from_numpy(ctx["evidence"])
                rows.append(ctx["rows"] + i * steps)
                slots.append(ctx["slots"])
                feats.append(ctx["features"])
            context = {"window": window.flatten(0, 1), "evidence": evidence.flatten(0, 1),
                       "geometry": geometry.flatten(0, 1), "last": last.flatten(0, 1),
                       "rows": torch.from_numpy(np.concatenate(rows)), "slots": torch.from_numpy(np.concatenate(slots)),
                       "features": torch.from_numpy(np.concatenate(feats))}
            if stay is not None:
                context["stay"] = stay.flatten(0, 1)
            if "alt" in encoded[0][4]:  # training with `new_cell_targets`
                alt = torch.full((n, steps), -1, dtype=torch.long)
                for i, e in enumerate(encoded):
                    alt[i, :len(e[0])] = torch.from_numpy(e[4]["alt"])
                context["alt"] = alt.flatten()
        return Batch(ids, features, targets, mask, lengths, float(mask.sum()), context)

    def _chunks(self, tracks: list[Track], max_len: int, training: bool = False) -> list:
        """Encoded tracks cut into pieces of at most `max_len` steps. `training`: the fusion head's
        prior leaves each track's own transitions out, and a fixed share of tracks hides its times."""
        encoded = []
        hide = np.random.default_rng(self.train_config_.seed if hasattr(self, "train_config_") else 0) \
            .random(len(tracks)) < HIDE_TIMES
        for track, hidden in zip(tracks, hide):
            e = self._encode(track, exclude_own=training and self.fusion,
                             hide_times=training and self.config.time_features and bool(hidden))
            for start in range(0, len(track), max_len):
                part = tuple(x[start:start + max_len] for x in e[:4])
                if self.fusion:
                    part = part + (_slice_context(e[4], start, start + max_len),)
                if part[3].any():
                    encoded.append(part)
        return encoded

    def _logits(self, outputs: Tensor, context: dict, net: ForecasterNet | None = None) -> Tensor:
        """Fusion head outputs (N, O) and their context -> (N, V + M) logits over candidate slots."""
        net = net if net is not None else self.net_
        distances = None
        if self.config.far == "distance":
            last = torch.as_tensor(context["last"]).long().reshape(-1, 2)
            distances = far_distance(torch.from_numpy(self.vocab_.cells.astype(np.int64)), last, self.config.max_move)
        return fusion_logits(outputs, len(self.vocab_), context["window"], context["rows"], context["slots"],
                             context["features"], context["evidence"], net.evidence_weight, context["geometry"],
                             distances, context.get("stay"))

    def _loss(self, net: ForecasterNet, batch: Batch) -> Tensor:
        outputs, _, _ = net(batch.ids, batch.features, batch.lengths)
        if self.fusion:
            logits = self._logits(outputs.flatten(0, 1), batch.context, net)
            targets = batch.targets.flatten().masked_fill(~batch.mask.flatten(), END)  # padding: any finite slot
            if "alt" in batch.context:  # a cell only this track visits: its own slot or a new cell's, either
                logp = torch.log_softmax(logits, dim=-1)
                alt = batch.context["alt"]
                own = logp.gather(1, targets[:, None])[:, 0]
                new = logp.gather(1, alt.clamp(min=0)[:, None])[:, 0]
                losses = -torch.where(alt >= 0, torch.logaddexp(own, new), own).view_as(batch.mask)
            else:
                losses = F.cross_entropy(logits, targets, reduction="none").view_as(batch.mask)
            mask = batch.mask.to(losses.dtype)
            return _step_share((losses * mask).sum() / mask.sum().clamp(min=1.0), batch.share)
        return _step_share(sequence_loss(self.config, outputs, batch.targets, batch.mask), batch.share)

    # ----------------------------------------------------------------------------------- fit
    def fit(self, tracks: list[Track] | Prepared, val_tracks: list[Track] | None = None, *, val_fraction: float = 0.15,
            train: TrainConfig | None = None, log_path: str | Path | None = None, out_dir: str | Path | None = None,
            progress: bool = False, resume: bool = False, skip_nonfinite: bool = False,
            calibrate: bool = True, preprocessing: dict | None = None, **train_settings) -> "Forecaster":
        """Train on `tracks`; early stopping on `val_tracks` (default: a random `val_fraction` of the
        tracks, split by track). Keyword settings override `TrainConfig` fields (``epochs=``, ``lr=``...).

        `tracks` may be what `gridcast.ingest.prepare` returns: its grid (when the model has none) and
        its preprocessing are then the model's, as `gridcast fit` does. `preprocessing`
        (``{"max_gap", "collapse"}``) says how plain tracks were prepared; without either, and none set
        on the model, it is read off the tracks (collapse: no track ever stays in a cell), so
        `gridcast evaluate` on the saved model prepares raw input as training input was.

        `calibrate`: after training, fit the temperature on the validation tracks (`calibration`;
        their transitions are not yet in the fusion head's prior, so they are held out as test
        tracks will be). Rankings and greedy routes never change; probabilities do.

        With `out_dir`, the best model so far is saved after every improvement and the whole trainer
        state after every epoch (in ``out_dir/resume``): nothing is lost on a crash, and
        ``resume=True`` (same data, same settings) continues to the very weights an uninterrupted run
        reaches."""
        train_config = training_config(train, train_settings)
        if isinstance(tracks, Prepared):
            if self.grid is None:
                self.grid = tracks.grid
            preprocessing = dict(tracks.preprocessing) if preprocessing is None else preprocessing
            tracks = tracks.tracks
        tracks = [t for t in tracks if len(t) >= 2]
        if not tracks:
            raise InputError("no track has at least 2 cells: nothing to learn from")
        if preprocessing is not None:
            self.preprocessing = dict(preprocessing)
        elif not self.preprocessing:
            self.preprocessing = _preprocessing_of(tracks)
        self.config = resolve_auto(self.config, tracks)
        if val_tracks is None:
            tracks, val_tracks = split_by_track(tracks, val_fraction, train_config.seed)
        self._start_fit(tracks, train_config)
        train_encoded = self._chunks(tracks, train_config.max_len, training=True)
        val_batches = [self._batch(chunk) for chunk in _batched(self._chunks(val_tracks, train_config.max_len), 64)]
        # fusion: similar lengths together (real trips range from 2 to 100+ cells)
        batches = self._shuffled_batches(train_encoded, train_config.batch_size, bucket=self.fusion)
        self._run_loop(batches, val_batches, tracks, val_tracks, train_config, log_path=log_path, out_dir=out_dir,
                       progress=progress, resume=resume, skip_nonfinite=skip_nonfinite)
        self._finish_fit(val_batches, val_tracks or tracks, tracks, val_tracks, calibrate, out_dir)
        return self

    def fit_stream(self, dataset, *, val_fraction: float = 0.15, train: TrainConfig | None = None,
                   log_path: str | Path | None = None, out_dir: str | Path | None = None, progress: bool = False,
                   resume: bool = False, skip_nonfinite: bool = False, calibrate: bool = True,
                   preprocessing: dict | None = None, before_training=None, **train_settings) -> "Forecaster":
        """As `fit`, on a dataset directory (``gridcast grid ... --out DIR/``, or a
        `gridcast.ingest.dataset.DatasetStream`) read one part at a time: the encoded training
        chunks of one part are all that is built at once; validation is a stable hash of each track
        id (see `gridcast.nextcell.stream_fit`). Works under DDP, with `out_dir` and `resume`."""
        from gridcast.nextcell.stream_fit import fit_stream

        return fit_stream(self, dataset, val_fraction=val_fraction, train=train, log_path=log_path,
                          out_dir=out_dir, progress=progress, resume=resume, skip_nonfinite=skip_nonfinite,
                          calibrate=calibrate, preprocessing=preprocessing, before_training=before_training,
                          **train_settings)

    def _start_fit(self, tracks: list[Track], train_config: TrainConfig) -> None:
        """What training needs from the training tracks before the first step: vocabulary,
        normalisation, the fusion head's prior (validation tracks stay out while training), and the
        freshly seeded network."""
        self.train_tracks_ = tracks
        all_cells = np.concatenate([t.cells for t in tracks])
        cells, visits = _track_visits(tracks)
        self.vocab_ = CellVocab(cells[visits >= self.config.min_tracks])
        self.solo_ = np.zeros(len(self.vocab_.cells), dtype=bool)  # per id - RESERVED: one track visits it
        solo = self.vocab_.ids(cells[visits == 1])                   # (for `new_cell_targets`)
        self.solo_[solo[solo >= RESERVED] - RESERVED] = True
        self.norm_ = Normalisation.fit(all_cells, self.config.max_move)
        self._count_tracks(tracks)  # validation tracks stay out while training
        torch.manual_seed(train_config.seed)
        self.net_ = ForecasterNet(self.config, len(self.vocab_), self.output_size())
        self._forbid_end()
        self.train_config_ = train_config

    def _check_outputs(self, out_dir: str | Path | None, log_path: str | Path | None, resume: bool):
        """Before a minute of training: the files this run rewrites are plain files. Returns the
        checkpoint callback of every improvement (None without `out_dir`)."""
        if resume and out_dir is None:
            raise InputError("resume needs the model directory of the interrupted run")
        if out_dir is not None:
            refuse_special_outputs(out_dir, (CONFIG_NAME, "train_log.jsonl", "training.png", LOCK_NAME))
            if log_path is not None and Path(log_path).parent.resolve() != Path(out_dir).resolve():
                refuse_special_outputs(Path(log_path).parent, (Path(log_path).name,))
        return (lambda epoch: self.save(out_dir)) if out_dir is not None else None

    def _run_loop(self, batches, val_batches, tracks: list[Track], val_tracks: list[Track], train_config: TrainConfig,
                  *, log_path, out_dir, progress: bool, resume: bool, skip_nonfinite: bool, description: str = "",
                  extra_settings: dict | None = None) -> None:
        """The training loop (`gridcast.nextcell.training.fit`) over `batches`, with the checkpoint
        callback and the settings a `--resume` must match (the data's fingerprint among them)."""
        on_improve = self._check_outputs(out_dir, log_path, resume)
        settings = {"model": self.config.to_dict(), "train": train_config.to_dict(), "tracks": len(tracks),
                    "val_tracks": len(val_tracks), "steps": int(sum(len(t) for t in tracks)),
                    "data": data_fingerprint(tracks, val_tracks, self.preprocessing), **(extra_settings or {})}
        self.result_: TrainResult = fit_loop(self.net_, batches, val_batches, self._loss, train_config,
                                            log_path=log_path, on_improve=on_improve, progress=progress,
                                            description=f"fit {self.config.cell}{description}",
                                            state_dir=None if out_dir is None else trainer_state_dir(out_dir),
                                            resume=resume, skip_nonfinite=skip_nonfinite, settings=settings)

    def _finish_fit(self, val_batches, residual_tracks, tracks: list[Track], val_tracks: list[Track],
                    calibrate: bool, out_dir: str | Path | None) -> None:
        """After the loop: the offset spread and the temperature on the validation batches, then every
        track seen before the test period becomes the model's (whatever the head: the fusion prior
        counts them and `evaluate` fits the baselines on them, so baseline rows never depend on the
        model kind), and rank 0 writes the model."""
        if self.config.target == "offset" and self.config.offset_loss == "mse":
            self.norm_.offset_std = self._residual_std(residual_tracks)
        self.calibration_ = NO_CALIBRATION
        if calibrate and val_batches:
            self._calibrate_on(val_batches)
        self.train_tracks_ = list(tracks) + [t for t in val_tracks if len(t) >= 2]
        self._count_tracks(self.train_tracks_)
        if out_dir is not None and current_world().main:  # under DDP rank 0 alone writes
            self.save(out_dir)

    def fit_network(self, tracks: list[Track], val_tracks: list[Track], train: TrainConfig,
                    log_path: str | Path | None = None) -> TrainResult:
        """Train `net_` as it stands on `tracks` (early stopping on `val_tracks`), keeping the fitted
        vocabulary, normalisation and prior: for a network changed after `fit` (`gridcast.insight`
        swaps in cell variants and forget biases). Batches are shuffled, never bucketed; no
        checkpoints are written."""
        self.check_fitted()
        encoded = self._chunks(tracks, train.max_len)
        val_batches = [self._batch(chunk) for chunk in _batched(self._chunks(val_tracks, train.max_len), 64)]
        batches = self._shuffled_batches(encoded, train.batch_size, bucket=False)
        self.train_config_ = train
        self.result_ = fit_loop(self.net_, batches, val_batches, self._loss, train, log_path=log_path)
        self.calibration_ = NO_CALIBRATION  # a temperature fitted for other weights would not fit these
        return self.result_

    def calibrate(self, tracks: list[Track]) -> Calibration:
        """Fit the temperature on `tracks` (say, later trips than the training ones) and use it from
        now on; `fit` already does this on its validation tracks. Tracks the model was trained on
        would make it look more certain than it is (and a fusion model's prior counts its training
        and validation tracks). Offset targets are not calibrated (T stays 1)."""
        self.check_fitted()
        tracks = [t for t in tracks if len(t) >= 2]
        if not tracks:
            raise InputError("calibration needs at least one track of 2 or more cells")
        return self._calibrate_on([self._batch(chunk) for chunk in _batched(self._chunks(tracks, self.train_config_.max_len), 64)])

    def _calibrate_on(self, batches: list[Batch]) -> Calibration:
        self.calibration_ = NO_CALIBRATION
        if self.config.target != "offset":
            self.calibration_ = fit_temperature(lambda: self._held_out_logits(batches))
        return self.calibration_

    @torch.no_grad()
    def _held_out_logits(self, batches: list[Batch]):
        """Per batch, the logits of every scored step as prediction forms them (masked tokens at
        -inf) and the index of the truth: what the temperature is fitted on."""
        self.net_.eval()
        for batch in batches:
            outputs, _, _ = self.net_(batch.ids, batch.features, batch.lengths)
            outputs = outputs.flatten(0, 1)
            if self.fusion:
                logits = self._logits(outputs, batch.context)
            else:
                logits = outputs.clone()
                if self.config.target == "cell":
                    logits[:, PAD] = -math.inf
                    logits[:, UNKNOWN] = -math.inf
            mask = batch.mask.flatten()
            yield logits[mask], batch.targets.flatten()[mask]

    def _shuffled_batches(self, encoded: list, batch_size: int, bucket: bool):
        """Per epoch (given its generator), the encoded chunks in a new random order, as batches;
        `bucket`: tracks of similar length batched together (see `_bucketed`)."""
        lengths = np.array([len(e[0]) for e in encoded])

        def batches(rng: np.random.Generator):
            world = current_world()  # under DDP a step takes batch_size chunks on each of the ranks
            step = batch_size * world.size
            order = rng.permutation(len(encoded))
            if bucket:
                order = _bucketed(order, lengths, step, rng)
            for start in range(0, len(order), step):
                chosen = order[start:start + step]
                # < 1: a batch shorter than the others (see `_step_share`); fewer chunks than one
                # batch holds are a full batch, so a small data set trains exactly as before
                full = len(chosen) / min(step, len(order))
                share = rank_share(chosen, world)
                if len(share) == 0:  # a short last batch: this rank still steps with the others, adding nothing
                    yield replace(self._batch([encoded[chosen[0]]]), weight=0.0, share=full)
                else:
                    yield replace(self._batch([encoded[i] for i in share]), share=full)

        return batches

    @torch.no_grad()
    def _residual_std(self, tracks: list[Track]) -> float:
        residuals = []
        for track in tracks:
            ids, features, targets, mask = self._encode(track)[:4]
            outputs, _, _ = self.net_(torch.from_numpy(ids)[None], torch.from_numpy(features)[None])
            residuals.append((outputs[0, :, :2].numpy() - targets)[mask])
        return float(np.sqrt(np.mean(np.concatenate(residuals) ** 2))) if residuals else 1.0

    def _end_slot(self) -> int | None:
        """The head output that scores the end of route (None: offset targets never end)."""
        return {"cell": END, "move": self.moves_.end}.get(self.config.target)

    @torch.no_grad()
    def _forbid_end(self) -> None:
        """end_of_route "never": the head's end logit is pinned at `NO_END_LOGIT` (zero weights), so
        every path that turns head outputs into probabilities (this class, `batch`, `streaming`,
        calibration) gives ending probability 0 exactly (exp underflows), with no path of its own to
        keep in step. Its gradient is then exactly 0, so training leaves it there."""
        slot = self._end_slot()
        if self.config.learns_end or slot is None:
            return
        self.net_.head.weight[slot] = 0.0
        self.net_.head.bias[slot] = NO_END_LOGIT

    def check_fitted(self) -> None:
        """Raise `InputError` unless the model is fitted or loaded (every prediction path starts here)."""
        if not hasattr(self, "net_"):
            raise InputError("this Forecaster is not fitted yet; call fit() or Forecaster.load()")

    # ------------------------------------------------------------------------------ predict
    @torch.no_grad()
    def distribution(self, outputs: Tensor, last: np.ndarray, before: np.ndarray | None = None,
                     spent: np.ndarray | None = None) -> tuple[np.ndarray, Tensor, Tensor]:
        """Head outputs (B, O) and last cells (B, 2) -> candidate cells (B, C, 2), their log p (B, C),
        and log p of the route ending (B,). `before`: where each row came from (`came_from`:
        the previous step's cell, or the last different one for a move-context model; `NO_CELL` rows
        for none); the fusion head's order-2 prior (the previous step: `before`, or the row's own cell
        after a stay) and its last move read them. `spent`: (B,) steps each row has stood in
        its `last` cell (>= 1; `spent_steps`), which models with the stay term need. A candidate
        with log p = -inf is a duplicate slot or impossible: it never ranks.

        The one place head outputs become probabilities: `predict_next`, `beam`, `batch.beam_many`
        and `StreamingPredictor` (for offset targets) all go through it. Logits are divided by the
        calibration temperature (cell and move targets; offset targets are not calibrated)."""
        cands, logp, end = self._distribution(outputs, last, before, spent)
        if not self.config.learns_end:
            end = torch.full_like(end, -math.inf)  # never an end: not even as the last of `width` routes
        return cands, logp, end

    def _distribution(self, outputs: Tensor, last: np.ndarray, before: np.ndarray | None, spent: np.ndarray | None):
        target, batch = self.config.target, outputs.shape[0]
        if target == "cell" and self.fusion:
            if before is None:
                before = np.full_like(last, NO_CELL)
            context = {k: torch.from_numpy(v) for k, v in self._context(last, before, spent=spent).items()}
            logp = scaled_log_softmax(self._logits(outputs, context), self.temperature)
            vocab = np.broadcast_to(self.vocab_.cells, (batch,) + self.vocab_.cells.shape)
            window = np.asarray(last)[:, None, :] + self.moves_.moves[None]
            cands = np.concatenate([vocab, window], axis=1)
            return cands, torch.cat([logp[:, RESERVED:len(self.vocab_)], logp[:, len(self.vocab_):]], 1), logp[:, END]
        if target == "cell":
            logits = outputs.clone()
            logits[:, PAD] = -math.inf
            logits[:, UNKNOWN] = -math.inf
            logp = scaled_log_softmax(logits, self.temperature)
            cands = np.broadcast_to(self.vocab_.cells, (batch,) + self.vocab_.cells.shape)
            return cands, logp[:, RESERVED:], logp[:, END]
        if target == "move":
            logp = scaled_log_softmax(outputs, self.temperature)
            cands = last[:, None, :] + self.moves_.moves[None]
            return cands, logp[:, : self.moves_.end], logp[:, self.moves_.end]
        mean = outputs[:, :2].double()
        std = outputs[:, 2:].clamp(-5.0, 5.0).exp().double() if self.config.offset_loss == "gaussian" \
            else torch.full_like(mean, self.norm_.offset_std)
        centre = np.rint(last + mean.numpy()).astype(np.int64)
        d = np.arange(-OFFSET_WINDOW, OFFSET_WINDOW + 1)
        window = np.stack(np.meshgrid(d, d, indexing="ij"), -1).reshape(-1, 2)
        cands = centre[:, None, :] + window[None]
        rel = torch.from_numpy(cands - last[:, None, :]).double()  # displacement of each candidate cell
        normal = torch.distributions.Normal(mean[:, None, :], std[:, None, :])
        mass = (normal.cdf(rel + 0.5) - normal.cdf(rel - 0.5)).prod(-1).clamp(min=1e-300)
        return cands, mass.log().float(), torch.full((batch,), -math.inf)

    @torch.no_grad()
    def _run_cells(self, cells: np.ndarray, times: np.ndarray | None, what: str):
        """One causal pass over a track's cells: head outputs (1, n, O), the final recurrent state,
        the cells as an (n, 2) array and the inputs (1, n, F). `what` names the track in errors."""
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        if len(cells) == 0:
            raise InputError(f"the {what} is empty: give at least one cell")
        ids, features = self.encode(cells, times)
        ids, features = torch.from_numpy(ids)[None], torch.from_numpy(features)[None]
        self.net_.eval()
        outputs, state, _ = self.net_(ids, features)
        return outputs, state, cells, features

    def _encode_prefix(self, prefix: np.ndarray, times: np.ndarray | None = None):
        outputs, state, prefix, features = self._run_cells(prefix, times, "track prefix")
        return outputs[:, -1], state, prefix, features[0, -1]

    def _before(self, prefix: np.ndarray) -> np.ndarray:
        return self.came_from(prefix)[-1:]

    def predict_next(self, prefix: np.ndarray, k: int = 5, times: np.ndarray | None = None) -> list[NextCell]:
        """The k most probable next cells after `prefix` ((n, 2) cells), most probable first.
        `times`: the prefix's times in seconds (used by models with time features; optional)."""
        return self.predict_next_with_end(prefix, k, times)[0]

    def predict_next_with_end(self, prefix: np.ndarray, k: int = 5, times: np.ndarray | None = None
                              ) -> tuple[list[NextCell], float]:
        """Top-k next cells and the probability that the route ends here instead."""
        self.check_fitted()
        output, _, prefix, _ = self._encode_prefix(prefix, times)
        cands, logp, end = self.distribution(output, prefix[-1:], self._before(prefix), spent_steps(prefix)[-1:])
        top = torch.topk(logp[0], min(k, int(torch.isfinite(logp[0]).sum())))
        cells = [NextCell((int(cands[0, j, 0]), int(cands[0, j, 1])), float(math.exp(v)))
                 for v, j in zip(top.values.tolist(), top.indices.tolist())]
        return cells, float(math.exp(float(end[0])))

    def next_cell_scores(self, prefix: np.ndarray, times: np.ndarray | None = None) -> dict[tuple[int, int], float]:
        """Probability of every candidate next cell (for ranking metrics)."""
        self.check_fitted()
        output, _, prefix, _ = self._encode_prefix(prefix, times)
        cands, logp, _ = self.distribution(output, prefix[-1:], self._before(prefix), spent_steps(prefix)[-1:])
        finite = torch.isfinite(logp[0]).numpy()
        return {(int(c), int(r)): float(p) for (c, r), p, ok in zip(cands[0], logp[0].exp().tolist(), finite) if ok}

    @torch.no_grad()
    def step_distributions(self, cells: np.ndarray, times: np.ndarray | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """After every cell of a track (one causal pass): candidate cells (n, C, 2), their log p
        (n, C, float64; -inf for duplicate or impossible slots) and log p of ending (n,)."""
        self.check_fitted()
        outputs, _, cells, _ = self._run_cells(cells, times, "track")
        cands, logp, end = self.distribution(outputs[0], cells, self.came_from(cells), spent_steps(cells))
        return np.asarray(cands), logp.double().numpy(), end.double().numpy()

    def ranks_along(self, cells: np.ndarray, times: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """For every step of a track, the 1-based rank and the negative log-probability of the cell
        that really came next, from one causal pass (identical to scoring each prefix separately).
        A next cell the model cannot output gets `MISS_RANK` and NLL = inf."""
        self.check_fitted()
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        if len(cells) < 2:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        cands, logp, _ = self.step_distributions(cells[:-1], None if times is None else np.asarray(times)[:-1])
        return rank_truth(cands, logp, cells[1:])

    @torch.no_grad()
    def beam(self, prefix: np.ndarray, horizon: int, width: int = 5, times: np.ndarray | None = None) -> list[Route]:
        """The `width` most probable continuations of up to `horizon` cells, most probable first.

        A route that predicts end-of-route stops there (``ended=True``); its probability includes
        the end. Unfinished routes carry the probability of their cells so far. Time inputs of the
        steps ahead repeat those of the prefix's last step.
        """
        self.check_fitted()
        if horizon < 1 or width < 1:
            raise InputError(f"horizon and beam width must be >= 1, got {horizon} and {width}")
        output, state, prefix, last_features = self._encode_prefix(prefix, times)
        clock = last_features[4:4 + TIME_FEATURES].numpy() if self.config.time_features else None
        run, held = (x[-1:] for x in dwell_counts(prefix))
        lstm = self.config.cell == "lstm"
        logps = torch.zeros(1, dtype=torch.float64)
        routes: list[list[tuple[int, int]]] = [[]]
        last, before = prefix[-1:].copy(), self._before(prefix).copy()
        finished: list[Route] = []
        for _ in range(horizon):
            cands, logp, end = self.distribution(output, last, before, run + 1)
            n, c = logp.shape
            scores = torch.cat([(logps[:, None] + logp.double()).reshape(-1), logps + end.double()])
            floor = min((math.log(r.p) for r in finished), default=-math.inf) if len(finished) >= width else -math.inf
            top = torch.topk(scores, min(width, int(torch.isfinite(scores).sum())))
            keep_parent, keep_cell, keep_logp = [], [], []
            for value, index in zip(top.values.tolist(), top.indices.tolist()):
                if value <= floor:
                    continue
                if index >= n * c:  # the route ends here
                    finished.append(Route(list(routes[index - n * c]), math.exp(value), True))
                else:
                    parent, j = divmod(index, c)
                    keep_parent.append(parent)
                    keep_cell.append(cands[parent, j])
                    keep_logp.append(value)
            finished = sorted(finished, key=lambda r: -r.p)[:width]
            if not keep_parent:
                routes = []
                break
            parents = torch.tensor(keep_parent)
            new_cells = np.asarray(keep_cell, dtype=np.int64).reshape(-1, 2)
            routes = [routes[p] + [(int(x), int(y))] for p, (x, y) in zip(keep_parent, new_cells)]
            logps = torch.tensor(keep_logp, dtype=torch.float64)
            state = tuple(s.index_select(1, parents) for s in state) if lstm else state.index_select(1, parents)
            previous, last = last[keep_parent], new_cells
            before = self.advance_came(before[keep_parent], previous, new_cells)
            run, held = advance_dwell(run[keep_parent], held[keep_parent], np.all(new_cells == previous, axis=1))
            ids = torch.from_numpy(self.vocab_.ids(new_cells))
            step = self.step_inputs(new_cells, previous, None if clock is None else np.repeat(clock[None], len(new_cells), axis=0),
                                    (run, held))
            output, state = self.net_.step(ids, torch.from_numpy(step), state)
        open_routes = [Route(r, math.exp(v), False) for r, v in zip(routes, logps.tolist())]
        return sorted(finished + open_routes, key=lambda r: -r.p)[:width]

    def rollout(self, prefix: np.ndarray, horizon: int, times: np.ndarray | None = None) -> list[tuple[int, int]]:
        """Greedy continuation: the most probable cell at each step (beam of width 1)."""
        routes = self.beam(prefix, horizon, width=1, times=times)
        return routes[0].cells if routes else []

    # ---------------------------------------------------------------------------- save/load
    def save(self, directory: str | Path) -> Path:
        """Write the model directory (safetensors + config.json) atomically."""
        self.check_fitted()
        config = {
            "gridcast_version": __version__,
            "model": self.config.to_dict(),
            "train": self.train_config_.to_dict(),
            "grid": self.grid.to_dict() if self.grid is not None else None,
            "vocab": self.vocab_.to_list(),
            "normalisation": self.norm_.to_dict(),
            "output_size": self.output_size(),
            "preprocessing": self.preprocessing,
            "calibration": self.calibration_.to_dict(),
        }
        tensors = dict(self.net_.state_dict())
        tensors.update(_pack_tracks(self.train_tracks_))
        if self.stay_term:  # its own aggregate: a stripped export's pseudo-tracks keep counts, not runs
            tensors[DATA_PREFIX + "dwell_histogram"] = torch.from_numpy(np.ascontiguousarray(self.dwell_.histogram_))
        return save_checkpoint(directory, tensors, config)

    @classmethod
    def load(cls, directory: str | Path) -> "Forecaster":
        """Rebuild a fitted forecaster from a model directory; clear errors for broken ones.

        The directory is a sandbox (`gridcast.nextcell.checkpoint.load_checkpoint`); the config is
        checked completely and the weights header against it (`gridcast.nextcell.model_check`)
        before the network is built or a byte of tensor data is read."""
        where = Path(directory) / CONFIG_NAME
        built: dict = {}

        def check(specs: dict, config: dict) -> None:
            parts = check_config(config, where)
            check_size(parts.model, len(parts.vocab) + RESERVED, parts.output_size, where)  # before any allocation
            self = cls(parts.model, parts.grid)
            self.vocab_ = CellVocab(parts.vocab)
            if len(self.vocab_) - RESERVED != len(parts.vocab):
                raise CheckpointError(f"{where}: vocab lists a cell twice")
            try:
                expected = self.output_size()
            except (TypeError, ValueError, InputError) as exc:
                raise CheckpointError(f"{where}: model settings do not fit together ({exc})") from None
            if parts.output_size != expected:
                raise CheckpointError(f"{where}: output_size is {parts.output_size}, the model and vocabulary give {expected}")
            check_size(parts.model, len(self.vocab_), expected, where)
            self.net_ = ForecasterNet(parts.model, len(self.vocab_), expected)
            check_tensors(specs, self.net_.state_dict(), DATA_PREFIX, Path(directory) / config["weights"])
            self.norm_, self.train_config_, self.calibration_ = parts.norm, parts.train, parts.calibration
            self.preprocessing = parts.preprocessing
            built["self"] = self

        tensors, config = load_checkpoint(directory, check=check)
        self = built["self"]
        cells, offsets = tensors.get(DATA_PREFIX + "train_cells"), tensors.get(DATA_PREFIX + "train_offsets")
        if cells is not None:
            check_tracks(cells.numpy(), offsets.numpy(), Path(directory) / config["weights"])
        histogram = tensors.get(DATA_PREFIX + "dwell_histogram")
        if histogram is not None:
            check_dwell_histogram(histogram.numpy(), Path(directory) / config["weights"])
        try:
            self.train_tracks_ = _unpack_tracks(tensors)
            self._count_tracks(self.train_tracks_, None if histogram is None else histogram.numpy())
            self.net_.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(DATA_PREFIX)})
        except (KeyError, TypeError, ValueError, RuntimeError, InputError) as exc:
            raise CheckpointError(f"{directory}: config and weights do not fit together ({str(exc).splitlines()[0]})") from None
        self.net_.eval()
        return self


def rank_truth(cands: np.ndarray, logp: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based rank (ties count against the truth) and NLL of each true cell among (n, C) scored
    candidates; a truth that is not a finite candidate gets `MISS_RANK` and NLL = inf."""
    hit = np.all(cands == np.asarray(truth)[:, None, :], axis=-1)  # (n, C)
    found = (hit & np.isfinite(logp)).any(axis=1)
    true_logp = np.where(found, np.where(hit, logp, -np.inf).max(axis=1), -np.inf)
    ranks = np.where(found, (logp >= true_logp[:, None]).sum(axis=1), MISS_RANK)
    return ranks.astype(np.int64), -true_logp


class Ensemble:
    """Forecasters trained on the same tracks (e.g. different seeds), probabilities averaged.

    Why: with a few hundred trips, seeds disagree on the rare steps; the average of their
    distributions is better calibrated and ranks better than a typical member. Members must share
    the vocabulary and window (same training tracks and settings), so their candidates line up.
    """

    def __init__(self, members: list[Forecaster]) -> None:
        if not members:
            raise InputError("an ensemble needs at least one fitted forecaster")
        first = members[0]
        for m in members[1:]:
            if not np.array_equal(m.vocab_.cells, first.vocab_.cells) or m.config.max_move != first.config.max_move \
                    or m.config.target != first.config.target or m.config.head != first.config.head:
                raise InputError("ensemble members must be trained on the same tracks with the same target and head")
        self.members = list(members)
        self.grid = first.grid

    def step_distributions(self, cells: np.ndarray, times: np.ndarray | None = None):
        """As `Forecaster.step_distributions`, log of the members' mean probability."""
        parts = [m.step_distributions(cells, times) for m in self.members]
        cands = parts[0][0]
        with np.errstate(divide="ignore"):
            logp = np.logaddexp.reduce(np.stack([p[1] for p in parts]), axis=0) - math.log(len(parts))
            end = np.logaddexp.reduce(np.stack([p[2] for p in parts]), axis=0) - math.log(len(parts))
        return cands, logp, end

    def ranks_along(self, cells: np.ndarray, times: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        if len(cells) < 2:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        cands, logp, _ = self.step_distributions(cells[:-1], None if times is None else np.asarray(times)[:-1])
        return rank_truth(cands, logp, cells[1:])

    def rollout(self, prefix: np.ndarray, horizon: int, times: np.ndarray | None = None) -> list[tuple[int, int]]:
        """Greedy continuation under the averaged distribution (stops where ending is most probable).
        Steps ahead are timed at the pace of the prefix's last step (models with time inputs)."""
        cells = np.asarray(prefix, dtype=np.int64).reshape(-1, 2)
        times = None if times is None else np.asarray(times, dtype=np.float64).reshape(-1)
        out: list[tuple[int, int]] = []
        for _ in range(horizon):
            cands, logp, end = self.step_distributions(cells, times)
            j = int(np.argmax(logp[-1]))
            if not np.isfinite(logp[-1, j]) or end[-1] > logp[-1, j]:
                break
            nxt = cands[-1, j]
            out.append((int(nxt[0]), int(nxt[1])))
            cells = np.vstack([cells, nxt[None]])
            if times is not None:  # the same pace as the last step
                times = np.append(times, times[-1] + (times[-1] - times[-2] if len(times) > 1 else 0.0))
        return out


DATA_PREFIX = "data."  # training tracks travel with the weights so baselines can be refitted on them


def _pack_tracks(tracks: list[Track]) -> dict[str, Tensor]:
    cells = np.concatenate([t.cells for t in tracks]) if tracks else np.zeros((0, 2), dtype=np.int64)
    offsets = np.cumsum([0] + [len(t) for t in tracks])
    return {DATA_PREFIX + "train_cells": torch.from_numpy(cells), DATA_PREFIX + "train_offsets": torch.from_numpy(offsets)}


def _unpack_tracks(tensors: dict[str, Tensor]) -> list[Track]:
    cells = tensors.get(DATA_PREFIX + "train_cells")
    offsets = tensors.get(DATA_PREFIX + "train_offsets")
    if cells is None or offsets is None:
        return []
    cells, offsets = cells.numpy(), offsets.numpy()
    return [Track(f"train-{i}", cells[a:b]) for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:]))]


def training_config(train: TrainConfig | None, settings: dict) -> TrainConfig:
    """`train` (default: `TrainConfig()`) with the keyword `settings` of a fit call set on it; an
    unknown name is an `InputError`."""
    config = train or TrainConfig()
    for key, value in settings.items():
        if not hasattr(config, key):
            raise InputError(f"unknown training setting {key!r}")
        setattr(config, key, value)
    return config


def _step_share(loss: Tensor, share: float) -> Tensor:
    """`loss` with its gradient scaled by `share` (its value unchanged, so logs show the real loss).

    Why: a batch's loss is a mean, so a short batch (the chunks left over after the full ones)
    would move the weights as far as a full one, i.e. each of its chunks `1 / share` times as far.
    With length bucketing the leftovers are always the longest tracks: on two repeated routes that
    differ by one cell, the longer one got an extra full step every epoch and took p = 0.73 of a
    50/50 start (`tests/test_repeated_routes.py`). Scaled, every chunk weighs the same."""
    return loss if share >= 1.0 else loss * share + loss.detach() * (1.0 - share)


def _bucketed(order: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
              pool: int = 8) -> np.ndarray:
    """A shuffled order in which each run of `batch_size` holds tracks of similar length: pools of
    ``pool`` batches are sorted by length, and the batches are shuffled. Why: padding to the longest
    track of a random batch wastes most of the recurrent steps when lengths are skewed."""
    size = batch_size * pool
    parts = [order[s:s + size] for s in range(0, len(order), size)]
    batches = []
    for part in parts:
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[s:s + batch_size] for s in range(0, len(part), batch_size)]
    return np.concatenate([batches[i] for i in rng.permutation(len(batches))]) if batches else order


def _track_visits(tracks: list[Track]) -> tuple[np.ndarray, np.ndarray]:
    """Every cell of `tracks` (sorted, unique) and how many different tracks visit it: the vocabulary
    keeps cells at least `min_tracks` tracks visit (why a threshold: a cell seen on a single trip
    teaches the id embedding nothing that transfers; leaving it out lets the network learn, on real
    examples, how to step into cells it has no id for), and `new_cell_targets` reads the cells one
    track alone visits."""
    return np.unique(np.concatenate([np.unique(t.cells, axis=0) for t in tracks]), axis=0, return_counts=True)


def _slice_context(context: dict, start: int, stop: int) -> dict:
    """The fusion context of steps [start, stop), rows renumbered from 0."""
    keep = (context["rows"] >= start) & (context["rows"] < stop)
    return {"window": context["window"][start:stop], "evidence": context["evidence"][start:stop],
            "geometry": context["geometry"][start:stop], "last": context["last"][start:stop],
            "rows": context["rows"][keep] - start, "slots": context["slots"][keep], "features": context["features"][keep],
            **{key: context[key][start:stop] for key in ("stay", "alt") if key in context}}


def resolve_auto(config: CellForecasterConfig, tracks: list[Track]) -> CellForecasterConfig:
    """`config` with its "decide from the data" settings decided on the training tracks, so the
    saved config says what was built: dwell inputs on when any track stays in a cell (a fixed time
    step; on collapsed tracks they would be constant zeros), end of route learned when
    `ends_are_real`."""
    settings = {}
    if config.dwell_features is None:
        settings["dwell_features"] = _stays(tracks)
    if config.end_of_route == "auto":
        settings["end_of_route"] = "learn" if ends_are_real(tracks) else "never"
    if config.stay_prior is None:
        settings["stay_prior"] = config.head == "fusion" and _stays(tracks)
    if config.last_move is None:
        settings["last_move"] = "move" if config.head == "fusion" and _stays(tracks) else "step"
    if config.new_cell_targets is None:
        settings["new_cell_targets"] = config.head == "fusion"
    return replace(config, **settings) if settings else config


GAP_PART = re.compile(r"(?P<id>[^#]*)#(?P<part>\d+)")  # ingestion names the parts of a track cut at gaps <id>#<k>
CUT_SHARE = 0.1  # ends are learned while at most this share of tracks ends at a gap cut


def ends_are_real(tracks: list[Track]) -> bool:
    """Whether the ends of these tracks are ends of routes, for end_of_route "auto".

    A track that ingestion cut at ``--max-gap`` is named ``<id>#<k>`` (anything after is a later
    split's, e.g. a dataset's time periods, ``@p``); every part but the last of
    an id ends where the recording paused, not where the trip ended (the animal, the person walks
    on). When more than `CUT_SHARE` of the tracks end at such a cut, ends are no learnable event:
    "never". Otherwise (each id is one trip, as in route or trip logs; a few dropouts tolerated)
    the tracks' ends are taken as real: "learn"."""
    last: dict[str, int] = {}
    parts = 0
    for track in tracks:
        match = GAP_PART.match(str(track.id))
        if match:
            parts += 1
            last[match["id"]] = max(last.get(match["id"], -1), int(match["part"]))
    cut = parts - len(last)  # all parts of an id but its last end at a cut
    return not tracks or cut <= CUT_SHARE * len(tracks)


def spent_steps(cells: np.ndarray) -> np.ndarray:
    """Per step of a track, how many steps it has stood in its current cell, counting this one (the
    `spent` of `Forecaster.distribution`): `features.dwell_counts` + 1."""
    return dwell_counts(cells)[0] + 1


def _stays(tracks: list[Track]) -> bool:
    return any(bool(np.any(np.all(np.diff(t.cells, axis=0) == 0, axis=1))) for t in tracks)


def _preprocessing_of(tracks: list[Track]) -> dict:
    """How plain tracks look prepared, for a model told nothing: collapsed when no track ever stays
    in its cell (then new input must be collapsed to look like them), no gap split known."""
    return {"max_gap": None, "collapse": not _stays(tracks)}


def _check_times(times: np.ndarray | None, n: int) -> np.ndarray | None:
    if times is None:
        return None
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    if len(times) != n:
        raise InputError(f"{len(times)} times for {n} cells")
    return times


def _batched(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]
