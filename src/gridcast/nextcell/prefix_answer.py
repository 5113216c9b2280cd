"""One prefix -> the contract answer of ``gridcast predict --json``: one home for the CLI and the
HTTP service, so both say exactly the same thing about the same prefix.

A prefix is given as cells (``--track``) or as raw positions (``--points``: lat/lon or x/y, with
optional times), which are gridded on the model's grid and prepared like its training tracks.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gridcast.errors import InputError
from gridcast.ingest.points import RawPoints, points_track, positions
from gridcast.ingest.prepare import resolve_like
from gridcast.nextcell.answers import Place, answer_json
from gridcast.nextcell.coverage import Coverage
from gridcast.nextcell.sampling import POINT_TOP_P, point_forecasts, sample_routes
from gridcast.tracks import Track

__all__ = ["PrefixAnswer", "answer_place", "cells_prefix", "points_and_samples", "points_prefix", "predict_prefix",
           "prefix_answer"]


def answer_place(model, collapsed: bool) -> Place | None:
    """Where answers are written (None: a model fitted on bare cells keeps the cells-only output)."""
    return None if model.grid is None else Place(model.grid, timed=not collapsed)


def cells_prefix(model, cells: np.ndarray) -> tuple[Track, str | None]:
    """A prefix of cells -> (its track, a coverage warning or None)."""
    track = Track("track", np.asarray(cells, dtype=np.int64).reshape(-1, 2))
    coverage = Coverage.of_model(model)
    return track, coverage.warning(track.cells) if coverage is not None else None


def points_prefix(model, points: RawPoints, collapse: bool = False, name: str = "the model",
                  log: Callable[[str], None] | None = None, label: str = "the points prefix"
                  ) -> tuple[Track, str | None]:
    """Raw points -> (one track on the model's grid, prepared like its training tracks; a coverage
    warning or None). `collapse` forces dropping repeats (the model's own setting is followed anyway)."""
    if model.grid is None:
        raise InputError(f"points need a grid: {name} was fitted on bare cells (from Python); give cells")
    like = resolve_like(model, name)
    # without times there are no gaps to split at: only the collapse is followed
    collapse, max_gap = like.follow(collapse, None, gap_given=points.times is None, log=log)
    track = points_track(points, model.grid, max_gap=max_gap, collapse=collapse, log=log)
    coverage = Coverage.of_model(model)
    warning = None
    if coverage is not None:
        warning = coverage.warning(coverage.in_cells(*positions(points, model.grid)), label)
    return track, warning


def points_and_samples(model, prefixes: list, horizon: int, samples: int = 0,
                       times: list | None = None) -> tuple[list, list]:
    """The point forecast of every prefix, and its `samples` sampled routes as ``(cells, ended)``
    pairs (None per prefix without samples; a sample that draws the end of route stops there)."""
    points = point_forecasts(model, prefixes, horizon, times=times)
    if not samples:
        return points, [None] * len(prefixes)
    drawn = sample_routes(model, prefixes, horizon, n=samples, seed=0, times=times, top_p=POINT_TOP_P)
    return points, [[(s.route(i), bool(s.ended[i] >= 0)) for i in range(samples)] for s in drawn]


class PrefixAnswer:
    """One prefix and what the model said after it: next cells, routes, the point forecast and
    (with samples) sampled routes; `json` writes the contract shape."""

    def __init__(self, track: Track, nexts, p_end: float, routes, point=None, samples=None) -> None:
        self.track, self.nexts, self.p_end, self.routes = track, nexts, p_end, routes
        self.point, self.samples = point, samples

    def last_time(self) -> float | None:
        """The prefix's last time (seconds), which dates the steps ahead; None without times."""
        times = self.track.times
        return None if times is None or not len(times) else float(times[-1])

    def json(self, place: Place | None) -> dict:
        return answer_json(self.nexts, self.p_end, self.routes, place, self.last_time(), point=self.point,
                           samples=self.samples)


def predict_prefix(model, track: Track, horizon: int = 10, top_k: int = 5, samples: int = 0) -> PrefixAnswer:
    """Next cells (top_k), beam routes (width top_k, `horizon` cells), the point forecast and
    `samples` sampled routes after one prefix track."""
    if horizon < 1 or top_k < 1:
        raise InputError(f"horizon and top_k must be >= 1, got {horizon} and {top_k}")
    if samples < 0:
        raise InputError(f"samples must be >= 0, got {samples}")
    times = track.times if model.config.time_features else None
    nexts, p_end = model.predict_next_with_end(track.cells, top_k, times=times)
    routes = model.beam(track.cells, horizon, width=top_k, times=times)
    point, drawn = points_and_samples(model, [track.cells], horizon, samples, None if times is None else [times])
    return PrefixAnswer(track, nexts, p_end, routes, point[0], drawn[0])


def prefix_answer(model, track: Track, horizon: int = 10, top_k: int = 5, samples: int = 0,
                  collapsed: bool = False) -> dict:
    """The ``predict --json`` object (docs/contracts.md) for one prefix track.

    `collapsed`: the prefix's repeats were dropped, so route cells carry no times.
    """
    return predict_prefix(model, track, horizon, top_k, samples).json(answer_place(model, collapsed))
