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


def read_part(path: str | os.PathLike, grid: Grid) -> GriddedTracks:
    """One part file of a dataset, checked like a gridded file and against the dataset's `grid`.
    The one reader of part files: `read_dataset` and `DatasetStream` both go through it."""
    from gridcast.ingest.gridded_file import read_gridded

    part = read_gridded(path)
    if part.grid != grid:
        raise InputError(f"{path}: its grid {part.grid.to_dict()} is not the dataset's {grid.to_dict()}")
    return part


def read_dataset(path: str | os.PathLike) -> GriddedTracks:
    """Every part of a dataset as one `GriddedTracks` (each part checked like a gridded file, and on
    the dataset's grid)."""
    grid, report, meta = dataset_info(path)
    frames = [read_part(f, grid).frame for f in part_files(path)]
    if not frames:
        raise InputError(f"{path}: a dataset without part files (part=NN/*.parquet)")
    frame = pd.concat(frames, ignore_index=True)
    return GriddedTracks(frame=frame, grid=grid, report=report, meta=meta)


class DatasetStream:
    """A dataset directory read one part at a time, as many times as a caller wants (one pass per
    epoch): the tracks of one part are all that is in memory. Why: a dataset written out of core
    need not fit in memory, and every part holds whole tracks (parts are buckets of a track-id
    hash), so a part is a unit a caller can train on by itself.

    `collapse`: drop consecutive repeats (also when the dataset was gridded with ``--collapse``);
    tracks of fewer than `min_len` cells are left out. ``preprocessing`` is what a model keeps.
    """

    def __init__(self, path: str | os.PathLike, collapse: bool = False, min_len: int = 2) -> None:
        path = os.fspath(path)
        if not is_dataset(path):
            what = "a directory without " + DATASET_FILE if os.path.isdir(path) else (
                "a file" if os.path.exists(path) else "no such file or directory")
            raise InputError(f"{path}: streaming needs a dataset directory written by `gridcast grid ... --out DIR/` "
                             f"({what}); without --stream the data is read into memory")
        self.path = path
        self.grid, self.report, self.meta = dataset_info(path)
        self.files = part_files(path)
        if not self.files:
            raise InputError(f"{path}: a dataset without part files (part=NN/*.parquet)")
        self.collapse = bool(collapse or self.meta.get("collapse"))
        self.min_len = min_len
        self.preprocessing = {"max_gap": self.meta.get("max_gap"), "collapse": self.collapse}

    def __len__(self) -> int:
        return len(self.files)

    def part(self, index: int) -> list:
        """The tracks of part `index` (in the part's first-seen order)."""
        return read_part(self.files[index], self.grid).tracks(collapse=self.collapse, min_len=self.min_len)

    def parts(self):
        """Every part's tracks in bucket order, one part at a time."""
        for index in range(len(self.files)):
            yield self.part(index)
