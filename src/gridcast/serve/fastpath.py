"""The common live-track request, answered without FastAPI's per-point machinery.

A 1,000-point ``POST /v1/models/{name}/tracks/{id}/points`` spent most of its time building and
validating one pydantic model per point, and a one-point request most of its time in routing,
dependency injection and response encoding. This module parses such a body once (`json.loads`,
exactly what FastAPI parses it with), accepts only the plain shapes pydantic would accept unchanged
(``{"cell": [int, int]}``, ``{"lat", "lon"}`` or ``{"x", "y"}`` of finite numbers in range, an
optional numeric ``time``), checks the numbers over whole NumPy arrays, and answers with the same
bytes the route would. Anything else (a string time, a float cell, a bool, an unknown field, a
wrong token, an unknown model, an out-of-range value, a body the grid refuses) returns None and
goes through the full route, so every error keeps its exact 422/401/404 answer naming the field.
"""
from __future__ import annotations

import json
import math

import numpy as np

from gridcast.errors import GridcastError
from gridcast.serve.auth import token_ok
from gridcast.serve.limits import MAX_CELL, MAX_POINTS, MAX_TOP_K
from gridcast.serve.points import raw_arrays, raw_cells

#: The route template the fast path answers for (its label in /metrics).
ROUTE = "/v1/models/{name}/tracks/{track_id}/points"
#: `PathParam(max_length=200)` of the route: longer names go through it for their 422.
MAX_NAME = 200
_CELL_KEYS = ({"cell"}, {"cell", "time"})
_POSITION_KEYS = {frozenset({"lat", "lon"}): "latlon", frozenset({"lat", "lon", "time"}): "latlon",
                  frozenset({"x", "y"}): "xy", frozenset({"x", "y", "time"}): "xy"}
_NUMBER = (int, float)


def route_of(scope) -> tuple[str, str] | None:
    """(model name, track id) when `scope` is a POST to the track-points route, else None."""
    if scope.get("method") != "POST" or scope.get("root_path"):
        return None
    parts = scope.get("path", "").split("/")
    if len(parts) != 7 or parts[:3] != ["", "v1", "models"] or parts[4] != "tracks" or parts[6] != "points":
        return None
    name, track = parts[3], parts[5]
    if not name or not track or len(name) > MAX_NAME or len(track) > MAX_NAME:
        return None
    return name, track


def json_content(headers: dict) -> bool:
    """Whether FastAPI would read the body as JSON the plain way (no content type, or application/json)."""
    kind = headers.get(b"content-type")
    if kind is None:
        return True
    return kind.split(b";")[0].strip().lower() == b"application/json"


def _time(point: dict) -> float | None | bool:
    """The point's time as the schema turns it out (seconds), None without one, False: not plain."""
    t = point.get("time")
    if t is None:
        return None
    if type(t) not in _NUMBER or not math.isfinite(t):
        return False
    return float(t)


def parse(body: bytes, grid) -> tuple[np.ndarray, list[float | None], int] | None:
    """A plain track-points body -> (cells (n, 2), times, top_k), or None for the full route."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if type(doc) is not dict or "points" not in doc or not set(doc) <= {"points", "top_k"}:
        return None
    top_k = doc.get("top_k", 5)
    points = doc["points"]
    if type(top_k) is not int or not 1 <= top_k <= MAX_TOP_K:
        return None
    if type(points) is not list or not 1 <= len(points) <= MAX_POINTS or type(points[0]) is not dict:
        return None
    times = []
    if "cell" in points[0]:
        cells = []
        for p in points:
            if type(p) is not dict or set(p) not in _CELL_KEYS:
                return None
            cell, t = p["cell"], _time(p)
            if type(cell) is not list or len(cell) != 2 or t is False:
                return None
            cells.append(cell)
            times.append(t)
        if {type(v) for cell in cells for v in cell} != {int}:
            return None
        try:
            array = np.asarray(cells, dtype=np.int64)
        except OverflowError:
            return None
        if np.abs(array).max() > MAX_CELL:
            return None
        return array, times, top_k
    kind = _POSITION_KEYS.get(frozenset(points[0]))
    if kind is None:
        return None
    a, b = ("lat", "lon") if kind == "latlon" else ("x", "y")
    first, second = [], []
    for p in points:
        if type(p) is not dict or _POSITION_KEYS.get(frozenset(p)) != kind:
            return None
        t = _time(p)
        if t is False:
            return None
        first.append(p[a])
        second.append(p[b])
        times.append(t)
    if not {type(v) for v in first} | {type(v) for v in second} <= set(_NUMBER):
        return None
    x, y = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return None
    if kind == "latlon" and (np.abs(x).max() > 90 or np.abs(y).max() > 180):
        return None
    try:
        cells, times = raw_cells(raw_arrays(kind, x, y, times, grid), grid)
    except GridcastError:  # a FieldError, or the grid refusing: the full route names it
        return None
    return cells, times, top_k


def answer(models: dict, sessions: dict, token: str | None, name: str, track: str, headers: dict,
           body: bytes) -> bytes | None:
    """The route's JSON answer for a plain request (its live track updated), or None: not plain."""
    served = models.get(name)
    if served is None:
        return None
    if token is not None:
        authorization = headers.get(b"authorization")
        if authorization is None or not token_ok(token, authorization.decode("latin-1")):
            return None
    parsed = parse(body, served.model.grid)
    if parsed is None:
        return None
    cells, times, top_k = parsed
    seen, nexts = sessions[name].update(track, cells, times, top_k)
    doc = {"track": track, "points_seen": seen, "next": served.next_json(nexts)}
    # the bytes JSONResponse would send
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()
