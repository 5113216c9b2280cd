"""Raw tracks -> gridded sequences: read, validate, project, resample, grid; fast and safe.

The public API (other modules call exactly this):

    >>> from gridcast.ingest import ColumnMap, grid_tracks, write_gridded, read_gridded
    >>> gt = grid_tracks("trips.csv", cell_size=100, step=30,
    ...                  columns=ColumnMap(track="trip_id", time="timestamp", lat="latitude", lon="longitude"))
    >>> gt.report.to_json()  # {"read", "kept", "dropped": {reason: rows}, "tracks", "seconds", "points_per_s"}
    >>> write_gridded(gt, "trips.parquet")

Every row read is either kept or counted under one reason in `report.dropped` (reasons are listed in
`gridcast.validate.REASONS`), so `read == kept + sum(dropped.values())` always holds. `strict=True`
instead raises `InputError` at the first bad row, naming the file, the row (and line) and the reason.

The readers (CSV, gzip, byte ranges, Parquet, DataFrame) live in `gridcast.sources`; this module
validates, projects, resamples and grids what they yield.

What is streamed and what is not (honestly): CSV and Parquet are read in record batches (about 1 MiB
of text each; a plain CSV is cut into one byte range per core, each streamed by its own reader in
its own thread) and every batch is validated and reduced to four compact columns (track code, time,
two coordinates: 28 bytes a point) before the next few are read, so raw text and unused columns
never sit in memory. The compact columns of *all* points are then held at once, because a track's
points may be spread over the whole file and must be sorted by time before resampling: a 100 M-point
file needs ~3 GB, not the file's size. A fully out-of-core path (external sort) is not implemented.

Speed: a CSV is first parsed with typed columns (pyarrow parses the numbers and times); if any value
will not parse, the read restarts with raw columns judged batch by batch (and, for undecodable
bytes, once more with lenient UTF-8), so a dirty file costs at most two extra reads. Only the raw
points that resampled points are interpolated from are projected.
"""
from __future__ import annotations

import functools
import json
import os
import time as _time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gridcast.ingest import projection, resample, sources, validate
from gridcast.errors import InputError
from gridcast.grid import Grid

GRID_KEY = b"gridcast.grid"
REPORT_KEY = b"gridcast.report"
INGEST_KEY = b"gridcast.ingest"
FRAME_COLUMNS = ("track", "step", "time", "col", "row", "x", "y")

_IN_FLIGHT = 4  # batches being validated at once: bounds memory while both cores work


# ----------------------------------------------------------------------------- public data types


@dataclass
class ColumnMap:
    """Which input columns hold what. Give lat/lon (degrees) or x/y (planar units); track may be None."""

    track: str | None = "track"
    time: str = "time"
    lat: str | None = None
    lon: str | None = None
    x: str | None = None
    y: str | None = None

    @property
    def geographic(self) -> bool:
        return self.lat is not None or self.lon is not None

    def check(self) -> None:
        geo = (self.lat, self.lon)
        plane = (self.x, self.y)
        if all(geo) and not any(plane):
            return
        if all(plane) and not any(geo):
            return
        raise InputError("give both lat and lon columns, or both x and y columns (not a mix)")

    def names(self) -> dict[str, str]:
        """Role -> column name; roles 'a', 'b' are (lat, lon) or (x, y)."""
        a, b = (self.lat, self.lon) if self.geographic else (self.x, self.y)
        out = {"time": self.time, "a": a, "b": b}
        if self.track is not None:
            out["track"] = self.track
        return out


@dataclass
class IngestReport:
    """What happened to the rows: read = kept + sum(dropped); messages say what else was done."""

    read: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    tracks: int = 0
    seconds: float = 0.0
    points_per_s: float = 0.0
    messages: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The `--json` shape (contract): exactly read, kept, dropped, tracks, seconds, points_per_s."""
        return {
            "read": int(self.read),
            "kept": int(self.kept),
            "dropped": {k: int(v) for k, v in self.dropped.items()},
            "tracks": int(self.tracks),
            "seconds": float(self.seconds),
            "points_per_s": float(self.points_per_s),
        }

    def to_dict(self) -> dict:
        return {**self.to_json(), "messages": list(self.messages)}

    @classmethod
    def from_dict(cls, d: dict) -> "IngestReport":
        return cls(
            read=int(d.get("read", 0)),
            kept=int(d.get("kept", 0)),
            dropped={str(k): int(v) for k, v in (d.get("dropped") or {}).items()},
            tracks=int(d.get("tracks", 0)),
            seconds=float(d.get("seconds", 0.0)),
            points_per_s=float(d.get("points_per_s", 0.0)),
            messages=[str(m) for m in d.get("messages") or []],
        )

    def timed(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.points_per_s = float(self.read / seconds) if seconds > 0 else 0.0


@dataclass
class GriddedTracks:
    """Gridded, resampled tracks. `frame` columns: track, step, time, col, row, x, y (contract)."""

    frame: pd.DataFrame
    grid: Grid
    report: IngestReport
    meta: dict = field(default_factory=dict)

    def _runs(self, columns: tuple[str, str], dtype) -> list[tuple[str, np.ndarray]]:
        f = self.frame
        if len(f) == 0:
            return []
        codes, uniques = pd.factorize(f["track"], sort=False)
        order = np.lexsort((f["step"].to_numpy(), codes))
        codes = codes[order]
        vals = np.column_stack([f[c].to_numpy()[order] for c in columns]).astype(dtype)
        cut = np.flatnonzero(codes[1:] != codes[:-1]) + 1
        starts = np.concatenate([[0], cut])
        return [(str(uniques[codes[s]]), v) for s, v in zip(starts, np.split(vals, cut))]

    def sequences(self) -> list[tuple[str, np.ndarray]]:
        """[(track id, (n, 2) int64 array of (col, row))] in track order."""
        return self._runs(("col", "row"), np.int64)

    def positions(self) -> list[tuple[str, np.ndarray]]:
        """[(track id, (n, 2) float64 array of (x, y))] in track order."""
        return self._runs(("x", "y"), np.float64)


# ----------------------------------------------------------------------------- track ids


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


# ----------------------------------------------------------------------------- reading + validation


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
class _Validated:
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


def _read_all(src: sources.Source, want: dict[str, str], geographic: bool, strict: bool, mode: str) -> _Validated:
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
    return _Validated(
        code=cat("code", np.int32), t=cat("t", np.float64), a=cat("a", np.float64), b=cat("b", np.float64),
        index=cat("index", np.int64) if strict else None, counts=named, read=offset + malformed,
        time_kind=src.time_kind, names=ids.names, non_utf8=len(ids.non_utf8), lenient=mode == "lenient",
    )


# ----------------------------------------------------------------------------- the pipeline


def _check_args(cell_size, step, max_gap, min_points, like) -> None:
    def positive(name: str, v) -> None:
        if v is not None and not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
            raise InputError(f"{name} must be a positive number, got {v!r}")

    if like is None and cell_size is None:
        raise InputError("give a cell size (or a grid to reuse with like=/--like)")
    positive("cell size", cell_size)
    positive("step", step)
    positive("max gap", max_gap)
    if not (isinstance(min_points, (int, np.integer)) and min_points >= 1):
        raise InputError(f"min_points must be an integer >= 1, got {min_points!r}")


def _resolve_grid_spec(like: Grid | None, cell_size, step, crs, geographic: bool):
    """(cell_size, crs) to use; a reused grid must agree with every explicit setting."""
    if crs is not None:
        crs = projection.check_crs(crs)
    if like is None:
        return float(cell_size), crs
    if cell_size is not None and not np.isclose(float(cell_size), like.cell_size, rtol=1e-12, atol=0):
        raise InputError(f"cell size {cell_size} differs from the reused grid's {like.cell_size}")
    if step != like.step:
        raise InputError(f"step {step} differs from the reused grid's step {like.step}; pass step={like.step}")
    if crs is not None and crs != like.crs:
        raise InputError(f"CRS {crs} differs from the reused grid's CRS {like.crs}")
    if geographic and like.crs is None:
        raise InputError("the reused grid is planar (it has no CRS), so lat/lon input cannot be placed on it")
    return like.cell_size, like.crs


def grid_tracks(
    source: str | os.PathLike | pd.DataFrame,
    *,
    cell_size: float | None,
    step: float | None,
    columns: ColumnMap,
    max_gap: float | None = None,
    like: Grid | None = None,
    crs: str | None = None,
    strict: bool = False,
    collapse: bool = False,
    min_points: int = 2,
    sep: str | None = None,
    progress: bool = False,
) -> GriddedTracks:
    """Read raw points and return tracks resampled at `step` seconds on a square grid.

    Args:
        source: CSV (optionally gzip), Parquet path, or a DataFrame.
        cell_size: cell side in metres (lat/lon) or input units (x/y); optional with `like`.
        step: resampling step in seconds; None keeps the points as they are.
        columns: the column mapping (lat/lon or x/y).
        max_gap: split a track where consecutive points are more than this many seconds apart;
            parts are named "<id>#1", "<id>#2", ...
        like: reuse this grid exactly (origin, cell size, CRS, step).
        crs: projected CRS for lat/lon input (default: the UTM zone of the median position), or
            the CRS planar x/y are in.
        strict: raise InputError at the first bad row instead of dropping it.
        collapse: keep only the first point of each run of equal cells in a track.
        min_points: drop track parts with fewer output points than this (reason "short_track").
        sep: CSV delimiter (default: sniffed from the header among , TAB ; |).
        progress: show a progress bar while reading a big file.

    Raises:
        InputError: unusable arguments or files, no usable tracks, or (strict) the first bad row.
    """
    t0 = _time.perf_counter()
    columns.check()
    _check_args(cell_size, step, max_gap, min_points, like)
    geographic = columns.geographic
    cell_size, crs = _resolve_grid_spec(like, cell_size, step, crs, geographic)
    want = columns.names()
    src = sources.open_source(source, want, sep, progress)
    data = _read_with_fallbacks(src, want, geographic, strict)
    report = IngestReport(read=data.read)
    dropped = dict(data.counts)
    if len(data.t) == 0:
        _nothing_left(src.name, report, dropped)
    msgs = report.messages
    msgs += _reading_notes(data, want["time"])

    # order, duplicates, gaps, resampling
    ordered = resample.order_points(data.code, data.t)
    dropped["duplicate_time"] = len(ordered.duplicates)
    if strict and len(ordered.duplicates):
        k = int(ordered.duplicates.min())  # the first duplicate in file order
        place, _ = src.where(int(data.index[k]))
        track = validate.printable(data.names[data.code[k]])
        raise InputError(f"{place}: duplicate time {data.t[k]:.10g} in track '{track}' (an earlier row has the same time)")
    if len(ordered.unsorted_tracks):
        first = validate.printable(data.names[int(ordered.unsorted_tracks[0])])
        msgs.append(f"sorted {len(ordered.unsorted_tracks)} track(s) whose times were out of order (e.g. '{first}')")
    o = ordered.order
    code, t = (data.code, data.t) if o is None else (data.code[o], data.t[o])
    parts = resample.split_parts(code, t, max_gap)
    msgs += _gap_notes(parts, code, t, step, max_gap)
    rs = resample.resample(t, parts, step, len(t))

    # positions, grid, cells
    x, y, crs = _positions(data, o, rs, geographic, crs, msgs)
    grid = _make_grid(like, geographic, x, y, cell_size, crs, step)
    col, row = grid.to_cells(x, y)
    part, tout = rs.part, rs.time
    if collapse:
        keep = resample.collapse_repeats(part, col, row)
        part, tout, x, y, col, row = part[keep], tout[keep], x[keep], y[keep], col[keep], row[keep]

    # short parts
    out_count = np.bincount(part, minlength=len(parts.start))
    good = out_count >= min_points
    dropped["short_track"] = int((parts.stop - parts.start)[~good].sum())
    if strict and not good.all():
        p = int(np.argmax(~good))
        name = validate.printable(_part_names(data.names, parts, np.array([p]))[0].as_py())
        raise InputError(
            f"{src.name} track '{name}': {int(out_count[p])} point(s) after cleaning"
            f"{' and resampling' if step else ''}, fewer than min_points={min_points}"
        )
    keep = good[part]
    if not keep.all():
        part, tout, x, y, col, row = part[keep], tout[keep], x[keep], y[keep], col[keep], row[keep]
    report.dropped = {r: int(dropped[r]) for r in validate.REASONS if dropped.get(r)}
    report.kept = report.read - sum(report.dropped.values())
    report.tracks = int(good.sum())
    if report.kept <= 0 or len(part) == 0:
        _nothing_left(src.name, report, dropped)

    frame = _frame(data.names, parts, good, part, tout, col, row, x, y)
    report.timed(_time.perf_counter() - t0)
    meta = {
        "source": src.name, "columns": want, "time_kind": data.time_kind, "max_gap": max_gap,
        "collapse": bool(collapse), "min_points": int(min_points),
    }
    return GriddedTracks(frame=frame, grid=grid, report=report, meta=meta)


def _read_with_fallbacks(src: sources.Source, want: dict[str, str], geographic: bool, strict: bool) -> _Validated:
    """Try the source's read modes in order (CSV: typed -> raw -> lenient UTF-8)."""
    for i, mode in enumerate(src.modes):
        try:
            data = _read_all(src, want, geographic, strict, mode)
        except pa.ArrowInvalid as exc:
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


def _reading_notes(data: _Validated, time_col: str) -> list[str]:
    notes = [
        f"time column '{time_col}' read as ISO-8601 (seconds since 1970-01-01 UTC; times without an offset taken as UTC)"
        if data.time_kind == "iso" else f"time column '{time_col}' read as numbers of seconds"
    ]
    if data.lenient:
        notes.append("the file is not valid UTF-8 throughout; undecodable bytes were read as \\xNN escapes")
    if data.non_utf8:
        notes.append(f"{data.non_utf8} track id(s) were not valid UTF-8; their bytes are kept as \\xNN escapes")
    return notes


def _gap_notes(parts: resample.Parts, code: np.ndarray, t: np.ndarray, step: float | None, max_gap: float | None) -> list[str]:
    notes = []
    per_track = parts.count[parts.ordinal == 1]
    if (per_track > 1).any():
        split = per_track[per_track > 1]
        notes.append(f"split {len(split)} track(s) at gaps > {max_gap:g} s into {int(split.sum())} parts")
    if step is not None and max_gap is None and len(t) > 1:
        inner = np.diff(t)[code[1:] == code[:-1]]
        if len(inner) and inner.max() > 100 * step:
            notes.append(f"interpolated across gaps of up to {inner.max():.4g} s; pass max_gap (--max-gap) to split tracks there")
    return notes


def _positions(
    data: _Validated, o: np.ndarray | None, rs: resample.Resampled, geographic: bool, crs: str | None, msgs: list[str],
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Output x, y: projects only the raw points that resampled points are interpolated from."""
    need = np.zeros(len(data.t), bool)
    need[rs.left] = True
    need[rs.right] = True
    pts = np.flatnonzero(need)
    sel = pts if o is None else o[pts]
    a, b = data.a[sel], data.b[sel]
    if geographic:
        if crs is None:
            crs = projection.local_crs(b, a)
            msgs.append(f"projected lat/lon to {crs} (the UTM zone of the median position)")
        px, py = projection.project(b, a, crs)
    else:
        px, py = a, b
    li, ri, w = np.searchsorted(pts, rs.left), np.searchsorted(pts, rs.right), rs.weight
    return px[li] + w * (px[ri] - px[li]), py[li] + w * (py[ri] - py[li]), crs


def _make_grid(like: Grid | None, geographic: bool, x: np.ndarray, y: np.ndarray, cell_size: float,
               crs: str | None, step: float | None) -> Grid:
    step = None if step is None else float(step)
    if like is not None:
        grid = like
    elif geographic:
        grid = Grid.covering(x, y, cell_size, crs=crs, step=step)
    else:  # planar: origin (0, 0), so integer coordinates at cell size 1 keep their numbers
        grid = Grid(cell_size=float(cell_size), crs=crs, step=step)
    if len(x):
        reach = max(np.abs(x - grid.origin_x).max(), np.abs(y - grid.origin_y).max()) / grid.cell_size
        if reach > 2.0**52:
            raise InputError(f"coordinates reach {reach:.3g} cells from the grid origin; use a larger cell size")
    return grid


def _frame(names: list[str], parts: resample.Parts, good: np.ndarray, part: np.ndarray, tout: np.ndarray,
           col: np.ndarray, row: np.ndarray, x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """The contract frame: track, step, time, col, row, x, y (track ids built in Arrow, not per row)."""
    used = np.flatnonzero(good)
    renum = np.full(len(good), -1, np.int64)
    renum[used] = np.arange(len(used))
    track = pc.take(_part_names(names, parts, used), pa.array(renum[part]))
    table = pa.table({
        "track": track, "step": resample.steps_within(part), "time": tout,
        "col": col, "row": row, "x": x, "y": y,
    })
    return table.to_pandas()


def _nothing_left(name: str, report: IngestReport, dropped: dict[str, int]) -> None:
    shown = ", ".join(f"{k} {v}" for k, v in dropped.items() if v)
    raise InputError(f"{name}: no usable tracks left after cleaning (read {report.read} rows; dropped: {shown})")


def _part_names(names: list[str], parts: resample.Parts, which: np.ndarray) -> pa.Array:
    """Track ids of the given parts: the raw id, or '<id>#k' when the track was split."""
    base = pc.take(pa.array(names, pa.string()), pa.array(parts.track[which].astype(np.int64)))
    split = parts.count[which] > 1
    if not split.any():
        return base
    suffix = pc.binary_join_element_wise(base, pc.cast(pa.array(parts.ordinal[which]), pa.string()), "#")
    return pc.if_else(pa.array(split), suffix, base)


# ----------------------------------------------------------------------------- files


def write_gridded(gt: GriddedTracks, path: str | os.PathLike) -> None:
    """Parquet with the grid (and the report) in the file metadata; written atomically."""
    missing = [c for c in FRAME_COLUMNS if c not in gt.frame.columns]
    if missing:
        raise InputError(f"gridded frame lacks column(s) {missing}")
    table = pa.Table.from_pandas(gt.frame[list(FRAME_COLUMNS)], preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[GRID_KEY] = gt.grid.to_json().encode()
    meta[REPORT_KEY] = json.dumps(gt.report.to_dict()).encode()
    meta[INGEST_KEY] = json.dumps(gt.meta, default=str).encode()
    table = table.replace_schema_metadata(meta)
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _parquet_meta(path: str) -> dict:
    try:
        return pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None


def read_gridded(path: str | os.PathLike) -> GriddedTracks:
    """Load a file written by `write_gridded` (or `gridcast grid`)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    meta = _parquet_meta(path)
    if GRID_KEY not in meta:
        raise InputError(f"{path}: not a gridded file (no '{GRID_KEY.decode()}' in its metadata)")
    grid = Grid.from_json(meta[GRID_KEY].decode())
    try:
        report = IngestReport.from_dict(json.loads(meta.get(REPORT_KEY, b"{}")))
        extra = json.loads(meta.get(INGEST_KEY, b"{}"))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: damaged gridcast metadata ({exc})") from None
    frame = pq.read_table(path).to_pandas()
    missing = [c for c in FRAME_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: gridded file lacks column(s) {missing}")
    frame["track"] = frame["track"].astype(str)
    return GriddedTracks(frame=frame, grid=grid, report=report, meta=extra)


def load_grid(path: str | os.PathLike) -> Grid:
    """The grid of a gridded Parquet file, or of a model directory (its config.json's "grid")."""
    return load_like(path)[0]


def load_like(path: str | os.PathLike) -> tuple[Grid, dict]:
    """The grid of a gridded file or a model directory, and how its tracks were prepared beyond
    the grid: ``{"max_gap": seconds or None, "collapse": bool}`` ({} where it was not recorded)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        cfg = os.path.join(path, "config.json")
        try:
            with open(cfg, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise InputError(f"{path}: not a model directory (no config.json)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{cfg}: not valid JSON ({exc})") from None
        if not isinstance(d, dict) or not isinstance(d.get("grid"), dict):
            raise InputError(f"{cfg}: has no \"grid\" entry")
        prep = d.get("preprocessing") if isinstance(d.get("preprocessing"), dict) else {}
        return Grid.from_dict(d["grid"]), prep
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file or model directory")
    meta = _parquet_meta(path)
    if GRID_KEY not in meta:
        raise InputError(f"{path}: not a gridded file (no grid in its metadata)")
    try:
        ingest = json.loads(meta.get(INGEST_KEY, b"{}"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        ingest = {}
    prep = {k: ingest[k] for k in ("max_gap", "collapse") if k in ingest}
    return Grid.from_json(meta[GRID_KEY].decode()), prep


__all__ = [
    "ColumnMap", "IngestReport", "GriddedTracks", "grid_tracks", "read_gridded", "write_gridded", "load_grid",
    "load_like",
]
