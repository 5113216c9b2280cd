"""Animal GPS: Movebank fishers (*Martes pennanti*, New York) through the same next-cell pipeline.

Protocol (why each choice):

* **grid 100 m, step 600 s, tracks split at gaps > 1 h**: the collars fix every ~10 min; a fisher
  moves a few hundred metres between fixes when it moves at all, so 100 m cells see both the rests
  and the runs; longer gaps (a failed fix series) start a new track.
* **fixed step by default** (``mode="fixed"``, one cell per 600 s, no collapse): an animal rests
  for hours, so "where at t + k*step" is the question, and "stay" is a strong baseline;
  ``mode="collapsed"`` asks "which cell next" instead.
* **rows without a location are dropped and counted** (the ingest report's ``missing``): Movebank
  logs failed fixes as rows with empty ``location-lat`` / ``location-long``.
* **split per animal by time**: the animal's time span (its first to its last fix), the first 60%
  trains, the next 10% validates (early stopping), the last 30% tests, so the first 70% is what
  every predictor has seen. A track that straddles a cut is cut there (its points before the cut
  on one side, after it on the other), so nothing of a test period is trained on
  (`check_no_leakage`). Times stay UTC (no time-of-day inputs are used by default).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gridcast.datasets.geolife import (
    HORIZON,
    CommuteData,
    cell_tracks,
    check_mode,
    check_no_leakage,
    data_file,
    sequences_note,
)
from gridcast.errors import InputError
from gridcast.tracks import Track

FISHERS_FILE = "fishers.csv.gz"
FISHERS_COLUMNS = {"track": "individual-local-identifier", "time": "timestamp", "lat": "location-lat",
                   "lon": "location-long"}
CELL_SIZE, STEP, MAX_GAP = 100.0, 600.0, 3600.0
SPAN_FRACTIONS = (0.6, 0.1, 0.3)  # train, validation, test shares of each animal's time span


def animal_of(track_id: str) -> str:
    """Track id -> animal: gap splitting renames track "F1" to "F1#1", "F1#2"..., and the time split
    marks a cut track's pieces "F1#2@0", "F1#2@2".

    >>> animal_of("F1#2@0"), animal_of("F1#2"), animal_of("M5"), animal_of("M5@1")
    ('F1', 'F1', 'M5', 'M5')
    """
    return re.sub(r"(#\d+)?(@\d+)?$", "", track_id)


def split_per_animal_span(tracks: list[Track], fractions: tuple[float, ...] = SPAN_FRACTIONS,
                          owner=animal_of) -> list[list[Track]]:
    """Cut each animal's time span by `fractions` into consecutive periods; every track goes to the
    period(s) its points fall in, cut where it straddles a boundary (pieces of one point dropped).

    A piece keeps its track id with ``@k`` (k = the period) appended when the track was cut.

    >>> t = Track("F1#1", np.array([[0, 0], [0, 1], [1, 1], [2, 1]]), np.array([0.0, 1.0, 2.0, 3.0]))
    >>> [[(p.id, len(p)) for p in part] for part in split_per_animal_span([t], (0.5, 0.5))]
    [[('F1#1@0', 2)], [('F1#1@1', 2)]]
    """
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise InputError(f"split fractions must sum to 1, got {fractions}")
    if any(t.times is None for t in tracks):
        raise InputError("a time split needs timed tracks")
    span: dict[str, tuple[float, float]] = {}
    for t in tracks:
        lo, hi = span.get(owner(t.id), (np.inf, -np.inf))
        span[owner(t.id)] = (min(lo, float(t.times[0])), max(hi, float(t.times[-1])))
    shares = np.cumsum((0.0,) + tuple(fractions))
    parts: list[list[Track]] = [[] for _ in fractions]
    for t in sorted(tracks, key=lambda t: (owner(t.id), float(t.times[0]), t.id)):
        lo, hi = span[owner(t.id)]
        cuts = lo + shares * (hi - lo)
        # period of each point: points exactly at a cut go to the earlier period
        period = np.clip(np.searchsorted(cuts[1:-1], t.times, side="left"), 0, len(fractions) - 1)
        pieces = [(k, period == k) for k in np.unique(period)]
        for k, mask in pieces:
            if mask.sum() < 2:
                continue
            name = t.id if len(pieces) == 1 else f"{t.id}@{int(k)}"
            parts[int(k)].append(Track(name, t.cells[mask], t.times[mask]))
    return parts


def load_fishers(data_dir: str | Path, cell_size: float = CELL_SIZE, step: float = STEP, max_gap: float = MAX_GAP,
                 fractions: tuple[float, float, float] = SPAN_FRACTIONS, columns: dict[str, str] | None = None,
                 filename: str = FISHERS_FILE, mode: str = "fixed") -> CommuteData:
    """The Movebank fishers CSV (a folder holding `filename`, or the file) -> `CommuteData` split
    per animal by time span (see the module docstring)."""
    collapse = check_mode(mode)
    source = data_file(data_dir, filename, "the Movebank fishers file")
    columns = dict(columns or FISHERS_COLUMNS)
    tracks, gridded = cell_tracks(source, columns, cell_size, step, max_gap, utc_offset_h=0.0, collapse=collapse)
    train, val, test = split_per_animal_span(tracks, fractions)
    user_of = {t.id: animal_of(t.id) for t in train + val + test}
    check_no_leakage(train + val, test, user_of)
    check_no_leakage(train, val, user_of)
    protocol = {"cell_size": cell_size, "step": step, "max_gap": max_gap, "utc_offset_h": 0.0,
                "split": f"per animal by time span: {fractions}", "mode": mode, "sequences": sequences_note(mode),
                "horizon": HORIZON}
    return CommuteData("fishers", train, val, test, user_of, gridded.grid, gridded.report.to_json(), protocol)
