"""The service's documented limits: what one request may ask for, and how many live tracks it keeps.

Each has a default that a real deployment can live with (docs/contracts.md); beyond it a request is
answered 413 (body size) or 422 naming the field, never a slow or crashing server.
"""
from __future__ import annotations

from dataclasses import dataclass

#: Request body bytes (413 beyond).
MAX_BODY_BYTES = 2 * 1024 * 1024
#: Points (or cells) in one request.
MAX_POINTS = 10_000
#: Route length a prediction may ask for.
MAX_HORIZON = 50
#: Next cells and routes a request may ask for.
MAX_TOP_K = 20
#: A cell index beyond this is no grid's (keeps int64 arithmetic safe).
MAX_CELL = 1_000_000_000


@dataclass(frozen=True)
class Limits:
    """Server-wide limits: the live tracks kept per model and how long an idle one lives."""

    max_tracks: int = 10_000
    idle_seconds: float | None = 3600.0
    max_body_bytes: int = MAX_BODY_BYTES
    save_every: float = 10.0  # seconds between state writes with --state-dir
