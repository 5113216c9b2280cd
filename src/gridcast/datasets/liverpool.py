"""Data that ships inside the package (see `gridcast/datasets/data/README.md` for source and licence)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

LIVERPOOL_COLUMNS = {"track": "trip_id", "time": "timestamp", "lat": "latitude", "lon": "longitude"}


def liverpool_route14() -> Path:
    """Path of the bundled Liverpool route-14 bus GPS file (Open Government Licence v3.0)."""
    return Path(str(resources.files("gridcast.datasets") / "data" / "liverpool_route14_outbound.csv"))
