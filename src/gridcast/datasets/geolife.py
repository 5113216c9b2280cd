"""Next-cell forecasting on real commutes: GeoLife (and any per-person GPS log) beside its baselines.

Protocol (why each choice):

* **grid 250 m, step 60 s, tracks split at gaps > 10 min** (the published GeoLife baselines'): at
  60 s a walker crosses a 250 m cell in ~3 steps and a car in less than one, so cells change at a
  human pace; 250 m is about a city block, coarse enough that a commute visits the same cells on
  most days (users 001/005 visit 63/30 cells on >= 10 different days), fine enough to tell streets.
  Finer grids (100 m) make most test cells unseen; coarser ones make "next cell" trivial.
* **two modes**: ``collapsed`` (the default here): cell-change sequences, consecutive repeats
  collapsed: the question is "which cell next", not "how long does it stay"; ``fixed``: one cell
  per time step, no collapse: "where at t + k*step", where most steps are stays and the
  dwell-aware baselines (stay, Markov with dwell) are the ones to beat.
* **split per person by time, never by window**: each person's days in order, the first 70% train,
  the next 10% validation (early stopping), the last 20% test; a track belongs to the day it
  starts on (local clock). No step of a test track, nor any track after the test period starts,
  is seen in training (`check_no_leakage`). Datasets without whole days of history (UCI: short
  trips) split per person by track start instead.
* **times on the local clock**: GeoLife logs UTC; Beijing is UTC+8, so "day" and "time of day"
  are shifted by 8 h (a UTC day boundary would fall in the middle of the morning commute).
* **metrics**: Acc@1, Acc@5, MRR of every true next cell of the test tracks (unseen cells count
  as misses for every predictor); route error: from the first half of each test track, a greedy
  continuation of up to 10 cells (ADE/FDE in cells and metres). 95% intervals by bootstrap over
  test tracks; model-minus-baseline differences paired on the same steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.tracks import Track

if TYPE_CHECKING:
    from gridcast.ingest.gridded import GriddedTracks

CELL_SIZE, STEP, MAX_GAP = 250.0, 60.0, 600.0
GEOLIFE_FILE = "geolife_sample.txt.gz"
GEOLIFE_COLUMNS = {"track": "uid", "time": "datetime", "lat": "lat", "lon": "lng"}
GEOLIFE_UTC_OFFSET_H = 8.0  # GeoLife times are UTC; the people live in Beijing
DAY_FRACTIONS = (0.7, 0.1, 0.2)
HORIZON = 10  # cells (collapsed) or steps (fixed) of route continuation scored
MODES = ("collapsed", "fixed")  # consecutive repeats collapsed | one cell per time step
VAL_FRACTION = 0.15  # data without a validation period: this share of training trips stops training early


@dataclass
class CommuteData:
    """Cell-change tracks of several people, split per person by time.

    Attributes:
        train, val, test: tracks (times on the local clock, seconds).
        user_of: track id -> person.
        grid: the grid all tracks live on.
        report: the ingestion report (`IngestReport.to_json()` shape).
        protocol: how the split was made (for the benchmark output).
    """

    name: str
    train: list[Track]
    val: list[Track]
    test: list[Track]
    user_of: dict[str, str]
    grid: Grid
    report: dict
    protocol: dict = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        """Tracks and next-cell transitions per split (a protocol check)."""
        out = {}
        for name in ("train", "val", "test"):
            tracks = getattr(self, name)
            out[f"{name}_tracks"] = len(tracks)
            out[f"{name}_transitions"] = int(sum(len(t) - 1 for t in tracks))
        return out


def user_map(track_ids: list[str], originals: dict[str, str]) -> dict[str, str]:
    """Gridded track id -> person. Gap splitting renames track "T" to "T#1", "T#2"...; `originals`
    maps the raw track ids to people (for GeoLife, the raw track id *is* the person)."""
    out = {}
    for tid in track_ids:
        base = tid if tid in originals else tid.rsplit("#", 1)[0]
        if base not in originals:
            raise InputError(f"track {tid!r}: no person known for it")
        out[tid] = originals[base]
    return out


def check_mode(mode: str) -> bool:
    """True when `mode` collapses repeats; a one-line error for a mode that is not one of `MODES`."""
    if mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode == "collapsed"


def sequences_note(mode: str) -> str:
    """What one step of a track is, for the protocol record of a benchmark."""
    return "cell changes (repeats collapsed)" if check_mode(mode) else "one cell per time step (no collapse)"


def cell_tracks(source, columns: dict[str, str], cell_size: float = CELL_SIZE, step: float = STEP,
                max_gap: float = MAX_GAP, utc_offset_h: float = 0.0,
                collapse: bool = True) -> tuple[list[Track], GriddedTracks]:
    """Raw GPS (path or DataFrame) -> (cell tracks with local-clock times, gridded table).

    `collapse`: cell-change sequences (True) or one cell per resampled step (False). Only
    `gridcast.ingest.grid_tracks` and column names: the same call serves any dataset."""
    from gridcast.ingest.columns import ColumnMap
    from gridcast.ingest.pipeline import grid_tracks

    gridded = grid_tracks(source, cell_size=cell_size, step=step, columns=ColumnMap(**columns), max_gap=max_gap)
    shift = utc_offset_h * 3600.0
    tracks = [Track(t.id, t.cells, None if t.times is None else t.times + shift)
              for t in gridded.tracks(collapse=collapse, min_len=2)]
    return tracks, gridded


def split_per_user(tracks: list[Track], user_of: dict[str, str], fractions: tuple[float, ...],
                   by: str = "day") -> list[list[Track]]:
    """Split each person's tracks in time order into len(fractions) parts.

    ``by="day"``: the person's distinct local days (of track starts) are cut by `fractions`, each
    track follows its start day, so a day is never shared between parts. ``by="track"``: the
    person's trips by start time are cut instead (for data with a few trips per person); trips
    that start at the same second are one unit and stay together (UCI holds such groups, some
    of them exact duplicates, which would otherwise leak a test trip into training).
    Part sizes are rounded (a person with 1 unit puts it in the first part)."""
    if by not in ("day", "track"):
        raise InputError(f"split by 'day' or 'track', got {by!r}")
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise InputError(f"split fractions must sum to 1, got {fractions}")
    parts: list[list[Track]] = [[] for _ in fractions]
    people: dict[str, list[Track]] = {}
    for t in tracks:
        people.setdefault(user_of[t.id], []).append(t)
    bounds_of = np.cumsum((0.0,) + tuple(fractions))
    for person in sorted(people):
        own = sorted(people[person], key=lambda t: (t.times[0] if t.times is not None else 0.0, t.id))
        if by == "day":
            unit = [int(np.floor(t.times[0] / 86400.0)) for t in own]
        else:
            unit = [int(round(t.times[0])) if t.times is not None else i for i, t in enumerate(own)]
        order = sorted(set(unit))
        bounds = np.round(bounds_of * len(order)).astype(int)
        rank = {u: i for i, u in enumerate(order)}
        for t, u in zip(own, unit):
            part = int(np.searchsorted(bounds[1:], rank[u], side="right"))
            parts[min(part, len(parts) - 1)].append(t)
    return parts


def check_no_leakage(train: list[Track], test: list[Track], user_of: dict[str, str], whole_days: bool = True) -> None:
    """Raise if a test track (or an exact copy of one) is in training, or a person's training track
    reaches into that person's test period (the model would have seen the future).

    `whole_days`: training tracks must *end* before the first test track starts (day split);
    otherwise they must *start* before it (trip split of overlapping trips)."""
    shared = {t.id for t in train} & {t.id for t in test}
    if shared:
        raise AssertionError(f"tracks in both train and test: {sorted(shared)[:5]}")
    seen = {(t.cells.tobytes(), None if t.times is None else t.times.tobytes()) for t in train}
    copies = [t.id for t in test if (t.cells.tobytes(), None if t.times is None else t.times.tobytes()) in seen]
    if copies:
        raise AssertionError(f"test tracks with an exact copy in training: {copies[:5]}")
    first_test: dict[str, float] = {}
    for t in test:
        if t.times is not None:
            first_test[user_of[t.id]] = min(first_test.get(user_of[t.id], np.inf), float(t.times[0]))
    for t in train:
        limit = first_test.get(user_of[t.id])
        if limit is None or t.times is None:
            continue
        if (float(t.times[-1]) > limit) if whole_days else (float(t.times[0]) >= limit):
            raise AssertionError(f"training track {t.id} reaches into its person's test period")


def data_file(data_dir: str | Path, filename: str, what: str) -> Path:
    """The dataset file: `filename` inside `data_dir`, or `data_dir` itself when it is the file;
    a missing one is an InputError naming both (``what``: how the message calls the file)."""
    path = Path(data_dir)
    source = path / filename if path.is_dir() else path
    if not source.exists():
        raise InputError(f"{source}: no such file (expected {what} {filename} in {path})")
    return source


def load_geolife(data_dir: str | Path, cell_size: float = CELL_SIZE, step: float = STEP, max_gap: float = MAX_GAP,
                 utc_offset_h: float = GEOLIFE_UTC_OFFSET_H, fractions: tuple[float, float, float] = DAY_FRACTIONS,
                 columns: dict[str, str] | None = None, filename: str = GEOLIFE_FILE,
                 mode: str = "collapsed") -> CommuteData:
    """GeoLife users' GPS (the skmob sample of two users) -> `CommuteData` split per person by day.

    `mode`: ``"collapsed"`` (cell changes) or ``"fixed"`` (one cell per `step`, no collapse)."""
    collapse = check_mode(mode)
    source = data_file(data_dir, filename, "the GeoLife sample")
    columns = dict(columns or GEOLIFE_COLUMNS)
    tracks, gridded = cell_tracks(source, columns, cell_size, step, max_gap, utc_offset_h, collapse=collapse)
    originals = {tid.rsplit("#", 1)[0]: tid.rsplit("#", 1)[0] for tid in (t.id for t in tracks)}
    user_of = user_map([t.id for t in tracks], originals)
    train, val, test = split_per_user(tracks, user_of, fractions, by="day")
    check_no_leakage(train + val, test, user_of)
    protocol = {"cell_size": cell_size, "step": step, "max_gap": max_gap, "utc_offset_h": utc_offset_h,
                "split": f"per person by local day: {fractions}", "mode": mode, "sequences": sequences_note(mode),
                "horizon": HORIZON}
    return CommuteData("geolife", train, val, test, user_of, gridded.grid, gridded.report.to_json(), protocol)
