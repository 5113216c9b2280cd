"""Many files read as one source: a directory (searched recursively) or a glob of CSV, Parquet,
GeoLife .plt and GPX files, in a stable (sorted) order.

Why one source and not one run per file: a track may be spread over several files (a day per file,
a file per device export), and track ids are joined by name across all of them, so the pipeline
sees one table; the report counts every row of every file. The files are shared among a few
sequential streams (one per core), each naming the file a strict-mode problem is in.
"""
from __future__ import annotations

import glob
import os
from typing import Iterator

from gridcast.errors import InputError
from gridcast.ingest.sources import Source, Stream

#: What a directory is searched for (case-insensitive); anything else in it is ignored.
TRACK_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".txt", ".txt.gz", ".parquet", ".pq", ".plt", ".gpx")
_MODES = ("typed", "raw", "lenient")
_MAX_STREAMS = 4


def is_glob(text: str) -> bool:
    """Whether a DATA argument is a pattern (``*``, ``?``, ``[``) rather than one path."""
    return any(c in text for c in "*?[")


def list_inputs(given: str) -> list[str]:
    """The files of tracks a directory holds (recursively; hidden names skipped) or a glob matches, sorted."""
    if os.path.isdir(given):
        found = []
        for root, dirs, files in os.walk(given):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [os.path.join(root, f) for f in files
                      if not f.startswith(".") and f.lower().endswith(TRACK_SUFFIXES)]
        where = "is a directory with no files of tracks"
    else:
        found = [p for p in glob.glob(given, recursive=True) if os.path.isfile(p)]
        where = "no files of tracks match this pattern"
    if not found:
        raise InputError(f"{given}: {where} ({', '.join(TRACK_SUFFIXES)})")
    return sorted(found)


def _sub_mode(src: Source, mode: str) -> str:
    """The source's own read mode for the run's `mode`: that one, or its nearest fallback."""
    if mode in src.modes:
        return mode
    later = [m for m in _MODES[_MODES.index(mode):] if m in src.modes]
    return later[0] if later else src.modes[-1]


class ManySource(Source):
    """Files read one after another as few streams; rows counted per file for `where`."""

    def __init__(self, given: str, subs: list[Source]):
        self.name = given
        self.subs = subs
        kinds = {s.time_kind for s in subs}
        if len(kinds) > 1:
            iso = next(s for s in subs if s.time_kind == "iso")
            num = next(s for s in subs if s.time_kind != "iso")
            raise InputError(f"{num.name}: times are numbers of seconds, but {iso.name} has ISO-8601 times; "
                             "give files whose times are of one kind")
        self.time_kind = kinds.pop() if kinds else "number"
        self.modes = tuple(m for m in _MODES if any(m in s.modes for s in subs)) or ("raw",)
        self.groups: list[list[int]] = []
        self._seen: list[list[list[int]]] = []  # per stream: [sub index, parsed rows, malformed rows]

    def streams(self, mode: str) -> list[Stream]:
        n = max(1, min(len(self.subs), os.cpu_count() or 1, _MAX_STREAMS))
        per = -(-len(self.subs) // n)
        self.groups = [list(range(lo, min(lo + per, len(self.subs)))) for lo in range(0, len(self.subs), per)]
        self._seen = [[] for _ in self.groups]
        return [_ChainStream(self, k, mode) for k in range(len(self.groups))]

    def close(self) -> None:
        for s in self.subs:
            s.close()

    def where(self, good_index: int | None) -> tuple[str, str | None]:
        """The file and row of the `good_index`-th parsed row over all files (None: the first malformed row)."""
        offset = 0
        for seen in self._seen:
            for i, rows, malformed in seen:
                if good_index is None and malformed:
                    return self.subs[i].where(None)
                if good_index is not None and good_index < offset + rows:
                    return self.subs[i].where(good_index - offset)
                offset += rows
        return f"{self.name} row {(good_index or 0) + 1}", None


class _ChainStream(Stream):
    """The streams of some files, one after another (malformed rows summed over them)."""

    def __init__(self, owner: ManySource, k: int, mode: str):
        self.owner, self.k, self.mode = owner, k, mode
        self._done = 0
        self._current: Stream | None = None

    @property
    def malformed(self) -> int:  # type: ignore[override]
        return self._done + (self._current.malformed if self._current is not None else 0)

    def __iter__(self) -> Iterator[tuple[dict, int]]:
        seen = self.owner._seen[self.k]
        for i in self.owner.groups[self.k]:
            sub = self.owner.subs[i]
            entry = [i, 0, 0]  # this file's parsed rows and malformed rows, kept current for `where`
            seen.append(entry)
            before = self._done
            for stream in sub.streams(_sub_mode(sub, self.mode)):
                self._current = stream
                for cols, n in stream:
                    entry[1] += n
                    entry[2] = self.malformed - before
                    yield cols, n
                self._done += stream.malformed
                self._current = None
            entry[2] = self._done - before
