"""Crafted data files fed to `gridcast grid` (and the writers): odd line ends, special files, nested
Parquet columns, huge headers and lines, memory guards, and outputs that would destroy an input."""
from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from corpus import GPS_FLAGS, Base, Case, Outcome

OUT = ["--out", "{case}/out.parquet"]
GRID = ["--cell-size", "100", "--step", "30"]
PLANAR = ["--x-col", "x", "--y-col", "y", "--cell-size", "1", "--step", "10"]
ROWS = "track,time,lat,lon\n" + "".join(f"A,{10 * i},53.40{i:02d},-2.98{i:02d}\n" for i in range(12))


def _write(name: str, data: bytes | str):
    def build(d: Path, b: Base) -> None:
        (d / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return build


def _grid(name: str, *extra: str) -> list[str]:
    return ["grid", f"{{case}}/{name}", *OUT, *GRID, *extra]


def _out_has(tracks: int, points: int | None = None):
    def check(d: Path, o: Outcome) -> None:
        t = pq.read_table(d / "out.parquet")
        assert len(t.column("track").unique()) == tracks, t.column("track").unique()
        if points is not None:
            assert t.num_rows == points, t.num_rows
    return check


def _no_out(d: Path, o: Outcome) -> None:
    assert not (d / "out.parquet").exists(), "an output was written"


# ---- data files ---------------------------------------------------------------------------------

def _parquet(name: str, table: pa.Table):
    def build(d: Path, b: Base) -> None:
        pq.write_table(table, d / name)
    return build


_N = 12
_LAT = pa.array([53.40 + i * 1e-3 for i in range(_N)])
_LON = pa.array([-2.98 - i * 1e-3 for i in range(_N)])
_TRACK = pa.array(["A"] * _N)


def _times(check_step: float):
    """The output's times must be the multiples of the step inside the span 0..110 s."""
    def check(d: Path, o: Outcome) -> None:
        t = pq.read_table(d / "out.parquet").column("time").to_numpy()
        assert t.min() >= 0 and t.max() <= 110 and np.allclose(np.diff(t), check_step), t
    return check


def _duration(unit: str, scale: int):
    return pa.table({"track": _TRACK, "lat": _LAT, "lon": _LON,
                     "time": pa.array([10 * i * scale for i in range(_N)], pa.duration(unit))})


def _timestamp(unit: str, scale: int):
    return pa.table({"track": _TRACK, "lat": _LAT, "lon": _LON,
                     "time": pa.array([10 * i * scale for i in range(_N)], pa.timestamp(unit))})


def _fifo(d: Path, b: Base) -> None:
    os.mkfifo(d / "pipe.csv")


def _dev_zero(d: Path, b: Base) -> None:
    os.symlink("/dev/zero", d / "zero.csv")


def _random_bytes(d: Path, b: Base) -> None:
    (d / "blob.csv").write_bytes(np.random.default_rng(0).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes())


def _huge_line(d: Path, b: Base) -> None:
    with open(d / "line.csv", "wb") as f:
        f.write(b"track,time,lat,lon\n")
        for _ in range(64):
            f.write(b"x" * (1 << 20))


def _wide_header(d: Path, b: Base) -> None:
    names = ",".join(f"c{i}" for i in range(1_000_000))
    (d / "wide.csv").write_text(f"track,time,lat,lon,{names}\n" + "A,0,53.4,-2.9\n")


def _long_header(d: Path, b: Base) -> None:
    pad = "p" * 70_000  # one column name longer than the 64 KiB sniffing window
    rows = "".join(f"A,{10 * i},53.40{i:02d},-2.98{i:02d},\n" for i in range(12))
    (d / "long.csv").write_text(f"track,time,lat,lon,{pad}\n" + rows)


def _gzip_bad_rows(d: Path, b: Base) -> None:
    text = ROWS + "B,5,north,-2.9\n" + "".join(f"C,{10 * i},53.5,-2.9\n" for i in range(5000))
    (d / "bad.csv.gz").write_bytes(gzip.compress(text.encode()))


def _gzip_truncated(d: Path, b: Base) -> None:
    (d / "cut.csv.gz").write_bytes(gzip.compress((ROWS * 200).encode())[:300])


def _gzip_bomb(d: Path, b: Base) -> None:
    with gzip.open(d / "bomb.csv.gz", "wb", compresslevel=9) as f:
        f.write(b"track,time,lat,lon\n")
        for _ in range(512):
            f.write(b"\0" * (1 << 20))


def _no_tick_mixed(d: Path, b: Base) -> None:
    text = "track,time,lat,lon\n" + ROWS.split("\n", 1)[1] + "B,31.1,53.41,-2.97\nB,31.9,53.42,-2.96\n"
    (d / "mixed.csv").write_text(text)


def _mixed_check(d: Path, o: Outcome) -> None:
    import json
    report = json.loads(o.stdout)
    assert report["dropped"] == {"short_track": 2}, report
    assert report["read"] == report["kept"] + sum(report["dropped"].values()), report


# ---- destroying data ----------------------------------------------------------------------------

def _copy_csv(d: Path, b: Base) -> None:
    (d / "v.csv").write_bytes(b.csv.read_bytes())


def _intact(name: str = "v.csv"):
    def check(d: Path, o: Outcome) -> None:
        assert (d / name).read_bytes() == BUNDLED_BYTES(), f"{name} was changed"
    return check


def BUNDLED_BYTES() -> bytes:  # noqa: N802 - read lazily, once per check
    from corpus import BUNDLED_CSV
    return BUNDLED_CSV.read_bytes()


def _symlinked(d: Path, b: Base) -> None:
    _copy_csv(d, b)
    os.symlink(d / "v.csv", d / "alias.parquet")


def _hard_linked(d: Path, b: Base) -> None:
    _copy_csv(d, b)
    os.link(d / "v.csv", d / "twin.parquet")


def _sub(d: Path, b: Base) -> None:
    _copy_csv(d, b)
    (d / "sub").mkdir()


def _gridded_copy(d: Path, b: Base) -> None:
    (d / "g.parquet").write_bytes(b.gridded.read_bytes())
    (d / "g.sha").write_text(hashlib.sha256(b.gridded.read_bytes()).hexdigest())


def _gridded_intact(d: Path, o: Outcome) -> None:
    assert hashlib.sha256((d / "g.parquet").read_bytes()).hexdigest() == (d / "g.sha").read_text()


def _gridded_linked(d: Path, b: Base) -> None:
    _gridded_copy(d, b)
    os.link(d / "g.parquet", d / "plot.png")


def _model_and_data(d: Path, b: Base) -> None:
    _gridded_copy(d, b)
    subprocess.run(["cp", "-r", str(b.model), str(d / "model")], check=True)


CASES: list[Case] = [
    # data files
    Case("cr_only_line_ends", "data", _grid("cr.csv", "--json"), 0,
         build=_write("cr.csv", ROWS.replace("\n", "\r")), check=_out_has(1, 4)),
    Case("crlf_line_ends", "data", _grid("crlf.csv", "--json"), 0,
         build=_write("crlf.csv", ROWS.replace("\n", "\r\n")), check=_out_has(1, 4)),
    Case("no_tick_inside_any_track", "data", _grid("tick.csv"), 2, "no usable tracks left after cleaning",
         build=_write("tick.csv", "track,time,lat,lon\nA,1.1,53.4,-2.9\nA,1.9,53.41,-2.91\n"
                                  "B,2.1,53.4,-2.9\nB,2.9,53.41,-2.91\n"), check=_no_out),
    Case("no_tick_one_track", "data", _grid("mixed.csv", "--json"), 0, build=_no_tick_mixed, check=_mixed_check),
    Case("parquet_list_track", "data", _grid("list.parquet"), 2, "column 'track' holds list",
         build=_parquet("list.parquet", pa.table({"track": pa.array([[1, 2]] * _N), "time": pa.array(range(_N)),
                                                  "lat": _LAT, "lon": _LON}))),
    Case("parquet_struct_lat", "data", _grid("struct.parquet"), 2, "column 'lat' holds struct",
         build=_parquet("struct.parquet", pa.table({"track": _TRACK, "time": pa.array(range(_N)),
                                                    "lat": pa.array([{"v": 1.0}] * _N), "lon": _LON}))),
    Case("parquet_map_time", "data", _grid("map.parquet"), 2, "column 'time' holds map",
         build=_parquet("map.parquet", pa.table({"track": _TRACK, "lat": _LAT, "lon": _LON,
                                                 "time": pa.array([[("k", 1)]] * _N, pa.map_(pa.string(), pa.int64()))}))),
    Case("parquet_duration_ns", "data", ["grid", "{case}/d.parquet", *OUT, "--cell-size", "100", "--step", "10"], 0,
         build=_parquet("d.parquet", _duration("ns", 10**9)), check=_times(10)),
    Case("parquet_duration_ms", "data", ["grid", "{case}/d.parquet", *OUT, "--cell-size", "100", "--step", "10"], 0,
         build=_parquet("d.parquet", _duration("ms", 10**3)), check=_times(10)),
    Case("parquet_timestamp_ms", "data", ["grid", "{case}/t.parquet", *OUT, "--cell-size", "100", "--step", "10"], 0,
         build=_parquet("t.parquet", _timestamp("ms", 10**3)), check=_times(10)),
    Case("header_longer_than_64k", "data", _grid("long.csv", "--json"), 0, build=_long_header, check=_out_has(1, 4)),
    Case("header_of_a_million_columns", "data", _grid("wide.csv"), 2, "columns", build=_wide_header),
    Case("input_is_a_directory", "data", ["grid", "{case}", *OUT, *GRID], 2, "input directory"),
    Case("input_is_a_fifo", "data", _grid("pipe.csv"), 2, "not a regular file", build=_fifo, time_limit_s=10),
    Case("input_is_dev_zero", "data", _grid("zero.csv"), 2, "not a regular file", build=_dev_zero, time_limit_s=10),
    Case("input_is_empty", "data", _grid("e.csv"), 2, "the file is empty", build=_write("e.csv", b"")),
    Case("input_is_binary", "data", _grid("blob.csv"), 2, "blob.csv", build=_random_bytes),
    Case("input_is_one_huge_line", "data", _grid("line.csv"), 2, "line.csv", build=_huge_line),
    Case("input_has_a_nul_byte", "data", _grid("nul.csv", "--json"), 0,
         build=_write("nul.csv", ROWS + "B,0,53.4\0,-2.9\nB,10,53.41,-2.91\n"), check=_out_has(1)),
    Case("input_invalid_utf8", "data", _grid("u.csv", "--json"), 0,
         build=_write("u.csv", ROWS.encode() + b"\xff\xfe,5,53.4,-2.9\n\xff\xfe,15,53.41,-2.91\n"), check=_out_has(1)),
    Case("gzip_strict_bad_row", "data", _grid("bad.csv.gz", "--strict"), 2, "row 13", build=_gzip_bad_rows),
    Case("gzip_truncated", "data", _grid("cut.csv.gz"), 2, "cut.csv.gz", build=_gzip_truncated),
    Case("gzip_bomb_of_nuls", "data", _grid("bomb.csv.gz"), 2, "bomb.csv.gz", build=_gzip_bomb),
    Case("parquet_magic_then_garbage", "data", _grid("fake.parquet"), 2, "not a readable Parquet file",
         build=_write("fake.parquet", b"PAR1" + b"\x07" * 5000)),
    # memory guards
    Case("rows_years_apart_at_1s", "memory", ["grid", "{case}/far.csv", *OUT, "--cell-size", "100", "--step", "1"], 2,
         "--memory-limit", build=_write("far.csv", "track,time,lat,lon\nA,0,53.4,-2.9\nA,49000000,53.41,-2.91\n"),
         check=_no_out),
    Case("memory_limit_small", "memory", ["grid", "{csv}", *OUT, *GPS_FLAGS, "--cell-size", "100", "--step", "1",
                                          "--memory-limit", "1MB"], 2, "--memory-limit", check=_no_out),
    Case("memory_limit_not_a_size", "memory", ["grid", "{csv}", *OUT, *GPS_FLAGS, *GRID, "--memory-limit", "lots"],
         2, "--memory-limit"),
    Case("memory_limit_zero", "memory", ["grid", "{csv}", *OUT, *GPS_FLAGS, *GRID, "--memory-limit", "0"],
         2, "--memory-limit"),
    # destroying data
    Case("grid_out_is_the_input", "destroy", ["grid", "{case}/v.csv", "--out", "{case}/v.csv", *GPS_FLAGS, *GRID], 2,
         "is an input", build=_copy_csv, check=_intact()),
    Case("grid_out_is_the_input_via_dotdot", "destroy",
         ["grid", "v.csv", "--out", "sub/../v.csv", *GPS_FLAGS, *GRID], 2, "is an input", build=_sub, check=_intact()),
    Case("grid_out_symlink_to_input", "destroy",
         ["grid", "{case}/v.csv", "--out", "{case}/alias.parquet", *GPS_FLAGS, *GRID], 2, "is an input",
         build=_symlinked, check=_intact()),
    Case("grid_out_hard_link_to_input", "destroy",
         ["grid", "{case}/v.csv", "--out", "{case}/twin.parquet", *GPS_FLAGS, *GRID], 2, "is an input",
         build=_hard_linked, check=_intact()),
    Case("grid_out_is_the_like_file", "destroy",
         ["grid", "{csv}", "--out", "{case}/g.parquet", "--like", "{case}/g.parquet", *GPS_FLAGS], 2, "is an input",
         build=_gridded_copy, check=_gridded_intact),
    Case("fit_out_is_the_data_file", "destroy", ["fit", "{case}/g.parquet", "--out", "{case}/g.parquet", "--epochs", "1"],
         2, "is an input", build=_gridded_copy, check=_gridded_intact),
    Case("evaluate_plot_is_the_data", "destroy",
         ["evaluate", "{case}/model", "{case}/g.parquet", "--plot", "{case}/g.parquet"], 2, "--plot",
         build=_model_and_data, check=_gridded_intact),
    Case("evaluate_plot_calibration_hard_link", "destroy",
         ["evaluate", "{model}", "{case}/g.parquet", "--plot-calibration", "{case}/plot.png"], 2, "is an input",
         build=_gridded_linked, check=_gridded_intact),
    Case("predict_geojson_hard_link_to_data", "destroy",
         ["predict", "{model}", "{case}/g.parquet", "--geojson", "{case}/plot.png"], 2, "input",
         build=_gridded_linked, check=_gridded_intact),
]
