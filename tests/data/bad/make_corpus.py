"""Writes the bad-input corpus (run from anywhere: `python tests/data/bad/make_corpus.py`).

Each file holds a few valid rows beside the bad ones, so tests can check that every valid row is
kept and every bad row is counted under the right reason. Expected outcomes: README.md here.
"""
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
GEO = "track,time,lat,lon\n"
PLANAR = "track,time,x,y\n"


def t(s: int) -> str:
    return f"2024-01-01T00:{s // 60:02d}:{s % 60:02d}"


def write(name: str, text: str | bytes) -> None:
    (HERE / name).write_bytes(text if isinstance(text, bytes) else text.encode())


write("malformed_rows.csv", GEO + "".join([
    f"A,{t(0)},53.4000,-2.9000\n",
    f"A,{t(10)},53.4005,-2.9000\n",
    f"A,{t(20)},53.4010\n",                 # 3 fields
    f"A,{t(30)},53.4015,-2.9000\n",
    f"A,{t(40)},53.4020,-2.9000,extra\n",   # 5 fields
    f"B,{t(0)},53.4100,-2.9100\n",
    f"B,{t(10)},53.4105,-2.9100\n",
    f"B,{t(20)}\n",                          # 2 fields
    f"B,{t(30)},53.4115,-2.9100\n",
]))
write("wrong_columns.csv", "id,timestamp,latitude,longitude\n" + f"A,{t(0)},53.4,-2.9\nA,{t(10)},53.4005,-2.9\n")
write("nan_inf.csv", GEO + "".join([
    f"A,{t(0)},53.4000,-2.9000\n",
    f"A,{t(10)},53.4005,-2.9000\n",
    f"A,{t(20)},NaN,-2.9000\n",
    f"A,{t(30)},53.4015,-2.9000\n",
    f"A,{t(40)},53.4020,inf\n",
    f"A,{t(50)},53.4025,-2.9000\n",
    f"A,{t(60)},-Infinity,-2.9000\n",
    f"A,{t(70)},53.4035,-2.9000\n",
    f"A,{t(80)},53.4040,nan\n",
]))
write("missing_values.csv", GEO + "".join([
    f"A,{t(0)},53.4000,-2.9000\n",
    f",{t(10)},53.4005,-2.9000\n",           # no track id
    "A,,53.4010,-2.9000\n",                   # no time
    f"A,{t(30)},,-2.9000\n",                 # no lat
    f'A,{t(40)},53.4020,""\n',               # empty quoted lon
    f"A,{t(50)},53.4025,-2.9000\n",
    f"B,{t(0)},53.4100,-2.9100\n",
    f"B,{t(10)},53.4105,-2.9100\n",
]))
write("not_numeric.csv", GEO + "".join([
    f"A,{t(0)},53.4000,-2.9000\n",
    f"A,{t(10)},north,-2.9000\n",
    f"A,{t(20)},53.4010,-2.9.1\n",
    f"A,{t(30)},53.4015,-2.9000\n",
    f"A,{t(40)},53.4020,-2.9000\n",
    f"A,{t(50)}, 53.4025 ,-2.9000\n",        # padded: a number, kept
]))
write("out_of_range.csv", GEO + "".join([
    f"A,{t(0)},53.4000,-2.9000\n",
    f"A,{t(10)},123.4,-2.9000\n",
    f"A,{t(20)},53.4010,200\n",
    f"A,{t(30)},53.4015,-2.9000\n",
    f"A,{t(40)},-91,-2.9000\n",
    f"A,{t(50)},53.4025,-180.5\n",
    f"A,{t(60)},53.4030,-2.9000\n",
    f"A,{t(70)},90,180\n",                   # on the boundary: valid
]))
write("unsorted_times.csv", PLANAR + "".join([
    "A,0,0,0\n", "A,20,2,0\n", "A,10,1,0\n", "A,30,3,0\n",
    "B,0,0,5\n", "B,10,0,6\n", "B,20,0,7\n",
]))
write("duplicate_times.csv", PLANAR + "".join([
    "A,0,0,0\n", "A,10,1,0\n", "A,10,9,9\n", "A,20,2,0\n", "A,10,8,8\n",
    "B,0,0,5\n", "B,10,0,6\n", "B,10,7,7\n",
]))
write("empty.csv", b"")
write("header_only.csv", GEO)
write("one_point_track.csv", GEO + "".join([
    f"A,{t(0)},53.4000,-2.9000\n",
    f"A,{t(10)},53.4005,-2.9000\n",
    f"A,{t(20)},53.4010,-2.9000\n",
    f"B,{t(0)},53.4100,-2.9100\n",
    f"A,{t(30)},53.4015,-2.9000\n",
    f"C,{t(0)},53.4200,-2.9200\n",
]))
write("mixed_time.csv", GEO + "".join([
    f"A,{t(0)},53.4000,-2.9000\n",
    f"A,{t(10)},53.4005,-2.9000\n",
    "A,1704067220,53.4010,-2.9000\n",        # epoch seconds in an ISO column
    f"A,{t(30)},53.4015,-2.9000\n",
    "A,yesterday,53.4020,-2.9000\n",
    f"A,{t(50)},53.4025,-2.9000\n",
    "A,2024-13-45T00:00:00,53.4030,-2.9000\n",
    f"A,{t(70)}Z,53.4035,-2.9000\n",          # with a zone: valid
    "A,1704067290,53.4040,-2.9000\n",
    f"A,{t(90)},53.4045,-2.9000\n",
]))
write("non_utf8.csv", GEO.encode() + b"".join([
    f"caf\xe9,{t(0)},53.4000,-2.9000\n".encode("latin-1"),
    f"caf\xe9,{t(10)},53.4005,-2.9000\n".encode("latin-1"),
    f"caf\xe9,{t(20)},53.40".encode() + b"\xff,-2.9000\n",
    f"B,{t(0)},53.4100,-2.9100\n".encode(),
    f"B,{t(10)},53.4105,-2.9100\n".encode(),
    b"B,\xff\xfe\n",                         # malformed and undecodable
    f"B,{t(20)},53.4110,-2.9100\n".encode(),
]))
write("non_utf8_values.csv", GEO.encode() + b"".join([
    f"caf\xe9,{t(0)},53.4000,-2.9000\n".encode("latin-1"),
    f"caf\xe9,{t(10)},53.4005,-2.9000\n".encode("latin-1"),
    f"B,{t(0)},53.4100,-2.9100\n".encode(),
    f"B,{t(10)},53.41".encode() + b"\xfe\xff,-2.9100\n",
    f"B,{t(20)},53.4110,-2.9100\n".encode(),
]))
write("huge_value.csv", PLANAR + "".join([
    "A,0,0,0\n", "A,10,1e300,0\n", "A,20,2,0\n", "A,30,3,-5e13\n", "A,1e20,4,0\n", "A,50,5,0\n", "A,60,6,0\n",
]))
pq.write_table(pa.table({
    "track": pa.array([1, 1, 1, 2, 2], pa.int64()),
    "time": pa.array([t(0), t(10), t(20), t(0), t(10)]),
    "lat": pa.array(["53.4000", "53.4005", "north", "53.4100", "53.4105"]),
    "lon": pa.array([-2.9, -2.9, -2.9, -2.91, -2.91]),
}), HERE / "wrong_types.parquet")
pq.write_table(pa.table({
    "track": ["A", "A"], "time": [t(0), t(10)], "lat": [True, False], "lon": [-2.9, -2.9],
}), HERE / "bool_lat.parquet")
