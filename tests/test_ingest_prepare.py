"""`gridcast.ingest.prepare` and `GriddedTracks.tracks`: new input prepared like a model's, from Python.

What `gridcast predict/evaluate MODEL DATA` do to DATA must be callable without the CLI, and give
the same tracks however the model is named (directory, object, (grid, preprocessing) pair).
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.ingest import (
    ColumnMap,
    GriddedTracks,
    grid_tracks,
    is_gridded,
    prepare,
    resolve_like,
    write_gridded,
)
from gridcast.tracks import Track, collapse_mask, collapse_repeats, tracks_from_frame

COLUMNS = ColumnMap(track="track", time="time", x="x", y="y")


def _write(path, rows) -> None:
    path.write_text("track,time,x,y\n" + "".join(f"{k},{t},{x},{y}\n" for k, t, x, y in rows))


@pytest.fixture
def raw(tmp_path):
    """Two planar tracks on unit cells: 'a' stays in cell (0,0) three steps, then moves; 'b' has a gap."""
    rows = [("a", 0, 0.1, 0.1), ("a", 1, 0.2, 0.2), ("a", 2, 0.3, 0.3), ("a", 3, 1.5, 0.5), ("a", 4, 2.5, 0.5),
            ("b", 0, 5.5, 5.5), ("b", 1, 6.5, 5.5), ("b", 100, 7.5, 5.5), ("b", 101, 8.5, 5.5), ("c", 0, 9.5, 9.5)]
    path = tmp_path / "raw.csv"
    _write(path, rows)
    return path


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    grid = Grid(cell_size=1.0, crs=None, step=None)
    (d / "config.json").write_text(json.dumps({"grid": grid.to_dict(),
                                               "preprocessing": {"max_gap": 10.0, "collapse": True}}))
    return d


def test_collapse_mask_is_the_track_collapse_and_respects_parts():
    cells = np.array([[0, 0], [0, 0], [1, 0], [1, 0], [1, 0], [0, 0]])
    keep = collapse_mask(cells[:, 0], cells[:, 1])
    assert keep.tolist() == [True, False, True, False, False, True]
    assert collapse_repeats(Track("t", cells)).cells.tolist() == cells[keep].tolist()
    part = np.array([0, 0, 0, 1, 1, 1])  # a new part always keeps its first point
    assert collapse_mask(cells[:, 0], cells[:, 1], part).tolist() == [True, False, True, True, False, True]
    assert collapse_mask(np.zeros(0), np.zeros(0)).tolist() == []


def test_gridded_tracks_is_the_old_chain(raw):
    gt = grid_tracks(raw, cell_size=1.0, step=None, columns=COLUMNS, min_points=1)
    chain = [collapse_repeats(t) for t in tracks_from_frame(gt.frame)]
    chain = [t for t in chain if len(t) >= 2]
    got = gt.tracks(collapse=True, min_len=2)
    assert [t.id for t in got] == [t.id for t in chain]
    for a, b in zip(got, chain):
        assert np.array_equal(a.cells, b.cells) and np.array_equal(a.times, b.times)
    assert [t.id for t in gt.tracks(min_len=1)] == ["a", "b", "c"]
    assert len(gt.tracks()[0]) == 5  # not collapsed by default


def test_prepare_follows_the_model_directory_and_says_so(raw, model_dir):
    notes = []
    ready = prepare(raw, like=model_dir, columns=COLUMNS, log=notes.append)
    assert ready.grid == Grid(cell_size=1.0, crs=None, step=None)
    assert ready.preprocessing == {"max_gap": 10.0, "collapse": True}
    assert [t.id for t in ready.tracks] == ["a", "b#1", "b#2"]  # split at the gap, 'c' too short
    a = ready.tracks[0].cells
    assert len(a) == 3 and np.any(a[1:] != a[:-1], axis=1).all()  # collapsed: three cells, no repeat
    assert notes[:2] == [f"splitting tracks at gaps > 10 s, as {model_dir} was",
                         f"collapsing consecutive repeats, as {model_dir} was"]
    assert ready.notes == notes
    assert notes[2] == f"{raw}: 10 rows read, 9 kept; dropped: 1 short_track (`gridcast grid ... --strict` names each row)"


def test_prepare_takes_an_object_or_a_pair_and_gives_the_same_tracks(raw, model_dir):
    grid = Grid(cell_size=1.0, crs=None, step=None)
    prep = {"max_gap": 10.0, "collapse": True}
    by_dir = prepare(raw, like=model_dir, columns=COLUMNS)
    by_obj = prepare(raw, like=SimpleNamespace(grid=grid, preprocessing=prep), columns=COLUMNS)
    by_pair = prepare(raw, like=(grid, prep), columns=COLUMNS)
    for other in (by_obj, by_pair):
        assert [t.id for t in other.tracks] == [t.id for t in by_dir.tracks]
        assert all(np.array_equal(a.cells, b.cells) for a, b in zip(other.tracks, by_dir.tracks))
    assert "as the model was" in by_obj.notes[0]
    assert resolve_like(model_dir).name == str(model_dir)
    assert resolve_like(grid) == resolve_like((grid, {}), name="the grid")  # a bare grid: nothing to follow
    gridded = grid_tracks(raw, cell_size=1.0, step=None, columns=COLUMNS, max_gap=10.0, collapse=True)
    assert resolve_like(gridded).preprocessing == prep


def test_flags_given_win_over_the_model(raw, model_dir):
    ready = prepare(raw, like=model_dir, columns=COLUMNS, max_gap=1000.0, min_len=4)
    assert [t.id for t in ready.tracks] == ["b"]  # not split; 'a' has 3 cells once collapsed
    assert ready.notes[-1] == f"{raw}: 1 track(s) with fewer than 4 cells left out: a"
    assert ready.preprocessing == {"max_gap": 1000.0, "collapse": True}
    assert not any("splitting" in n for n in ready.notes)


def test_gridded_file_must_be_on_the_model_grid(raw, tmp_path, model_dir):
    gt = grid_tracks(raw, cell_size=2.0, step=None, columns=COLUMNS)
    path = tmp_path / "g.parquet"
    write_gridded(gt, path)
    assert is_gridded(path) and not is_gridded(raw)
    with pytest.raises(InputError, match="was gridded on"):
        prepare(path, like=model_dir)
    ready = prepare(path)  # without a model: the file's own grid
    assert ready.grid == gt.grid and ready.preprocessing == {"max_gap": None, "collapse": False}


def test_columns_are_built_only_for_raw_input(raw, tmp_path):
    gt = grid_tracks(raw, cell_size=1.0, step=None, columns=COLUMNS)
    path = tmp_path / "g.parquet"
    write_gridded(gt, path)

    def broken() -> ColumnMap:
        raise InputError("columns were not needed")

    assert len(prepare(path, columns=broken).tracks) == 2
    with pytest.raises(InputError, match="not needed"):
        prepare(raw, columns=broken, cell_size=1.0)
    assert prepare(gt).grid == gt.grid and isinstance(gt, GriddedTracks)


@pytest.mark.parametrize("call, message", [
    (lambda raw: prepare(raw.parent / "missing.csv"), "no such file"),
    (lambda raw: prepare(raw, columns=COLUMNS), "is raw points: give --cell-size"),
    (lambda raw: prepare(raw, columns=COLUMNS, cell_size=1.0, min_len=50), "no track has at least 50 cells"),
    (lambda raw: prepare(raw, like=3.5), "like= takes"),
])
def test_prepare_errors_are_input_errors(raw, call, message):
    with pytest.raises(InputError, match=message):
        call(raw)
