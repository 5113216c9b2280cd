"""Preprocessing speed: raw GPS CSV -> 60 s step -> UTM -> 250 m cells -> Parquet, end to end.

A thin script over `gridcast.bench.speed.grid` (the code, its lines and its options live there):
``python benchmarks/bench_grid.py --help``, same as ``python -m gridcast.bench.speed.grid --help``.
"""
import sys

from gridcast.bench.speed.grid import main

if __name__ == "__main__":
    sys.exit(main())
