"""grid_tracks and the gridded file format: resampling, gaps, grids, inputs, round trips."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.ingest import (
    ColumnMap,
    GriddedTracks,
    IngestReport,
    grid_tracks,
    load_grid,
    read_gridded,
    write_gridded,
)

XY = ColumnMap(track="track", time="time", x="x", y="y")
GEO = ColumnMap(track="track", time="time", lat="lat", lon="lon")


def planar(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["track", "time", "x", "y"])


def geo_frame(n: int = 40) -> pd.DataFrame:
    t = 1_704_067_200 + 10 * np.arange(n)
    return pd.DataFrame({
        "track": ["A"] * (n // 2) + ["B"] * (n - n // 2),
        "time": t,
        "lat": 53.40 + 0.0004 * np.arange(n),
        "lon": -2.90 + 0.0003 * np.arange(n),
    })


def test_planar_integer_coordinates_map_to_themselves():
    df = planar([("a", 0, 3, -2), ("a", 1, 4, -2), ("a", 2, 4, -1), ("b", 0, -7, 11), ("b", 1, -6, 11)])
    gt = grid_tracks(df, cell_size=1, step=None, columns=XY)
    assert (gt.grid.origin_x, gt.grid.origin_y, gt.grid.crs) == (0.0, 0.0, None)
    assert gt.frame[["col", "row"]].to_numpy().tolist() == df[["x", "y"]].to_numpy().tolist()
    seqs = dict(gt.sequences())
    assert seqs["a"].tolist() == [[3, -2], [4, -2], [4, -1]] and seqs["b"].dtype == np.int64


def test_linear_interpolation_at_multiples_of_step():
    df = planar([("a", 0, 0, 0), ("a", 10, 10, 0), ("a", 20, 40, 20)])
    gt = grid_tracks(df, cell_size=1, step=5, columns=XY)
    assert gt.frame.time.tolist() == [0, 5, 10, 15, 20]
    assert gt.frame.x.tolist() == [0, 5, 10, 25, 40]
    assert gt.frame.y.tolist() == [0, 0, 0, 10, 20]
    assert gt.frame.step.tolist() == [0, 1, 2, 3, 4]
    assert gt.grid.step == 5.0


def test_ticks_stay_inside_the_track_span():
    df = planar([("a", 3, 0, 0), ("a", 13, 10, 0), ("a", 14, 11, 0)])
    gt = grid_tracks(df, cell_size=1, step=5, columns=XY)
    assert gt.frame.time.tolist() == [5, 10]  # not 0 (before 3) and not 15 (after 14)
    assert gt.frame.x.tolist() == [2, 7]


def test_gap_splits_into_derived_ids_and_steps_restart():
    rows = [("a", t, t, 0) for t in (0, 10, 20)] + [("a", t, t, 0) for t in (1000, 1010)] + [("b", 0, 0, 0), ("b", 10, 1, 0)]
    gt = grid_tracks(planar(rows), cell_size=1, step=10, columns=XY, max_gap=100)
    tracks = gt.frame.groupby("track", sort=False).step.apply(list).to_dict()
    assert tracks == {"a#1": [0, 1, 2], "a#2": [0, 1], "b": [0, 1]}
    assert gt.report.tracks == 3
    assert any("split 1 track(s)" in m for m in gt.report.messages)


def test_short_parts_are_dropped_and_counted_by_raw_rows():
    rows = [("a", t, t, 0) for t in (0, 10, 20)] + [("a", 1000, 5, 5)] + [("b", 0, 0, 0)]
    gt = grid_tracks(planar(rows), cell_size=1, step=None, columns=XY, max_gap=100)
    assert gt.report.dropped == {"short_track": 2}
    assert list(gt.frame.track.unique()) == ["a#1"]  # ids stay stable: the dropped part was a#2
    gt3 = grid_tracks(planar(rows), cell_size=1, step=None, columns=XY, max_gap=100, min_points=3)
    assert gt3.report.dropped == {"short_track": 2} and gt3.report.kept == 3
    with pytest.raises(InputError, match="no usable tracks left .* short_track 5"):
        grid_tracks(planar(rows), cell_size=1, step=None, columns=XY, max_gap=100, min_points=4)


def test_collapse_keeps_the_first_of_each_run_of_cells():
    rows = [("a", t, x, 0) for t, x in enumerate([0, 0.2, 0.4, 1, 1.1, 0, 0])]
    gt = grid_tracks(planar(rows), cell_size=1, step=None, columns=XY, collapse=True)
    assert gt.frame.col.tolist() == [0, 1, 0]
    assert gt.frame.time.tolist() == [0, 3, 5]
    assert gt.frame.step.tolist() == [0, 1, 2]
    assert gt.report.kept == 7  # collapsing is not dropping rows


def test_report_invariant_and_json_shape():
    gt = grid_tracks(geo_frame(), cell_size=100, step=30, columns=GEO)
    j = gt.report.to_json()
    assert list(j) == ["read", "kept", "dropped", "tracks", "seconds", "points_per_s"]
    assert j["read"] == j["kept"] + sum(j["dropped"].values()) == 40
    assert j["points_per_s"] > 0 and j["tracks"] == 2


def test_lat_lon_goes_to_the_utm_zone_of_the_data():
    gt = grid_tracks(geo_frame(), cell_size=100, step=None, columns=GEO)
    assert gt.grid.crs == "EPSG:32630"  # lon -2.9 -> zone 30 north
    assert gt.grid.origin_x % 100 == 0 and gt.grid.origin_y % 100 == 0
    south = geo_frame().assign(lat=lambda d: -d.lat, lon=lambda d: d.lon + 150)
    assert grid_tracks(south, cell_size=100, step=None, columns=GEO).grid.crs == "EPSG:32755"  # lon 147 -> zone 55 south
    # neighbouring fixes ~50 m apart: metres, not degrees
    a = gt.frame[gt.frame.track == "A"]
    d = np.hypot(np.diff(a.x), np.diff(a.y))
    assert np.all((d > 40) & (d < 60))


def test_explicit_crs_and_geographic_crs_rejected():
    gt = grid_tracks(geo_frame(), cell_size=100, step=None, columns=GEO, crs="EPSG:27700")
    assert gt.grid.crs == "EPSG:27700"
    with pytest.raises(InputError, match="not projected"):
        grid_tracks(geo_frame(), cell_size=100, step=None, columns=GEO, crs="EPSG:4326")
    with pytest.raises(InputError, match="unknown CRS"):
        grid_tracks(geo_frame(), cell_size=100, step=None, columns=GEO, crs="EPSG:999999")


def test_dataframe_datetimes_categoricals_and_one_track():
    df = geo_frame().assign(
        time=lambda d: pd.to_datetime(d.time, unit="s", utc=True).dt.tz_convert("Europe/London"),
        track=lambda d: d.track.astype("category"),
    )
    gt = grid_tracks(df, cell_size=100, step=None, columns=GEO)
    assert gt.frame.time.iloc[0] == 1_704_067_200.0  # tz-aware -> UTC epoch seconds
    one = grid_tracks(df, cell_size=100, step=None, columns=ColumnMap(track=None, time="time", lat="lat", lon="lon"))
    assert one.report.tracks == 1 and one.frame.track.unique().tolist() == ["0"]


def test_csv_gzip_semicolon_and_parquet_give_the_same_result(tmp_path):
    df = geo_frame()
    df.to_csv(tmp_path / "a.csv", index=False)
    with gzip.open(tmp_path / "a.csv.gz", "wt") as f:
        df.to_csv(f, index=False)
    df.to_csv(tmp_path / "semi.txt", index=False, sep=";")
    df.to_parquet(tmp_path / "a.parquet")
    ref = grid_tracks(df, cell_size=100, step=20, columns=GEO).frame
    for name in ("a.csv", "a.csv.gz", "semi.txt", "a.parquet"):
        got = grid_tracks(tmp_path / name, cell_size=100, step=20, columns=GEO).frame
        pd.testing.assert_frame_equal(got, ref, check_exact=False, rtol=1e-12)


def test_iso_times_with_offsets_and_epoch_numbers(tmp_path):
    (tmp_path / "iso.csv").write_text(
        "track,time,x,y\na,2024-01-01T01:00:00+01:00,0,0\na,2024-01-01T00:00:10Z,1,0\na,2024-01-01 00:00:20,2,0\n"
    )
    gt = grid_tracks(tmp_path / "iso.csv", cell_size=1, step=None, columns=XY)
    assert gt.frame.time.tolist() == [1_704_067_200, 1_704_067_210, 1_704_067_220]
    (tmp_path / "num.csv").write_text("track,time,x,y\na,0.5,0,0\na,1.5,1,0\n")
    assert grid_tracks(tmp_path / "num.csv", cell_size=1, step=None, columns=XY).frame.time.tolist() == [0.5, 1.5]


def test_write_read_round_trip_keeps_grid_report_and_frame(tmp_path):
    gt = grid_tracks(geo_frame(), cell_size=100, step=30, columns=GEO, max_gap=600)
    path = tmp_path / "g.parquet"
    write_gridded(gt, path)
    back = read_gridded(path)
    assert back.grid == gt.grid and back.grid.crs == gt.grid.crs
    assert back.report.to_json() == gt.report.to_json() and back.report.messages == gt.report.messages
    pd.testing.assert_frame_equal(back.frame, gt.frame)
    meta = pq.read_schema(path).metadata
    assert Grid.from_json(meta[b"gridcast.grid"].decode()) == gt.grid
    assert load_grid(path) == gt.grid
    assert list(pd.read_parquet(path).columns) == ["track", "step", "time", "col", "row", "x", "y"]


def test_read_gridded_rejects_foreign_files(tmp_path):
    pq.write_table(pa.table({"a": [1]}), tmp_path / "plain.parquet")
    with pytest.raises(InputError, match="not a gridded file"):
        read_gridded(tmp_path / "plain.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet"):
        read_gridded(tmp_path / "junk.parquet")


def test_like_reuses_the_grid_exactly_and_checks_agreement(tmp_path):
    first = grid_tracks(geo_frame(), cell_size=100, step=30, columns=GEO)
    moved = geo_frame().assign(lat=lambda d: d.lat + 0.05)  # origin would differ if rebuilt
    second = grid_tracks(moved, cell_size=None, step=30, columns=GEO, like=first.grid)
    assert second.grid == first.grid
    assert second.frame.row.min() > first.frame.row.max()
    with pytest.raises(InputError, match="cell size"):
        grid_tracks(moved, cell_size=50, step=30, columns=GEO, like=first.grid)
    with pytest.raises(InputError, match="step"):
        grid_tracks(moved, cell_size=None, step=60, columns=GEO, like=first.grid)
    with pytest.raises(InputError, match="planar"):
        grid_tracks(moved, cell_size=None, step=30, columns=GEO, like=Grid(cell_size=100, step=30))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"grid": first.grid.to_dict(), "cell": "lstm"}))
    assert load_grid(model) == first.grid
    with pytest.raises(InputError, match="no config.json"):
        load_grid(tmp_path)


def test_sequences_and_positions_follow_track_order():
    df = planar([("z", 0, 0, 0), ("z", 1, 1, 0), ("a", 0, 5, 5), ("a", 1, 6, 5), ("a", 2, 7, 5)])
    gt = grid_tracks(df, cell_size=1, step=None, columns=XY)
    assert [t for t, _ in gt.sequences()] == ["z", "a"]
    assert [p.shape for _, p in gt.positions()] == [(2, 2), (3, 2)]
    assert gt.positions()[1][1].dtype == np.float64
    assert isinstance(gt, GriddedTracks) and isinstance(gt.report, IngestReport)


def test_argument_errors_are_input_errors():
    df = planar([("a", 0, 0, 0), ("a", 1, 1, 0)])
    with pytest.raises(InputError, match="lat and lon"):
        grid_tracks(df, cell_size=1, step=None, columns=ColumnMap(time="time", lat="x", y="y"))
    with pytest.raises(InputError, match="cell size"):
        grid_tracks(df, cell_size=None, step=None, columns=XY)
    with pytest.raises(InputError, match="step"):
        grid_tracks(df, cell_size=1, step=-5, columns=XY)
    with pytest.raises(InputError, match="missing column 'lon'"):
        grid_tracks(df, cell_size=1, step=None, columns=GEO.__class__(time="time", lat="x", lon="lon"))
    with pytest.raises(InputError, match="no such file"):
        grid_tracks("/nonexistent/file.csv", cell_size=1, step=None, columns=XY)


def test_resampling_refuses_to_explode_memory():
    df = planar([("a", 0, 0, 0), ("a", 1e11, 1, 0)])
    with pytest.raises(InputError, match="max-gap"):
        grid_tracks(df, cell_size=1, step=1, columns=XY)


def test_byte_ranges_merge_tracks_split_across_them(tmp_path, monkeypatch):
    from gridcast.ingest import sources

    rng = np.random.default_rng(3)
    n = 3000
    df = pd.DataFrame({
        "track": rng.choice(["u1", "u2", "u3"], n),
        "time": rng.integers(0, 4000, n),  # unsorted, with duplicates
        "x": rng.normal(0, 50, n).round(2),
        "y": rng.normal(0, 50, n).round(2),
    })
    df.to_csv(tmp_path / "p.csv", index=False)
    one = grid_tracks(tmp_path / "p.csv", cell_size=5, step=7, columns=XY, max_gap=30)
    monkeypatch.setattr(sources, "_RANGE_MIN", 1000)
    monkeypatch.setattr(sources, "_RANGES", 4)
    four = grid_tracks(tmp_path / "p.csv", cell_size=5, step=7, columns=XY, max_gap=30)
    pd.testing.assert_frame_equal(one.frame, four.frame)
    assert one.report.to_json() | {"seconds": 0, "points_per_s": 0} == four.report.to_json() | {"seconds": 0, "points_per_s": 0}
    assert one.report.dropped["duplicate_time"] > 0


def test_crlf_bom_quoted_header_and_headerless_hint(tmp_path):
    body = '\ufeff"track","time","x","y"\r\n"a",0,1,2\r\na,10,2,2\r\n\r\nb,0,5,5\r\nb,10,6,5\r\n'
    (tmp_path / "win.csv").write_bytes(body.encode("utf-8"))
    gt = grid_tracks(tmp_path / "win.csv", cell_size=1, step=None, columns=XY)
    assert gt.report.read == 4 and gt.report.dropped == {}
    assert gt.frame[["col", "row"]].to_numpy().tolist() == [[1, 2], [2, 2], [5, 5], [6, 5]]
    (tmp_path / "nohead.tsv").write_text("0\t1\t8.46\t3.59\n10\t1\t8.5\t3.6\n")
    with pytest.raises(InputError, match="looks like data"):
        grid_tracks(tmp_path / "nohead.tsv", cell_size=1, step=None, columns=XY)
    with pytest.raises(InputError, match="DataFrame: no rows"):
        grid_tracks(planar([]), cell_size=1, step=None, columns=XY)
