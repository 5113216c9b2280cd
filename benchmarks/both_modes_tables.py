"""Render the both-modes tables (README, docs/benchmarks-fixed-step.md) from `gridcast bench ... --out` files.

    python benchmarks/both_modes_tables.py DIR [--kind lstm]

DIR holds ``{dataset}_{mode}.json`` for dataset in liverpool, geolife, uci, fishers and mode in
collapsed, fixed (written by ``gridcast bench DATASET --mode MODE --out DIR/DATASET_MODE.json``).
Prints one summary table (model vs the strongest baseline per metric, paired 95% intervals), the
calibration table (the model's top-1 ECE over seeds, the ECE a perfectly calibrated model would
show on those steps, the best-calibrated baseline) and, per file, the per-metric table of
`gridcast.bench.commute.versus_strongest`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from gridcast.bench.commute import versus_strongest

DATASETS = ("geolife", "uci", "liverpool", "fishers")
MODES = ("collapsed", "fixed")
METRICS = ("acc@1", "acc@5", "mrr", "ade", "fde")


def cell(result: dict, kind: str, metric: str) -> str:
    """`model vs baseline (name): diff [lo, hi]` with a mark: + beats (interval clear of 0), - loses, ~ tie."""
    base = result["strongest_baseline"][metric]
    d = result["paired"][kind][base][metric]
    route = metric in ("ade", "fde")
    ours = result["models"][kind][metric]
    theirs = result["baselines"][base][metric]
    better, worse = (d["hi"] < 0, d["lo"] > 0) if route else (d["lo"] > 0, d["hi"] < 0)
    mark = "**+**" if better else ("**−**" if worse else "~")
    if route:
        return f"{ours:.0f} vs {theirs:.0f} {base}: {d['diff']:+.0f} [{d['lo']:+.0f}, {d['hi']:+.0f}] {mark}"
    return f"{ours:.3f} vs {theirs:.3f} {base}: {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] {mark}"


def calibration_row(result: dict, kind: str) -> str | None:
    """`| dataset, mode | model ECE ± std over seeds | its ECE floor | lowest baseline ECE |`, or None
    for results written before the benchmark measured ECE."""
    model = result["models"][kind]
    if "ece" not in model:
        return None
    scored = {b: m["ece"] for b, m in result["baselines"].items() if "ece" in m}
    best = min(scored, key=scored.get) if scored else None
    lowest = f"{scored[best]:.3f} {best}" if best else "-"
    return f"{model['ece']:.3f} ± {model['ece_std']:.3f} | {model['ece_floor']:.3f} | {lowest}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--kind", default="lstm", help="model row to compare (default: lstm, the 3-seed mean)")
    args = parser.parse_args()
    results = {(d, m): json.loads(p.read_text()) for d in DATASETS for m in MODES
               if (p := args.dir / f"{d}_{m}.json").exists()}
    print("| dataset, mode | " + " | ".join(METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for (dataset, mode), result in results.items():
        print(f"| {dataset}, {mode} | " + " | ".join(cell(result, args.kind, k) for k in METRICS) + " |")
    rows = {key: row for key, result in results.items() if (row := calibration_row(result, args.kind))}
    if rows:
        print("\n| dataset, mode | ECE (seeds) | ECE floor | lowest baseline ECE |\n|---|---|---|---|")
        for (dataset, mode), row in rows.items():
            print(f"| {dataset}, {mode} | {row} |")
    for (dataset, mode), result in results.items():
        sizes = result["sizes"]
        print(f"\n{dataset}, {mode}: {result['n']} test steps on {sizes['test_tracks']} test tracks, "
              f"{sizes['train_tracks']} training tracks; {result['seconds']:.0f} s")
        print(versus_strongest(result, args.kind))


if __name__ == "__main__":
    main()
