"""New input prepared like a model's training tracks: on its grid, split and collapsed as they were.

Cell ids mean something only on the grid a model learned them on, and a model that learned cell
*changes* from tracks split at 10-minute gaps must be shown the same kind of tracks. `prepare` does
what ``gridcast predict/evaluate MODEL DATA`` do to DATA, for Python callers too:

    >>> from gridcast.ingest import prepare
    >>> ready = prepare("new_trips.csv", like="model_dir", log=print)  # doctest: +SKIP
    >>> ready.tracks, ready.grid, ready.preprocessing  # doctest: +SKIP

`like` is whatever knows a grid and how tracks were prepared on it: a model directory or a gridded
Parquet path, an object with ``.grid`` and ``.preprocessing`` (a fitted `Forecaster`), a
`GriddedTracks`, a `Grid`, or a ``(grid, preprocessing)`` pair as `load_like` returns it. This
module reads a model directory's config.json itself, so ingest does not depend on the models.

Nothing changes silently: each choice taken from `like` and each drop is one note, handed to
`log` as it happens (the CLI prints them on stderr as ``note: ...``) and kept in `Prepared.notes`.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.ingest.columns import ColumnMap
from gridcast.ingest.gridded import GriddedTracks
from gridcast.ingest.gridded_file import is_gridded, load_like, read_gridded
from gridcast.ingest.pipeline import grid_tracks
from gridcast.ingest.report import IngestReport
from gridcast.tracks import Track

Log = Callable[[str], None]


@dataclass(frozen=True)
class Like:
    """A grid to place new input on (None: the input brings its own) and how the tracks on it were
    prepared beyond the grid (``{"max_gap": seconds or None, "collapse": bool}``; {} if unknown)."""

    grid: Grid | None
    preprocessing: dict
    name: str  # what the notes call it ("as NAME was")

    def follow(self, collapse: bool, max_gap: float | None, gap_given: bool,
               log: Log | None = None) -> tuple[bool, float | None]:
        """Collapse and max gap for new input prepared like this: what the caller gave wins (a
        `max_gap` counts as given when `gap_given`), and each choice taken from here is one note."""
        say = log or _silent
        if not gap_given and self.preprocessing.get("max_gap") is not None:
            max_gap = float(self.preprocessing["max_gap"])
            say(f"splitting tracks at gaps > {max_gap:g} s, as {self.name} was")
        if not collapse and self.preprocessing.get("collapse"):
            collapse = True
            say(f"collapsing consecutive repeats, as {self.name} was")
        return collapse, max_gap


def resolve_like(like, name: str | None = None) -> Like:
    """`like` in any of the forms `prepare` takes -> `Like`; `name` overrides what notes call it."""
    if like is None:
        return Like(None, {}, name or "")
    if isinstance(like, (str, os.PathLike)):
        grid, prep = load_like(like)
        return Like(grid, prep, name or os.fspath(like))
    if isinstance(like, Grid):
        return Like(like, {}, name or "the grid")
    if isinstance(like, GriddedTracks):
        prep = {k: like.meta[k] for k in ("max_gap", "collapse") if k in like.meta}
        return Like(like.grid, prep, name or "the gridded tracks")
    if isinstance(like, tuple) and len(like) == 2:
        grid, prep = like
        return Like(grid, dict(prep or {}), name or "the model")
    if hasattr(like, "grid") and hasattr(like, "preprocessing"):
        return Like(like.grid, dict(like.preprocessing or {}), name or "the model")
    raise InputError(f"like= takes a model (directory or object), a gridded file or a Grid; "
                     f"got a {type(like).__name__}")


@dataclass
class Prepared:
    """Tracks ready for a model, the grid they are on, and how they were prepared (the dict a
    model keeps as its ``preprocessing``, so later input is prepared the same way)."""

    tracks: list[Track]
    grid: Grid
    preprocessing: dict
    report: IngestReport
    notes: list[str] = field(default_factory=list)


def prepare(
    data: str | os.PathLike | GriddedTracks,
    like=None,
    *,
    columns: ColumnMap | Callable[[], ColumnMap] | None = None,
    cell_size: float | None = None,
    step: float | None = None,
    max_gap: float | None = None,
    collapse: bool = False,
    min_len: int = 2,
    sep: str | None = None,
    name: str | None = None,
    log: Log | None = None,
) -> Prepared:
    """Tracks from `data`: a gridded Parquet (or `GriddedTracks`) as it is, or raw points gridded here.

    Args:
        data: a gridded Parquet, raw points (CSV / gzip CSV / Parquet), or `GriddedTracks`.
        like: the model (or file) to prepare like; see the module docstring. With a grid, raw points
            land on exactly that grid and gridded input must carry the same one.
        columns: the raw file's columns (default: track, time, lat, lon), or a function that builds
            them: it is called only for raw input, so flags a gridded file ignores are not checked.
        cell_size, step: how to grid raw points when `like` brings no grid.
        max_gap: split raw tracks at longer gaps (seconds); None follows `like`.
        collapse: drop consecutive repeats of a cell; False follows `like` (and a gridded file).
        min_len: tracks with fewer cells are left out (said in a note); none left is an error.
        sep: CSV delimiter of raw input (default: sniffed).
        name: what the notes call `like` (default: its path, or "the model").
        log: called with each note as it happens (default: notes are only kept).

    Raises:
        InputError: no such file, raw points without a grid, a gridded file on another grid than
            `like`'s, or no track of `min_len` cells.
    """
    notes: list[str] = []

    def say(note: str) -> None:
        notes.append(note)
        if log is not None:
            log(note)

    target = resolve_like(like, name)
    grid = target.grid
    if isinstance(data, GriddedTracks):
        source, gridded = "the gridded tracks", data
    else:
        source = Path(data)
        if not source.exists():
            raise InputError(f"{source}: no such file")
        gridded = read_gridded(source) if is_gridded(source) else None
    if gridded is not None:
        check_given_grid(source, gridded.grid, cell_size, step)
        if grid is not None and _placement(gridded.grid) != _placement(grid):
            raise InputError(f"{source} was gridded on {gridded.grid.to_dict()}, the model on {grid.to_dict()}; "
                             f"regrid it with `gridcast grid ... --like MODEL_DIR`")
        gap = gridded.meta.get("max_gap")
        collapse = collapse or bool(gridded.meta.get("collapse"))
        collapse, _ = target.follow(collapse, gap, gap_given=True, log=say)  # its gaps are fixed
    else:
        gridded, gap, collapse = _grid_raw(source, target, columns, cell_size, step, max_gap, collapse, sep, say)
    tracks = gridded.tracks(collapse=collapse, min_len=1)
    kept = [t for t in tracks if len(t) >= min_len]
    if not kept:
        raise InputError(f"{source}: no track has at least {min_len} cells")
    if len(kept) < len(tracks):
        short = sorted(t.id for t in tracks if len(t) < min_len)
        say(f"{source}: {len(tracks) - len(kept)} track(s) with fewer than {min_len} cells left out: "
            f"{', '.join(short[:5])}{' ...' if len(short) > 5 else ''}")
    return Prepared(tracks=kept, grid=grid if grid is not None else gridded.grid,
                    preprocessing={"max_gap": gap, "collapse": bool(collapse)}, report=gridded.report, notes=notes)


def check_given_grid(source, grid: Grid, cell_size: float | None, step: float | None, whose: str = "its") -> None:
    """A --cell-size or --step given beside a grid that is already fixed (a gridded file's, a model's)
    must be that grid's: a different one would otherwise be ignored without a word."""
    if step is not None and not math.isclose(float(step), float(grid.step or 0.0), rel_tol=1e-9, abs_tol=0.0):
        raise InputError(f"--step {step:g} differs from {whose} step {grid.step} ({source}); "
                         f"drop --step, or regrid with `gridcast grid ... --step {step:g}`")
    if cell_size is not None and not math.isclose(float(cell_size), grid.cell_size, rel_tol=1e-9, abs_tol=0.0):
        raise InputError(f"--cell-size {cell_size:g} differs from {whose} cell size {grid.cell_size} ({source}); "
                         f"drop --cell-size, or regrid with `gridcast grid ... --cell-size {cell_size:g}`")


def _grid_raw(source: Path, target: Like, columns, cell_size, step, max_gap, collapse: bool, sep,
              say: Log) -> tuple[GriddedTracks, float | None, bool]:
    """Raw points -> gridded on `target`'s grid (or on a new one), split and collapsed like it."""
    grid = target.grid
    if grid is None and cell_size is None:
        raise InputError(f"{source} is raw points: give --cell-size (and --step) or grid it first with `gridcast grid`")
    if grid is not None:
        check_given_grid(source, grid, cell_size, step, "the model's")
    collapse, max_gap = target.follow(collapse, max_gap, gap_given=max_gap is not None, log=say)
    if columns is None:
        columns = ColumnMap(lat="lat", lon="lon")
    elif callable(columns):
        columns = columns()
    gridded = grid_tracks(source, cell_size=cell_size if grid is None else grid.cell_size,
                          step=step if grid is None else grid.step, columns=columns, max_gap=max_gap,
                          like=grid, sep=sep)
    report = gridded.report
    for message in report.messages:  # warnings (lon/lat given as x/y) reach fit/evaluate/predict too
        if message.startswith("warning:"):
            say(f"{source}: {message}")
    if report.dropped:  # nothing is dropped silently: say what and why
        reasons = ", ".join(f"{n} {reason}" for reason, n in report.dropped.items())
        say(f"{source}: {report.read} rows read, {report.kept} kept; dropped: {reasons} "
            f"(`gridcast grid ... --strict` names each row)")
    return gridded, max_gap, collapse


def _placement(grid: Grid) -> tuple:
    """What makes two grids put a point in the same cell (the step is checked where it matters)."""
    return (grid.cell_size, grid.origin_x, grid.origin_y, grid.crs)


def _silent(_note: str) -> None:
    pass
