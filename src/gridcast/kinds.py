"""The recurrent cell kinds, named once (torch-free, so the CLI can check ``--cells`` without torch).

`gridcast.nn.cells.CELLS` maps the same names to their classes (a test holds the two equal).
"""
from __future__ import annotations

from gridcast.errors import InputError

CELL_KINDS: tuple[str, ...] = ("lstm", "gru", "rnn")  # the order benchmarks report them in


def parse_kinds(text: str, flag: str = "--cells") -> tuple[str, ...]:
    """``"lstm,GRU"`` -> ``("lstm", "gru")``: the user's order, duplicates dropped, every name checked.

    >>> parse_kinds("gru, lstm,gru")
    ('gru', 'lstm')
    """
    kinds = tuple(dict.fromkeys(k.strip().lower() for k in str(text).split(",") if k.strip()))
    bad = [k for k in kinds if k not in CELL_KINDS]
    if bad or not kinds:
        raise InputError(f"{flag} takes a comma-separated subset of {','.join(CELL_KINDS)}; got {text!r}")
    return kinds
