"""lat/lon -> metres with pyproj, in a local metric CRS chosen from the data (or given).

Why UTM of the median position: a transverse Mercator zone keeps scale error under 0.1% within a
few hundred km of its meridian, so a "100 m" cell is 100 m on the ground; the median is robust to a
few stray fixes on the other side of the world. Polar data (beyond 84 N / 80 S) gets UPS instead.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyproj
from pyproj.exceptions import CRSError

from gridcast.errors import InputError

#: Below this many points a second thread costs more than it saves.
_THREAD_MIN = 200_000


def local_crs(lon: np.ndarray, lat: np.ndarray) -> str:
    """EPSG code of the UTM zone (or UPS cap) holding the median position."""
    stride = max(1, len(lon) // 100_000)  # the median of an even sample is plenty to pick a zone
    mlon = float(np.median(lon[::stride]))
    mlat = float(np.median(lat[::stride]))
    if mlat > 84:
        return "EPSG:32661"
    if mlat < -80:
        return "EPSG:32761"
    zone = min(60, max(1, int(math.floor((mlon + 180.0) / 6.0)) + 1))
    return f"EPSG:{(32600 if mlat >= 0 else 32700) + zone}"


def check_crs(crs: str) -> str:
    """Validate a user-given CRS: it must exist and be projected (cell sizes are lengths, not degrees)."""
    try:
        obj = pyproj.CRS.from_user_input(crs)
    except CRSError as exc:
        raise InputError(f"unknown CRS {crs!r}: {exc}") from None
    if not obj.is_projected:
        raise InputError(f"CRS {crs!r} is not projected (its units are degrees); give a metric CRS such as a UTM zone")
    return crs


def project(lon: np.ndarray, lat: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray]:
    """Project WGS84 lon/lat (degrees) to `crs`; two threads for big inputs (pyproj releases the GIL)."""
    lon = np.ascontiguousarray(lon, dtype=np.float64)
    lat = np.ascontiguousarray(lat, dtype=np.float64)

    def work(sl: slice) -> tuple[np.ndarray, np.ndarray]:
        # one Transformer per thread: they are not meant to be shared across threads
        tr = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        return tr.transform(lon[sl], lat[sl])

    n = len(lon)
    threads = min(2, os.cpu_count() or 1) if n >= _THREAD_MIN else 1
    if threads == 1:
        x, y = work(slice(0, n))
    else:
        cut = n // 2
        with ThreadPoolExecutor(threads) as pool:
            (x1, y1), (x2, y2) = pool.map(work, [slice(0, cut), slice(cut, n)])
        x, y = np.concatenate([x1, x2]), np.concatenate([y1, y2])
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(
            f"{int(bad.sum())} point(s) cannot be projected to {crs} (e.g. lat {lat[i]:g}, lon {lon[i]:g}): "
            "the data spans too wide an area for one local CRS; pass --crs with a CRS that covers it"
        )
    return x, y


def unproject(x: np.ndarray, y: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray]:
    """`crs` coordinates -> WGS84 (lon, lat) in degrees: the inverse of `project`, so answers on a
    grid can be given back in the coordinates the user's points came in."""
    tr = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon, lat = tr.transform(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
