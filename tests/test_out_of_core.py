"""Out-of-core gridding into a dataset directory (`gridcast grid ... --out DIR/`), locally and on a
Dask LocalCluster: the same cells for every track and the same report as the in-memory path, a track
spread over several input files, and every command that takes a gridded file taking the dataset."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from gridcast.cli.app import main
from gridcast.errors import InputError
from gridcast.ingest import ColumnMap, grid_to_dataset, grid_tracks, is_gridded, load_like, read_gridded
from gridcast.ingest.dataset import part_files

GEOLIFE = ["--lon-col", "lng", "--time-col", "datetime", "--track-col", "uid"]
GRID = ["--cell-size", "250", "--step", "60", "--max-gap", "600"]
BUNDLED_CSV = Path(__file__).resolve().parents[1] / "src" / "gridcast" / "datasets" / "data" / "liverpool_route14_outbound.csv"
BUS = ["--track-col", "trip_id", "--time-col", "timestamp", "--lat-col", "latitude", "--lon-col", "longitude"]
BUS_GRID = ["--cell-size", "100", "--step", "30", "--max-gap", "600"]
COLS = ColumnMap(track="uid", time="datetime", lat="lat", lon="lng")


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["track", "step"]).reset_index(drop=True)


def _timeless(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("seconds", "points_per_s")}


@pytest.fixture
def geolife_files(shared_data, tmp_path) -> tuple[Path, Path]:
    """The real GeoLife sample (217,653 points, 2 users) as one CSV, and as 5 CSV files cut by row
    ranges so every user's track is spread over several files; one bad row in the middle."""
    with gzip.open(shared_data / "geolife_skmob" / "geolife_sample.txt.gz", "rt") as f:
        df = pd.read_csv(f, dtype=str)
    df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)  # interleave users and times
    df.loc[1234, "lat"] = "north"
    whole = tmp_path / "whole.csv"
    df.to_csv(whole, index=False)
    parts = tmp_path / "parts"
    parts.mkdir()
    for k, chunk in enumerate(np.array_split(np.arange(len(df)), 5)):
        df.iloc[chunk].to_csv(parts / f"day{k}.csv", index=False)
    return whole, parts


def test_dataset_equals_in_memory_gridding_for_every_track(geolife_files, tmp_path, capsys):
    whole, parts = geolife_files
    ref = grid_tracks(whole, columns=COLS, cell_size=250, step=60, max_gap=600)
    out = tmp_path / "ds"
    assert main(["grid", str(parts), "--out", f"{out}/", *GEOLIFE, *GRID, "--memory-limit", "64MiB", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert _timeless(report) == _timeless(ref.report.to_json())
    assert report["read"] == 217_653 == report["kept"] + sum(report["dropped"].values())
    assert report["dropped"]["not_numeric"] == 1
    files = part_files(out)
    assert len(files) >= 2 and all(Path(f).parent.name.startswith("part=") for f in files)
    for f in files:  # every file carries the grid, like a single gridded file
        assert read_gridded(f).grid == ref.grid
    got = read_gridded(out)
    assert got.grid == ref.grid and is_gridded(out)
    pd.testing.assert_frame_equal(_sorted(got.frame), _sorted(ref.frame))
    assert _timeless(got.report.to_json()) == _timeless(ref.report.to_json())
    tracks_in = {f: set(pq.read_table(f, columns=["track"]).column(0).to_pylist()) for f in files}
    assert sum(len(v) for v in tracks_in.values()) == len(set().union(*tracks_in.values()))  # one part per track


def test_many_buckets_planar_collapse_and_min_points(tmp_path):
    rng = np.random.default_rng(1)
    n = 20_000
    df = pd.DataFrame({"track": rng.integers(0, 300, n).astype(str), "time": rng.uniform(0, 5000, n).round(1),
                       "x": rng.normal(0, 300, n), "y": rng.normal(0, 300, n)})
    df.to_csv(tmp_path / "p.csv", index=False)
    cols = ColumnMap(track="track", time="time", x="x", y="y")
    kw = dict(columns=cols, cell_size=50, step=20, max_gap=200, collapse=True, min_points=3)
    ref = grid_tracks(tmp_path / "p.csv", **kw)
    res = grid_to_dataset(tmp_path / "p.csv", tmp_path / "ds", buckets=64, **kw)
    assert res.buckets == 64 and len(part_files(tmp_path / "ds")) > 32
    got = read_gridded(tmp_path / "ds")
    pd.testing.assert_frame_equal(_sorted(got.frame), _sorted(ref.frame))
    assert _timeless(res.report.to_json()) == _timeless(ref.report.to_json())
    assert load_like(tmp_path / "ds") == (ref.grid, {"max_gap": 200, "collapse": True})


def test_dask_local_cluster_and_scheduler_address_write_the_same_dataset(geolife_files, tmp_path, capsys):
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    _, parts = geolife_files
    runs = {}
    for engine in ("local", "dask"):
        out = tmp_path / engine
        assert main(["grid", str(parts), "--out", f"{out}/", *GEOLIFE, *GRID, "--engine", engine, "--json"]) == 0
        runs[engine] = (json.loads(capsys.readouterr().out), read_gridded(out))
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
        out = tmp_path / "remote"
        assert main(["grid", str(parts), "--out", f"{out}/", *GEOLIFE, *GRID, "--engine", "dask",
                     "--scheduler", cluster.scheduler_address, "--json"]) == 0
        runs["remote"] = (json.loads(capsys.readouterr().out), read_gridded(out))
    ref_report, ref = runs["local"]
    for name in ("dask", "remote"):
        report, got = runs[name]
        assert _timeless(report) == _timeless(ref_report), name
        assert got.grid == ref.grid
        pd.testing.assert_frame_equal(_sorted(got.frame), _sorted(ref.frame))
        assert sorted(p.name for p in (tmp_path / name).glob("part=*")) == sorted(p.name for p in (tmp_path / "local").glob("part=*"))


def test_fit_evaluate_predict_and_like_take_a_dataset(tmp_path, capsys):
    """The commands take a dataset directory wherever they take a gridded file (small bundled bus data:
    what is tested is the reading, not the model, so it stays a few seconds)."""
    bus = pd.read_csv(BUNDLED_CSV, dtype=str)
    parts = tmp_path / "parts"
    parts.mkdir()
    for k, chunk in enumerate(np.array_split(np.arange(len(bus)), 2)):
        bus.iloc[chunk].to_csv(parts / f"half{k}.csv", index=False)  # trips spread over both files
    ds = tmp_path / "ds"
    assert main(["grid", str(parts), "--out", f"{ds}/", *BUS, *BUS_GRID, "--json"]) == 0
    model = tmp_path / "m"
    assert main(["fit", str(ds), "--out", str(model), "--epochs", "1", "--hidden", "16", "--seed", "0"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(model), str(ds), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] > 0
    assert main(["predict", str(model), str(ds), "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) >= 2
    again = tmp_path / "again.parquet"
    assert main(["grid", str(parts / "half0.csv"), "--out", str(again), *BUS, "--like", str(ds)]) == 0
    assert read_gridded(again).grid == read_gridded(ds).grid


def test_dataset_refusals_are_one_line(geolife_files, tmp_path, capsys):
    whole, parts = geolife_files
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    argv = ["grid", str(parts), *GEOLIFE, *GRID]
    assert main([*argv, "--out", f"{tmp_path / 'full'}/"]) == 2
    assert "not an empty directory" in capsys.readouterr().err
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    assert main([*argv, "--out", str(tmp_path / "f.parquet"), "--engine", "dask"]) == 2
    assert "give --out a directory" in capsys.readouterr().err
    assert main([*argv, "--out", f"{parts}/sub/"]) == 2  # inside the input directory
    assert "input" in capsys.readouterr().err
    with pytest.raises(InputError, match=r"day0\.csv row 1235 \(line 1236\): lat 'north' is not a number"):
        grid_to_dataset(parts, tmp_path / "strict", columns=COLS, cell_size=250, step=60, strict=True)
    assert not (tmp_path / "strict").exists() and not list(tmp_path.glob("strict.tmp-*"))
