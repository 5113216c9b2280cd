"""Batch route prediction: beam search of width 5, 12 steps ahead, for 10,000 tracks at once.

A thin script over `gridcast.bench.speed.rollout` (the code, its lines and its options live there):
``python benchmarks/bench_rollout.py --help``, same as ``python -m gridcast.bench.speed.rollout --help``.
"""
import sys

from gridcast.bench.speed.rollout import main

if __name__ == "__main__":
    sys.exit(main())
