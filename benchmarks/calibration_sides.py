"""Top-1 confidence against accuracy on the validation and the test tracks of one LSTM at `gridcast
fit` defaults (the benchmark's split), with its temperature and ECE on each side: whether a
calibration fitted on validation can reach the test period. docs/benchmarks-fixed-step.md, "Why ECE
stays above 0.05". Prints one JSON object.

    DATA=/path/to/shared/data python benchmarks/calibration_sides.py uci collapsed [SEED]
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from gridcast.bench.commute import early_stopping_split
from gridcast.nextcell.calibration import calibration_error, top1_along

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_data import fit_lstm, load  # noqa: E402


def side(model, tracks: list) -> dict:
    tracks = [t for t in tracks if len(t) >= 2]
    confidence, correct = (np.concatenate(x) for x in zip(*(top1_along(model, t.cells) for t in tracks)))
    return {"steps": len(confidence), "confidence": round(float(confidence.mean()), 3),
            "accuracy": round(float(correct.mean()), 3), "ece": round(calibration_error(model, tracks), 3)}


def main() -> None:
    name, mode = sys.argv[1], sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    data = load(name, mode)
    model = fit_lstm(data, seed)
    _, val = early_stopping_split(data)
    print(json.dumps({"name": name, "mode": mode, "seed": seed, "T": round(model.temperature, 3),
                      "val": side(model, val), "test": side(model, data.test)}))


if __name__ == "__main__":
    main()
