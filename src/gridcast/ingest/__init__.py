"""Raw points (CSV, Parquet, DataFrame) -> validated, projected, resampled tracks on a grid.

`grid_tracks` is the pipeline; `write_gridded` / `read_gridded` the gridded Parquet file.
"""
from gridcast.ingest.pipeline import (ColumnMap, GriddedTracks, IngestReport, grid_tracks, load_grid, load_like,
                                      read_gridded, write_gridded)

__all__ = ["ColumnMap", "IngestReport", "GriddedTracks", "grid_tracks", "write_gridded", "read_gridded",
           "load_grid", "load_like"]
