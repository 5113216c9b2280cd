"""Benchmark runners on real data: each prints its numbers beside baselines measured in the same run.

* `demo` - `run_demo`: the bundled Liverpool bus demo;
* `commute` - `run_benchmark`: next cell on real commutes (GeoLife, UCI);
* `ethucy` - `run_ethucy`: pedestrians, leave one scene out; `mouse` - `run_mouse`: Balabit cursors;
* `run_log`, `summary` - what those runners share: runs on disk as they finish, seed and scene summaries;
* `speed` - `gridcast bench speed`, every figure beside a baseline timed in the same run.

The runners are imported on first use (``from gridcast.bench import run_ethucy``), so that importing
one module of the subpackage (``gridcast.bench.speed.memory`` in its measuring child process) does
not load the others.
"""
from __future__ import annotations

import importlib

_HOMES = {"run_demo": "demo", "run_benchmark": "commute", "run_ethucy": "ethucy", "run_mouse": "mouse",
          "RunLog": "run_log"}

__all__ = list(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"gridcast.bench.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'gridcast.bench' has no attribute {name!r}")
