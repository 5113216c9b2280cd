"""Loaders and evaluation protocols of the real datasets (the bundled Liverpool bus route among them)."""
from gridcast.datasets.liverpool import LIVERPOOL_COLUMNS, liverpool_route14

__all__ = ["LIVERPOOL_COLUMNS", "liverpool_route14"]
