"""Crafted GeoLife .plt and GPX files fed to `gridcast grid`: XML entity bombs and external entities,
bad headers, files of no points, and folders mixing good files with hostile ones."""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from corpus import Base, Case, Outcome

OUT = ["--out", "{case}/out.parquet"]
GRID = ["--cell-size", "100", "--step", "30"]
HEADER = "Geolife trajectory\nWGS 84\nAltitude is in Feet\nReserved 3\n0,2,255,My Track,0,0,2,8421376\n0\n"
POINTS = "".join(f"53.40{i:02d},-2.98{i:02d},0,100,43831.{i:04d},2020-01-01,10:{i // 6:02d}:{10 * (i % 6):02d}\n"
                 for i in range(12))
GPX_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="t" xmlns="http://www.topografix.com/GPX/1/1">'
TRKPTS = "".join(f'<trkpt lat="53.40{i:02d}" lon="-2.98{i:02d}"><time>2020-01-01T10:00:{5 * i:02d}Z</time></trkpt>'
                 for i in range(12))
GOOD_GPX = f"{GPX_HEAD}<trk><trkseg>{TRKPTS}</trkseg></trk></gpx>"
LAUGHS = ('<?xml version="1.0"?>\n<!DOCTYPE gpx [\n<!ENTITY a "lollollollollollollollollollol">\n'
          + "".join(f'<!ENTITY {chr(98 + k)} "{("&" + chr(97 + k) + ";") * 10}">\n' for k in range(9))
          + f']>\n<gpx version="1.1"><trk><name>&j;</name><trkseg>{TRKPTS}</trkseg></trk></gpx>')
XXE = ('<?xml version="1.0"?>\n<!DOCTYPE gpx [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
       f'<gpx version="1.1"><trk><name>&xxe;</name><trkseg>{TRKPTS}</trkseg></trk></gpx>')


def _write(**files: str | bytes):
    def build(d: Path, b: Base) -> None:
        for name, data in files.items():
            path = d / name.replace("__", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.encode() if isinstance(data, str) else data)
    return build


def _grid(name: str, *extra: str) -> list[str]:
    return ["grid", f"{{case}}/{name}", *OUT, *GRID, *extra]


def _no_out(d: Path, o: Outcome) -> None:
    assert not (d / "out.parquet").exists(), "an output was written"


def _tracks(*ids: str):
    def check(d: Path, o: Outcome) -> None:
        got = sorted(set(pq.read_table(d / "out.parquet").column("track").to_pylist()))
        assert got == sorted(ids), got
    return check


CASES = [
    Case("gpx_billion_laughs", "formats", _grid("bomb.gpx"), 2, "entities", build=_write(**{"bomb.gpx": LAUGHS}),
         check=_no_out, time_limit_s=10),
    Case("gpx_external_entity", "formats", _grid("xxe.gpx"), 2, "entities", build=_write(**{"xxe.gpx": XXE}),
         check=_no_out),
    Case("gpx_zero_points", "formats", _grid("empty.gpx"), 2, "no track points",
         build=_write(**{"empty.gpx": f'{GPX_HEAD}<wpt lat="1" lon="2"/><trk><trkseg></trkseg></trk></gpx>'}),
         check=_no_out),
    Case("gpx_truncated_xml", "formats", _grid("cut.gpx"), 2, "not a readable GPX file",
         build=_write(**{"cut.gpx": GOOD_GPX[: len(GOOD_GPX) // 2]})),
    Case("gpx_not_utf8", "formats", _grid("latin.gpx"), 2, "not UTF-8",
         build=_write(**{"latin.gpx": GOOD_GPX.replace("<trk>", "<trk><name>caf\xe9</name>").encode("latin-1")})),
    Case("gpx_lon_out_of_range_counted", "formats", _grid("c.gpx", "--json"), 0,
         build=_write(**{"c.gpx": GOOD_GPX.replace('lon="-2.9801"', 'lon="999"')}), check=_tracks("c/1")),
    Case("gpx_lat_not_a_number", "formats", _grid("n.gpx"), 2, "abc",  # gpxpy refuses the file, naming the value
         build=_write(**{"n.gpx": GOOD_GPX.replace('lat="53.4000"', 'lat="abc"')})),
    Case("gpx_xy_columns_refused", "formats", ["grid", "{case}/g.gpx", *OUT, "--x-col", "x", "--y-col", "y",
                                              "--cell-size", "1", "--step", "10"], 2, "holds lat/lon",
         build=_write(**{"g.gpx": GOOD_GPX})),
    Case("plt_bad_header", "formats", _grid("bad.plt"), 2, "not a GeoLife .plt file",
         build=_write(**{"bad.plt": "lat,lon,0,alt,days,date,time\n" + POINTS}), check=_no_out),
    Case("plt_other_datum", "formats", _grid("nad.plt"), 2, "WGS 84 only",
         build=_write(**{"nad.plt": HEADER.replace("WGS 84", "NAD 27") + POINTS})),
    Case("plt_header_only_two_lines", "formats", _grid("short.plt"), 2, "2 of the 6 header lines",
         build=_write(**{"short.plt": "Geolife trajectory\nWGS 84\n"})),
    Case("plt_zero_points", "formats", _grid("none.plt"), 2, "no rows", build=_write(**{"none.plt": HEADER})),
    Case("plt_binary_after_header", "formats", _grid("bin.plt", "--json"), 2, "bin.plt",
         build=_write(**{"bin.plt": HEADER.encode() + bytes(range(256)) * 64})),
    Case("plt_strict_names_the_line", "formats", _grid("s.plt", "--strict"), 2, "s.plt row 13 (line 19)",
         build=_write(**{"s.plt": HEADER + POINTS + "53.5,-2.9\n"})),
    Case("folder_of_plt_with_a_hostile_one", "formats", _grid("Data"), 2, "bad.plt",
         build=_write(**{"Data__000__Trajectory__a.plt": HEADER + POINTS, "Data__001__Trajectory__bad.plt": "junk\n"})),
    Case("folder_of_plt_and_gpx", "formats", _grid("Data", "--json"), 0,
         build=_write(**{"Data__000__Trajectory__a.plt": HEADER + POINTS, "Data__001__Trajectory__b.plt": HEADER + POINTS,
                         "Data__rides__r.gpx": GOOD_GPX, "Data__rides__empty.gpx": f"{GPX_HEAD}</gpx>"}),
         check=_tracks("000/a", "001/b", "r/1")),
    Case("folder_with_no_track_files", "formats", _grid("nothing"), 2, "no files of tracks",
         build=_write(**{"nothing__readme.md": "hello"})),
    Case("glob_matching_nothing", "formats", _grid("*.plt"), 2, "no files of tracks match"),
]
