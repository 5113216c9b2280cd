"""`gridcast bench speed`: the speed benchmarks of `benchmarks/`, every figure beside its baseline.

Each group lives in `benchmarks/bench_<group>.py` of the source checkout (they are benchmarks, not
library code) and measures its baseline in the same run, interleaved, so the ratios hold on a busy
machine where absolute times do not:

* ``train``: training step of `Recurrent` (fused and explicit) vs ``torch.nn.LSTM/GRU/RNN``;
* ``stream``: per-point latency of `StreamingPredictor` vs eager ``nn.LSTMCell`` + ``nn.Linear``;
* ``rollout``: `beam_many` over 10,000 tracks vs a hand-written fused torch loop;
* ``grid``: `gridcast grid` points per second vs plain pandas (``benchmarks/bench_grid.py``);
* ``memory``: peak RSS of an ETH/UCY training run (when ``../shared/data/ethucy`` exists).

``--json`` prints one object per line (**contract**):
``{"name": str, "value": float, "unit": str, "baseline": str, "ratio": float}``. ``--quick`` runs
every line at toy sizes (seconds; for checking the wiring, not for reading the figures).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path
from types import ModuleType

from gridcast.errors import InputError

GROUPS = ("train", "stream", "rollout", "grid", "memory")
BENCHMARKS = Path(__file__).resolve().parents[4] / "benchmarks"

# Per group: keyword arguments of its run() for a full and a --quick run.
SIZES = {
    "train": ({}, {"repeats": 2}),  # full: each (kind, hidden) gets ~6 s of rounds
    "stream": ({"points": 20_000}, {"points": 1_000, "tracks": 20}),
    "rollout": ({"tracks": 10_000, "repeats": 2}, {"tracks": 200, "repeats": 1, "horizon": 4}),
    "grid": ({"n_points": 1_000_000, "repeats": 3}, {"n_points": 50_000, "repeats": 1}),
    "memory": ({"epochs": 1}, None),  # a training run is not a toy: skipped under --quick
}


def register(targets: argparse._SubParsersAction) -> None:
    p = targets.add_parser("speed", help="speed benchmarks, each beside a baseline measured in the same run")
    p.add_argument("--json", action="store_true", help="one JSON object per line (name, value, unit, baseline, ratio)")
    p.add_argument("--quick", action="store_true", help="toy sizes: checks every benchmark runs, in seconds")
    p.add_argument("--only", default=",".join(GROUPS), help=f"comma list of groups (default: {','.join(GROUPS)})")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared 2-core machine one thread gives stable ratios)")
    p.set_defaults(func=run)


def _load(group: str) -> ModuleType | None:
    """benchmarks/bench_<group>.py as a module, or None when this checkout does not have it."""
    path = BENCHMARKS / f"bench_{group}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"gridcast_benchmarks_{group}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _lines(group: str, module: ModuleType, kwargs: dict) -> list[dict]:
    result = module.run(**kwargs)
    return [result] if isinstance(result, dict) else list(result)


def _check(entry: dict) -> dict:
    """The contract shape, exactly: five keys with their types."""
    return {"name": str(entry["name"]), "value": float(entry["value"]), "unit": str(entry["unit"]),
            "baseline": str(entry["baseline"]), "ratio": float(entry["ratio"])}


def run(args: argparse.Namespace) -> int:
    import torch

    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise InputError(f"unknown benchmark group {', '.join(unknown)} (choose from {', '.join(GROUPS)})")
    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    if not BENCHMARKS.is_dir():
        raise InputError(f"{BENCHMARKS}: not found; `gridcast bench speed` runs from a source checkout")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(f"# bench speed: torch {torch.__version__}, {args.threads} thread(s), groups {','.join(groups)}"
          f"{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
    entries = []
    for group in groups:
        full, quick = SIZES[group]
        if args.quick and quick is None:
            print(f"# {group}: skipped under --quick", file=sys.stderr)
            continue
        module = _load(group)
        if module is None or not hasattr(module, "run"):
            print(f"# {group}: skipped (benchmarks/bench_{group}.py not found)", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        try:
            lines = [_check(e) for e in _lines(group, module, quick if args.quick else full)]
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"# {group}: failed ({type(exc).__name__}: {exc})", file=sys.stderr)
            continue
        print(f"# {group}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        for entry in lines:
            entries.append(entry)
            if args.json:
                print(json.dumps(entry), flush=True)
    if not args.json:
        print(_table(entries))
    print(f"# bench speed: {time.perf_counter() - started:.0f} s in all", file=sys.stderr)
    return 0


def _table(entries: list[dict]) -> str:
    rows = [("benchmark", "value", "unit", "ratio", "baseline")]
    for e in entries:
        value = e["value"]
        shown = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" if math.isfinite(value) else str(value)
        rows.append((e["name"], shown, e["unit"], f"{e['ratio']:.2f}", e["baseline"]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) if i in (0, 2, 4) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)
