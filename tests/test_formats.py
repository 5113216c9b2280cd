"""The formats people have: folders of GeoLife .plt files, GPX files, folders and globs of mixed
files, read by grid (and fit / evaluate / predict) with the same validation report as a CSV; the
column hints for Movebank and x/y-as-lon/lat files; the warning for lon/lat given as x/y."""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
from pathlib import Path

import gpxpy.gpx
import numpy as np
import pandas as pd
import pytest

from gridcast.cli.app import main
from gridcast.errors import InputError
from gridcast.ingest import ColumnMap, grid_tracks, read_gridded

HEADER = "Geolife trajectory\nWGS 84\nAltitude is in Feet\nReserved 3\n0,2,255,My Track,0,0,2,8421376\n0\n"
GEO = ColumnMap(lat="lat", lon="lon")


def _geolife_rows(shared: Path, limit: int) -> list[dict]:
    with gzip.open(shared / "geolife_skmob" / "geolife_sample.txt.gz", "rt") as f:
        return [r for _, r in zip(range(limit), csv.DictReader(f))]


def _write_plt_folder(rows: list[dict], root: Path) -> Path:
    """The real GeoLife points written as GeoLife ships them: Data/<user>/Trajectory/<day>.plt, plus
    the same points as one CSV whose track id is what the .plt reader must make of the path."""
    by: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by.setdefault((r["uid"], r["datetime"][:10].replace("-", "")), []).append(r)
    table = []
    for (uid, day), rs in by.items():
        folder = root / "Data" / uid / "Trajectory"
        folder.mkdir(parents=True, exist_ok=True)
        lines = [HEADER]
        for r in rs:
            days = (dt.datetime.fromisoformat(r["datetime"]) - dt.datetime(1899, 12, 30)).total_seconds() / 86400
            lines.append(f"{r['lat']},{r['lng']},0,100,{days:.10f},{r['datetime'][:10]},{r['datetime'][11:]}\n")
            table.append({"track": f"{uid}/{day}", "time": r["datetime"], "lat": r["lat"], "lon": r["lng"]})
        (folder / f"{day}.plt").write_text("".join(lines))
    pd.DataFrame(table).to_csv(root / "same.csv", index=False)
    return root / "Data"


def _same(a, b) -> None:
    fa = a.frame.sort_values(["track", "step"]).reset_index(drop=True)
    fb = b.frame.sort_values(["track", "step"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(fa, fb)
    assert a.grid == b.grid
    assert a.report.to_json() | {"seconds": 0, "points_per_s": 0} == b.report.to_json() | {"seconds": 0, "points_per_s": 0}


def test_geolife_plt_folder_equals_the_same_points_as_csv(shared_data, tmp_path):
    rows = _geolife_rows(shared_data, 30_000)
    data = _write_plt_folder(rows, tmp_path)
    kw = dict(cell_size=250, step=60, max_gap=600)
    plt = grid_tracks(data, columns=GEO, **kw)
    ref = grid_tracks(tmp_path / "same.csv", columns=GEO, **kw)
    _same(plt, ref)
    assert plt.report.read == len(rows) == plt.report.kept + sum(plt.report.dropped.values())
    assert {t.split("/")[0] for t in plt.frame["track"]} == {"001"}
    assert plt.frame["track"].str.match(r"^001/2008\d{4}(#\d+)?$").all()


def test_plt_bad_rows_are_counted_and_strict_names_file_and_line(tmp_path):
    good = "".join(f"39.98{i:02d},116.31{i:02d},0,100,39744.0,2008-10-23,02:{i:02d}:00\n" for i in range(10))
    (tmp_path / "t.plt").write_text(HEADER + good + "39.9,116.3,0\n" + "abc,116.3,0,100,39744.0,2008-10-23,03:00:00\n"
                                    + "39.9,116.3,0,100,39744.0,not-a-date,03:01:00\n")
    gt = grid_tracks(tmp_path / "t.plt", columns=GEO, cell_size=100, step=60)
    assert gt.report.read == 13
    assert gt.report.dropped == {"malformed": 1, "not_numeric": 1, "bad_time": 1}
    with pytest.raises(InputError, match=r"t\.plt row 11 \(line 17\): expected 7 fields, found 3"):
        grid_tracks(tmp_path / "t.plt", columns=GEO, cell_size=100, step=60, strict=True)


def _gpx(path: Path, tracks: list[list[list[tuple[float, float, dt.datetime | None]]]]) -> None:
    doc = gpxpy.gpx.GPX()
    for segments in tracks:
        trk = gpxpy.gpx.GPXTrack()
        doc.tracks.append(trk)
        for seg_points in segments:
            seg = gpxpy.gpx.GPXTrackSegment()
            trk.segments.append(seg)
            seg.points += [gpxpy.gpx.GPXTrackPoint(lat, lon, time=t) for lat, lon, t in seg_points]
    path.write_text(doc.to_xml())


def test_gpx_tracks_and_segments_grid_like_the_same_csv(shared_data, tmp_path):
    rows = _geolife_rows(shared_data, 3000)
    utc = dt.timezone.utc
    pts = [(float(r["lat"]), float(r["lng"]), dt.datetime.fromisoformat(r["datetime"]).replace(tzinfo=utc)) for r in rows]
    pts[5] = (pts[5][0], pts[5][1], None)  # a point without a time: counted, never guessed
    _gpx(tmp_path / "walk.gpx", [[pts[:1000], pts[1000:2000]], [pts[2000:]]])
    ids = ["walk/1.1"] * 1000 + ["walk/1.2"] * 1000 + ["walk/2"] * 1000
    frame = pd.DataFrame({"track": ids, "time": [p[2].isoformat() if p[2] else "" for p in pts],
                          "lat": [p[0] for p in pts], "lon": [p[1] for p in pts]})
    frame.to_csv(tmp_path / "walk.csv", index=False)
    gpx = grid_tracks(tmp_path / "walk.gpx", columns=GEO, cell_size=100, step=30)
    ref = grid_tracks(tmp_path / "walk.csv", columns=GEO, cell_size=100, step=30)
    _same(gpx, ref)
    assert gpx.report.dropped.get("missing") == 1
    assert set(gpx.frame["track"]) == {"walk/1.1", "walk/1.2", "walk/2"}


def test_a_track_spread_over_files_of_a_folder_is_one_track(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"track": rng.choice(["a", "b", "c"], n), "time": np.arange(n) * 7.0,
                       "lat": 53.4 + rng.normal(0, 0.01, n), "lon": -2.98 + rng.normal(0, 0.01, n)})
    df.loc[17, "lat"] = 123.0  # one bad row: the report counts it once over the folder
    df.to_csv(tmp_path / "whole.csv", index=False)
    (tmp_path / "parts").mkdir()
    for k, lo in enumerate(range(0, n, 100)):  # each file holds a time range of every track
        part = df.iloc[lo:lo + 100]
        if k == 2:
            part.to_parquet(tmp_path / "parts" / f"p{k}.parquet", index=False)
        else:
            part.to_csv(tmp_path / "parts" / f"p{k}.csv", index=False)
    kw = dict(columns=GEO, cell_size=100, step=30)
    whole = grid_tracks(tmp_path / "whole.csv", **kw)
    for given in (tmp_path / "parts", str(tmp_path / "parts" / "p*")):
        _same(grid_tracks(given, **kw), whole)
    assert whole.report.dropped == {"lat_range": 1}


def test_grid_fit_evaluate_predict_take_a_plt_folder(shared_data, tmp_path, capsys):
    data = _write_plt_folder(_geolife_rows(shared_data, 20_000), tmp_path)
    out = tmp_path / "g.parquet"
    assert main(["grid", str(data), "--out", str(out), "--cell-size", "250", "--step", "60", "--max-gap", "600", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["read"] == 20_000 == report["kept"] + sum(report["dropped"].values())
    assert read_gridded(out).report.read == 20_000
    model = tmp_path / "m"
    assert main(["fit", str(data), "--cell-size", "250", "--step", "60", "--max-gap", "600", "--out", str(model),
                 "--epochs", "1", "--hidden", "16", "--seed", "0"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(model), str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] > 0
    assert main(["predict", str(model), str(data), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert len(lines) >= 2 and all("track" in x for x in lines)


def test_missing_columns_hint_movebank_names(tmp_path, capsys):
    pd.DataFrame({"event-id": [1, 2], "timestamp": ["2011-02-11 17:30:00", "2011-02-11 17:40:00"],
                  "location-long": [-73.9, -73.91], "location-lat": [42.7, 42.71],
                  "individual-local-identifier": ["F1", "F1"]}).to_csv(tmp_path / "m.csv", index=False)
    assert main(["grid", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o.parquet"), "--cell-size", "100", "--step", "60"]) == 2
    err = capsys.readouterr().err
    assert ("--track-col individual-local-identifier --time-col timestamp --lat-col location-lat "
            "--lon-col location-long") in err
    assert len(err.strip().splitlines()) == 1


def test_missing_columns_hint_xy_as_lon_lat(tmp_path, capsys):
    pd.DataFrame({"track": ["a", "a"], "time": [0, 10], "x": [-2.98, -2.981], "y": [53.4, 53.401]}).to_csv(
        tmp_path / "xy.csv", index=False)
    assert main(["grid", str(tmp_path / "xy.csv"), "--out", str(tmp_path / "o.parquet"), "--cell-size", "100", "--step", "5"]) == 2
    err = capsys.readouterr().err
    assert "--lat-col y --lon-col x" in err and "--y-col y --x-col x" in err


def test_lon_lat_given_as_x_y_get_a_warning_and_pixels_do_not(tmp_path):
    t = np.arange(20) * 10.0
    deg = pd.DataFrame({"track": "a", "time": t, "x": -2.98 + t * 1e-5, "y": 53.4 + t * 1e-5})
    xy = ColumnMap(x="x", y="y")
    gt = grid_tracks(deg, columns=xy, cell_size=0.001, step=10)
    assert any("look like longitude/latitude degrees" in m for m in gt.report.messages)
    metres = deg.assign(x=deg["x"] * 1e5, y=deg["y"] * 1e5)
    pixels = deg.assign(x=np.arange(20) % 5, y=np.arange(20) // 5)
    for frame in (metres, pixels):
        gt = grid_tracks(frame, columns=xy, cell_size=1, step=10)
        assert not any("longitude/latitude" in m for m in gt.report.messages)


def test_plt_and_gpx_refuse_planar_columns(tmp_path):
    (tmp_path / "t.plt").write_text(HEADER + "39.9,116.3,0,100,39744.0,2008-10-23,02:53:04\n")
    with pytest.raises(InputError, match="holds lat/lon degrees"):
        grid_tracks(tmp_path / "t.plt", columns=ColumnMap(x="x", y="y"), cell_size=1, step=10)
