"""Memory guards from estimates: refuse a gridding job that would not fit, before allocating it.

Why estimates: resampling knows how many points it will build (ticks inside every track's span)
before it builds one, and every later stage holds a fixed number of bytes per point. Two fixes 49
million seconds apart at a 1 s step are 49 M points and ~8 GB; failing with the numbers and the flag
that fixes it beats being killed by the operating system minutes later.
"""
from __future__ import annotations

from gridcast.errors import InputError

#: The documented default of ``--memory-limit`` (``gridcast.cli.common.DEFAULT_MEMORY_LIMIT``, 4 GiB),
#: also the default of ``grid_tracks(memory_limit=None)``.
DEFAULT_MEMORY_LIMIT = 4 << 30

#: Peak bytes per resampled point through gridding and writing, measured (`gridcast grid` on
#: synthetic tracks of 1 M and 4 M output points: the slope of peak RSS against points), rounded up.
BYTES_PER_POINT = 200

def human(n: float) -> str:
    """Bytes for a message, in the binary units ``--memory-limit`` takes.

    >>> human(7.8 * 2**30), human(3 << 20)
    ('7.8 GiB', '3 MiB')
    """
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def check_gridding(points: float, n_raw: int, step: float, longest_span: float, limit: float | None) -> None:
    """Refuse resampling to `points` points when their estimated bytes exceed `limit` (None: the default)."""
    limit = DEFAULT_MEMORY_LIMIT if limit is None else limit
    need = (points + n_raw) * BYTES_PER_POINT
    if need > limit:
        raise InputError(
            f"resampling at a {step:g} s step would create {points:.3g} points (the longest track spans "
            f"{longest_span:.3g} s), about {human(need)} of memory, over the --memory-limit of {human(limit)}; "
            "split long gaps with --max-gap, use a larger --step, or raise --memory-limit"
        )
