"""Peak memory (RSS) of a training run on ETH/UCY, measured in a fresh child process.

A thin script over `gridcast.bench.speed.memory` (the code and its options live there), reading the
ETH/UCY folder of the benchmark data beside this checkout unless ``--data`` names another:
``python benchmarks/bench_memory.py [--epochs 2] [--data DIR]``.
"""
import sys
from pathlib import Path

from gridcast.bench.speed.memory import main

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ethucy"

if __name__ == "__main__":
    sys.exit(main(default_data=DEFAULT_DATA))
