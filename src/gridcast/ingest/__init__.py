"""Raw points (CSV, Parquet, DataFrame) -> validated, projected, resampled tracks on a grid.

`grid_tracks` is the pipeline (`pipeline`, reading in `reader` and `sources`); `write_gridded` /
`read_gridded` the gridded Parquet file (`gridded_file`); `GriddedTracks.tracks()` the way to model
input; `grid_to_dataset` grids out of core into a dataset directory (`out_of_core`), which
`read_gridded` reads like a file; `prepare` grids and prepares new input like a model's training tracks (`prepare`).
"""
from gridcast.ingest.columns import ColumnMap
from gridcast.ingest.dataset import DatasetStream, is_dataset, read_dataset
from gridcast.ingest.gridded import FRAME_COLUMNS, GriddedTracks
from gridcast.ingest.gridded_file import (
                                          GRID_KEY,
                                          INGEST_KEY,
                                          REPORT_KEY,
                                          is_gridded,
                                          load_grid,
                                          load_like,
                                          read_gridded,
                                          write_gridded,
)
from gridcast.ingest.out_of_core import DatasetResult, grid_to_dataset
from gridcast.ingest.pipeline import grid_tracks
from gridcast.ingest.points import RawPoints, parse_points, points_track
from gridcast.ingest.prepare import Like, Prepared, prepare, resolve_like
from gridcast.ingest.report import IngestReport

__all__ = [
    "ColumnMap", "IngestReport", "GriddedTracks", "FRAME_COLUMNS", "grid_tracks",
    "GRID_KEY", "REPORT_KEY", "INGEST_KEY", "write_gridded", "read_gridded", "load_grid", "load_like", "is_gridded",
    "prepare", "Prepared", "Like", "resolve_like",
    "RawPoints", "parse_points", "points_track",
    "grid_to_dataset", "DatasetResult", "read_dataset", "is_dataset", "DatasetStream",
]
