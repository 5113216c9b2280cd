"""Which input columns hold what: the one thing a caller must say about a raw file."""
from __future__ import annotations

from dataclasses import dataclass

from gridcast.errors import InputError


@dataclass
class ColumnMap:
    """Which input columns hold what. Give lat/lon (degrees) or x/y (planar units); track may be None."""

    track: str | None = "track"
    time: str = "time"
    lat: str | None = None
    lon: str | None = None
    x: str | None = None
    y: str | None = None

    @property
    def geographic(self) -> bool:
        return self.lat is not None or self.lon is not None

    def check(self) -> None:
        geo = (self.lat, self.lon)
        plane = (self.x, self.y)
        if all(geo) and not any(plane):
            return
        if all(plane) and not any(geo):
            return
        raise InputError("give both lat and lon columns, or both x and y columns (not a mix)")

    def names(self) -> dict[str, str]:
        """Role -> column name; roles 'a', 'b' are (lat, lon) or (x, y)."""
        a, b = (self.lat, self.lon) if self.geographic else (self.x, self.y)
        out = {"time": self.time, "a": a, "b": b}
        if self.track is not None:
            out["track"] = self.track
        return out
