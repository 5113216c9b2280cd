"""The threaded, validated read: a source's batches -> compact validated arrays of all kept points.

Each batch is validated and reduced to four compact columns (track code, time, two coordinates:
28 bytes a point) before the next few are read, so raw text and unused columns never sit in
memory. A plain CSV is cut into byte ranges, one stream per core, each consumed in its own thread;
a single stream is validated in a small pool while the next batch is parsed (Arrow casts and numpy
release the GIL). Track ids are coded per batch from Arrow dictionaries, never per row.

`read_validated` is the entry point; it retries a source in its fallback modes (CSV: typed ->
raw -> lenient UTF-8), so a dirty file costs at most two extra reads.
"""
from __future__ import annotations

import functools
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gridcast.errors import InputError
from gridcast.ingest import sources, validate

_IN_FLIGHT = 4  # batches being validated at once: bounds memory while both cores work


class _TrackIds:
    """Track codes in order of first appearance, built from the small per-batch dictionaries."""

    def __init__(self) -> None:
        self.by_raw: dict = {}
        self.by_name: dict[str, int] = {}
        self.names: list[str] = []
        self.non_utf8: set[str] = set()

    def _name(self, v) -> str | None:
        if v is None:
            return None
        if isinstance(v, bytes):
            try:
                s = v.decode("utf-8")
            except UnicodeDecodeError:
                s = v.decode("utf-8", "backslashreplace")
                self.non_utf8.add(s)
        elif isinstance(v, float):
            s = str(int(v)) if v.is_integer() else repr(v)
        else:
            s = str(v)
        return s if s != "" else None

    def code_of(self, name: str) -> int:
        c = self.by_name.get(name)
        if c is None:
            c = self.by_name[name] = len(self.names)
            self.names.append(name)
        return c

    def codes(self, arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """int32 codes of a batch's ids; -1 where the id is missing or empty."""
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if not pa.types.is_dictionary(arr.type):
            try:
                arr = pc.dictionary_encode(arr)
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
                arr = pc.dictionary_encode(pc.cast(arr, pa.string()))
        lut = np.empty(len(arr.dictionary) + 1, np.int32)
        lut[-1] = -1
        for i, v in enumerate(arr.dictionary.to_pylist()):
            key = (type(v), v)
            c = self.by_raw.get(key)
            if c is None:
                name = self._name(v)
                c = self.by_raw[key] = -1 if name is None else self.code_of(name)
            lut[i] = c
        idx = arr.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        return lut[idx]

    def absorb(self, other: "_TrackIds") -> np.ndarray:
        """Add another reader's ids after ours; returns its code -> our code."""
        self.non_utf8 |= other.non_utf8
        return np.array([self.code_of(n) for n in other.names], np.int32)


@dataclass
class _Batch:
    n: int
    reason: np.ndarray
    code: np.ndarray
    t: np.ndarray
    a: np.ndarray
    b: np.ndarray
    explain: object = None  # callable(i) -> str, strict mode only


@dataclass
class _Chunk:
    """What one stream yielded: kept points, counts, and (strict) its first problem."""

    ids: _TrackIds
    arrays: dict[str, list[np.ndarray]]
    counts: np.ndarray
    good: int = 0  # rows parsed (not malformed)
    malformed: int = 0
    problem: tuple[int | None, str | None] | None = None  # (local parsed-row index, reason)


@dataclass
class Validated:
    """Every kept point of a source as compact arrays (file order), with the counts of dropped rows."""

    code: np.ndarray
    t: np.ndarray
    a: np.ndarray
    b: np.ndarray
    index: np.ndarray | None  # parsed-row index of each kept point (strict mode)
    counts: dict[str, int]
    read: int
    time_kind: str
    names: list[str]
    non_utf8: int = 0
    lenient: bool = False


def _check_batch(
    cols: dict[str, pa.Array], n: int, codes: np.ndarray, kind: str, geographic: bool, want: dict[str, str],
    where: str, strict: bool,
) -> _Batch:
    """Coerce and validate one batch (Arrow casts and numpy release the GIL: this runs in threads)."""
    tn = validate.coerce_time(cols["time"], kind, want["time"], where)
    an = validate.coerce_numbers(cols["a"], want["a"], where)
    bn = validate.coerce_numbers(cols["b"], want["b"], where)
    track_missing = codes < 0
    reason = validate.row_reasons(track_missing, tn, an, bn, geographic)
    explain = None
    if strict:  # the message for a bad row is only worth building when it will be raised
        names = {"track": "track", **want}
        numbers = {"time": tn, "a": an, "b": bn}
        explain = functools.partial(_explain, reason=reason, names=names, cols=cols,
                                    track_missing=track_missing, numbers=numbers, kind=kind)

    if not reason.any():
        return _Batch(n, reason, codes, tn.values, an.values, bn.values, explain)
    ok = reason == 0
    return _Batch(n, reason, codes[ok], tn.values[ok], an.values[ok], bn.values[ok], explain)


def _explain(i: int, reason, names, cols, track_missing, numbers, kind) -> str:
    return validate.explain_row(i, int(reason[i]), names, cols, track_missing, numbers, kind)


def _consume(
    stream: sources.Stream, k: int, stop: list[int], src: sources.Source, want: dict[str, str], geographic: bool,
    strict: bool, pool: ThreadPoolExecutor | None,
) -> _Chunk:
    """Validate one stream's batches, in order. With a pool, batches are validated while the next
    one is parsed; `stop` lets a stream quit once an earlier stream has found a strict-mode problem."""
    ch = _Chunk(ids=_TrackIds(), arrays={key: [] for key in ("code", "t", "a", "b", "index")},
                counts=np.zeros(len(validate.ROW_REASONS) + 1, np.int64))
    if "track" not in want:
        ch.ids.code_of("0")  # the whole source is one track, code 0
    pending: deque = deque()

    def settle(batch: _Batch) -> None:
        bad = np.flatnonzero(batch.reason)
        if strict and (len(bad) or stream.malformed):
            first = int(bad[0]) if len(bad) else None
            ch.problem = (None if first is None else ch.good + first, None if first is None else batch.explain(first))
            stop[0] = min(stop[0], k)
            return
        ch.counts += np.bincount(batch.reason, minlength=len(ch.counts))
        for key in ("code", "t", "a", "b"):
            ch.arrays[key].append(getattr(batch, key))
        if strict:
            ch.arrays["index"].append(ch.good + np.flatnonzero(batch.reason == 0))
        ch.good += batch.n

    it = iter(stream)
    try:
        for cols, n in it:
            if stop[0] < k or ch.problem:
                break
            codes = ch.ids.codes(cols["track"]) if "track" in cols else np.zeros(n, np.int32)
            args = (cols, n, codes, src.time_kind, geographic, want, src.name, strict)
            if pool is None:
                settle(_check_batch(*args))
                continue
            pending.append(pool.submit(_check_batch, *args))
            while len(pending) > _IN_FLIGHT or (pending and pending[0].done()):
                settle(pending.popleft().result())
        while pending and not ch.problem:
            settle(pending.popleft().result())
    finally:
        for fut in pending:
            fut.cancel()
        close = getattr(it, "close", None)
        if close is not None:
            close()
    ch.malformed = stream.malformed
    return ch


def _read_all(src: sources.Source, want: dict[str, str], geographic: bool, strict: bool, mode: str) -> Validated:
    """All streams of a source -> validated compact arrays (or InputError at the first strict problem)."""
    streams = src.streams(mode)
    stop = [len(streams)]
    try:
        with sources.quiet_unraisable():
            if len(streams) == 1:
                with ThreadPoolExecutor(max(1, min(2, os.cpu_count() or 1))) as pool:
                    chunks = [_consume(streams[0], 0, stop, src, want, geographic, strict, pool)]
            else:
                with ThreadPoolExecutor(len(streams)) as pool:
                    futs = [pool.submit(_consume, s, k, stop, src, want, geographic, strict, None) for k, s in enumerate(streams)]
                    chunks = [f.result() for f in futs]
    finally:
        src.close()
    ids = _TrackIds()
    out: dict[str, list[np.ndarray]] = {key: [] for key in ("code", "t", "a", "b", "index")}
    counts = np.zeros(len(validate.ROW_REASONS) + 1, np.int64)
    offset = malformed = 0
    for ch in chunks:
        if strict and (ch.problem or ch.malformed):
            local, text = ch.problem or (None, None)
            place, bad_row = src.where(None if local is None else offset + local)
            raise InputError(f"{place}: {bad_row or text or 'malformed row'}")
        lut = ids.absorb(ch.ids)
        for key in ("t", "a", "b"):
            out[key] += ch.arrays[key]
        out["code"] += [lut[c] for c in ch.arrays["code"]]
        out["index"] += [i + offset for i in ch.arrays["index"]]
        counts += ch.counts
        offset += ch.good
        malformed += ch.malformed

    def cat(key: str, dtype) -> np.ndarray:
        return np.concatenate(out[key]).astype(dtype, copy=False) if out[key] else np.zeros(0, dtype)

    named = {"malformed": malformed}
    named.update({r: int(c) for r, c in zip(validate.ROW_REASONS, counts[1:])})
    return Validated(
        code=cat("code", np.int32), t=cat("t", np.float64), a=cat("a", np.float64), b=cat("b", np.float64),
        index=cat("index", np.int64) if strict else None, counts=named, read=offset + malformed,
        time_kind=src.time_kind, names=ids.names, non_utf8=len(ids.non_utf8), lenient=mode == "lenient",
    )


def read_validated(src: sources.Source, want: dict[str, str], geographic: bool, strict: bool) -> Validated:
    """Try the source's read modes in order (CSV: typed -> raw -> lenient UTF-8)."""
    for i, mode in enumerate(src.modes):
        try:
            data = _read_all(src, want, geographic, strict, mode)
        except pa.ArrowInvalid as exc:
            if "straddl" in str(exc):  # a row longer than a block: every other mode would fail the same
                raise InputError(f"{src.name}: a row is longer than {sources.BLOCK_BYTES >> 20} MiB (no line end); "
                                 "this is not a CSV file of tracks") from None
            # typed: a value pyarrow will not parse -> re-read raw and judge row by row;
            # raw: undecodable bytes in a malformed row or a time -> re-read with lenient UTF-8
            if i == len(src.modes) - 1:
                what = "cannot parse as CSV" if isinstance(src, sources.CsvSource) else "cannot read"
                raise InputError(f"{src.name}: {what} ({str(exc).splitlines()[0]})") from None
            continue
        if data.read == 0:
            raise InputError(f"{src.name}: no data rows (only a header)" if isinstance(src, sources.CsvSource) else f"{src.name}: no rows")
        return data
    raise AssertionError("unreachable")  # pragma: no cover
