"""Where raw points come from: CSV (plain, gzip, byte ranges per core), Parquet and DataFrames,
each read in record batches of the wanted columns only.

`gridcast.ingest` drives these readers and validates every batch; this module only knows how to
get batches out of a source (and how to re-read it raw or with lenient UTF-8 when a typed read
fails), so the pipeline does not care which kind of file it was given.
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import functools
import gzip
import io
import os
import stat
import sys
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from gridcast.errors import InputError
from gridcast.ingest import validate

BLOCK_BYTES = 1 << 20  # CSV block: small enough to pipeline, big enough to amortise per-batch overhead
_RANGE_MIN = 8 << 20  # a plain CSV is split into byte ranges of at least this size, one per core
_RANGES: int | None = None  # ranges to use (None: one per core, at most 4); tests set it
#: The header line is read whole before anything else; longer than this is not a CSV of tracks
#: (a binary file, one endless line, a gzip of zeros), refused before it can cost memory or time.
MAX_HEADER_BYTES = 1 << 20
#: More columns than this: refused (pyarrow's per-column work would take minutes; tracks need four).
MAX_COLUMNS = 20_000
_SNIFF = 1 << 16  # bytes after the header the time column's kind is sniffed from
LENIENT = "gridcast_lenient_utf8"


def _lenient_codec(name: str) -> codecs.CodecInfo | None:
    """UTF-8 that turns undecodable bytes into \\xNN escapes instead of failing (pyarrow transcodes with it)."""
    if name != LENIENT:
        return None
    utf8 = codecs.lookup("utf-8")
    return codecs.CodecInfo(
        name=LENIENT,
        encode=utf8.encode,
        decode=functools.partial(utf8.decode, errors="backslashreplace"),
        incrementalencoder=utf8.incrementalencoder,
        incrementaldecoder=functools.partial(utf8.incrementaldecoder, errors="backslashreplace"),
    )


codecs.register(_lenient_codec)



@contextlib.contextmanager
def quiet_unraisable() -> Iterator[None]:
    """pyarrow cannot hand a malformed row with undecodable bytes to a Python row handler: it prints
    the decode error as an "Exception ignored" traceback, then fails the read (which is retried with
    lenient UTF-8). Keep that traceback off the user's terminal; anything else passes through."""
    previous = sys.unraisablehook

    def hook(u) -> None:
        owner = getattr(u.object, "__self__", None)
        if isinstance(owner, (Stream, Source)) and isinstance(u.exc_value, UnicodeDecodeError):
            return
        previous(u)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


class Stream:
    """One sequential reader of batches (a whole source, or a byte range of a CSV)."""

    malformed = 0

    def __init__(self, batches: Iterator[tuple[dict[str, pa.Array], int]]):
        self._batches = batches

    def __iter__(self) -> Iterator[tuple[dict[str, pa.Array], int]]:
        return self._batches


class CountingCsvStream(Stream):
    """A pyarrow CSV stream that counts the rows of the wrong shape it skips (the report's `malformed`)."""

    def on_invalid(self, row) -> str:
        self.malformed += 1
        return "skip"


class Source:
    """A table read as one or more streams of Arrow arrays keyed by role ('track', 'time', 'a', 'b')."""

    name: str
    time_kind: str = "number"
    #: read attempts, in order; a later one runs only if the earlier failed with ArrowInvalid
    modes: tuple[str, ...] = ("raw",)

    def streams(self, mode: str) -> list[Stream]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        """Release what `streams` opened (a progress bar)."""

    def where(self, good_index: int | None) -> tuple[str, str | None]:
        """'<file> row R' of the `good_index`-th parsed row, or of an earlier malformed row (+ reason)."""
        return f"{self.name} row {(good_index or 0) + 1}", None


# Common names of the default columns, for the hint when a file does not use the defaults.
# Movebank's names (location-lat, location-long, individual-local-identifier) among them.
_ALIASES = {"lat": ("latitude", "location-lat"), "lon": ("longitude", "lng", "long", "location-long"),
            "time": ("timestamp", "datetime", "date_time", "date", "t"),
            "track": ("track_id", "trip_id", "trajectory_id", "traj_id", "id", "user_id",
                      "individual-local-identifier", "tag-local-identifier")}
# Files that hold lon/lat in columns named x/y (GIS exports): hinted both ways, since x/y may be planar.
_XY_AS_LONLAT = {"lon": ("x", "--lon-col", "--x-col"), "lat": ("y", "--lat-col", "--y-col")}
_FLAGS = {"lat": "--lat-col", "lon": "--lon-col", "time": "--time-col", "track": "--track-col"}


def _missing_columns(name: str, want: dict[str, str], have: list[str]) -> None:
    """One error naming every wanted column the file lacks, with the flags that would fit it."""
    missing = [want[r] for r in ("track", "time", "a", "b") if want.get(r) is not None and want[r] not in have]
    if not missing:
        return
    lower = {h.lower(): h for h in have}
    fixes, guesses, xy = [], [], []
    for col in missing:
        alias = next((lower[a] for a in _ALIASES.get(col, ()) if a in lower), None)
        if alias is not None:
            fixes.append(f"{_FLAGS[col]} {validate.printable(alias)}")
        elif col in _XY_AS_LONLAT and _XY_AS_LONLAT[col][0] in lower:
            xy.append((_XY_AS_LONLAT[col], lower[_XY_AS_LONLAT[col][0]]))
        elif hint := difflib.get_close_matches(col, have, n=1):
            guesses.append(f"'{validate.printable(hint[0])}' for '{validate.printable(col)}'")
    extra = f"; for this file: {' '.join(fixes)}" if fixes else ""
    if xy:
        geo = " ".join(f"{flags[1]} {validate.printable(c)}" for flags, c in xy)
        plane = " ".join(f"{flags[2]} {validate.printable(c)}" for flags, c in xy)
        extra += f"; if x/y hold longitude/latitude degrees: {geo}; if they are planar (metres, pixels): {plane}"
    extra += f"; did you mean {', '.join(guesses)}?" if guesses else ""
    if have and all(validate.looks_numeric(h) for h in have):
        extra += "; the first line looks like data: the file needs a header row naming its columns"
    shown = ", ".join(f"'{validate.printable(h)}'" for h in have[:30]) + (" ..." if len(have) > 30 else "")
    names = ", ".join(f"'{validate.printable(c)}'" for c in missing)
    raise InputError(f"{name}: missing column{'s' if len(missing) > 1 else ''} {names} (columns found: {shown}){extra}")


class CsvSource(Source):
    """CSV or gzip CSV. Plain files are cut at line boundaries into one byte range per core, each
    parsed by its own streaming pyarrow reader in its own thread (a streaming reader parses in the
    thread that pulls from it, so this is what puts both cores to work without reading it all).

    Like pyarrow's own block splitting, this assumes no line breaks inside quoted values (GPS logs
    have none); a record that has one may be cut at a boundary, and its pieces are then counted as
    malformed rows.
    """

    def __init__(self, path: str | os.PathLike, want: dict[str, str], sep: str | None, progress: bool):
        self.path = os.fspath(path)
        self.name = str(path)
        self.want = want
        self.progress = progress
        with open(self.path, "rb") as f:
            magic = f.read(2)
        self.gzip = magic == b"\x1f\x8b"
        first, head, whole = self._head()
        if not head.strip():
            raise InputError(f"{self.name}: the file is empty")
        text = first.decode("utf-8", "backslashreplace").lstrip("\ufeff")
        if sep is None:
            counts = {s: text.count(s) for s in (",", "\t", ";", "|")}
            sep = max(counts, key=counts.get) if max(counts.values()) > 0 else ","
        if len(sep) != 1:
            raise InputError(f"--sep must be a single character, got {sep!r}")
        self.sep = sep
        if text.count(sep) >= MAX_COLUMNS:
            raise InputError(f"{self.name}: the header names {text.count(sep) + 1:,} columns, more than the "
                             f"{MAX_COLUMNS:,} gridcast reads; keep the track, time and coordinate columns")
        try:
            names = [c.strip() for c in next(csv.reader([text], delimiter=sep))] if text else []
        except csv.Error as exc:
            raise InputError(f"{self.name}: cannot parse the header line ({exc})") from None
        seen: dict[str, int] = {}
        self.columns = []
        for c in names:  # duplicate header names get .1, .2 so the first one is the one used
            k = seen.get(c, 0)
            seen[c] = k + 1
            self.columns.append(c if k == 0 else f"{c}.{k}")
        _missing_columns(self.name, want, self.columns)
        with quiet_unraisable():
            self.time_kind, self.typed_time = self._sniff_time(head if whole else head[: _last_line_end(head) + 1])
        self.modes = ("typed", "raw", "lenient") if self.typed_time is not None else ("raw", "lenient")

    def _raw(self) -> io.BufferedIOBase:
        return gzip.open(self.path, "rb") if self.gzip else open(self.path, "rb")

    def _head(self) -> tuple[bytes, bytes, bool]:
        """(the header line without its line end, the header plus up to 64 KiB of rows, whether
        that is the whole file). The header is read whole, however long, up to MAX_HEADER_BYTES;
        any of \\n, \\r\\n or a lone \\r ends it (pyarrow's parser accepts all three)."""
        try:
            with self._raw() as f:
                head = b""
                while True:
                    chunk = f.read(_SNIFF)
                    head += chunk
                    end = _first_line_end(head)
                    if end >= 0 or not chunk:
                        break
                    if len(head) > MAX_HEADER_BYTES:
                        raise InputError(f"{self.name}: the first line is longer than {MAX_HEADER_BYTES >> 20} MiB "
                                         "with no line end; this is not a CSV file of tracks with a header row")
                first = head if end < 0 else head[:end]
                more = end + 1 + _SNIFF - len(head)
                if end >= 0 and more > 0:
                    head += f.read(more)
                return first, head, len(f.read(1)) == 0
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise InputError(f"{self.name}: cannot read ({exc})") from None

    def _skip(self, row) -> str:
        return "skip"

    def _sniff_time(self, head: bytes) -> tuple[str, pa.DataType | None]:
        """The time column's kind, and the Arrow type that parses every time in the first 64 KiB
        (None: skip the typed attempt)."""
        try:
            sample = pcsv.read_csv(
                io.BytesIO(head),
                read_options=pcsv.ReadOptions(column_names=self.columns, skip_rows=1),
                parse_options=pcsv.ParseOptions(delimiter=self.sep, invalid_row_handler=self._skip),
                convert_options=pcsv.ConvertOptions(
                    include_columns=[self.want["time"]], column_types={self.want["time"]: pa.binary()},
                    null_values=[""], strings_can_be_null=True,
                ),
            ).column(0)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return "iso", None
        kind = validate.detect_time_kind(sample)
        candidates = [pa.float64()] if kind == "number" else [pa.timestamp("us"), pa.timestamp("us", tz="UTC")]
        for ty in candidates:
            try:
                pc.cast(sample if kind == "number" else pc.cast(sample, pa.string()), ty)
                return kind, ty
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        return kind, None

    def _types(self, used: list[str], mode: str) -> dict[str, pa.DataType]:
        """Column types per read attempt.

        "typed": floats and timestamps parsed by pyarrow itself (fastest; any bad value fails the
        whole read, which then falls back). "raw"/"lenient": raw bytes for coordinates, parsed per
        batch so one bad value costs one batch; text for times (a non-UTF-8 time fails the read,
        which the lenient attempt decodes with \\xNN escapes). Track ids are dictionary bytes always.
        """
        types = {c: pa.binary() for c in used}
        if mode == "typed":
            types[self.want["a"]] = pa.float64()
            types[self.want["b"]] = pa.float64()
            types[self.want["time"]] = self.typed_time
        else:
            types[self.want["time"]] = pa.string()
        if "track" in self.want:
            types[self.want["track"]] = pa.dictionary(pa.int32(), pa.binary())
        return types

    def _cuts(self, size: int) -> list[int]:
        """Byte offsets splitting the file at line starts, one range per core (plain files only)."""
        per_core = _RANGES or min(os.cpu_count() or 1, 4)
        n = 1 if self.gzip else max(1, min(per_core, size // _RANGE_MIN))
        cuts = [0]
        with open(self.path, "rb") as f:
            for k in range(1, n):
                f.seek(max(cuts[-1], size * k // n))
                f.readline()
                if f.tell() < size:
                    cuts.append(f.tell())
        return cuts + [size]

    def streams(self, mode: str) -> list[Stream]:
        size = os.path.getsize(self.path)
        self.close()
        if self.progress and size >= (1 << 20) and not self.gzip:  # gzip is inflated by Arrow: no byte count
            from tqdm.auto import tqdm

            self.bar = tqdm(total=size, unit="B", unit_scale=True, desc=os.path.basename(self.path), leave=False)
        cuts = self._cuts(size)
        return [_CsvStream(self, mode, lo, hi, k == 0, self.bar) for k, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:]))]

    bar = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def where(self, good_index: int | None) -> tuple[str, str | None]:
        """Re-scan the text (error path only) to give the row and the physical line number."""
        ncols = len(self.columns)
        row = good = 0
        try:
            with io.TextIOWrapper(self._raw(), encoding="utf-8", errors="backslashreplace", newline="") as f:
                reader = csv.reader(f, delimiter=self.sep)
                next(reader, None)
                for rec in reader:
                    if not rec:
                        continue
                    row += 1
                    line = reader.line_num
                    if len(rec) != ncols:
                        return f"{self.name} row {row} (line {line})", f"expected {ncols} fields, found {len(rec)}"
                    if good == good_index:
                        return f"{self.name} row {row} (line {line})", None
                    good += 1
        except (csv.Error, OSError, EOFError):
            pass
        if good_index is None:
            return f"{self.name} row {row + 1}", "malformed row (wrong number of fields)"
        return f"{self.name} row {good_index + 1}", None


def _first_line_end(data: bytes) -> int:
    """Index of the first \\n or \\r in `data`, or -1."""
    ends = [i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0]
    return min(ends) if ends else -1


def _last_line_end(data: bytes) -> int:
    """Index of the last \\n or \\r in `data`, or -1."""
    return max(data.rfind(b"\n"), data.rfind(b"\r"))


class _CsvStream(CountingCsvStream):
    """pyarrow's streaming CSV reader over bytes [lo, hi) of the file, counting malformed rows."""

    def __init__(self, src: CsvSource, mode: str, lo: int, hi: int, header: bool, bar):
        self.src, self.mode, self.lo, self.hi, self.header, self.bar = src, mode, lo, hi, header, bar
        self.malformed = 0

    def __iter__(self) -> Iterator[tuple[dict[str, pa.Array], int]]:
        src = self.src
        read = pcsv.ReadOptions(
            column_names=src.columns, skip_rows=1 if self.header else 0, block_size=BLOCK_BYTES,
            encoding=LENIENT if self.mode == "lenient" else "utf8",
        )
        parse = pcsv.ParseOptions(delimiter=src.sep, invalid_row_handler=self.on_invalid)
        used = sorted(set(src.want.values()))
        convert = pcsv.ConvertOptions(
            include_columns=used, column_types=src._types(used, self.mode),
            null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True,
        )
        # gzip: Arrow's own file and inflater, no Python file object under it. A Python file under
        # Arrow's readahead thread, still being read when an error ended the read early, made the
        # interpreter abort at exit (exit 134) or hang: so the reader is also always closed here.
        if src.gzip:
            fh = pa.input_stream(src.path, compression="gzip")
        else:  # the byte range as a zero-copy slice of a memory map
            mapped = pa.memory_map(src.path)
            fh = pa.BufferReader(mapped.read_at(self.hi - self.lo, self.lo))
            mapped.close()
        reader = None
        done = 0
        try:
            reader = pcsv.open_csv(fh, read_options=read, parse_options=parse, convert_options=convert)
            for rb in reader:
                if self.bar is not None:
                    self.bar.update(fh.tell() - done)
                    done = fh.tell()
                yield {role: rb.column(col) for role, col in src.want.items()}, rb.num_rows
        finally:
            if reader is not None:
                reader.close()
            fh.close()


class _ParquetSource(Source):
    def __init__(self, path: str | os.PathLike, want: dict[str, str]):
        self.name = str(path)
        self.want = want
        try:
            self.file = pq.ParquetFile(os.fspath(path))
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{self.name}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        schema = self.file.schema_arrow
        _missing_columns(self.name, want, schema.names)
        for col in sorted(set(want.values())):
            refuse_nested(self.name, col, schema.field(col).type)
        if self.file.metadata.num_rows:
            first = next(self.file.iter_batches(batch_size=2000, columns=[want["time"]]))
            self.time_kind = validate.detect_time_kind(first.column(0))

    def streams(self, mode: str) -> list[Stream]:
        used = sorted(set(self.want.values()))

        def batches():
            for rb in self.file.iter_batches(batch_size=1 << 16, columns=used):
                yield {role: rb.column(col) for role, col in self.want.items()}, rb.num_rows

        return [Stream(batches())]


class _FrameSource(Source):
    def __init__(self, df: pd.DataFrame, want: dict[str, str]):
        self.name = "DataFrame"
        self.want = want
        self.df = df
        self.cols = {str(c): c for c in df.columns}
        _missing_columns(self.name, want, list(self.cols))
        if len(df):
            self.time_kind = validate.detect_time_kind(self._arrow(df[self.cols[want["time"]]].iloc[:2000]))

    @staticmethod
    def _arrow(s: pd.Series) -> pa.Array:
        try:
            return pa.array(s, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            # mixed Python objects: judge them as text, like a CSV would
            return pa.array([None if _isna(v) else str(v) for v in s], pa.string())

    def streams(self, mode: str) -> list[Stream]:
        def batches():
            for lo in range(0, len(self.df), 1 << 20):
                part = self.df.iloc[lo : lo + (1 << 20)]
                yield {role: self._arrow(part[self.cols[col]]) for role, col in self.want.items()}, len(part)

        return [Stream(batches())]


def refuse_nested(name: str, column: str, dtype: pa.DataType) -> None:
    """A list/struct/map column holds many values per row, so no one number, time or id can be read
    from it: refuse it by name before a cast deep inside Arrow fails."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_nested(dtype) or pa.types.is_union(dtype):
        raise InputError(f"{name}: column '{validate.printable(column)}' holds {dtype} values (one nested value per row); "
                         "expected plain numbers, times or ids")


def _isna(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def open_source(source, want: dict[str, str], sep: str | None, progress: bool, geographic: bool = True) -> Source:
    """The source for a DataFrame, a file (CSV, gzip CSV, Parquet, GeoLife .plt, GPX), or a directory
    or glob of such files (read as one source: `gridcast.ingest.many`)."""
    if isinstance(source, pd.DataFrame):
        return _FrameSource(source, want)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"cannot read tracks from a {type(source).__name__}; give a path or a DataFrame")
    path = os.fspath(source)
    if os.path.isdir(path) or (not os.path.exists(path) and _is_pattern(path)):
        from gridcast.ingest.many import ManySource, list_inputs

        files = list_inputs(path)
        return ManySource(path, [open_file(f, want, sep, False, geographic, allow_empty=True) for f in files])
    return open_file(path, want, sep, progress, geographic)


def _is_pattern(path: str) -> bool:
    return any(c in path for c in "*?[")


def open_file(path: str, want: dict[str, str], sep: str | None, progress: bool, geographic: bool = True,
              allow_empty: bool = False) -> Source:
    """The source of one file, by its content (Parquet's magic) or its suffix (.plt, .gpx), else CSV.
    `allow_empty`: a file of no points is a source of 0 rows (one file among many), not an error."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):  # a FIFO would block the read forever, /dev/zero never end
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special"
        raise InputError(f"{path}: not a regular file ({kind}); give a CSV or Parquet file of tracks")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: the file is empty")
    lower = path.lower()
    if lower.endswith(".plt"):
        from gridcast.ingest.plt import PltSource

        return PltSource(path, want, geographic)
    if lower.endswith(".gpx"):
        from gridcast.ingest.gpx import GpxSource

        return GpxSource(path, want, geographic, allow_empty=allow_empty)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1" or path.lower().endswith((".parquet", ".pq")):
        return _ParquetSource(path, want)
    return CsvSource(path, want, sep, progress)
