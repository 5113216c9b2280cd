"""Predictions as a GeoJSON FeatureCollection (RFC 7946) that any map tool opens.

Per prefix: the observed prefix as a LineString (a Point when it is one cell), each route as a
LineString from the prefix's last cell through the route's cells (so it draws as a continuation;
a route that ends at once is a Point there), the point forecast (where it will be, step by step)
as a LineString the same way, and each next-cell candidate as a Point. Every feature's
properties say what it is (``"kind"``: prefix, route, point, next), its cells and, where
known, ``"p"``, ``"rank"``, ``"ended"``, ``"times"`` and ``"track"``.

GeoJSON positions are WGS84 longitude, latitude (RFC 7946 section 4), so only a grid with a CRS
can be written: a planar grid (pixels, metres in no known CRS) is refused with a clear error rather
than written as numbers a map would place off the coast of Africa.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.jsonsafe import json_safe
from gridcast.nextcell.answers import Place


def check_geojson_grid(grid: Grid | None, model_name: str = "the model") -> None:
    """Raise `InputError` unless `grid` can be written as lon/lat."""
    if grid is None:
        raise InputError(f"--geojson needs a grid: {model_name} was fitted on bare cells (from Python), so its "
                         f"cells have no place on a map; use --json")
    if grid.crs is None:
        raise InputError(f"--geojson writes lon/lat (RFC 7946), but {model_name}'s grid is planar (no CRS); "
                         f"use --json, whose coords are the grid's x, y")


def prediction_features(prefix: np.ndarray, nexts, routes, place: Place, *, track: str | None = None,
                        prefix_times: Sequence[float] | None = None, point: Sequence | None = None) -> list[dict]:
    """The features of one prediction: prefix, routes (most probable first), next cells and, given
    `point` (the point forecast's cells), the point forecast as a LineString from the prefix's
    last cell (``"kind": "point"``, with its ``cells`` and ``times`` where known)."""
    check_geojson_grid(place.grid)
    prefix = np.asarray(prefix, dtype=np.int64).reshape(-1, 2)
    common = {} if track is None else {"track": track}
    path = place.coords(prefix)
    observed = {"kind": "prefix", **common, "cells": prefix.tolist()}
    if prefix_times is not None:
        observed["times"] = place.times_of(prefix_times)
    features = [_feature(_line_or_point(path), observed)]
    last_time = None if prefix_times is None or not len(prefix_times) else float(prefix_times[-1])
    for rank, route in enumerate(routes, 1):
        props = {"kind": "route", **common, "rank": rank, "p": route.p, "ended": route.ended,
                 "cells": [list(c) for c in route.cells]}
        if last_time is not None and place.has_times:
            props["times"] = place.times_after(last_time, len(route.cells))
        features.append(_feature(_line_or_point(path[-1:] + place.coords(route.cells)), props))
    if point is not None:
        cells = np.asarray(point, dtype=np.int64).reshape(-1, 2)
        props = {"kind": "point", **common, "cells": cells.tolist()}
        if last_time is not None and place.has_times:
            props["times"] = place.times_after(last_time, len(cells))
        features.append(_feature(_line_or_point(path[-1:] + place.coords(cells)), props))
    for rank, (candidate, centre) in enumerate(zip(nexts, place.coords([n.cell for n in nexts])), 1):
        props = {"kind": "next", **common, "rank": rank, "p": candidate.p, "cell": list(candidate.cell)}
        features.append(_feature({"type": "Point", "coordinates": centre}, props))
    return features


def feature_collection(features: list[dict]) -> dict:
    return {"type": "FeatureCollection", "features": features}


def check_geojson_target(path: str | os.PathLike, protect: Sequence[str | os.PathLike] = ()) -> Path:
    """The resolved path `write_geojson` would write, or `InputError` if it must not: one of the
    `protect` paths or inside a protected directory (the input data, the model), a directory, or
    in a folder that does not exist. Callers check before the work, so a bad path costs nothing."""
    target = Path(path)
    resolved = target.resolve()
    for guarded in protect:
        guarded = Path(guarded).resolve()
        if resolved == guarded or guarded in resolved.parents:
            raise InputError(f"--geojson {target}: refusing to overwrite {'inside ' if resolved != guarded else ''}"
                             f"{guarded} (an input); choose another file")
    if target.is_dir():
        raise InputError(f"--geojson {target}: is a directory")
    if not resolved.parent.is_dir():
        raise InputError(f"--geojson {target}: folder {target.parent} does not exist")
    return resolved


def write_geojson(path: str | os.PathLike, collection: dict, protect: Sequence[str | os.PathLike] = ()) -> Path:
    """Write `collection` to `path` atomically (a temporary file beside it, then a rename), so a
    reader never sees half a file; `check_geojson_target` first."""
    target = Path(path)
    resolved = check_geojson_target(target, protect)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=resolved.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(json_safe(collection), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, resolved)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _line_or_point(coords: list[list[float]]) -> dict:
    """A LineString needs two or more positions (RFC 7946 3.1.4); one position is a Point."""
    if len(coords) == 1:
        return {"type": "Point", "coordinates": coords[0]}
    return {"type": "LineString", "coordinates": coords}


def _feature(geometry: dict, properties: dict) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": properties}

