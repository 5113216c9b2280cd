"""Property tests (hypothesis): parsers never crash, grid round trips, resampling stays in the span."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.ingest import ColumnMap, grid_tracks

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
XY = ColumnMap(track="track", time="time", x="x", y="y")

field = st.one_of(
    st.sampled_from(["", "nan", "inf", "-1e400", "1e300", "0", "12.5", " 3 ", "north", "2024-01-01T00:00:00", "\"", "a,b"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**20, 10**20).map(str),
    st.text(max_size=8),
    st.binary(max_size=6).map(lambda b: b.decode("latin-1")),
)
row = st.lists(field, min_size=0, max_size=6)


def _outcome_ok(run) -> None:
    try:
        gt = run()
    except InputError as exc:
        assert "\n" not in str(exc).strip()
        return
    r = gt.report
    assert r.read == r.kept + sum(r.dropped.values())
    assert all(v > 0 for v in r.dropped.values())
    assert len(gt.frame) > 0 and gt.frame.step.min() == 0


@SETTINGS
@given(rows=st.lists(row, max_size=25), raw=st.binary(max_size=40), strict=st.booleans())
def test_random_csv_never_crashes(tmp_path_factory, rows, raw, strict):
    path = tmp_path_factory.mktemp("p") / "r.csv"
    body = "track,time,x,y\n" + "\n".join(",".join(r) for r in rows)
    path.write_bytes(body.encode("utf-8", "surrogateescape") + raw)
    _outcome_ok(lambda: grid_tracks(path, cell_size=1.0, step=None, columns=XY, strict=strict))


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", None, 3, 4.5]),
            st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**6), st.text(max_size=4), st.none()),
            st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4), st.none()),
            st.floats(-1e13, 1e13),
        ),
        max_size=30,
    ),
    step=st.sampled_from([None, 1.0, 7.5]),
)
def test_random_dataframe_never_crashes(rows, step):
    df = pd.DataFrame(rows, columns=["track", "time", "x", "y"])
    _outcome_ok(lambda: grid_tracks(df, cell_size=0.5, step=step, columns=XY, max_gap=1e4))


@settings(max_examples=200, deadline=None)
@given(
    size=st.floats(1e-3, 1e4),
    ox=st.floats(-1e6, 1e6),
    oy=st.floats(-1e6, 1e6),
    pts=st.lists(st.tuples(st.floats(-1e7, 1e7), st.floats(-1e7, 1e7)), min_size=1, max_size=50),
)
def test_grid_round_trip_within_half_a_cell(size, ox, oy, pts):
    g = Grid(cell_size=size, origin_x=ox, origin_y=oy)
    x, y = np.array(pts).T
    if max(np.abs(x - ox).max(), np.abs(y - oy).max()) / size > 2**31 - 2:
        with pytest.raises(InputError, match="larger --cell-size"):  # cells beyond +-2^31 are refused
            g.to_cells(x, y)
        return
    cx, cy = g.to_centres(*g.to_cells(x, y))
    tol = size / 2 + 1e-9 * (np.abs(x) + np.abs(ox) + size)
    assert np.all(np.abs(cx - x) <= tol) and np.all(np.abs(cy - y) <= tol)


track_points = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 400), st.floats(-100, 100), st.floats(-100, 100)),
    min_size=2, max_size=60,
)


@settings(max_examples=50, deadline=None)
@given(rows=track_points, step=st.sampled_from([1.0, 3.0, 10.0, 0.7]), max_gap=st.sampled_from([None, 5.0, 50.0]))
def test_resampling_never_invents_points_outside_a_track(rows, step, max_gap):
    df = pd.DataFrame(rows, columns=["track", "time", "x", "y"])
    try:
        gt = grid_tracks(df, cell_size=1.0, step=step, columns=XY, max_gap=max_gap, min_points=1)
    except InputError as exc:
        assert "no usable tracks" in str(exc)
        return
    clean = df.drop_duplicates(["track", "time"])
    for tid, part in gt.frame.groupby("track", sort=False):
        raw = clean[clean.track == tid.split("#")[0]]
        t = part.time.to_numpy()
        assert t.min() >= raw.time.min() and t.max() <= raw.time.max()
        assert np.all(np.diff(t) > 0)
        assert np.allclose(t / step, np.round(t / step), atol=1e-6)  # on the shared clock ticks
        assert part.x.min() >= raw.x.min() - 1e-9 and part.x.max() <= raw.x.max() + 1e-9
        assert part.y.min() >= raw.y.min() - 1e-9 and part.y.max() <= raw.y.max() + 1e-9
        if max_gap is not None:  # nothing lands strictly inside a gap that splits the track
            ticks = np.sort(raw.time.to_numpy().astype(float))
            for lo, hi in zip(ticks[:-1], ticks[1:]):
                if hi - lo > max_gap:
                    assert not np.any((t > lo) & (t < hi))


@settings(max_examples=40, deadline=None)
@given(times=st.lists(st.integers(0, 10**6), min_size=2, max_size=40, unique=True), step=st.integers(1, 5000))
def test_resampled_points_lie_on_the_segment_between_neighbours(times, step):
    t = np.array(times, dtype=float)
    x = np.sin(t / 1000.0) * 100
    df = pd.DataFrame({"track": "a", "time": t, "x": x, "y": 2 * x})
    try:
        gt = grid_tracks(df, cell_size=1.0, step=float(step), columns=XY, min_points=1)
    except InputError:
        return
    order = np.argsort(t)
    expect = np.interp(gt.frame.time.to_numpy(), t[order], x[order])
    assert np.allclose(gt.frame.x.to_numpy(), expect, atol=1e-6)
    assert np.allclose(gt.frame.y.to_numpy(), 2 * expect, atol=1e-6)


@SETTINGS
@given(rows=st.lists(row.filter(lambda r: '"' not in "".join(r)), max_size=30), strict=st.booleans())
def test_byte_ranges_agree_with_one_reader_on_random_csv(tmp_path_factory, rows, strict):
    """(Like pyarrow's own block splitting, ranges assume no line breaks inside quoted values.)"""
    from gridcast.ingest import sources

    path = tmp_path_factory.mktemp("r") / "r.csv"
    path.write_bytes(("track,time,x,y\n" + "\n".join(",".join(r) for r in rows) + "\n").encode("utf-8", "surrogateescape"))

    def outcome():
        try:
            gt = grid_tracks(path, cell_size=1.0, step=None, columns=XY, strict=strict)
        except InputError as exc:
            return str(exc)
        return gt.report.to_json() | {"seconds": 0, "points_per_s": 0}, gt.frame.to_dict("list")

    one = outcome()
    saved = sources._RANGE_MIN, sources._RANGES
    sources._RANGE_MIN, sources._RANGES = 8, 3
    try:
        assert outcome() == one
    finally:
        sources._RANGE_MIN, sources._RANGES = saved
