"""`Forecaster`: fit on tracks of grid cells, predict the next cell and the rest of the route.

scikit-learn style: ``__init__`` stores settings, ``fit`` returns self, learned attributes end in
``_``. The checkpoint carries everything prediction needs (grid, vocabulary, normalisation,
settings), so ``Forecaster.load(dir)`` in a fresh process predicts exactly what the trained object did.

Example:
    >>> import numpy as np
    >>> from gridcast.forecaster import Forecaster
    >>> from gridcast.tracks import Track
    >>> route = np.array([[x, 3] for x in range(14, 0, -1)])
    >>> f = Forecaster(cell="gru", hidden=32).fit([Track(str(i), route) for i in range(8)], epochs=30)
    >>> f.predict_next(route[:3], k=1)[0].cell
    (11, 3)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import __version__
from .checkpoint import load_checkpoint, save_checkpoint
from .errors import CheckpointError, InputError
from .grid import Grid
from .metrics import MISS_RANK
from .models import (END, PAD, RESERVED, UNKNOWN, CellVocab, ForecasterConfig, ForecasterNet, MoveClasses,
                     Normalisation, sequence_features, sequence_loss, step_features)
from .tracks import Track, split_by_track
from .training import TrainConfig, TrainResult, fit as fit_loop


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


OFFSET_WINDOW = 2  # offset models spread probability over a (2W+1)^2 window around the predicted mean


class Forecaster:
    """Next-cell and route forecaster over grid cells with an RNN, LSTM or GRU.

    Args:
        config: a `ForecasterConfig`, or its fields as keyword arguments
            (``cell``, ``target``, ``hidden``, ``layers``, ``embed``, ``dropout``, ...).
        grid: the grid the cells live on (stored with the model; needed for errors in metres).
    """

    def __init__(self, config: ForecasterConfig | None = None, grid: Grid | None = None, **settings) -> None:
        self.config = config if config is not None else ForecasterConfig(**settings)
        if config is not None and settings:
            raise InputError("pass either a ForecasterConfig or keyword settings, not both")
        self.grid = grid

    # ------------------------------------------------------------------------------ encoding
    @property
    def moves_(self) -> MoveClasses:
        return MoveClasses(self.config.max_move)

    def _output_size(self) -> int:
        if self.config.target == "cell":
            return len(self.vocab_)
        if self.config.target == "move":
            return len(self.moves_)
        return 4  # mean (2) and log-std (2)

    def _encode(self, track: Track):
        cells = track.cells
        ids = self.vocab_.ids(cells)
        features = sequence_features(cells, self.norm_)
        mask = np.ones(len(cells), dtype=bool)
        if self.config.target == "cell":
            targets = np.append(ids[1:], END)
            mask &= targets != UNKNOWN  # a next cell never seen in training cannot be a target
        elif self.config.target == "move":
            targets = np.append(self.moves_.ids(np.diff(cells, axis=0)), self.moves_.end)
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
        for i, (a, b, c, d) in enumerate(encoded):
            k = len(a)
            ids[i, :k] = torch.from_numpy(a)
            features[i, :k] = torch.from_numpy(b)
            targets[i, :k] = torch.from_numpy(c)
            mask[i, :k] = torch.from_numpy(d)
        return Batch(ids, features, targets, mask, lengths, float(mask.sum()))

    def _chunks(self, tracks: list[Track], max_len: int) -> list:
        encoded = []
        for track in tracks:
            e = self._encode(track)
            for start in range(0, len(track), max_len):
                part = tuple(x[start:start + max_len] for x in e)
                if part[3].any():
                    encoded.append(part)
        return encoded

    def _loss(self, net: ForecasterNet, batch: Batch) -> Tensor:
        outputs, _, _ = net(batch.ids, batch.features, batch.lengths)
        return sequence_loss(self.config, outputs, batch.targets, batch.mask)

    # ----------------------------------------------------------------------------------- fit
    def fit(self, tracks: list[Track], val_tracks: list[Track] | None = None, *, val_fraction: float = 0.15,
            train: TrainConfig | None = None, log_path: str | Path | None = None, out_dir: str | Path | None = None,
            progress: bool = False, resume: bool = False, skip_nonfinite: bool = False,
            **train_settings) -> "Forecaster":
        """Train on `tracks`; early stopping on `val_tracks` (default: a random `val_fraction` of the
        tracks, split by track). Keyword settings override `TrainConfig` fields (``epochs=``, ``lr=``...).

        With `out_dir`, the best model so far is saved after every improvement and the whole trainer
        state after every epoch (in ``out_dir/resume``): nothing is lost on a crash, and
        ``resume=True`` (same data, same settings) continues to the very weights an uninterrupted run
        reaches."""
        train_config = train or TrainConfig()
        for key, value in train_settings.items():
            if not hasattr(train_config, key):
                raise InputError(f"unknown training setting {key!r}")
            setattr(train_config, key, value)
        tracks = [t for t in tracks if len(t) >= 2]
        if not tracks:
            raise InputError("no track has at least 2 cells: nothing to learn from")
        if val_tracks is None:
            tracks, val_tracks = split_by_track(tracks, val_fraction, train_config.seed)
        self.train_tracks_ = tracks
        all_cells = np.concatenate([t.cells for t in tracks])
        self.vocab_ = CellVocab(all_cells)
        self.norm_ = Normalisation.fit(all_cells, self.config.max_move)
        torch.manual_seed(train_config.seed)
        self.net_ = ForecasterNet(self.config, len(self.vocab_), self._output_size())
        self.train_config_ = train_config
        train_encoded = self._chunks(tracks, train_config.max_len)
        val_batches = [self._batch(chunk) for chunk in _batched(self._chunks(val_tracks, train_config.max_len), 64)]
        batch_size = train_config.batch_size

        def batches(rng: np.random.Generator):
            order = rng.permutation(len(train_encoded))
            for start in range(0, len(order), batch_size):
                yield self._batch([train_encoded[i] for i in order[start:start + batch_size]])

        on_improve = (lambda epoch: self.save(out_dir)) if out_dir is not None else None
        if resume and out_dir is None:
            raise InputError("resume needs the model directory of the interrupted run")
        settings = {"model": self.config.to_dict(), "train": train_config.to_dict(), "tracks": len(tracks),
                    "val_tracks": len(val_tracks), "steps": int(sum(len(t) for t in tracks))}
        self.result_: TrainResult = fit_loop(self.net_, batches, val_batches, self._loss, train_config,
                                            log_path=log_path, on_improve=on_improve, progress=progress,
                                            description=f"fit {self.config.cell}",
                                            state_dir=None if out_dir is None else Path(out_dir) / "resume",
                                            resume=resume, skip_nonfinite=skip_nonfinite, settings=settings)
        if self.config.target == "offset" and self.config.offset_loss == "mse":
            self.norm_.offset_std = self._residual_std(val_tracks or tracks)
        if out_dir is not None:
            self.save(out_dir)
        return self

    @torch.no_grad()
    def _residual_std(self, tracks: list[Track]) -> float:
        residuals = []
        for track in tracks:
            ids, features, targets, mask = self._encode(track)
            outputs, _, _ = self.net_(torch.from_numpy(ids)[None], torch.from_numpy(features)[None])
            residuals.append((outputs[0, :, :2].numpy() - targets)[mask])
        return float(np.sqrt(np.mean(np.concatenate(residuals) ** 2))) if residuals else 1.0

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise InputError("this Forecaster is not fitted yet; call fit() or Forecaster.load()")

    # ------------------------------------------------------------------------------ predict
    def _distribution(self, outputs: Tensor, last: np.ndarray) -> tuple[np.ndarray, Tensor, Tensor]:
        """Head outputs (B, O) and last cells (B, 2) -> candidate cells (B, C, 2), their log p (B, C),
        and log p of the route ending (B,)."""
        target, batch = self.config.target, outputs.shape[0]
        if target == "cell":
            logits = outputs.clone()
            logits[:, PAD] = -math.inf
            logits[:, UNKNOWN] = -math.inf
            logp = F.log_softmax(logits, dim=-1)
            cands = np.broadcast_to(self.vocab_.cells, (batch,) + self.vocab_.cells.shape)
            return cands, logp[:, RESERVED:], logp[:, END]
        if target == "move":
            logp = F.log_softmax(outputs, dim=-1)
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
    def _encode_prefix(self, prefix: np.ndarray):
        prefix = np.asarray(prefix, dtype=np.int64).reshape(-1, 2)
        if len(prefix) == 0:
            raise InputError("the track prefix is empty: give at least one cell")
        ids = torch.from_numpy(self.vocab_.ids(prefix))[None]
        features = torch.from_numpy(sequence_features(prefix, self.norm_))[None]
        self.net_.eval()
        outputs, state, _ = self.net_(ids, features)
        return outputs[:, -1], state, prefix

    def predict_next(self, prefix: np.ndarray, k: int = 5) -> list[NextCell]:
        """The k most probable next cells after `prefix` ((n, 2) cells), most probable first."""
        return self.predict_next_with_end(prefix, k)[0]

    def predict_next_with_end(self, prefix: np.ndarray, k: int = 5) -> tuple[list[NextCell], float]:
        """Top-k next cells and the probability that the route ends here instead."""
        self._check_fitted()
        output, _, prefix = self._encode_prefix(prefix)
        cands, logp, end = self._distribution(output, prefix[-1:])
        top = torch.topk(logp[0], min(k, logp.shape[1]))
        cells = [NextCell((int(cands[0, j, 0]), int(cands[0, j, 1])), float(math.exp(v)))
                 for v, j in zip(top.values.tolist(), top.indices.tolist())]
        return cells, float(math.exp(float(end[0])))

    def next_cell_scores(self, prefix: np.ndarray) -> dict[tuple[int, int], float]:
        """Probability of every candidate next cell (for ranking metrics)."""
        self._check_fitted()
        output, _, prefix = self._encode_prefix(prefix)
        cands, logp, _ = self._distribution(output, prefix[-1:])
        return {(int(c), int(r)): float(p) for (c, r), p in zip(cands[0], logp[0].exp().tolist())}

    @torch.no_grad()
    def ranks_along(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For every step of a track, the 1-based rank and the negative log-probability of the cell
        that really came next, from one causal pass (identical to scoring each prefix separately).
        A next cell the model cannot output gets `MISS_RANK` and NLL = inf."""
        self._check_fitted()
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        if len(cells) < 2:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        ids = torch.from_numpy(self.vocab_.ids(cells))[None]
        features = torch.from_numpy(sequence_features(cells, self.norm_))[None]
        self.net_.eval()
        outputs, _, _ = self.net_(ids, features)
        cands, logp, _ = self._distribution(outputs[0, :-1], cells[:-1])
        truth = cells[1:]
        hit = np.all(cands == truth[:, None, :], axis=-1)  # (n-1, C)
        logp = logp.double().numpy()
        found = hit.any(axis=1)
        true_logp = np.where(found, np.where(hit, logp, -np.inf).max(axis=1), -np.inf)
        ranks = np.where(found, (logp >= true_logp[:, None]).sum(axis=1), MISS_RANK)
        return ranks.astype(np.int64), -true_logp

    @torch.no_grad()
    def beam(self, prefix: np.ndarray, horizon: int, width: int = 5) -> list[Route]:
        """The `width` most probable continuations of up to `horizon` cells, most probable first.

        A route that predicts end-of-route stops there (``ended=True``); its probability includes
        the end. Unfinished routes carry the probability of their cells so far.
        """
        self._check_fitted()
        if horizon < 1 or width < 1:
            raise InputError(f"horizon and beam width must be >= 1, got {horizon} and {width}")
        output, state, prefix = self._encode_prefix(prefix)
        lstm = self.config.cell == "lstm"
        logps = torch.zeros(1, dtype=torch.float64)
        routes: list[list[tuple[int, int]]] = [[]]
        last, before = prefix[-1:].copy(), prefix[-2:-1].copy() if len(prefix) > 1 else prefix[-1:].copy()
        finished: list[Route] = []
        for _ in range(horizon):
            cands, logp, end = self._distribution(output, last)
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
            before, last = last[keep_parent], new_cells
            ids = torch.from_numpy(self.vocab_.ids(new_cells))
            features = torch.from_numpy(step_features(new_cells, before, self.norm_))
            output, state = self.net_.step(ids, features, state)
        open_routes = [Route(r, math.exp(v), False) for r, v in zip(routes, logps.tolist())]
        return sorted(finished + open_routes, key=lambda r: -r.p)[:width]

    def rollout(self, prefix: np.ndarray, horizon: int) -> list[tuple[int, int]]:
        """Greedy continuation: the most probable cell at each step (beam of width 1)."""
        routes = self.beam(prefix, horizon, width=1)
        return routes[0].cells if routes else []

    # ---------------------------------------------------------------------------- save/load
    def save(self, directory: str | Path) -> Path:
        """Write the model directory (safetensors + config.json) atomically."""
        self._check_fitted()
        config = {
            "gridcast_version": __version__,
            "model": self.config.to_dict(),
            "train": self.train_config_.to_dict(),
            "grid": self.grid.to_dict() if self.grid is not None else None,
            "vocab": self.vocab_.to_list(),
            "normalisation": self.norm_.to_dict(),
            "output_size": self._output_size(),
        }
        tensors = dict(self.net_.state_dict())
        tensors.update(_pack_tracks(self.train_tracks_))
        return save_checkpoint(directory, tensors, config)

    @classmethod
    def load(cls, directory: str | Path) -> "Forecaster":
        """Rebuild a fitted forecaster from a model directory; clear errors for broken ones."""
        tensors, config = load_checkpoint(directory)
        try:
            model_config = ForecasterConfig.from_dict(config["model"])
            self = cls(model_config, Grid.from_dict(config["grid"]) if config.get("grid") else None)
            self.vocab_ = CellVocab(np.asarray(config["vocab"], dtype=np.int64).reshape(-1, 2))
            self.norm_ = Normalisation.from_dict(config["normalisation"])
            self.train_config_ = TrainConfig(**config.get("train", {}))
            self.net_ = ForecasterNet(model_config, len(self.vocab_), int(config["output_size"]))
            self.train_tracks_ = _unpack_tracks(tensors)
            self.net_.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(DATA_PREFIX)})
        except (KeyError, TypeError, ValueError, RuntimeError, InputError) as exc:
            raise CheckpointError(f"{directory}: config and weights do not fit together ({str(exc).splitlines()[0]})") from None
        self.net_.eval()
        return self


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


def _batched(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]
