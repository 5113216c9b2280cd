"""The gridded *dataset*: a directory of gridded Parquet files, hive-partitioned by track-hash bucket
(``part=NN/part-0.parquet``), each carrying the grid in its metadata like a single gridded file,
plus ``_gridcast.json`` (the grid, the report over the whole dataset, how tracks were prepared).

Why a directory: an out-of-core run writes one bucket at a time and never holds the whole result.
``_gridcast.json`` is written last, so a directory without it is an unfinished run, not a dataset.
`read_gridded`, `is_gridded` and `load_like` accept a dataset wherever they accept a gridded file.
"""
from __future__ import annotations

import glob
import os

import pandas as pd

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.ingest.gridded import GriddedTracks
from gridcast.ingest.report import IngestReport
from gridcast.safe_files import read_json_inside

DATASET_FILE = "_gridcast.json"


def is_dataset(path: str | os.PathLike) -> bool:
    """Whether `path` is a directory written by `gridcast grid ... --out DIR/`."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, DATASET_FILE))


def part_files(path: str | os.PathLike) -> list[str]:
    """The dataset's Parquet files, in bucket order."""
    return sorted(glob.glob(os.path.join(os.fspath(path), "part=*", "*.parquet")))


def dataset_info(path: str | os.PathLike) -> tuple[Grid, IngestReport, dict]:
    """(grid, report over the whole dataset, ingest metadata) from ``_gridcast.json``."""
    d = read_json_inside(path, DATASET_FILE)
    where = os.path.join(os.fspath(path), DATASET_FILE)
    if not isinstance(d, dict) or not isinstance(d.get("grid"), dict):
        raise InputError(f"{where}: has no \"grid\" entry")
    try:
        grid = Grid.from_dict(d["grid"])
        report = IngestReport.from_dict(d.get("report") or {})
    except (InputError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{where}: damaged gridcast metadata ({exc})") from None
    meta = d.get("ingest") if isinstance(d.get("ingest"), dict) else {}
    return grid, report, meta


def read_dataset(path: str | os.PathLike) -> GriddedTracks:
    """Every part of a dataset as one `GriddedTracks` (each part checked like a gridded file, and on
    the dataset's grid)."""
    from gridcast.ingest.gridded_file import read_gridded

    grid, report, meta = dataset_info(path)
    frames = []
    for f in part_files(path):
        part = read_gridded(f)
        if part.grid != grid:
            raise InputError(f"{f}: its grid {part.grid.to_dict()} is not the dataset's {grid.to_dict()}")
        frames.append(part.frame)
    if not frames:
        raise InputError(f"{path}: a dataset without part files (part=NN/*.parquet)")
    frame = pd.concat(frames, ignore_index=True)
    return GriddedTracks(frame=frame, grid=grid, report=report, meta=meta)
