"""Where a training step of the explicit LSTM path spends its time, beside `torch.nn.LSTM`.

Prints `torch.profiler` tables (self CPU time per ATen op, 10 steps after 3 warm-up steps) for the
same workload as `gridcast.bench.speed.train`, and the number of ATen calls per step, which is what bounds the
explicit path at small hidden sizes. Usage:
``.venv/bin/python benchmarks/profile_explicit.py [--hidden 64] [--rows 12]``.
"""
from __future__ import annotations

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from gridcast.bench.speed.train import training_step


def table(path: str, hidden: int, rows: int, steps: int = 10) -> str:
    step = training_step("lstm", hidden, path)
    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    calls = sum(e.count for e in events if e.key.startswith("aten::")) / steps
    total = sum(e.self_cpu_time_total for e in events) / steps / 1e3
    head = f"== {path}, hidden {hidden}: {total:.1f} ms self CPU per step, {calls:.0f} aten calls per step"
    return head + "\n" + events.table(sort_by="self_cpu_time_total", row_limit=rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for path in ("torch", "explicit"):
        print(table(path, args.hidden, args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
