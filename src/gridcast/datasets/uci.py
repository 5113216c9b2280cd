"""The UCI "GPS Trajectories" (Go!Track, Aracaju) data through the same next-cell pipeline as GeoLife.

A dataset the pipeline was not tuned on: 163 short trips by 28 people. The people are in a second
file (``go_track_tracks.csv``: ``id`` -> ``id_android``), joined on ``track_id = id``; after that
it is only column names for `gridcast.ingest.grid_tracks`. Most people drove a handful of trips, so
there are no whole days to split: each person's trips in time order, the earlier 70% train, the
later 30% test (a person with a single trip only trains); the model holds 15% of the training
trips out (by track) for early stopping, and every predictor uses the same 70%.
Times are already local (UTC-3), so no offset.
"""
from __future__ import annotations

from pathlib import Path

from gridcast.datasets.geolife import (
    CELL_SIZE,
    HORIZON,
    MAX_GAP,
    STEP,
    CommuteData,
    cell_tracks,
    check_mode,
    check_no_leakage,
    sequences_note,
    split_per_user,
    user_map,
)
from gridcast.errors import InputError

POINTS_FILE, TRACKS_FILE = "go_track_trackspoints.csv", "go_track_tracks.csv"
UCI_COLUMNS = {"track": "track_id", "time": "time", "lat": "latitude", "lon": "longitude"}
TRACK_FRACTIONS = (0.7, 0.0, 0.3)


def load_uci(data_dir: str | Path, cell_size: float = CELL_SIZE, step: float = STEP, max_gap: float = MAX_GAP,
             fractions: tuple[float, float, float] = TRACK_FRACTIONS, user_col: str = "id_android",
             columns: dict[str, str] | None = None, mode: str = "collapsed") -> CommuteData:
    """The UCI GPS Trajectories folder -> `CommuteData` split per person by trip.

    `mode`: ``"collapsed"`` (cell changes) or ``"fixed"`` (one cell per `step`, no collapse)."""
    import pandas as pd  # here, not at the top: `gridcast --help` registers this benchmark without pandas

    collapse = check_mode(mode)
    columns = dict(columns or UCI_COLUMNS)
    directory = Path(data_dir)
    points, trips = directory / POINTS_FILE, directory / TRACKS_FILE
    for path in (points, trips):
        if not path.exists():
            raise InputError(f"{path}: no such file (the UCI GPS Trajectories folder holds {POINTS_FILE} and {TRACKS_FILE})")
    people = pd.read_csv(trips)
    if "id" not in people.columns or user_col not in people.columns:
        raise InputError(f"{trips}: needs columns 'id' and {user_col!r}, has {list(people.columns)}")
    frame = pd.read_csv(points)
    if columns["track"] not in frame.columns:
        raise InputError(f"{points}: no track column {columns['track']!r}; has {list(frame.columns)}")
    people = people[["id", user_col]].rename(columns={"id": columns["track"]})
    frame = frame.merge(people, on=columns["track"], how="left")
    missing = int(frame[user_col].isna().sum())
    if missing:
        raise InputError(f"{points}: {missing} points belong to trips missing from {trips}")
    tracks, gridded = cell_tracks(frame, columns, cell_size, step, max_gap, utc_offset_h=0.0, collapse=collapse)
    originals = {str(k): str(v) for k, v in zip(frame[columns["track"]], frame[user_col])}
    user_of = user_map([t.id for t in tracks], originals)
    train, val, test = split_per_user(tracks, user_of, fractions, by="track")
    check_no_leakage(train + val, test, user_of, whole_days=False)
    protocol = {"cell_size": cell_size, "step": step, "max_gap": max_gap, "utc_offset_h": 0.0,
                "split": f"per person by trip start: {fractions}", "mode": mode, "sequences": sequences_note(mode),
                "horizon": HORIZON}
    return CommuteData("uci", train, val, test, user_of, gridded.grid, gridded.report.to_json(), protocol)
