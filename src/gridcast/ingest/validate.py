"""Raw columns -> clean numbers, one batch at a time, with a named reason for every row dropped.

Why a module of its own: readers (CSV, Parquet, DataFrame) hand over Arrow arrays of whatever type
the file had, and every later stage wants float64 seconds and coordinates. Coercion tries the fast
vectorised Arrow cast first and only falls back to slower per-value work for a batch that actually
holds bad values, so clean files pay almost nothing for the safety net.

A row gets at most one reason: the first in `ROW_REASONS` order that applies.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from gridcast.errors import InputError

# Reasons, in the order they are checked and reported. Row-level reasons get codes 1..7.
ROW_REASONS = ("missing", "not_numeric", "not_finite", "bad_time", "lat_range", "lon_range", "huge_value")
REASONS = ("malformed", *ROW_REASONS, "duplicate_time", "short_track")
MISSING, NOT_NUMERIC, NOT_FINITE, BAD_TIME, LAT_RANGE, LON_RANGE, HUGE = range(1, 8)

#: Coordinates beyond this (in input units) are "huge": they would lose all precision on a grid.
MAX_COORD = 1e12
#: Times beyond this many seconds from 0 (~31,700 years) are "huge": resampling them is meaningless.
MAX_TIME = 1e12

_NUMBER = re.compile(rb"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)", re.IGNORECASE)


def printable(text: str, limit: int = 60) -> str:
    """A value as it may appear inside a one-line message: control characters escaped, long text cut."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return out if len(out) <= limit else out[: limit - 3] + "..."


def looks_numeric(text: str) -> bool:
    return _NUMBER.fullmatch(str(text).strip().encode("utf-8", "replace")) is not None


@dataclass
class Numbers:
    """A coerced column: values (NaN where unusable) and why they are unusable."""

    values: np.ndarray
    missing: np.ndarray
    bad: np.ndarray  # present but not a number / not a time


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


def _text_values(arr: pa.Array) -> list[bytes | None]:
    """Per-value bytes of a text column (slow path only)."""
    out = arr.cast(pa.binary()) if not pa.types.is_binary(arr.type) else arr
    return out.to_pylist()


def coerce_numbers(arr: pa.Array | pa.ChunkedArray, column: str, where: str) -> Numbers:
    """float64 values of a coordinate column; strings are parsed, anything else numeric is cast.

    Raises InputError for a column whose type can never hold numbers (bool, lists, ...).
    """
    arr = _plain(arr)
    t = arr.type
    n = len(arr)
    if pa.types.is_null(t):
        return Numbers(np.full(n, np.nan), np.ones(n, bool), np.zeros(n, bool))
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        vals = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        if arr.null_count == 0:  # the common case: a zero-copy view, no masks to build
            return Numbers(vals, np.zeros(n, bool), np.zeros(n, bool))
        missing = arr.is_null().to_numpy(zero_copy_only=False)
        return Numbers(np.where(missing, np.nan, vals), missing, np.zeros(n, bool))
    if not _is_text(t):
        raise InputError(f"{where}: column '{column}' holds {t} values; expected numbers")
    missing = arr.is_null().to_numpy(zero_copy_only=False)
    try:  # fast path: every present value parses (empty strings do not: the slow path calls them missing)
        vals = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        return Numbers(vals, missing, np.zeros(n, bool))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    return _coerce_numbers_slow(arr, missing)


def _coerce_numbers_slow(arr: pa.Array, missing: np.ndarray) -> Numbers:
    """Per-value parsing for a batch that holds something other than plain numbers."""
    vals = np.full(len(arr), np.nan)
    bad = np.zeros(len(arr), bool)
    for i, v in enumerate(_text_values(arr)):
        if missing[i] or v is None:
            missing[i] = True
            continue
        s = v.strip()
        if not s:
            missing[i] = True
        elif _NUMBER.fullmatch(s):
            vals[i] = float(s)
        else:
            bad[i] = True
    return Numbers(vals, missing, bad)


def detect_time_kind(arr: pa.Array | pa.ChunkedArray) -> str:
    """'number' (seconds) or 'iso' (ISO-8601 text), decided by the type or, for text, by majority.

    Decided once, on the first batch, so that one column has one meaning: in a column of mostly ISO
    times a stray epoch number is a bad row, not a silently different clock.
    """
    arr = _plain(arr)
    t = arr.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "iso"
    if not _is_text(t):
        return "number"
    sample = [v.decode("utf-8", "replace").strip() for v in _text_values(arr.slice(0, 2000)) if v]
    if not sample:
        return "iso"
    s = pd.Series(sample, dtype=object)
    n_num = int(pd.to_numeric(s, errors="coerce").notna().sum())
    n_iso = int(pd.to_datetime(s, format="ISO8601", utc=True, errors="coerce").notna().sum())
    return "number" if n_num >= n_iso and n_num > 0 else "iso"


def coerce_time(arr: pa.Array | pa.ChunkedArray, kind: str, column: str, where: str) -> Numbers:
    """Seconds as float64: epoch seconds (UTC; naive times are taken as UTC) or plain numbers."""
    arr = _plain(arr)
    t = arr.type
    n = len(arr)
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        missing = arr.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_date(t):
            arr = pc.cast(pc.cast(arr, pa.date32()), pa.timestamp("s"))
        unit = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[arr.type.unit]
        ints = pc.cast(arr, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        secs = ints / unit
        if missing.any():
            secs[missing] = np.nan
        return Numbers(secs, missing, np.zeros(n, bool))
    if pa.types.is_duration(t):  # a duration counts its own unit (ns, us, ms, s): seconds are ticks / unit
        missing = arr.is_null().to_numpy(zero_copy_only=False)
        ticks = pc.cast(arr, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        secs = ticks / {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[t.unit]
        secs[missing] = np.nan
        return Numbers(secs, missing, np.zeros(n, bool))
    if kind == "number" or not _is_text(t):
        got = coerce_numbers(arr, column, where)
        return Numbers(got.values, got.missing, got.bad)
    missing = arr.is_null().to_numpy(zero_copy_only=False)
    try:
        text = arr if pa.types.is_string(t) else pc.cast(arr, pa.string())
        for ts_type in (pa.timestamp("us"), pa.timestamp("us", tz="UTC")):
            try:
                stamps = pc.cast(pc.cast(text, ts_type), pa.int64()).to_numpy(zero_copy_only=False)
                return Numbers(np.where(missing, np.nan, stamps / 1e6), missing, np.zeros(n, bool))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    return _coerce_iso_slow(arr, missing)


def _coerce_iso_slow(arr: pa.Array, missing: np.ndarray) -> Numbers:
    """pandas' ISO-8601 parser per batch: handles mixed offsets, single-digit hours, bad bytes."""
    raw = _text_values(arr)
    texts = [None if (m or v is None) else v.decode("utf-8", "replace").strip() for v, m in zip(raw, missing)]
    for i, s in enumerate(texts):
        if s == "":
            missing[i] = True
            texts[i] = None
    parsed = pd.to_datetime(pd.Series(texts, dtype=object), format="ISO8601", utc=True, errors="coerce")
    ok = parsed.notna().to_numpy()
    secs = np.full(len(arr), np.nan)
    if ok.any():
        good = parsed[ok].dt.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64)
        secs[ok] = good / 1e6
    bad = ~ok & ~missing
    return Numbers(secs, missing, bad)


def row_reasons(
    track_missing: np.ndarray, time: Numbers, a: Numbers, b: Numbers, geographic: bool
) -> np.ndarray:
    """int8 reason code per row (0 = usable). `a`, `b` are lat, lon or x, y.

    Written lowest precedence first so that higher-precedence reasons overwrite.
    """
    reason = np.zeros(len(time.values), np.int8)
    with np.errstate(invalid="ignore"):
        big = np.abs(time.values) > MAX_TIME
        if geographic:
            reason[np.abs(b.values) > 180] = LON_RANGE
            reason[np.abs(a.values) > 90] = LAT_RANGE
        else:
            big |= (np.abs(a.values) > MAX_COORD) | (np.abs(b.values) > MAX_COORD)
    reason[big & (reason == 0)] = HUGE
    reason[time.bad | (~time.missing & ~np.isfinite(time.values))] = BAD_TIME
    reason[(~a.missing & ~a.bad & ~np.isfinite(a.values)) | (~b.missing & ~b.bad & ~np.isfinite(b.values))] = NOT_FINITE
    reason[a.bad | b.bad] = NOT_NUMERIC
    reason[track_missing | time.missing | a.missing | b.missing] = MISSING
    return reason


def explain_row(
    i: int,
    code: int,
    names: dict[str, str],
    raw: dict[str, pa.Array],
    track_missing: np.ndarray,
    cols: dict[str, Numbers],
    time_kind: str,
) -> str:
    """One-line reason for row `i` of a batch (strict mode), naming the column and the value."""

    def shown(key: str) -> str:
        v = _plain(raw[key])[i].as_py()
        if isinstance(v, bytes):
            v = v.decode("utf-8", "backslashreplace")
        return f"'{printable(v)}'" if isinstance(v, str) else printable(str(v))

    if code == MISSING:
        for key in ("track", "time", "a", "b"):
            miss = track_missing[i] if key == "track" else cols[key].missing[i]
            if miss:
                return f"missing value in column '{names[key]}'"
    if code == NOT_NUMERIC:
        key = "a" if cols["a"].bad[i] else "b"
        return f"{names[key]} {shown(key)} is not a number"
    if code == NOT_FINITE:
        key = "a" if not np.isfinite(cols["a"].values[i]) else "b"
        return f"{names[key]} {cols[key].values[i]} is not finite"
    if code == BAD_TIME:
        expected = "an ISO-8601 time" if time_kind == "iso" else "a number of seconds"
        holds = "ISO-8601 times" if time_kind == "iso" else "numbers"
        return f"time {shown('time')} in column '{names['time']}' is not {expected} (the column holds {holds})"
    if code == LAT_RANGE:
        return f"latitude {cols['a'].values[i]:g} outside [-90, 90]"
    if code == LON_RANGE:
        return f"longitude {cols['b'].values[i]:g} outside [-180, 180]"
    if code == HUGE:
        for key, limit in (("time", MAX_TIME), ("a", MAX_COORD), ("b", MAX_COORD)):
            v = cols[key].values[i]
            if abs(v) > limit:
                return f"{names[key]} {v:g} is beyond the limit of {limit:g} in absolute value"
    return "unusable row"  # pragma: no cover - every code is explained above
