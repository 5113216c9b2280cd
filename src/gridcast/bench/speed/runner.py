"""Run the speed groups and hold every line to the contract shape of `gridcast bench speed --json`.

Each group measures its baseline in the same run, interleaved, so the ratios hold on a busy machine
where absolute times do not:

* ``train``: training step of `Recurrent` (fused and explicit) vs ``torch.nn.LSTM/GRU/RNN``;
* ``stream``: per-point latency of `StreamingPredictor` vs eager ``nn.LSTMCell`` + ``nn.Linear``;
* ``rollout``: `beam_many` over 10,000 tracks vs a hand-written fused torch loop;
* ``grid``: `gridcast grid` points per second vs plain pandas;
* ``memory``: peak RSS of an ETH/UCY training run (when the ETH/UCY folder is given).

A line is ``{"name": str, "value": float, "unit": str, "baseline": str, "ratio": float}`` (the
**contract**, docs/contracts.md).
"""
from __future__ import annotations

import importlib
import math
import sys
import time
from pathlib import Path
from typing import Callable, TextIO

from gridcast.errors import InputError

# group -> the module whose run(**sizes) returns its lines (a dict or a list of dicts)
GROUPS: dict[str, str] = {
    "train": "gridcast.bench.speed.train",
    "stream": "gridcast.bench.speed.stream",
    "rollout": "gridcast.bench.speed.rollout",
    "grid": "gridcast.bench.speed.grid",
    "memory": "gridcast.bench.speed.memory",
}

# Per group: keyword arguments of its run() for a full and a --quick run.
SIZES: dict[str, tuple[dict, dict | None]] = {
    "train": ({}, {"repeats": 2}),  # full: each (kind, hidden) gets ~6 s of rounds
    "stream": ({"points": 20_000}, {"points": 1_000, "tracks": 20}),
    "rollout": ({"tracks": 10_000, "repeats": 2}, {"tracks": 200, "repeats": 1, "horizon": 4}),
    "grid": ({"n_points": 1_000_000, "repeats": 3}, {"n_points": 50_000, "repeats": 1}),
    "memory": ({"epochs": 1}, None),  # a training run is not a toy: skipped under --quick
}


def check_groups(groups: list[str]) -> list[str]:
    """The groups asked for, every name checked (InputError names the unknown ones)."""
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise InputError(f"unknown benchmark group {', '.join(unknown)} (choose from {', '.join(GROUPS)})")
    return groups


def check_line(entry: dict) -> dict:
    """The contract shape, exactly: five keys with their types."""
    return {"name": str(entry["name"]), "value": float(entry["value"]), "unit": str(entry["unit"]),
            "baseline": str(entry["baseline"]), "ratio": float(entry["ratio"])}


def run_groups(groups: list[str], quick: bool = False, data: Path | None = None,
               on_line: Callable[[dict], None] = lambda entry: None, log: TextIO | None = None) -> list[dict]:
    """Every line of `groups`, in order; `on_line` sees each as soon as its group is done.

    `data` is the benchmark data folder (the memory group trains on ``data/ethucy``). One broken
    group is reported on `log` and must not hide the others' figures.
    """
    log = log or sys.stderr
    entries = []
    for group in check_groups(groups):
        full, small = SIZES[group]
        if quick and small is None:
            print(f"# {group}: skipped under --quick", file=log)
            continue
        kwargs = dict(small if quick else full)
        if group == "memory":
            kwargs["data"] = None if data is None else Path(data) / "ethucy"
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(GROUPS[group])
            result = module.run(**kwargs)
            lines = [check_line(e) for e in ([result] if isinstance(result, dict) else result)]
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"# {group}: failed ({type(exc).__name__}: {exc})", file=log)
            continue
        print(f"# {group}: {time.perf_counter() - t0:.0f} s", file=log, flush=True)
        for entry in lines:
            entries.append(entry)
            on_line(entry)
    return entries


def table(entries: list[dict]) -> str:
    """The lines as an aligned plain-text table."""
    rows = [("benchmark", "value", "unit", "ratio", "baseline")]
    for e in entries:
        value = e["value"]
        shown = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" if math.isfinite(value) else str(value)
        rows.append((e["name"], shown, e["unit"], f"{e['ratio']:.2f}", e["baseline"]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) if i in (0, 2, 4) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)
