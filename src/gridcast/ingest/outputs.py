"""Never destroy an input: an output path that is one of the command's inputs is refused.

Why by file identity and not by name: `v.csv`, `./sub/../v.csv`, a symlink to it and a hard link
to it are four names for one file, and writing any of them replaces the data. Two paths are the
same file when their (st_dev, st_ino) agree; a write *inside* an input directory (a model
directory) is refused too. Every command that writes calls this before doing any work.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from gridcast.errors import InputError


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    """(st_dev, st_ino) of what `path` names (symlinks followed), or None if nothing is there."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one existing file (any path, symlink or hard link)."""
    ia = _identity(a)
    return ia is not None and ia == _identity(b)


def refuse_input_as_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], flag: str,
                           folders: Iterable[str | os.PathLike | None] = ()) -> None:
    """InputError if writing `out` (given with `flag`) would overwrite one of `inputs` (or `folders`),
    or a file inside one of `folders` (input directories such as a model directory). Paths that do
    not exist (or are None) are ignored.

    >>> refuse_input_as_output(__file__, [__file__], "--out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gridcast.errors.InputError: --out ...: is an input (...); writing it would destroy it: choose another path
    """
    target = Path(out)
    folders = [f for f in folders if isinstance(f, (str, os.PathLike)) and os.path.isdir(f)]
    mine = _identity(target)
    for given in [*inputs, *folders]:
        if isinstance(given, (str, os.PathLike)) and mine is not None and _identity(given) == mine:
            raise InputError(f"{flag} {target}: is an input ({given}); writing it would destroy it: choose another path")
    above = {_identity(p) for p in _with_parents(target)[1:]} - {None}
    for folder in folders:
        if _identity(folder) in above:
            raise InputError(f"{flag} {target}: is inside an input directory ({folder}) and is an input: "
                             "choose a path outside it")


def _with_parents(path: Path) -> list[Path]:
    """The path and every folder above it (as given and as resolved), nearest first."""
    out = [path, *path.parents]
    try:
        resolved = path.resolve()
        out += [resolved, *resolved.parents]
    except (OSError, RuntimeError):
        pass
    return out
