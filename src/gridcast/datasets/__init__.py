"""Loaders and evaluation protocols of the real datasets (the bundled Liverpool bus route among them).

Each loader returns tracks already split by its protocol; the runners that train and score on
them live in `gridcast.bench`.
"""
from gridcast.datasets.geolife import (
                                       GEOLIFE_COLUMNS,
                                       CommuteData,
                                       check_no_leakage,
                                       load_geolife,
                                       split_per_user,
                                       user_map,
)
from gridcast.datasets.liverpool import LIVERPOOL_COLUMNS, liverpool_route14, load_liverpool, load_liverpool_gridded
from gridcast.datasets.uci import UCI_COLUMNS, load_uci

__all__ = [
    "LIVERPOOL_COLUMNS", "liverpool_route14", "load_liverpool", "load_liverpool_gridded",
    "GEOLIFE_COLUMNS", "CommuteData", "load_geolife", "split_per_user", "check_no_leakage", "user_map",
    "UCI_COLUMNS", "load_uci",
]
