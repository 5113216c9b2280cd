"""GPX files (tracks, segments, points) read with gpxpy, as a source of points.

Every ``<trkpt>`` is one row: its lat, lon and time go through the same validation as a CSV row
(a point without a time is counted as missing, never guessed). Routes and waypoints are plans, not
recordings, and are not read. The track id is the file name and the track's number in the file
(``ride.gpx`` -> ``ride/1``), with ``.2``, ``.3`` ... for the segments of a track that has several.

Why the checks before parsing: GPX is XML, and XML can declare entities (the "billion laughs"
expansion, external files). A GPX file needs no DOCTYPE, so one that declares any is refused
unparsed; the file is parsed whole, so its size is capped.
"""
from __future__ import annotations

import calendar
import datetime as dt
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from gridcast.errors import InputError
from gridcast.ingest.plt import check_geographic
from gridcast.ingest.sources import Source, Stream

#: A GPX file is parsed whole into Python objects (~1 KB a point): bigger files are refused with the fix.
MAX_GPX_BYTES = 128 << 20


def _seconds(t: dt.datetime | None) -> float:
    if t is None:
        return float("nan")
    if t.tzinfo is None:  # a GPX time without an offset is UTC by the standard
        return calendar.timegm(t.timetuple()) + t.microsecond / 1e6
    return t.timestamp()


def read_gpx_points(path: str | os.PathLike) -> tuple[list[str], list[np.ndarray]]:
    """(track ids, per id an (n, 3) array of lat, lon, seconds) of every track point in a GPX file."""
    name = os.fspath(path)
    size = os.path.getsize(name)
    if size > MAX_GPX_BYTES:
        raise InputError(f"{name}: a GPX file of {size >> 20} MiB is over the {MAX_GPX_BYTES >> 20} MiB gridcast "
                         "parses whole; split it, or convert it to CSV")
    with open(name, "rb") as f:
        data = f.read()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise InputError(f"{name}: the GPX file declares a DOCTYPE or entities; gridcast does not expand XML "
                         "entities (a GPX file needs none)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start}); a GPX file is UTF-8 XML") from None
    import gpxpy
    import gpxpy.gpx

    try:
        doc = gpxpy.parse(text)
    except (gpxpy.gpx.GPXException, ValueError) as exc:
        raise InputError(f"{name}: not a readable GPX file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    stem = Path(name).stem
    ids, rows = [], []
    for k, trk in enumerate(doc.tracks, 1):
        several = len(trk.segments) > 1
        for j, seg in enumerate(trk.segments, 1):
            pts = np.array([(_f(p.latitude), _f(p.longitude), _seconds(p.time)) for p in seg.points], np.float64)
            ids.append(f"{stem}/{k}.{j}" if several else f"{stem}/{k}")
            rows.append(pts.reshape(-1, 3))
    return ids, rows


def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


class GpxSource(Source):
    """One GPX file: parsed when opened (it is read whole anyway), yielded as one batch per segment."""

    time_kind = "iso"
    modes = ("raw",)

    def __init__(self, path: str | os.PathLike, want: dict[str, str], geographic: bool = True, allow_empty: bool = False):
        self.name = str(path)
        self.want = want
        check_geographic(self.name, want, geographic)
        self.ids, self.rows = read_gpx_points(path)
        if not allow_empty and sum(len(r) for r in self.rows) == 0:
            raise InputError(f"{self.name}: no track points (<trkpt>) in this GPX file; routes and waypoints are not tracks")

    def streams(self, mode: str) -> list[Stream]:
        def batches():
            for track, pts in zip(self.ids, self.rows):
                n = len(pts)
                if n == 0:
                    continue
                cols = {"time": pa.array(pts[:, 2], from_pandas=True), "a": pa.array(pts[:, 0], from_pandas=True),
                        "b": pa.array(pts[:, 1], from_pandas=True)}
                if "track" in self.want:
                    cols["track"] = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                                                   pa.array([track.encode()], pa.binary()))
                yield cols, n

        return [Stream(batches())]
