"""Streaming latency: one new point of one track -> its top-5 next cells, per point.

A thin script over `gridcast.bench.speed.stream` (the code, its lines and its options live there):
``python benchmarks/bench_stream.py --help``, same as ``python -m gridcast.bench.speed.stream --help``.
"""
import sys

from gridcast.bench.speed.stream import main

if __name__ == "__main__":
    sys.exit(main())
