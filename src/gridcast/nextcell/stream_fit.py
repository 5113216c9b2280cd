"""Training streamed from a gridded dataset directory: one part's tracks and chunks at a time.

Why: the in-memory `Forecaster.fit` encodes every track into network inputs up front (position,
time and dwell features, and for the fusion head the window and Markov prior candidates of every
step: hundreds of bytes per step) and keeps them all for the whole run. Here each epoch reads the
parts in a seeded random order and encodes one part at a time; within a part the batches are the
in-memory path's (length-bucketed for the fusion head, shuffled by the same generator), and under
DDP every rank reads the same part and takes its share of every global batch, as in memory.

What still sees the whole data is built in one pass before training and kept small: the cells of
every track as one compact int64 array (16 bytes a step; the model directory stores exactly these
cells, its baselines and prior are rebuilt from them), from which the vocabulary, the normalisation,
the Markov prior, the "auto" settings and the `--resume` fingerprint come, by the in-memory path's
own functions. Times and encoded chunks are never held for more than one part.

The validation split is a stable hash of each track id (`is_validation`), not the in-memory
path's seeded permutation: it needs no list of all tracks, is the same on every rank and on every
read of a part, and does not move when parts are added. Validation batches are streamed too
(`PartBatches`), so their memory is one part's as well.
"""
from __future__ import annotations

import itertools
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from gridcast.errors import InputError
from gridcast.ingest.dataset import DatasetStream
from gridcast.nextcell.forecaster import Forecaster, _batched, resolve_auto, training_config
from gridcast.nextcell.training import TrainConfig
from gridcast.tracks import Track

__all__ = ["PartBatches", "Split", "fit_stream", "is_validation", "track_hash"]

VAL_BATCH = 64  # tracks per validation batch, as in memory


def track_hash(track_id: str, seed: int) -> int:
    """CRC-32 of ``"seed:id"``: a stable number per track (any part order, any rank, any run)."""
    return zlib.crc32(f"{seed}:{track_id}".encode())


def is_validation(track_id: str, val_fraction: float, seed: int) -> bool:
    """Whether the track `track_id` is held out for validation: its `track_hash` below
    `val_fraction` of the hash's range. Deterministic per track, and the seed still picks another split.

    >>> is_validation("a", 0.0, 0), is_validation("a", 0.999999, 0)
    (False, True)
    """
    return track_hash(track_id, seed) < val_fraction * 2 ** 32


@dataclass(frozen=True)
class Split:
    """The validation split of a streamed fit: `is_validation`, plus at most one track held out
    because the hash drew none (a small dataset), as the in-memory split keeps one on each side."""

    val_fraction: float
    seed: int
    forced: frozenset = frozenset()

    def held(self, track: Track) -> bool:
        return str(track.id) in self.forced or is_validation(str(track.id), self.val_fraction, self.seed)


class PartBatches:
    """Batches of one side of the split, encoded one part at a time on every iteration.

    What the fit loop, calibration and `_evaluate` need of a list of validation batches: truthiness,
    iteration and ``[rank::size]`` slices (under DDP each rank scores every size-th batch)."""

    def __init__(self, model: Forecaster, stream: DatasetStream, split: Split, max_len: int, any_tracks: bool) -> None:
        self.model, self.stream, self.split = model, stream, split
        self.max_len, self.any_tracks = max_len, any_tracks

    def __bool__(self) -> bool:
        return self.any_tracks

    def tracks(self):
        """The validation tracks, part by part."""
        for index in range(len(self.stream)):
            yield from [t for t in self.stream.part(index) if self.split.held(t)]

    def __iter__(self):
        for index in range(len(self.stream)):  # by index: no part stays bound while the next is read
            chosen = [t for t in self.stream.part(index) if self.split.held(t)]
            encoded = self.model._chunks(chosen, self.max_len) if chosen else []
            del chosen
            for chunk in _batched(encoded, VAL_BATCH):
                yield self.model._batch(chunk)
            del encoded

    def __getitem__(self, which: slice):
        if not isinstance(which, slice):
            raise TypeError("PartBatches are streamed: only slices are supported")
        return itertools.islice(iter(self), which.start, which.stop, which.step)


def _compact(tracks: list[Track]) -> tuple[np.ndarray, list[str], list[int]]:
    cells = np.concatenate([np.asarray(t.cells, dtype=np.int64).reshape(-1, 2) for t in tracks]) if tracks \
        else np.zeros((0, 2), dtype=np.int64)
    return cells, [str(t.id) for t in tracks], [len(t) for t in tracks]


def _views(pieces: list[tuple[np.ndarray, list[str], list[int]]]) -> list[Track]:
    """Tracks as views of one compact array of all their cells (ids kept, times not)."""
    cells = np.concatenate([p[0] for p in pieces]) if pieces else np.zeros((0, 2), dtype=np.int64)
    ids = [i for p in pieces for i in p[1]]
    offsets = np.cumsum([0] + [n for p in pieces for n in p[2]])
    return [Track(i, cells[a:b]) for i, a, b in zip(ids, offsets[:-1], offsets[1:])]


def _survey(stream: DatasetStream, split: Split) -> tuple[list[Track], list[Track], Split]:
    """One pass over the parts: the training and validation tracks as compact views, and the split
    (with one track forced into validation when the hash drew none of two or more)."""
    train, val = [], []
    for index in range(len(stream)):
        part = stream.part(index)
        held = [split.held(t) for t in part]
        train.append(_compact([t for t, h in zip(part, held) if not h]))
        val.append(_compact([t for t, h in zip(part, held) if h]))
        del part
    train_views, val_views = _views(train), _views(val)
    if not val_views and len(train_views) >= 2 and split.val_fraction > 0:
        lowest = min(range(len(train_views)), key=lambda i: (track_hash(train_views[i].id, split.seed), i))
        split = Split(split.val_fraction, split.seed, frozenset({train_views[lowest].id}))
        val_views = [train_views.pop(lowest)]
    return train_views, val_views, split


def fit_stream(model: Forecaster, dataset: str | os.PathLike | DatasetStream, *, val_fraction: float = 0.15,
               train: TrainConfig | None = None, log_path: str | Path | None = None,
               out_dir: str | Path | None = None, progress: bool = False, resume: bool = False,
               skip_nonfinite: bool = False, calibrate: bool = True, preprocessing: dict | None = None,
               before_training: Callable[[list[Track]], None] | None = None, **train_settings) -> Forecaster:
    """`Forecaster.fit` with the training data streamed from a dataset directory (see the module).
    `before_training`: called with every track (compact cells, no times) after the survey pass and
    before anything is allocated for training (`gridcast fit` checks `--memory-limit` there)."""
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"validation fraction must be in [0, 1), got {val_fraction}")
    stream = dataset if isinstance(dataset, DatasetStream) else DatasetStream(dataset)
    train_config = training_config(train, train_settings)
    if model.grid is None:
        model.grid = stream.grid
    tracks, val_tracks, split = _survey(stream, Split(val_fraction, train_config.seed))
    if not tracks:
        raise InputError(f"{stream.path}: no training track of at least 2 cells"
                         + (f" ({len(val_tracks)} all drawn for validation: lower --val-fraction)" if val_tracks else ""))
    if before_training is not None:
        before_training(tracks + val_tracks)
    model.preprocessing = dict(preprocessing if preprocessing is not None else stream.preprocessing)
    model.config = resolve_auto(model.config, tracks + val_tracks)
    model._start_fit(tracks, train_config)
    max_len = train_config.max_len
    val_batches = PartBatches(model, stream, split, max_len, bool(val_tracks))

    def batches(rng: np.random.Generator):
        """One epoch: the parts in a random order, each part's training chunks as the in-memory
        path batches them (same generator, so every rank and a resumed run draw the same)."""
        for index in rng.permutation(len(stream)):
            chosen = [t for t in stream.part(int(index)) if not split.held(t)]
            encoded = model._chunks(chosen, max_len, training=True) if chosen else []
            del chosen
            if encoded:
                yield from model._shuffled_batches(encoded, train_config.batch_size, bucket=model.fusion)(rng)
            del encoded  # before the next part is read: one part's chunks at a time

    model._run_loop(batches, val_batches, tracks, val_tracks, train_config, log_path=log_path, out_dir=out_dir,
                    progress=progress, resume=resume, skip_nonfinite=skip_nonfinite, description=" (streamed)",
                    extra_settings={"stream": {"parts": len(stream), "split": "crc32(seed:id)",
                                               "forced": sorted(split.forced)}})
    residual = val_batches.tracks() if val_tracks else (t for i in range(len(stream)) for t in stream.part(i))
    model._finish_fit(val_batches, residual, tracks, val_tracks, calibrate, out_dir)
    return model
