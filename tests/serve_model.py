"""One small model on the bundled Liverpool route-14 data, fitted once per test session and shared
by the tests/test_serve*.py files (a helper module, not a test file)."""
from __future__ import annotations

from pathlib import Path

from gridcast.cli import main
from gridcast.datasets.liverpool import liverpool_route14

COLS = ["--track-col", "trip_id", "--time-col", "timestamp", "--lat-col", "latitude", "--lon-col", "longitude"]
_FITTED: dict[str, Path] = {}


def fitted_model(tmp_path_factory, cell: str = "gru") -> Path:
    """Liverpool at 100 m / 30 s (geographic grid with a step, not collapsed), 1 epoch: a real model
    directory, with its training tracks, in a session-wide temporary folder."""
    if cell not in _FITTED:
        out = tmp_path_factory.mktemp("serve-model") / "bus14"
        assert main(["fit", str(liverpool_route14()), *COLS, "--cell-size", "100", "--step", "30", "--max-gap", "600",
                     "--cell", cell, "--hidden", "16", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
        _FITTED[cell] = out
    return _FITTED[cell]
