"""Training-step speed of `Recurrent` against the matching `torch.nn` module, same run, same weights.

A thin script over `gridcast.bench.speed.train` (the code, its lines and its options live there):
``python benchmarks/bench_train.py --help``, same as ``python -m gridcast.bench.speed.train --help``.
"""
import sys

from gridcast.bench.speed.train import main

if __name__ == "__main__":
    sys.exit(main())
