"""The gridded Parquet file (contract): the frame's columns, with the grid, the ingest report and how
the tracks were prepared in the file's metadata, so a file alone says which grid its cells are on.

`load_like` also reads a model directory's config.json (its "grid" and "preprocessing"), without
torch: new input can be placed on a model's grid by the file format's reader alone.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gridcast.errors import InputError
from gridcast.grid import MAX_CELL, Grid
from gridcast.ingest.gridded import FRAME_COLUMNS, GriddedTracks
from gridcast.ingest.report import IngestReport
from gridcast.safe_files import open_regular, parse_json, read_exactly, read_json_inside

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


MAX_FOOTER_BYTES = 64 << 20  # a Parquet footer (schema and metadata) larger than this is refused


def _check_footer(path: str) -> None:
    """Refuse what is not a regular Parquet file of a sane footer before pyarrow allocates for it."""
    fd, size = open_regular(path, 1 << 62, InputError, what="Parquet file")
    try:
        if size < 12:
            raise InputError(f"{path}: not a readable Parquet file ({size} bytes)")
        os.lseek(fd, size - 8, os.SEEK_SET)
        tail = read_exactly(fd, 8, path)
    finally:
        os.close(fd)
    length = int.from_bytes(tail[:4], "little")
    if tail[4:] != b"PAR1":
        raise InputError(f"{path}: not a readable Parquet file (no Parquet footer)")
    if length > min(MAX_FOOTER_BYTES, size - 12):
        raise InputError(f"{path}: Parquet footer of {length} bytes does not fit the file or is over the "
                         f"cap of {MAX_FOOTER_BYTES} bytes")


def _parquet_meta(path: str) -> dict:
    _check_footer(path)
    try:
        return pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    """pyarrow's messages can span lines; the error promise is one line."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _checked_cells(frame, path: str) -> None:
    """The col/row columns must be whole numbers within the grid's +-2^31 cells: a crafted file
    with valid grid metadata but cells of 2^40 or -2^62 would otherwise reach the vocabulary and the
    baselines (an absurd distance, a runaway Markov walk) instead of a one-line refusal."""
    for name in ("col", "row"):
        values = frame[name].to_numpy()
        if values.dtype.kind not in "iu":
            raise InputError(f"{path}: column {name!r} must hold integer cells, got {values.dtype}")
        beyond = (values > MAX_CELL) | (values < -MAX_CELL)  # not abs(): abs(-2**63) overflows
        if beyond.any():
            raise InputError(f"{path}: column {name!r} holds the cell {int(values[beyond][0])}, beyond "
                             f"+-{MAX_CELL} (not a file gridcast wrote)")


def _meta_json(meta: dict, key: bytes, path: str, default: object) -> object:
    """One gridcast metadata entry, parsed by the bounded reader (`gridcast.safe_files`)."""
    if key not in meta:
        return default
    return parse_json(meta[key], f"{path}: metadata {key.decode()!r}")


def _grid_of(meta: dict, path: str) -> Grid:
    description = _meta_json(meta, GRID_KEY, path, None)
    try:
        return Grid.from_dict(description)
    except InputError as exc:
        raise InputError(f"{path}: metadata {GRID_KEY.decode()!r}: {exc}") from None


def checked_preprocessing(prep: object, source: str) -> dict:
    """How tracks were prepared (``max_gap`` seconds or None, ``collapse``), each value checked:
    a model or gridded file from anyone must not carry ``"max_gap": "abc"`` into resampling."""
    if prep is None:
        return {}
    if not isinstance(prep, dict):
        raise InputError(f"{source}: preprocessing must be an object, got {type(prep).__name__}")
    gap = prep.get("max_gap")
    if gap is not None and not (isinstance(gap, (int, float)) and not isinstance(gap, bool)
                                and math.isfinite(gap) and gap > 0):
        raise InputError(f"{source}: preprocessing max_gap must be a positive number of seconds or null, got {gap!r}")
    if "collapse" in prep and not isinstance(prep["collapse"], bool):
        raise InputError(f"{source}: preprocessing collapse must be true or false, got {prep['collapse']!r}")
    return dict(prep)


def read_gridded(path: str | os.PathLike) -> GriddedTracks:
    """Load a file written by `write_gridded` (or `gridcast grid`), or a dataset directory."""
    path = os.fspath(path)
    if os.path.isdir(path):
        from gridcast.ingest.dataset import read_dataset

        return read_dataset(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    meta = _parquet_meta(path)
    if GRID_KEY not in meta:
        raise InputError(f"{path}: not a gridded file (no '{GRID_KEY.decode()}' in its metadata)")
    grid = _grid_of(meta, path)
    try:
        report = IngestReport.from_dict(_meta_json(meta, REPORT_KEY, path, {}))
        extra = _meta_json(meta, INGEST_KEY, path, {})
    except (TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{path}: damaged gridcast metadata ({exc})") from None
    if not isinstance(extra, dict):
        raise InputError(f"{path}: damaged gridcast metadata ({INGEST_KEY.decode()!r} is not an object)")
    try:
        frame = pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:  # a footer that reads, then pages that do not
        raise InputError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
    missing = [c for c in FRAME_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: gridded file lacks column(s) {missing}")
    _checked_cells(frame, path)
    frame["track"] = frame["track"].astype(str)
    return GriddedTracks(frame=frame, grid=grid, report=report, meta=extra)


def load_grid(path: str | os.PathLike) -> Grid:
    """The grid of a gridded Parquet file, or of a model directory (its config.json's "grid")."""
    return load_like(path)[0]


def load_like(path: str | os.PathLike) -> tuple[Grid, dict]:
    """The grid of a gridded file or a model directory, and how its tracks were prepared beyond
    the grid: ``{"max_gap": seconds or None, "collapse": bool}`` ({} where it was not recorded)."""
    path = os.fspath(path)
    if os.path.isdir(path) and not os.path.lexists(os.path.join(path, "config.json")):
        from gridcast.ingest.dataset import dataset_info, is_dataset

        if is_dataset(path):  # a gridded dataset directory (gridcast grid ... --out DIR/)
            grid, _, meta = dataset_info(path)
            return grid, checked_preprocessing({k: meta[k] for k in ("max_gap", "collapse") if k in meta}, path)
    if os.path.isdir(path):
        cfg = os.path.join(path, "config.json")
        if not os.path.lexists(cfg):
            raise InputError(f"{path}: not a model directory (no config.json)")
        d = read_json_inside(path, "config.json")  # the bounded reader `read_config` uses too
        if not isinstance(d, dict) or not isinstance(d.get("grid"), dict):
            raise InputError(f"{cfg}: has no \"grid\" entry")
        try:
            grid = Grid.from_dict(d["grid"])
        except InputError as exc:
            raise InputError(f"{cfg}: grid: {exc}") from None
        return grid, checked_preprocessing(d.get("preprocessing"), f"{cfg}")
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file or model directory")
    meta = _parquet_meta(path)
    if GRID_KEY not in meta:
        raise InputError(f"{path}: not a gridded file (no grid in its metadata)")
    try:
        ingest = _meta_json(meta, INGEST_KEY, path, {})
    except InputError:
        ingest = {}
    ingest = ingest if isinstance(ingest, dict) else {}
    prep = checked_preprocessing({k: ingest[k] for k in ("max_gap", "collapse") if k in ingest}, path)
    return _grid_of(meta, path), prep


def is_gridded(path: str | os.PathLike) -> bool:
    """True for a Parquet written by `write_gridded` / `gridcast grid` (its grid is in the metadata)."""
    path = Path(path)
    if path.is_dir():
        from gridcast.ingest.dataset import is_dataset

        return is_dataset(path)
    if path.suffix.lower() not in PARQUET_SUFFIXES:
        return False
    _check_footer(os.fspath(path))
    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise InputError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
    return GRID_KEY in meta
