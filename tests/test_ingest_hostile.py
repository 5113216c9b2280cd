"""Hostile data files (issue 15): odd line ends, huge headers, special files, nested Parquet columns,
duration units, tracks without a resample tick, memory guards from estimates, outputs that are inputs."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gridcast.cli import main
from gridcast.errors import InputError
from gridcast.ingest import ColumnMap, grid_tracks, sources
from gridcast.ingest.memory import BYTES_PER_POINT, DEFAULT_MEMORY_LIMIT
from gridcast.ingest.outputs import refuse_input_as_output, same_file

LATLON = ColumnMap(track="track", time="time", lat="lat", lon="lon")
ROWS = "track,time,lat,lon\n" + "".join(f"A,{10 * i},53.40{i:02d},-2.98{i:02d}\n" for i in range(12))


def _grid(path, **kw) -> pd.DataFrame:
    return grid_tracks(path, cell_size=100, step=30, columns=LATLON, **kw).frame


def test_cr_only_and_crlf_line_ends_read_like_lf(tmp_path):
    frames = []
    for name, end in (("lf.csv", "\n"), ("cr.csv", "\r"), ("crlf.csv", "\r\n")):
        (tmp_path / name).write_text(ROWS.replace("\n", end), newline="")
        frames.append(_grid(tmp_path / name))
    assert len(frames[0]) == 4
    for f in frames[1:]:
        pd.testing.assert_frame_equal(f, frames[0])


def test_a_header_longer_than_the_sniffing_window_reads(tmp_path):
    pad = "p" * 100_000
    text = f"track,time,lat,lon,{pad}\n" + "".join(line + ",\n" for line in ROWS.splitlines()[1:])
    (tmp_path / "long.csv").write_text(text)
    (tmp_path / "short.csv").write_text(ROWS)
    pd.testing.assert_frame_equal(_grid(tmp_path / "long.csv"), _grid(tmp_path / "short.csv"))


def test_an_endless_first_line_and_too_many_columns_are_refused(tmp_path):
    (tmp_path / "line.csv").write_bytes(b"x" * (sources.MAX_HEADER_BYTES + 10))
    with pytest.raises(InputError, match="first line is longer than 1 MiB"):
        _grid(tmp_path / "line.csv")
    names = ",".join(f"c{i}" for i in range(sources.MAX_COLUMNS))
    (tmp_path / "wide.csv").write_text(f"track,time,lat,lon,{names}\nA,0,53.4,-2.9\n")
    with pytest.raises(InputError, match="20,004 columns, more than the 20,000"):
        _grid(tmp_path / "wide.csv")


def test_a_row_longer_than_a_block_is_refused_in_one_read(tmp_path):
    (tmp_path / "row.csv").write_bytes(ROWS.encode() + b"A," + b"9" * (3 << 20) + b",53.4,-2.9\n")
    with pytest.raises(InputError, match="a row is longer than 1 MiB"):
        _grid(tmp_path / "row.csv")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_special_files_are_refused_without_reading(tmp_path, kind):
    path = tmp_path / "x.csv"
    os.mkfifo(path) if kind == "fifo" else os.symlink("/dev/zero", path)
    with pytest.raises(InputError, match=f"not a regular file \\(a {'FIFO' if kind == 'fifo' else 'device'}\\)"):
        _grid(path)


@pytest.mark.parametrize("column,values,typename", [
    ("track", pa.array([[1, 2]] * 12), "list<"),
    ("lat", pa.array([{"v": 1.0}] * 12), "struct<"),
])
def test_nested_parquet_columns_are_refused_by_name(tmp_path, column, values, typename):
    df = pd.read_csv(pd.io.common.StringIO(ROWS))
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.set_column(table.schema.get_field_index(column), column, values)
    pq.write_table(table, tmp_path / "n.parquet")
    with pytest.raises(InputError, match=f"column '{column}' holds {typename}"):
        _grid(tmp_path / "n.parquet")


@pytest.mark.parametrize("unit,scale", [("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9)])
def test_parquet_durations_honour_their_unit(tmp_path, unit, scale):
    df = pd.read_csv(pd.io.common.StringIO(ROWS))
    table = pa.Table.from_pandas(df, preserve_index=False)
    ticks = pa.array([int(t) * scale for t in df["time"]], pa.duration(unit))
    pq.write_table(table.set_column(table.schema.get_field_index("time"), "time", ticks), tmp_path / "d.parquet")
    frame = grid_tracks(tmp_path / "d.parquet", cell_size=100, step=30, columns=LATLON).frame
    assert frame["time"].tolist() == [0.0, 30.0, 60.0, 90.0]


def test_tracks_without_a_resample_tick_are_short_tracks(tmp_path):
    (tmp_path / "none.csv").write_text("track,time,lat,lon\nA,1.1,53.4,-2.9\nA,1.9,53.41,-2.91\n")
    with pytest.raises(InputError, match="no usable tracks left after cleaning .*short_track 2"):
        _grid(tmp_path / "none.csv")
    with pytest.raises(InputError, match="track 'A': 0 point\\(s\\) after cleaning and resampling"):
        _grid(tmp_path / "none.csv", strict=True)
    (tmp_path / "mixed.csv").write_text(ROWS + "B,31.1,53.41,-2.97\nB,31.9,53.42,-2.96\n")
    gt = grid_tracks(tmp_path / "mixed.csv", cell_size=100, step=30, columns=LATLON)
    assert gt.report.dropped == {"short_track": 2} and gt.report.read == gt.report.kept + 2
    assert gt.grid.crs == "EPSG:32630"


def test_the_memory_guard_refuses_before_resampling_with_the_numbers(tmp_path):
    (tmp_path / "far.csv").write_text("track,time,lat,lon\nA,0,53.4,-2.9\nA,49000000,53.41,-2.91\n")
    with pytest.raises(InputError, match=r"4\.9e\+07 points .* about 9\.13 GiB of memory, over the --memory-limit of 4 GiB"):
        grid_tracks(tmp_path / "far.csv", cell_size=100, step=1, columns=LATLON)
    assert DEFAULT_MEMORY_LIMIT == 4 << 30 and BYTES_PER_POINT > 0
    # a limit that fits lets the same job through
    gt = grid_tracks(tmp_path / "far.csv", cell_size=100, step=1000, columns=LATLON, memory_limit=16 << 20)
    assert len(gt.frame) == 49_001


def test_grid_cli_memory_limit_end_to_end(tmp_path, capsys):
    (tmp_path / "in.csv").write_text(ROWS)
    argv = ["grid", str(tmp_path / "in.csv"), "--out", str(tmp_path / "o.parquet"), "--cell-size", "100", "--step", "1"]
    assert main(argv + ["--memory-limit", "1MiB"]) == 0  # 111 points fit in 1 MiB
    assert main(argv + ["--memory-limit", "1MiB", "--step", "0.0001"]) == 2
    err = capsys.readouterr().err
    assert "over the --memory-limit of 1 MiB" in err and "raise --memory-limit" in err
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--memory-limit", "lots"])
    assert exc.value.code == 2


def test_same_file_by_any_name(tmp_path):
    data = tmp_path / "v.csv"
    data.write_text(ROWS)
    (tmp_path / "sub").mkdir()
    os.symlink(data, tmp_path / "alias")
    os.link(data, tmp_path / "twin")
    for name in ("v.csv", "sub/../v.csv", "alias", "twin"):
        assert same_file(tmp_path / name, data)
        with pytest.raises(InputError, match="is an input"):
            refuse_input_as_output(tmp_path / name, [data], "--out")
    assert not same_file(tmp_path / "new.parquet", data)
    refuse_input_as_output(tmp_path / "new.parquet", [data, None], "--out")  # a new file is fine
    with pytest.raises(InputError, match="inside an input directory"):
        refuse_input_as_output(tmp_path / "sub" / "x.png", [], "--plot", folders=[tmp_path])


def test_grid_out_equal_to_the_input_exits_2_and_keeps_the_input(tmp_path, capsys):
    data = tmp_path / "v.csv"
    data.write_text(ROWS)
    os.link(data, tmp_path / "twin.parquet")
    for out in (data, tmp_path / "twin.parquet"):
        assert main(["grid", str(data), "--out", str(out), "--cell-size", "100", "--step", "30"]) == 2
        assert "is an input" in capsys.readouterr().err
    assert data.read_text() == ROWS


def test_gzip_strict_exits_2_not_abort(tmp_path):
    """Regression: an error ending a gzip read early left Arrow's readahead thread in a Python file
    at exit (SIGABRT, exit 134, or a hang); the gzip stream is Arrow's own now."""
    text = ROWS + "B,5,north,-2.9\n" + "".join(f"C,{10 * i},53.5,-2.9\n" for i in range(200_000))
    (tmp_path / "bad.csv.gz").write_bytes(gzip.compress(text.encode()))
    argv = [sys.executable, "-m", "gridcast", "grid", str(tmp_path / "bad.csv.gz"), "--out", str(tmp_path / "o.parquet"),
            "--cell-size", "100", "--step", "30", "--strict"]
    for _ in range(3):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert "row 13 (line 14): lat 'north' is not a number" in proc.stderr and "Traceback" not in proc.stderr


def test_report_promise_holds_on_a_dirty_cr_file(tmp_path, capsys):
    text = ROWS + "B,0,53.4\nC,0,abc,-2.9\nA,10,53.4,-2.9\n"
    (tmp_path / "d.csv").write_text(text.replace("\n", "\r"), newline="")
    assert main(["grid", str(tmp_path / "d.csv"), "--out", str(tmp_path / "o.parquet"), "--cell-size", "100",
                 "--step", "30", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["read"] == report["kept"] + sum(report["dropped"].values()) == 15
    assert report["dropped"] == {"malformed": 1, "not_numeric": 1, "duplicate_time": 1}
