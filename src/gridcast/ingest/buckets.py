"""Out-of-core gridding, step 1: read every batch, validate it, and spill its kept points to one
file per track-hash bucket, so that a bucket (every point of its tracks, from every input file)
can later be gridded alone in bounded memory.

Why a hash of the track id: a track's points may be anywhere in the input (spread over files and
interleaved with others); the stable hash sends them all to one bucket whatever the read order,
and the same id always lands in the same ``part=NN`` of the dataset. Spill files are Arrow IPC
streams of four compact columns (track code, time, two coordinates: 28 bytes a point).
"""
from __future__ import annotations

import os
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from gridcast.errors import InputError
from gridcast.ingest import sources, validate
from gridcast.ingest.reader import _check_batch, _TrackIds

FLUSH_ROWS = 1 << 21  # buffered kept points (all buckets) before they are written out: ~56 MiB
_SAMPLE_EVERY = 16    # every 16th kept point is kept aside to choose the projection from ...
_SAMPLE_MAX = 1 << 21  # ... up to 2 M points (32 MiB): beyond, every other one of those is kept
_SCHEMA = pa.schema([("code", pa.int32()), ("t", pa.float64()), ("a", pa.float64()), ("b", pa.float64())])


def bucket_of(name: str, buckets: int) -> int:
    """The stable bucket of a track id (CRC-32 of its UTF-8 bytes): the same on every machine and run.

    >>> bucket_of("001/20081023025304", 16), bucket_of("001/20081023025304", 16) == bucket_of("001/20081023025304", 16)
    (4, True)
    """
    return zlib.crc32(name.encode("utf-8", "backslashreplace")) % buckets


@dataclass
class Spilled:
    """What step 1 left on disk and counted: one spill file per non-empty bucket, the track names
    (codes index them), and the rows read and dropped while validating."""

    files: dict[int, str]
    names: list[str]
    read: int
    counts: dict[str, int]
    time_kind: str
    lenient: bool
    non_utf8: int
    sample_a: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sample_b: np.ndarray = field(default_factory=lambda: np.zeros(0))


def spill(src: sources.Source, want: dict[str, str], geographic: bool, strict: bool, folder: str,
          buckets: int) -> Spilled:
    """Validate `src` batch by batch and spill kept points by bucket into `folder` (CSV: typed ->
    raw -> lenient UTF-8, as the in-memory read)."""
    for i, mode in enumerate(src.modes):
        try:
            out = _spill_mode(src, want, geographic, strict, folder, buckets, mode)
        except pa.ArrowInvalid as exc:
            _clear(folder)
            if "straddl" in str(exc):
                raise InputError(f"{src.name}: a row is longer than {sources.BLOCK_BYTES >> 20} MiB (no line end); "
                                 "this is not a CSV file of tracks") from None
            if i == len(src.modes) - 1:
                raise InputError(f"{src.name}: cannot read ({str(exc).splitlines()[0]})") from None
            continue
        finally:
            src.close()
        if out.read == 0:
            raise InputError(f"{src.name}: no rows")
        return out
    raise AssertionError("unreachable")  # pragma: no cover


def _clear(folder: str) -> None:
    for f in os.listdir(folder):
        os.remove(os.path.join(folder, f))


class _Writers:
    """Per-bucket buffers and IPC writers; a bucket's file is opened on its first point."""

    def __init__(self, folder: str):
        self.folder = folder
        self.writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        self.files: dict[int, str] = {}
        self.buf: dict[int, list[tuple[np.ndarray, ...]]] = {}
        self.rows = 0

    def add(self, bucket: np.ndarray, code: np.ndarray, t: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        order = np.argsort(bucket, kind="stable")
        bs = bucket[order]
        cuts = np.flatnonzero(np.diff(bs)) + 1
        for lo, hi in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(bs)]])):
            if hi > lo:
                sel = order[lo:hi]
                self.buf.setdefault(int(bs[lo]), []).append((code[sel], t[sel], a[sel], b[sel]))
        self.rows += len(bucket)
        if self.rows >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        for k, parts in self.buf.items():
            w = self.writers.get(k)
            if w is None:
                self.files[k] = path = os.path.join(self.folder, f"b{k}.arrow")
                w = self.writers[k] = pa.ipc.new_stream(path, _SCHEMA)
            cols = [np.concatenate([p[i] for p in parts]) for i in range(4)]
            w.write_batch(pa.record_batch(cols, schema=_SCHEMA))
        self.buf.clear()
        self.rows = 0

    def close(self) -> None:
        self.flush()
        for w in self.writers.values():
            w.close()


def _spill_mode(src: sources.Source, want: dict[str, str], geographic: bool, strict: bool, folder: str,
                buckets: int, mode: str) -> Spilled:
    ids = _TrackIds()
    if "track" not in want:
        ids.code_of("0")
    lut = np.zeros(0, np.int32)  # track code -> bucket
    counts = np.zeros(len(validate.ROW_REASONS) + 1, np.int64)
    writers = _Writers(folder)
    sample_a: list[np.ndarray] = []
    sample_b: list[np.ndarray] = []
    parsed = malformed = 0
    stride = [_SAMPLE_EVERY]

    def settle(batch, offset: int, stream) -> None:
        nonlocal lut
        if strict:
            bad = np.flatnonzero(batch.reason)
            if len(bad):
                place, _ = src.where(offset + int(bad[0]))
                raise InputError(f"{place}: {batch.explain(int(bad[0]))}")
            if stream.malformed:
                place, why = src.where(None)
                raise InputError(f"{place}: {why or 'malformed row'}")
        counts[:] += np.bincount(batch.reason, minlength=len(counts))
        if len(ids.names) > len(lut):
            new = np.array([bucket_of(n, buckets) for n in ids.names[len(lut):]], np.int32)
            lut = np.concatenate([lut, new])
        if len(batch.code):
            writers.add(lut[batch.code], batch.code, batch.t, batch.a, batch.b)
            if geographic:
                sample_a.append(batch.a[:: stride[0]].copy())
                sample_b.append(batch.b[:: stride[0]].copy())
                if sum(len(x) for x in sample_a) > _SAMPLE_MAX:  # bounded: halve the sample, double the stride
                    sample_a[:] = [np.concatenate(sample_a)[::2]]
                    sample_b[:] = [np.concatenate(sample_b)[::2]]
                    stride[0] *= 2

    try:
        with sources.quiet_unraisable(), ThreadPoolExecutor(max(1, min(2, os.cpu_count() or 1))) as pool:
            for stream in src.streams(mode):
                pending: deque = deque()
                for cols, n in stream:
                    codes = ids.codes(cols["track"]) if "track" in cols else np.zeros(n, np.int32)
                    args = (cols, n, codes, src.time_kind, geographic, want, src.name, strict)
                    pending.append((pool.submit(_check_batch, *args), parsed))
                    parsed += n
                    while len(pending) > 4 or (pending and pending[0][0].done()):
                        fut, off = pending.popleft()
                        settle(fut.result(), off, stream)
                while pending:
                    fut, off = pending.popleft()
                    settle(fut.result(), off, stream)
                malformed += stream.malformed
    finally:
        writers.close()
    named = {"malformed": int(malformed)}
    named.update({r: int(c) for r, c in zip(validate.ROW_REASONS, counts[1:])})
    def cat(xs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(xs) if xs else np.zeros(0)

    return Spilled(files=dict(writers.files), names=ids.names, read=parsed + malformed, counts=named,
                   time_kind=src.time_kind, lenient=mode == "lenient", non_utf8=len(ids.non_utf8),
                   sample_a=cat(sample_a), sample_b=cat(sample_b))


def read_bucket(path: str) -> pa.Table:
    """A spill file back as one table (code, t, a, b)."""
    with pa.ipc.open_stream(path) as r:
        return r.read_all()
