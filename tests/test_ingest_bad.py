"""The bad-input corpus (issue 7): exact drop counts by reason, no valid row lost, strict one-liners.

Every case runs through the real CLI entry point (`gridcast.cli.app`) so the exit status and the
one line on stderr are what a user sees; two cases also run as real subprocesses.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from gridcast.cli import main
from gridcast.errors import InputError
from gridcast.ingest import ColumnMap, grid_tracks, sources

BAD = Path(__file__).parent / "data" / "bad"
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
PLANAR = {"unsorted_times.csv", "duplicate_times.csv", "huge_value.csv"}

# file -> (dropped by reason, kept, tracks, strict message tail) ; None message = strict passes
CASES = {
    "malformed_rows.csv": ({"malformed": 3}, 6, 2, "row 3 (line 4): expected 4 fields, found 3"),
    "nan_inf.csv": ({"not_finite": 4}, 5, 1, "row 3 (line 4): lat nan is not finite"),
    "missing_values.csv": ({"missing": 4}, 4, 2, "row 2 (line 3): missing value in column 'track'"),
    "not_numeric.csv": ({"not_numeric": 2}, 4, 1, "row 2 (line 3): lat 'north' is not a number"),
    "out_of_range.csv": ({"lat_range": 2, "lon_range": 2}, 4, 1, "row 2 (line 3): latitude 123.4 outside [-90, 90]"),
    "unsorted_times.csv": ({}, 7, 2, None),
    "duplicate_times.csv": (
        {"duplicate_time": 3}, 5, 2,
        "row 3 (line 4): duplicate time 10 in track 'A' (an earlier row has the same time)",
    ),
    "one_point_track.csv": (
        {"short_track": 2}, 4, 1, "track 'B': 1 point(s) after cleaning, fewer than min_points=2",
    ),
    "mixed_time.csv": (
        {"bad_time": 4}, 6, 1,
        "row 3 (line 4): time '1704067220' in column 'time' is not an ISO-8601 time (the column holds ISO-8601 times)",
    ),
    "non_utf8.csv": ({"malformed": 1, "not_numeric": 1}, 5, 2, "row 3 (line 4): lat '53.40\\xff' is not a number"),
    "non_utf8_values.csv": ({"not_numeric": 1}, 4, 2, "row 4 (line 5): lat '53.41\\xfe\\xff' is not a number"),
    "huge_value.csv": ({"huge_value": 3}, 4, 1, "row 2 (line 3): x 1e+300 is beyond the limit of 1e+12 in absolute value"),
    "wrong_types.parquet": ({"not_numeric": 1}, 4, 2, "row 3: lat 'north' is not a number"),
}
ERRORS = {
    "wrong_columns.csv": "missing columns 'track', 'time', 'lat', 'lon' (columns found: 'id', 'timestamp', "
                         "'latitude', 'longitude'); for this file: --track-col id --time-col timestamp "
                         "--lat-col latitude --lon-col longitude",
    "empty.csv": "the file is empty",
    "header_only.csv": "no data rows (only a header)",
    "bool_lat.parquet": "column 'lat' holds bool values; expected numbers",
}


def _argv(name: str, out: Path, *extra: str) -> list[str]:
    cols = ["--x-col", "x", "--y-col", "y"] if name in PLANAR else ["--lat-col", "lat", "--lon-col", "lon"]
    size = "1" if name in PLANAR else "100"
    return ["grid", str(BAD / name), "--out", str(out), "--cell-size", size, "--step", "0", *cols, *extra]


@pytest.mark.parametrize("name", sorted(CASES))
def test_default_mode_counts_every_row(name, tmp_path, capsys):
    dropped, kept, tracks, _ = CASES[name]
    out = tmp_path / "out.parquet"
    assert main(_argv(name, out, "--json")) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert set(report) == {"read", "kept", "dropped", "tracks", "seconds", "points_per_s"}
    assert report["dropped"] == dropped
    assert report["kept"] == kept and report["tracks"] == tracks
    assert report["read"] == kept + sum(dropped.values())
    assert "Traceback" not in captured.err
    frame = pd.read_parquet(out)
    assert len(frame) == kept  # step 0: every kept row is in the output, none invented


@pytest.mark.parametrize("name", sorted(CASES))
def test_strict_mode_names_file_row_and_reason(name, tmp_path, capsys):
    message = CASES[name][3]
    code = main(_argv(name, tmp_path / "out.parquet", "--strict"))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if message is None:
        assert code == 0
        return
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0] == f"gridcast grid: error: {BAD / name} {message}"
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize("name", sorted(ERRORS))
@pytest.mark.parametrize("strict", [False, True])
def test_unusable_files_fail_with_one_line(name, strict, tmp_path, capsys):
    extra = ["--strict"] if strict else []
    assert main(_argv(name, tmp_path / "out.parquet", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"gridcast grid: error: {BAD / name}")
    assert err[0].endswith(ERRORS[name])


def test_duplicates_keep_the_first_row_in_file_order():
    gt = grid_tracks(BAD / "duplicate_times.csv", cell_size=1, step=None, columns=ColumnMap(x="x", y="y"))
    a = gt.frame[gt.frame.track == "A"]
    assert a.time.tolist() == [0, 10, 20]
    assert a.x.tolist() == [0, 1, 2]  # the later (9, 9) and (8, 8) rows at t=10 are the dropped ones
    b = gt.frame[gt.frame.track == "B"]
    assert b.y.tolist() == [5, 6]


def test_unsorted_times_are_sorted_and_reported():
    gt = grid_tracks(BAD / "unsorted_times.csv", cell_size=1, step=None, columns=ColumnMap(x="x", y="y"))
    a = gt.frame[gt.frame.track == "A"]
    assert a.time.tolist() == [0, 10, 20, 30] and a.x.tolist() == [0, 1, 2, 3]
    assert any("sorted 1 track(s)" in m for m in gt.report.messages)


def test_non_utf8_ids_are_kept_distinctly_and_reported():
    for name in ("non_utf8.csv", "non_utf8_values.csv"):
        gt = grid_tracks(BAD / name, cell_size=100, step=None, columns=ColumnMap(lat="lat", lon="lon"))
        assert "caf\\xe9" in set(gt.frame.track)
        assert any("UTF-8" in m for m in gt.report.messages)


def test_mixed_times_keep_the_zone_suffixed_row():
    gt = grid_tracks(BAD / "mixed_time.csv", cell_size=100, step=None, columns=ColumnMap(lat="lat", lon="lon"))
    assert gt.frame.time.tolist() == [1704067200 + s for s in (0, 10, 30, 50, 70, 90)]


def test_api_strict_raises_input_error():
    with pytest.raises(InputError, match=r"out_of_range\.csv row 2 \(line 3\): latitude 123\.4"):
        grid_tracks(BAD / "out_of_range.csv", cell_size=100, step=None, columns=ColumnMap(lat="lat", lon="lon"), strict=True)


def test_real_subprocess_has_no_traceback(tmp_path):
    """The user's view: a separate process, undecodable bytes (lenient re-read) and --strict."""
    argv = [sys.executable, "-m", "gridcast", *_argv("non_utf8.csv", tmp_path / "o.parquet", "--strict")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"gridcast grid: error: {BAD / 'non_utf8.csv'} {CASES['non_utf8.csv'][3]}"
    ]


@pytest.mark.parametrize("ranges", [2, 3])
@pytest.mark.parametrize("name", sorted(n for n in CASES if not n.endswith(".parquet")))  # ranges are for CSV
def test_parallel_byte_ranges_give_the_same_counts_and_messages(name, ranges, tmp_path, monkeypatch, capsys):
    """Big plain CSVs are parsed as one byte range per core; force that on the small corpus files."""
    monkeypatch.setattr(sources, "_RANGE_MIN", 16)
    monkeypatch.setattr(sources, "_RANGES", ranges)
    dropped, kept, tracks, message = CASES[name]
    assert main(_argv(name, tmp_path / "o.parquet", "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["dropped"], report["kept"], report["tracks"]) == (dropped, kept, tracks)
    code = main(_argv(name, tmp_path / "s.parquet", "--strict"))
    err = capsys.readouterr().err.strip()
    assert code == (0 if message is None else 2)
    if message is not None:
        assert err == f"gridcast grid: error: {BAD / name} {message}"
