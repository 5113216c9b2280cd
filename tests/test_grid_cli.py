"""`gridcast grid` on the command line: the --json contract, the table, --like, and usage errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gridcast.cli import main
from gridcast.grid import Grid
from gridcast.ingest import load_grid, read_gridded


@pytest.fixture
def tracks_csv(tmp_path: Path) -> Path:
    n = 60
    df = pd.DataFrame({
        "trip": ["t1"] * 30 + ["t2"] * 30,
        "when": pd.date_range("2024-03-01 08:00:00", periods=n, freq="7s").strftime("%Y-%m-%d %H:%M:%S"),
        "la": 51.50 + 0.0003 * np.arange(n),
        "lo": -0.12 + 0.0004 * np.arange(n),
    })
    path = tmp_path / "trips.csv"
    df.to_csv(path, index=False)
    return path


def cols() -> list[str]:
    return ["--track-col", "trip", "--time-col", "when", "--lat-col", "la", "--lon-col", "lo"]


def test_json_is_exactly_the_contract(tracks_csv, tmp_path, capsys):
    out = tmp_path / "g.parquet"
    assert main(["grid", str(tracks_csv), "--out", str(out), "--cell-size", "50", "--step", "10", *cols(), "--json"]) == 0
    text = capsys.readouterr().out.strip()
    assert len(text.splitlines()) == 1
    got = json.loads(text)
    assert list(got) == ["read", "kept", "dropped", "tracks", "seconds", "points_per_s"]
    assert (got["read"], got["kept"], got["dropped"], got["tracks"]) == (60, 60, {}, 2)
    assert isinstance(got["seconds"], float) and got["points_per_s"] > 0
    gt = read_gridded(out)
    assert gt.grid.cell_size == 50 and gt.grid.step == 10 and gt.grid.crs == "EPSG:32630"
    assert set(gt.frame.track) == {"t1", "t2"}


def test_human_table_lists_counts_and_reasons(tracks_csv, tmp_path, capsys):
    text = tracks_csv.read_text().replace("51.5003,", "nan,", 1)
    bad = tmp_path / "bad.csv"
    bad.write_text(text + "t3,2024-03-01 09:00:00,51.5,-0.1\n")
    assert main(["grid", str(bad), "--out", str(tmp_path / "g.parquet"), "--cell-size", "50", "--step", "10", *cols()]) == 0
    out = capsys.readouterr().out
    table = dict(line.split(None, 1) for line in out.splitlines()[1:] if not line.strip().startswith(("note:", "grid ")))
    table = {k: v.strip() for k, v in table.items()}
    assert (table["read"], table["kept"], table["dropped"], table["tracks"]) == ("61", "59", "2", "2")
    assert (table["not_finite"], table["short_track"]) == ("1", "1")
    assert float(table["points/s"].replace(",", "")) > 0 and "EPSG:32630" in out


def test_like_reuses_grid_and_step_from_a_gridded_file_and_a_model_dir(tracks_csv, tmp_path, capsys):
    first = tmp_path / "first.parquet"
    assert main(["grid", str(tracks_csv), "--out", str(first), "--cell-size", "50", "--step", "10", *cols(), "--json"]) == 0
    grid = load_grid(first)
    again = tmp_path / "again.parquet"
    assert main(["grid", str(tracks_csv), "--out", str(again), "--like", str(first), *cols(), "--json"]) == 0
    assert load_grid(again) == grid
    pd.testing.assert_frame_equal(read_gridded(again).frame, read_gridded(first).frame)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"grid": grid.to_dict()}))
    third = tmp_path / "third.parquet"
    assert main(["grid", str(tracks_csv), "--out", str(third), "--like", str(model), *cols(), "--json"]) == 0
    assert load_grid(third) == grid
    capsys.readouterr()
    assert main(["grid", str(tracks_csv), "--out", str(third), "--like", str(first), "--cell-size", "20", *cols()]) == 2
    assert "differs from the reused grid" in capsys.readouterr().err


def test_like_also_prepares_like_the_source(tracks_csv, tmp_path, capsys):
    """--like FILE_OR_MODEL takes the source's --max-gap and --collapse too (unless given), and says so."""
    first = tmp_path / "first.parquet"
    assert main(["grid", str(tracks_csv), "--out", str(first), "--cell-size", "50", "--step", "10",
                 "--max-gap", "600", "--collapse", *cols(), "--json"]) == 0
    capsys.readouterr()
    again = tmp_path / "again.parquet"
    assert main(["grid", str(tracks_csv), "--out", str(again), "--like", str(first), *cols(), "--json"]) == 0
    err = capsys.readouterr().err
    assert "gaps > 600 s" in err and "collapsing" in err
    meta = read_gridded(again).meta
    assert meta["max_gap"] == 600 and meta["collapse"] is True
    pd.testing.assert_frame_equal(read_gridded(again).frame, read_gridded(first).frame)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"grid": load_grid(first).to_dict(),
                                                   "preprocessing": {"max_gap": 300.0, "collapse": False}}))
    third = tmp_path / "third.parquet"
    assert main(["grid", str(tracks_csv), "--out", str(third), "--like", str(model), "--max-gap", "0", *cols()]) == 0
    assert read_gridded(third).meta["max_gap"] is None and "gaps >" not in capsys.readouterr().err  # given: kept


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--cell-size", "50"], "--step is required"),
        (["--cell-size", "50", "--step", "10", "--x-col", "la"], "not both"),
        (["--step", "10"], "cell size"),
        (["--cell-size", "50", "--step", "10", "--crs", "EPSG:4326"], "not projected"),
        (["--cell-size", "50", "--step", "10", "--like", "/no/such/model"], "no such file or model directory"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tracks_csv, tmp_path, capsys, extra, needle):
    argv = ["grid", str(tracks_csv), "--out", str(tmp_path / "g.parquet"), *cols(), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and err[0].startswith("gridcast grid: error:")


def test_missing_input_file_exits_2(tmp_path, capsys):
    assert main(["grid", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "g.parquet"), "--cell-size", "1", "--step", "1"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_tab_separated_planar_single_track_no_resampling(tmp_path, capsys):
    path = tmp_path / "scene.txt"
    path.write_text("frame\tx\ty\n0\t1.0\t2.0\n10\t2.0\t2.0\n20\t3.0\t2.4\n")
    out = tmp_path / "g.parquet"
    argv = ["grid", str(path), "--out", str(out), "--cell-size", "1", "--step", "0", "--track-col", "",
            "--time-col", "frame", "--x-col", "x", "--y-col", "y", "--sep", "\\t", "--json"]
    assert main(argv) == 0
    gt = read_gridded(out)
    assert gt.grid == Grid(cell_size=1.0)
    assert gt.frame[["col", "row"]].to_numpy().tolist() == [[1, 2], [2, 2], [3, 2]]
    assert gt.frame.track.unique().tolist() == ["0"]


def test_collapse_flag_and_max_gap(tmp_path, capsys):
    path = tmp_path / "p.csv"
    path.write_text("track,time,x,y\na,0,0,0\na,10,0.1,0\na,20,1,0\na,500,2,0\na,510,3,0\n")
    out = tmp_path / "g.parquet"
    argv = ["grid", str(path), "--out", str(out), "--cell-size", "1", "--step", "10", "--x-col", "x", "--y-col", "y",
            "--max-gap", "100", "--collapse", "--json"]
    assert main(argv) == 0
    seqs = dict(read_gridded(out).sequences())
    assert {k: v[:, 0].tolist() for k, v in seqs.items()} == {"a#1": [0, 1], "a#2": [2, 3]}
