"""JSON that every reader accepts: NaN and infinities written as null (they are not JSON).

One home for the rule, so ``--json`` on stdout and the files gridcast writes (GeoJSON) agree.
"""
from __future__ import annotations

import math

__all__ = ["json_safe"]


def json_safe(obj):
    """`obj` with every non-finite float (in nested dicts, lists and tuples) replaced by None.

    >>> json_safe({"p": float("nan"), "xs": (1.0, float("inf"))})
    {'p': None, 'xs': [1.0, None]}
    """
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
