"""Bounded reading of files that someone else may have crafted: a model directory is a sandbox.

Why one home: a model directory (or a gridded file) can come from anyone, and a served model makes
its files reachable by other people. Every file a config names must be a regular file inside its
directory (no ``..``, no absolute path, no symlink that leaves it, no device or FIFO), no larger than
a documented cap, and every JSON document is parsed with limits on size, nesting depth and number
length, so a hostile file ends in one line naming it, never in a hang, a runaway allocation or a
traceback. Torch-free and pandas-free: the ingest layer and the checkpoint reader share it.

Example:
    >>> parse_json(b'{"a": [1, 2.5]}', "x.json")
    {'a': [1, 2.5]}
    >>> parse_json(b'{"a": 1, "a": 2}', "x.json")
    Traceback (most recent call last):
    ...
    gridcast.errors.InputError: x.json: JSON refused: the key 'a' appears twice in one object
    >>> parse_json(b'[' * 100 + b']' * 100, "x.json")
    Traceback (most recent call last):
    ...
    gridcast.errors.InputError: x.json: JSON nested deeper than 64 levels
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np

from gridcast.errors import GridcastError, InputError

MAX_JSON_BYTES = 32 << 20       # a config.json or a metadata entry larger than this is refused
MAX_JSON_DEPTH = 64             # nesting levels of arrays and objects
MAX_NUMBER_CHARS = 64           # characters of one JSON number (a 5,000-digit integer is refused)
READ_CHUNK = 1 << 20


class _Refused(Exception):
    """Raised inside the json hooks; turned into the caller's one-line error."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def inside(directory: str | os.PathLike, name: object, field: str,
           error: type[GridcastError] = InputError) -> Path:
    """The resolved path of `name` inside `directory`, or `error` naming `field`.

    `name` must be a relative path without ``..`` whose resolution (symlinks followed) stays
    inside the resolved directory; nothing is opened here."""
    directory = Path(directory)
    if not isinstance(name, str) or not name or "\x00" in name:
        raise error(f"{directory}: {field} must name a file in the model directory, got {name!r}")
    if os.path.isabs(name) or ".." in Path(name).parts or "\\" in name:
        raise error(f"{directory}: {field} {name!r} points outside the model directory")
    root = Path(os.path.realpath(directory))
    target = Path(os.path.realpath(root / name))
    if target == root or root not in target.parents:
        raise error(f"{directory / name}: {field} is a symlink to {target}, outside the model directory")
    return target


def open_regular(path: str | os.PathLike, max_bytes: int, error: type[GridcastError] = InputError,
                 what: str = "file") -> tuple[int, int]:
    """(fd, size) of a regular file opened without blocking or following a final symlink.

    The type and size come from ``fstat`` on the opened descriptor, so a file swapped after a check
    cannot slip through, and a FIFO is refused instead of waiting for a writer."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{path}: {what} is missing") from None
    except OSError as exc:
        raise error(f"{path}: cannot open the {what} ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: the {what} is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > max_bytes:
            raise error(f"{path}: the {what} is {info.st_size} bytes, over the cap of {max_bytes} bytes")
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def read_exactly(fd: int, count: int, path: str | os.PathLike, error: type[GridcastError] = InputError) -> bytes:
    """`count` bytes from `fd` in chunks; a file that ends early is `error` (it shrank, or lied)."""
    parts, left = [], count
    while left > 0:
        chunk = os.read(fd, min(left, READ_CHUNK))
        if not chunk:
            raise error(f"{path}: ends after {count - left} of {count} expected bytes (truncated)")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_regular(path: str | os.PathLike, max_bytes: int, error: type[GridcastError] = InputError,
                 what: str = "file") -> bytes:
    """The whole of a regular file of at most `max_bytes` (see `open_regular`)."""
    fd, size = open_regular(path, max_bytes, error, what)
    try:
        return read_exactly(fd, size, path, error)
    finally:
        os.close(fd)


_LONG_DIGITS = re.compile(r"[0-9]{%d,}" % (MAX_NUMBER_CHARS + 1))


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:20]} overflows")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are unique: with ``{"hidden": 128, "hidden": 99999}`` parsers disagree on
    the value (Python keeps the last, others the first), so a checker and a loader could see
    different models; such a document is refused."""
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _Refused(f"the key {twice[:60]!r} appears twice in one object")
    return document


def _finite_constant(text: str) -> float:
    raise _Refused(f"{text} where a finite number is required")


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')


def _max_depth(text: str) -> int:
    """Deepest nesting of arrays/objects, counted in C (regex + NumPy) before the parser runs, so a
    5,000-deep document never reaches it; strings are blanked first (brackets inside them do not count)."""
    bare = np.frombuffer(_STRINGS.sub('""', text).encode("utf-8", "replace"), dtype=np.uint8)
    step = _BRACKETS[bare]
    return int(np.cumsum(step[step != 0], dtype=np.int64).max(initial=0))


_BRACKETS = np.zeros(256, dtype=np.int8)
_BRACKETS[[ord("["), ord("{")]] = 1
_BRACKETS[[ord("]"), ord("}")]] = -1


def parse_json(data: bytes | str, source: str | os.PathLike, error: type[GridcastError] = InputError,
               allow_nonfinite: bool = False, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A JSON document within the limits above, or `error` naming `source`.

    `allow_nonfinite` lets ``NaN``/``Infinity`` through (files gridcast itself wrote with them, such
    as a trainer's loss history); the caller then checks every field that must be finite."""
    if len(data) > max_bytes:
        raise error(f"{source}: {len(data)} bytes of JSON, over the cap of {max_bytes}")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{source} is corrupted (not valid JSON: not UTF-8, {exc.reason} at byte {exc.start})") from None
    long_number = _LONG_DIGITS.search(data)  # one C-speed scan instead of a hook per integer
    if long_number is not None:
        digits = len(re.match(r"[0-9]*", data[long_number.start():]).group())
        raise error(f"{source}: JSON refused: a number of {digits} digits (at most {MAX_NUMBER_CHARS})")
    if _max_depth(data) > MAX_JSON_DEPTH:
        raise error(f"{source}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(data, parse_float=_parse_float, object_pairs_hook=_unique_keys,
                           parse_constant=(lambda c: float(c)) if allow_nonfinite else _finite_constant)
    except _Refused as exc:
        raise error(f"{source}: JSON refused: {exc}") from None
    except RecursionError:
        raise error(f"{source}: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise error(f"{source} is corrupted (not valid JSON: {str(exc).splitlines()[0][:200]})") from None
    return value


def read_json_inside(directory: str | os.PathLike, name: str, error: type[GridcastError] = InputError,
                     allow_nonfinite: bool = False) -> Any:
    """The JSON document `name` of `directory`, read through every check of this module."""
    path = inside(directory, name, name, error)
    data = read_regular(path, MAX_JSON_BYTES, error, what=name)
    return parse_json(data, Path(directory) / name, error, allow_nonfinite)
