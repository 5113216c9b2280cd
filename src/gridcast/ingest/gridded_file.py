"""The gridded Parquet file (contract): the frame's columns, with the grid, the ingest report and how
the tracks were prepared in the file's metadata, so a file alone says which grid its cells are on.

`load_like` also reads a model directory's config.json (its "grid" and "preprocessing"), without
torch: new input can be placed on a model's grid by the file format's reader alone.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.ingest.gridded import FRAME_COLUMNS, GriddedTracks
from gridcast.ingest.report import IngestReport

GRID_KEY = b"gridcast.grid"
REPORT_KEY = b"gridcast.report"
INGEST_KEY = b"gridcast.ingest"
PARQUET_SUFFIXES = (".parquet", ".pq")


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


def is_gridded(path: str | os.PathLike) -> bool:
    """True for a Parquet written by `write_gridded` / `gridcast grid` (its grid is in the metadata)."""
    path = Path(path)
    if path.suffix.lower() not in PARQUET_SUFFIXES:
        return False
    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    return GRID_KEY in meta
