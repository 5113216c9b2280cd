"""`gridcast bench speed`: the speed benchmarks of `gridcast.bench.speed`, every figure beside its baseline.

``--json`` prints one object per line (**contract**, docs/contracts.md):
``{"name": str, "value": float, "unit": str, "baseline": str, "ratio": float}``. ``--quick`` runs
every line at toy sizes (seconds; for checking the wiring, not for reading the figures).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from gridcast.errors import InputError

# The groups of gridcast.bench.speed.runner.GROUPS, in order (named here so that --help stays torch-free;
# tests/test_bench_speed.py holds the two equal).
GROUPS = ("train", "stream", "rollout", "grid", "memory")


def register(targets: argparse._SubParsersAction) -> None:
    p = targets.add_parser("speed", help="speed benchmarks, each beside a baseline measured in the same run")
    p.add_argument("--json", action="store_true", help="one JSON object per line (name, value, unit, baseline, ratio)")
    p.add_argument("--quick", action="store_true", help="toy sizes: checks every benchmark runs, in seconds")
    p.add_argument("--only", default=",".join(GROUPS), help=f"comma list of groups (default: {','.join(GROUPS)})")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared 2-core machine one thread gives stable ratios)")
    p.add_argument("--data", metavar="DIR",
                   help="the benchmark data folder: the memory group trains on DIR/ethucy (skipped without it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridcast.bench.speed.runner import check_groups, run_groups, table

    groups = check_groups([g.strip() for g in args.only.split(",") if g.strip()])
    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(f"# bench speed: torch {torch.__version__}, {args.threads} thread(s), groups {','.join(groups)}"
          f"{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
    show = (lambda entry: print(json.dumps(entry), flush=True)) if args.json else (lambda entry: None)
    entries = run_groups(groups, quick=args.quick, data=args.data, on_line=show)
    if not args.json:
        print(table(entries))
    print(f"# bench speed: {time.perf_counter() - started:.0f} s in all", file=sys.stderr)
    return 0
