"""`gridcast predict` answers in the user's coordinates: lon/lat (or planar x/y) of every cell, times
of the steps ahead, `--geojson`, `--points` and the warning for a prefix outside the training area.

Models are tiny (one or a few epochs): these tests check where answers are *placed*, not how good
they are. Coordinates are checked against pyproj and the grid directly, not through the code under
test.
"""
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyproj
import pytest

from gridcast.cli import main
from gridcast.datasets.liverpool import LIVERPOOL_COLUMNS, liverpool_route14
from gridcast.ingest.prepare import prepare
from gridcast.nextcell.forecaster import Forecaster
from gridcast.tracks import Track

LIVERPOOL = str(liverpool_route14())
COLS = ["--track-col", "trip_id", "--time-col", "timestamp", "--lat-col", "latitude", "--lon-col", "longitude"]
PLANAR_CELL = 2.5  # planar grid in data units, not 1, so a cell's centre differs from its number
ROUTE_A = [(x, 3) for x in range(14, 0, -1)]
ROUTE_B = [(14, 3)] + [(14, 3 + k) for k in range(1, 9)] + [(14 - k, 11) for k in range(1, 5)]


@pytest.fixture(scope="module")
def geo_model(tmp_path_factory):
    """Liverpool route 14 at 100 m / 30 s, not collapsed: a geographic grid with a step."""
    out = tmp_path_factory.mktemp("geo") / "model"
    assert main(["fit", LIVERPOOL, *COLS, "--cell-size", "100", "--step", "30", "--max-gap", "600", "--cell", "gru",
                 "--hidden", "16", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def planar(tmp_path_factory):
    """(model dir, data file): the two repeated routes in planar units, one point a second."""
    tmp = tmp_path_factory.mktemp("planar")
    lines = ["track,time,x,y"]
    for r in range(4):
        for name, route in (("a", ROUTE_A), ("b", ROUTE_B)):
            lines += [f"{name}{r},{t},{x * PLANAR_CELL},{y * PLANAR_CELL}" for t, (x, y) in enumerate(route)]
    data = tmp / "routes.csv"
    data.write_text("\n".join(lines) + "\n")
    out = tmp / "model"
    assert main(["fit", str(data), "--x-col", "x", "--y-col", "y", "--cell-size", str(PLANAR_CELL), "--step", "1",
                 "--cell", "lstm", "--hidden", "16", "--epochs", "3", "--out", str(out), "--no-progress"]) == 0
    return out, data


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main(["predict", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _json(capsys, *args):
    code, out, err = _run(capsys, *args, "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    return lines[0] if len(lines) == 1 else lines


def _lonlat(grid, cells) -> np.ndarray:
    """Cell centres in lon/lat, computed here from the grid and pyproj."""
    cells = np.asarray(cells).reshape(-1, 2)
    x = grid.origin_x + cells[:, 0] * grid.cell_size
    y = grid.origin_y + cells[:, 1] * grid.cell_size
    lon, lat = pyproj.Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return np.column_stack([lon, lat])


def _cells_of(grid, lonlat) -> list[list[int]]:
    lonlat = np.asarray(lonlat).reshape(-1, 2)
    x, y = pyproj.Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform(lonlat[:, 0], lonlat[:, 1])
    return np.column_stack(grid.to_cells(x, y)).tolist()


def _iso_seconds(text: str) -> float:
    assert text.endswith("Z")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc).timestamp()


def _prefix(geo_model, n=12) -> np.ndarray:
    return prepare(LIVERPOOL, geo_model, columns=_colmap()).tracks[0].cells[:n]


def _colmap():
    from gridcast.ingest.columns import ColumnMap

    return ColumnMap(**LIVERPOOL_COLUMNS)


def _track_arg(cells) -> str:
    return " ".join(f"{c},{r}" for c, r in np.asarray(cells))


# ------------------------------------------------------------------ coordinates in --json


def test_track_json_adds_lonlat_and_keeps_every_contract_value(geo_model, capsys):
    model = Forecaster.load(geo_model)
    prefix = _prefix(geo_model)
    got = _json(capsys, geo_model, "--track", _track_arg(prefix), "--horizon", "4", "--top-k", "3")
    nexts, p_end = model.predict_next_with_end(prefix, 3)
    routes = model.beam(prefix, 4, width=3)
    assert [(n["cell"], n["p"]) for n in got["next"]] == [(list(n.cell), n.p) for n in nexts]
    assert [(r["cells"], r["p"], r["ended"]) for r in got["routes"]] == \
        [([list(c) for c in r.cells], r.p, r.ended) for r in routes]
    assert got["p_end"] == p_end
    point = got["point"]  # the point forecast: one cell per step, placed like the routes, no times for --track
    assert set(point) == {"cells", "coords"} and len(point["cells"]) == 4
    assert np.allclose(point["coords"], _lonlat(model.grid, point["cells"]), atol=1e-6)
    for n in got["next"]:
        assert set(n) == {"cell", "p", "lon", "lat"}
        assert np.allclose([n["lon"], n["lat"]], _lonlat(model.grid, n["cell"])[0], atol=1e-6)
    for r in got["routes"]:
        assert "times" not in r  # --track cells carry no times
        assert len(r["coords"]) == len(r["cells"])
        if r["cells"]:
            assert np.allclose(r["coords"], _lonlat(model.grid, r["cells"]), atol=1e-6)


def test_data_file_routes_have_iso_times_at_the_models_step(geo_model, capsys):
    got = _json(capsys, geo_model, LIVERPOOL, *COLS, "--horizon", "3", "--top-k", "2")
    tracks = {t.id: t for t in prepare(LIVERPOOL, geo_model, columns=_colmap(), min_len=1).tracks}
    assert len(got) == len(tracks)
    for answer in got:
        last = tracks[answer["track"]].times[-1]
        for r in answer["routes"]:
            assert len(r["times"]) == len(r["cells"]) == len(r["coords"])
            assert [_iso_seconds(t) for t in r["times"]] == pytest.approx([last + 30 * k for k in range(1, len(r["cells"]) + 1)])


def test_planar_answers_in_xy_with_times_in_seconds(planar, capsys):
    model_dir, data = planar
    got = _json(capsys, model_dir, "--track", "14,3 13,3", "--horizon", "3", "--top-k", "2")
    for n in got["next"]:
        assert set(n) == {"cell", "p", "x", "y"}
        assert [n["x"], n["y"]] == [c * PLANAR_CELL for c in n["cell"]]
    for r in got["routes"]:
        assert r["coords"] == [[c * PLANAR_CELL, w * PLANAR_CELL] for c, w in r["cells"]]
    per_track = _json(capsys, model_dir, data, "--x-col", "x", "--y-col", "y", "--horizon", "2", "--top-k", "1")
    a0 = next(a for a in per_track if a["track"] == "a0")
    route = a0["routes"][0]
    assert route["times"] == [float(len(ROUTE_A) - 1 + k) for k in range(1, len(route["cells"]) + 1)]
    assert all(isinstance(t, float) for t in route["times"])


def test_model_without_grid_keeps_todays_output_exactly(tmp_path, capsys):
    route = np.array(ROUTE_A)
    model = Forecaster(cell="gru", hidden=8).fit([Track(str(i), route) for i in range(4)], epochs=2)
    model.save(tmp_path / "bare")
    got = _json(capsys, tmp_path / "bare", "--track", "14,3 13,3", "--horizon", "3", "--top-k", "2")
    assert set(got) == {"next", "routes", "p_end", "point"}
    assert set(got["point"]) == {"cells"} and len(got["point"]["cells"]) == 3  # cells only, as everything else
    assert all(set(n) == {"cell", "p"} for n in got["next"])
    assert all(set(r) == {"cells", "p", "ended"} for r in got["routes"])
    loaded = Forecaster.load(tmp_path / "bare")
    nexts, p_end = loaded.predict_next_with_end(route[:2], 2)
    assert got["next"] == [{"cell": list(n.cell), "p": n.p} for n in nexts] and got["p_end"] == p_end
    for flag, value in (("--points", "14,3 13,3"), ("--geojson", str(tmp_path / "out.geojson"))):
        args = ["--track", "14,3"] if flag == "--geojson" else []
        code, _, err = _run(capsys, tmp_path / "bare", *args, flag, value)
        assert code == 2 and "bare cells" in err and "Traceback" not in err


# ------------------------------------------------------------------ --geojson


def _check_feature_collection(doc: dict) -> None:
    """RFC 7946 structure, by hand: types, geometry types, positions as [lon, lat] in range."""
    assert doc["type"] == "FeatureCollection" and isinstance(doc["features"], list) and doc["features"]
    for f in doc["features"]:
        assert f["type"] == "Feature" and isinstance(f["properties"], dict)
        geometry = f["geometry"]
        assert geometry["type"] in ("Point", "LineString")
        positions = [geometry["coordinates"]] if geometry["type"] == "Point" else geometry["coordinates"]
        if geometry["type"] == "LineString":
            assert len(positions) >= 2
        for lon, lat in positions:
            assert -180 <= lon <= 180 and -90 <= lat <= 90


def test_geojson_of_a_data_file_is_valid_and_round_trips_the_cells(geo_model, tmp_path, capsys):
    out = tmp_path / "answers.geojson"
    got = _json(capsys, geo_model, LIVERPOOL, *COLS, "--horizon", "4", "--top-k", "2", "--geojson", out)
    doc = json.loads(out.read_text())
    _check_feature_collection(doc)
    grid = Forecaster.load(geo_model).grid
    lon, lat = doc["features"][0]["geometry"]["coordinates"][0]
    assert -3.1 < lon < -2.7 and 53.3 < lat < 53.6  # Liverpool, in lon, lat order
    by_track = {a["track"]: a for a in got}
    prefixes = {t.id: t.cells for t in prepare(LIVERPOOL, geo_model, columns=_colmap(), min_len=1).tracks}
    kinds = {}
    for f in doc["features"]:
        props, coords = f["properties"], f["geometry"]["coordinates"]
        answer = by_track[props["track"]]
        kinds.setdefault(props["track"], []).append(props["kind"])
        if props["kind"] == "prefix":
            assert _cells_of(grid, coords) == prefixes[props["track"]].tolist() == props["cells"]
        elif props["kind"] == "route":
            route = answer["routes"][props["rank"] - 1]
            assert props["p"] == route["p"] and props["ended"] == route["ended"]
            assert props["times"] == route["times"]
            back = _cells_of(grid, coords)
            assert back[0] == prefixes[props["track"]][-1].tolist()  # drawn from the prefix's end
            assert back[1:] == route["cells"] == props["cells"]
        elif props["kind"] == "point":
            back = _cells_of(grid, coords)
            assert back[0] == prefixes[props["track"]][-1].tolist()
            assert back[1:] == answer["point"]["cells"] == props["cells"]
            assert props["times"] == answer["point"]["times"]
        else:
            assert props["kind"] == "next"
            assert _cells_of(grid, coords) == [answer["next"][props["rank"] - 1]["cell"]]
            assert props["p"] == answer["next"][props["rank"] - 1]["p"]
    assert set(kinds) == set(by_track)
    assert all(k.count("prefix") == 1 and k.count("route") == 2 and k.count("next") == 2 and k.count("point") == 1
               for k in kinds.values())
    assert not [p for p in tmp_path.iterdir() if p.name != out.name]  # no temporary file left behind


def test_geojson_of_one_track_has_no_track_property(geo_model, tmp_path, capsys):
    out = tmp_path / "one.geojson"
    code, _, err = _run(capsys, geo_model, "--track", _track_arg(_prefix(geo_model, 1)), "--horizon", "2",
                        "--geojson", out)
    assert code == 0, err
    doc = json.loads(out.read_text())
    _check_feature_collection(doc)
    assert doc["features"][0]["geometry"]["type"] == "Point"  # a one-cell prefix
    assert all("track" not in f["properties"] for f in doc["features"])


def test_geojson_refuses_planar_grids_and_the_inputs(planar, geo_model, tmp_path, capsys):
    model_dir, data = planar
    code, _, err = _run(capsys, model_dir, "--track", "14,3", "--geojson", tmp_path / "p.geojson")
    assert code == 2 and "planar" in err and not (tmp_path / "p.geojson").exists()
    code, _, err = _run(capsys, geo_model, "--track", "45,46", "--geojson", tmp_path / "no" / "such.geojson")
    assert code == 2 and "does not exist" in err
    csv = tmp_path / "trip.csv"
    csv.write_text(open(LIVERPOOL).read())
    code, _, err = _run(capsys, geo_model, csv, *COLS, "--geojson", csv)
    assert code == 2 and "refusing to overwrite" in err and csv.read_text() == open(LIVERPOOL).read()
    code, _, err = _run(capsys, geo_model, "--track", "45,46", "--geojson", geo_model / "config.json")
    assert code == 2 and "refusing to overwrite" in err
    json.loads((geo_model / "config.json").read_text())


# ------------------------------------------------------------------ --points


def test_points_give_the_same_answer_as_the_equivalent_track(geo_model, planar, capsys):
    model = Forecaster.load(geo_model)
    prefix = _prefix(geo_model)
    centres = _lonlat(model.grid, prefix) + np.array([3e-4, -2e-4])  # ~20 m off the centres, inside the cells
    assert _cells_of(model.grid, centres) == prefix.tolist()
    points = " ".join(f"{lat},{lon}" for lon, lat in centres)
    args = ("--horizon", "4", "--top-k", "3")
    assert _json(capsys, geo_model, "--points", points, *args) == _json(capsys, geo_model, "--track", _track_arg(prefix), *args)
    model_dir, _ = planar
    assert _json(capsys, model_dir, "--points", "35.2,7.9 32.6,7.4", *args) == \
        _json(capsys, model_dir, "--track", "14,3 13,3", *args)


def test_points_with_times_are_prepared_like_a_data_file(geo_model, tmp_path, capsys):
    raw = pd.read_csv(LIVERPOOL)
    trip = raw[raw["trip_id"] == raw["trip_id"].iloc[0]].head(25)
    csv = tmp_path / "trip.csv"
    trip.to_csv(csv, index=False)
    stamps = [t.replace(" ", "T") + "Z" for t in trip["timestamp"]]
    points = " ".join(f"{a},{o},{t}" for a, o, t in zip(trip["latitude"], trip["longitude"], stamps))
    by_points = _json(capsys, geo_model, "--points", points, "--horizon", "3", "--top-k", "2")
    by_file = _json(capsys, geo_model, csv, *COLS, "--horizon", "3", "--top-k", "2")
    assert [r["cells"] for r in by_points["routes"]] == [r["cells"] for r in by_file["routes"]]
    assert [r["times"] for r in by_points["routes"]] == [r["times"] for r in by_file["routes"]]
    assert [n["cell"] for n in by_points["next"]] == [n["cell"] for n in by_file["next"]]
    assert np.allclose([n["p"] for n in by_points["next"]], [n["p"] for n in by_file["next"]], rtol=1e-5)


@pytest.mark.parametrize("points,named", [
    ("53.45,-2.92 53.46", "point 2"),                                   # wrong count of numbers
    ("53.45,-2.92,1,2", "point 1"),
    ("53.45,-2.92 nan,-2.92", "point 2: lat"),
    ("53.45,-2.92 53.45,inf", "point 2: lon"),
    ("95,-2.92", "point 1: lat 95 outside"),
    ("53.45,-200", "point 1: lon -200 outside"),
    ("53.45,west", "point 1: lon 'west' is not a number"),
    ("53.45,-2.92,2026-01-26T15:57:02Z 53.46,-2.93", "point 2: give a time"),
    ("53.45,-2.92,100 53.46,-2.93,90", "point 2: time is not after point 1"),
    ("53.45,-2.92,yesterday", "point 1: time 'yesterday'"),
])
def test_bad_points_are_one_line_naming_point_and_field(geo_model, capsys, points, named):
    code, out, err = _run(capsys, geo_model, "--points", points)
    assert code == 2 and not out
    assert err.count("\n") == 1 and named in err and "--points" in err, err


def test_exactly_one_prefix_source(geo_model, capsys):
    for args in ((), ("--track", "45,46", "--points", "53.45,-2.92"), (LIVERPOOL, "--track", "45,46")):
        code, _, err = _run(capsys, geo_model, *args)
        assert code == 2 and "exactly one of" in err


# ------------------------------------------------------------------ coverage


def test_prefix_outside_the_training_area_is_warned_with_its_distance(geo_model, capsys):
    model = Forecaster.load(geo_model)
    cells = np.concatenate([t.cells for t in model.train_tracks_])
    top = int(cells[:, 0].max())
    row = int(cells[cells[:, 0] == top][0, 1])
    code, _, err = _run(capsys, geo_model, "--track", f"{top},{row}", "--json")
    assert code == 0 and "warning" not in err  # inside: silent
    code, _, err = _run(capsys, geo_model, "--track", f"{top},{row} {top + 10},{row}", "--json")
    assert code == 0 and "warning:" in err and "950 m" in err and "point 2 of 2" in err, err
    code, _, err = _run(capsys, geo_model, "--points", "51.5007,-0.1246", "--json")  # Westminster, ~280 km away
    assert code == 0 and "warning:" in err
    km = float(err.split(" is ")[1].split(" m ")[0].replace(",", "")) / 1000
    assert 250 < km < 300, err
    code, _, err = _run(capsys, geo_model, LIVERPOOL, *COLS, "--json")
    assert code == 0 and "warning" not in err  # the training data itself


def test_planar_coverage_warning_is_in_cells(planar, capsys):
    model_dir, _ = planar
    code, _, err = _run(capsys, model_dir, "--track", "14,3 14,20")
    assert code == 0 and "warning:" in err and "8.5 cells" in err and " m " not in err, err


# ------------------------------------------------------------------ the README example


def test_readme_example_runs_and_answers_in_lonlat(tmp_path):
    from test_readme import code_blocks, run_bash

    (block,) = code_blocks("### `gridcast predict` in the user's coordinates: `--points`, `--geojson`")
    (tmp_path / "src").symlink_to(Path(__file__).resolve().parents[1] / "src")
    done = run_bash(block, tmp_path)
    assert done.returncode == 0, done.stderr
    answer = json.loads(next(line for line in done.stdout.splitlines() if line.startswith('{"next"')))
    assert all(-3.1 < n["lon"] < -2.7 and 53.3 < n["lat"] < 53.6 for n in answer["next"])
    # the points resampled on the 30 s clock: the last at 15:59:00 (<= 15:59:15), the first step ahead at 15:59:30
    assert all(r["times"][0] == "2026-01-26T15:59:30Z" and len(r["times"]) == len(r["cells"])
               for r in answer["routes"] if r["cells"])  # a route that ends at once has no step, so no time
    doc = json.loads((tmp_path / "bus-next.geojson").read_text())
    _check_feature_collection(doc)
    trips = prepare(LIVERPOOL, tmp_path / "bus-model", columns=_colmap(), min_len=1).tracks
    assert {f["properties"]["track"] for f in doc["features"]} == {t.id for t in trips}  # every trip of the file
