"""End to end on the shared real data: Liverpool bus route 14 and GeoLife (skipped where absent)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gridcast.cli import main
from gridcast.ingest import ColumnMap, grid_tracks, load_grid, read_gridded

BUS = ColumnMap(track="trip_id", time="timestamp", lat="latitude", lon="longitude")
BUS_FLAGS = ["--track-col", "trip_id", "--time-col", "timestamp", "--lat-col", "latitude", "--lon-col", "longitude"]


@pytest.fixture
def bus_csv(shared_data):
    path = shared_data / "liverpool_bus_route14" / "route14_outbound.csv"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture
def geolife(shared_data):
    path = shared_data / "geolife_skmob" / "geolife_sample.txt.gz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


def test_liverpool_bus_at_100m_30s(bus_csv):
    gt = grid_tracks(bus_csv, cell_size=100, step=30, columns=BUS)
    r = gt.report
    assert (r.read, r.kept, r.dropped, r.tracks) == (1533, 1533, {}, 16)  # a clean file: 16 trips, nothing lost
    assert gt.grid.crs == "EPSG:32630" and gt.grid.step == 30.0
    f = gt.frame
    assert np.all(f.groupby("track").time.diff().dropna() == 30)
    # ~24 s fixes of a bus: 30 s steps move at most a few 100 m cells
    jumps = [np.abs(np.diff(s, axis=0)).max(axis=1) for _, s in gt.sequences()]
    jumps = np.concatenate(jumps)
    assert np.quantile(jumps, 0.95) <= 3
    # one route, driven 16 times (some trips only partly logged): many cells are shared by half the trips
    cells = [set(map(tuple, s)) for _, s in gt.sequences()]
    visits = pd.Series([c for cs in cells for c in cs]).value_counts()
    assert len(visits) < 400 and (visits >= 8).sum() >= 30


def test_liverpool_like_lands_a_second_file_on_the_identical_grid(bus_csv, tmp_path, capsys):
    full = tmp_path / "full.parquet"
    assert main(["grid", str(bus_csv), "--out", str(full), "--cell-size", "100", "--step", "30", *BUS_FLAGS, "--json"]) == 0
    raw = pd.read_csv(bus_csv)
    late = sorted(raw.trip_id.unique())[-5:]
    test_csv = tmp_path / "test_trips.csv"
    raw[raw.trip_id.isin(late)].to_csv(test_csv, index=False)
    part = tmp_path / "test.parquet"
    assert main(["grid", str(test_csv), "--out", str(part), "--like", str(full), *BUS_FLAGS, "--json"]) == 0
    assert load_grid(part) == load_grid(full)
    whole = dict(read_gridded(full).sequences())
    sub = dict(read_gridded(part).sequences())
    assert set(sub) == {str(t) for t in late}
    for tid, seq in sub.items():
        assert np.array_equal(seq, whole[tid])  # same cells, cell for cell
    alone = grid_tracks(test_csv, cell_size=100, step=30, columns=BUS)
    assert alone.grid.origin_y != load_grid(full).origin_y or alone.grid.origin_x != load_grid(full).origin_x


def test_geolife_two_users_at_250m_60s(geolife):
    gt = grid_tracks(
        geolife, cell_size=250, step=60, max_gap=600, collapse=True,
        columns=ColumnMap(track="uid", time="datetime", lat="lat", lon="lng"),
    )
    r = gt.report
    assert r.read == 217_653
    assert r.read == r.kept + sum(r.dropped.values())
    assert set(r.dropped) <= {"duplicate_time", "short_track"} and r.kept > 0.9 * r.read
    assert gt.grid.crs == "EPSG:32650"  # Beijing: UTM zone 50 N
    users = {t.split("#")[0] for t in gt.frame.track.unique()}
    assert users == {"001", "005"}  # ids keep their leading zeros
    assert 100 < r.tracks < 2000
    seqs = gt.sequences()
    moves = np.concatenate([np.abs(np.diff(s, axis=0)).max(axis=1) for _, s in seqs])
    assert np.all(moves >= 1)  # collapsed: consecutive cells always differ
    assert np.mean(moves == 1) > 0.6  # at 60 s most moves are to a neighbouring 250 m cell
