"""The bundled Liverpool bus route 14: the file that ships inside the package, and its protocol.

Protocol (the one in the data's BASELINES notes, so the numbers can be compared): lat/lon -> local
UTM metres -> resample every trip at 30 s (split at gaps > 10 min) -> 100 m cells -> collapse
consecutive repeats ("which cell next"; or, in the ``fixed`` mode, one cell per 30 s step: "where
at t + k*step"). The 11 earliest trips train, the 5 latest are the test set.
See `gridcast/datasets/data/README.md` for the source and licence.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gridcast.datasets.geolife import CommuteData
    from gridcast.grid import Grid
    from gridcast.ingest.gridded import GriddedTracks
    from gridcast.ingest.report import IngestReport
    from gridcast.tracks import Track

LIVERPOOL_COLUMNS = {"track": "trip_id", "time": "timestamp", "lat": "latitude", "lon": "longitude"}
CELL_SIZE, STEP, MAX_GAP = 100.0, 30.0, 600.0
N_TRAIN = 11  # earliest trips that train; the rest test


def liverpool_route14() -> Path:
    """Path of the bundled Liverpool route-14 bus GPS file (Open Government Licence v3.0)."""
    return Path(str(resources.files("gridcast.datasets") / "data" / "liverpool_route14_outbound.csv"))


def load_liverpool() -> tuple[list[Track], list[Track], Grid, IngestReport]:
    """(train, test, grid, ingest report) of the bundled route-14 trips."""
    train, test, gridded = load_liverpool_gridded()
    return train, test, gridded.grid, gridded.report


def load_liverpool_gridded(collapse: bool = True) -> tuple[list[Track], list[Track], GriddedTracks]:
    """(train, test, gridded): the cell tracks, split by start time, and the gridded table they came from.

    `collapse`: cell changes (True, the demo's default) or one cell per 30 s step (False)."""
    from gridcast.ingest.columns import ColumnMap
    from gridcast.ingest.pipeline import grid_tracks
    from gridcast.tracks import split_by_time

    gridded = grid_tracks(liverpool_route14(), cell_size=CELL_SIZE, step=STEP, columns=ColumnMap(**LIVERPOOL_COLUMNS),
                          max_gap=MAX_GAP)
    tracks = gridded.tracks(collapse=collapse, min_len=2)
    share = N_TRAIN / len(tracks)
    train, test = split_by_time(tracks, (share, 1.0 - share))
    return train, test, gridded


def load_liverpool_commute(mode: str = "collapsed") -> CommuteData:
    """The demo's protocol as `CommuteData` (one "person": the bus route), so `gridcast bench liverpool`
    runs it through the same runner as GeoLife/UCI: seeds, intervals, paired differences."""
    from gridcast.datasets.geolife import HORIZON, CommuteData, check_mode, check_no_leakage, sequences_note

    train, test, gridded = load_liverpool_gridded(collapse=check_mode(mode))
    user_of = {t.id: "route14" for t in train + test}
    check_no_leakage(train, test, user_of, whole_days=False)
    protocol = {"cell_size": CELL_SIZE, "step": STEP, "max_gap": MAX_GAP, "utc_offset_h": 0.0,
                "split": f"by trip start: the {N_TRAIN} earliest trips train, the rest test", "mode": mode,
                "sequences": sequences_note(mode), "horizon": HORIZON}
    return CommuteData("liverpool", train, [], test, user_of, gridded.grid, gridded.report.to_json(), protocol)
