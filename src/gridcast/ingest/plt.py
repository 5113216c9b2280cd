"""GeoLife ``.plt`` files: the format most GPS research data comes in, read as a source of points.

A .plt file has 6 header lines, then one point per line: ``lat,lon,0,altitude,days,date,time``
(WGS 84 degrees, altitude in feet, days since 1899-12-30, then the same moment as a GMT date and
time). The track id is the user folder and the file name (``Data/000/Trajectory/20081023025304.plt``
-> ``000/20081023025304``), so a folder of GeoLife users needs no column flags at all.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from gridcast.errors import InputError
from gridcast.ingest import validate
from gridcast.ingest.sources import BLOCK_BYTES, LENIENT, CountingCsvStream, Source, Stream

HEADER_LINES = 6
_COLUMNS = ("lat", "lon", "zero", "altitude", "days", "date", "time")
_MAX_HEADER = 64 << 10  # six short lines; more bytes than this without them is not a .plt file


def plt_track_id(path: str | os.PathLike) -> str:
    """``user/file`` of a GeoLife file: the folder above ``Trajectory`` (or the parent folder) and the stem.

    >>> plt_track_id("Data/000/Trajectory/20081023025304.plt")
    '000/20081023025304'
    """
    p = Path(path)
    parent = p.parent
    user = parent.parent.name if parent.name.lower() == "trajectory" else parent.name
    return f"{user}/{p.stem}" if user else p.stem


def constant_ids(track: str, n: int) -> pa.DictionaryArray:
    """One track id for every row of a batch, as the dictionary array the reader codes once."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([track.encode()], pa.binary()))


def check_geographic(name: str, want: dict[str, str], geographic: bool) -> None:
    """Files that only hold lat/lon cannot serve --x-col/--y-col."""
    if not geographic:
        raise InputError(f"{name}: this format holds lat/lon degrees; drop --x-col/--y-col (and give a --cell-size in metres)")


class PltSource(Source):
    """One GeoLife .plt file; its header is checked when opened, its points streamed in batches."""

    time_kind = "iso"
    modes = ("raw", "lenient")

    def __init__(self, path: str | os.PathLike, want: dict[str, str], geographic: bool = True):
        self.path = os.fspath(path)
        self.name = str(path)
        self.want = want
        check_geographic(self.name, want, geographic)
        self.track = plt_track_id(self.path)
        self._check_header()

    def _check_header(self) -> None:
        """6 header lines with the datum WGS 84 on line 2: anything else is not a GeoLife file."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(_MAX_HEADER)
        except OSError as exc:
            raise InputError(f"{self.name}: cannot read ({exc})") from None
        lines = head.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        whole = len(head) < _MAX_HEADER
        count = len(lines) - 1 + (1 if whole and lines[-1] else 0)  # a last line without its line end counts
        if count < HEADER_LINES:
            raise InputError(f"{self.name}: not a GeoLife .plt file (it has {count} of the {HEADER_LINES} "
                             "header lines before the points)")
        first = lines[0].decode("utf-8", "backslashreplace").lstrip("\ufeff").strip()
        datum = lines[1].decode("utf-8", "backslashreplace").strip()
        if not first.lower().startswith("geolife trajectory"):
            raise InputError(f"{self.name}: not a GeoLife .plt file (line 1 is '{validate.printable(first)}', "
                             "expected 'Geolife trajectory')")
        if datum.upper().replace(" ", "") != "WGS84":
            raise InputError(f"{self.name}: line 2 names the datum '{validate.printable(datum)}'; "
                             "gridcast reads GeoLife .plt files in WGS 84 only")

    def streams(self, mode: str) -> list[Stream]:
        return [_PltStream(self, mode)]

    def where(self, good_index: int | None) -> tuple[str, str | None]:
        """Re-scan the points (error path only) for the row and line of a parsed row or a malformed one."""
        row = good = 0
        with open(self.path, encoding="utf-8", errors="backslashreplace", newline="") as f:
            for line_no, line in enumerate(f, 1):
                if line_no <= HEADER_LINES or not line.strip():
                    continue
                row += 1
                fields = line.rstrip("\r\n").count(",") + 1
                if fields != len(_COLUMNS):
                    return f"{self.name} row {row} (line {line_no})", f"expected {len(_COLUMNS)} fields, found {fields}"
                if good == good_index:
                    return f"{self.name} row {row} (line {line_no})", None
                good += 1
        return f"{self.name} row {(good_index or 0) + 1}", None


class _PltStream(CountingCsvStream):
    """pyarrow's streaming CSV reader after the 6 header lines, counting rows of the wrong shape."""

    def __init__(self, src: PltSource, mode: str):
        self.src, self.mode = src, mode
        self.malformed = 0

    def __iter__(self) -> Iterator[tuple[dict[str, pa.Array], int]]:
        src = self.src
        used = ["lat", "lon", "date", "time"]
        read = pcsv.ReadOptions(column_names=list(_COLUMNS), skip_rows=HEADER_LINES, block_size=BLOCK_BYTES,
                                encoding=LENIENT if self.mode == "lenient" else "utf8")
        parse = pcsv.ParseOptions(delimiter=",", invalid_row_handler=self.on_invalid)
        convert = pcsv.ConvertOptions(include_columns=used, column_types={c: pa.string() for c in used},
                                      null_values=[""], strings_can_be_null=True)
        fh = pa.input_stream(src.path)
        reader = None
        try:
            try:
                reader = pcsv.open_csv(fh, read_options=read, parse_options=parse, convert_options=convert)
            except pa.ArrowInvalid as exc:
                if "Empty CSV file" in str(exc):  # the header alone: a file of 0 points
                    return
                raise
            for rb in reader:
                n = rb.num_rows
                stamp = pc.binary_join_element_wise(rb.column("date"), rb.column("time"), " ")
                cols = {"time": stamp, "a": rb.column("lat"), "b": rb.column("lon")}
                if "track" in src.want:
                    cols["track"] = constant_ids(src.track, n)
                yield cols, n
        finally:
            if reader is not None:
                reader.close()
            fh.close()
