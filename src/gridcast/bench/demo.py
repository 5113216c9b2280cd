"""The bundled demo: Liverpool bus route 14, from raw GPS to a model judged beside its baselines.

The data and its protocol are `gridcast.datasets.liverpool` (30 s, gaps > 10 min split, 100 m cells,
cell changes; the 11 earliest trips train, two of them held out for early stopping, the 5 latest
test). Next cell: Acc@1, Acc@5, MRR over every step of the test trips; route: from the first half of
each test trip, continue for as many cells as the trip really had. ``mode="fixed"``: the same without
the collapse, one cell per 30 s step (routes then continue for as many steps as the trip had).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from gridcast.datasets.geolife import check_mode, sequences_note
from gridcast.datasets.liverpool import MAX_GAP, STEP, load_liverpool_gridded
from gridcast.ingest.gridded import GriddedTracks
from gridcast.ingest.gridded_file import write_gridded
from gridcast.kinds import CELL_KINDS
from gridcast.nextcell.baselines import default_baselines
from gridcast.nextcell.config import recommended
from gridcast.nextcell.evaluation import evaluate
from gridcast.nextcell.forecaster import Forecaster


def _write_test_file(gridded: GriddedTracks, test: list, path: Path) -> None:
    """The held-out trips as a gridded Parquet, so `gridcast evaluate` can be tried on them."""
    ids = {t.id for t in test}
    frame = gridded.frame[gridded.frame["track"].astype(str).isin(ids)].reset_index(drop=True)
    write_gridded(GriddedTracks(frame, gridded.grid, gridded.report), path)


def run_demo(out_dir: str | Path, cells: tuple[str, ...] = CELL_KINDS, seed: int = 0,
             epochs: int = 60, progress: bool = True, log=print, mode: str = "collapsed") -> dict:
    """Train one model per cell kind, evaluate beside baselines, write the model, plots and metrics.

    `mode`: ``"collapsed"`` (cell changes, the default) or ``"fixed"`` (one cell per 30 s step)."""
    from gridcast.nextcell.plots import plot_route_prediction, plot_training_curves

    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    collapse = check_mode(mode)
    train, test, gridded = load_liverpool_gridded(collapse=collapse)
    grid, report = gridded.grid, gridded.report
    _write_test_file(gridded, test, out / "test.parquet")
    log(f"Liverpool bus route 14 (bundled, Open Government Licence v3.0): {report.read} GPS points read, "
        f"{report.kept} kept, {len(train)} training trips, {len(test)} test trips on a {grid.cell_size:.0f} m grid "
        f"at {STEP:.0f} s steps ({sequences_note(mode)})")
    if report.dropped:
        log("  dropped: " + ", ".join(f"{n} {reason}" for reason, n in report.dropped.items()))
    baselines = [b.fit(train) for b in default_baselines()]
    results, models = {}, {}
    for index, kind in enumerate(cells):
        torch.manual_seed(seed)
        model = Forecaster(cell=kind, target="cell", hidden=64, embed=16, dropout=0.1, grid=grid,
                           **recommended("cell"))  # what `gridcast fit --target cell` uses
        model.fit(train, val_fraction=0.2, epochs=epochs, lr=5e-3, patience=10, seed=seed, progress=progress,
                  log_path=out / f"train_log_{kind}.jsonl")
        models[kind] = model
        results[kind] = evaluate(model, baselines if index == 0 else [], test, grid=grid, intervals=True)
    table = {"models": {k: r["model"] for k, r in results.items()}, "baselines": results[cells[0]]["baselines"],
             "n": results[cells[0]]["n"], "test_tracks": len(test), "train_tracks": len(train)}
    best_kind = max(cells, key=lambda k: table["models"][k]["acc@1"])
    best = models[best_kind]
    best.preprocessing = {"max_gap": MAX_GAP, "collapse": collapse}
    best.save(out / "model")
    longest = max(test, key=len)
    n_obs = max(1, len(longest) // 2)
    routes = best.beam(longest.cells[:n_obs], len(longest) - n_obs, width=3)
    plot_route_prediction(out / "prediction.png", longest.cells[:n_obs], longest.cells[n_obs:], routes,
                          background=train, grid=grid, title=f"held-out trip {longest.id}: {best_kind.upper()} continuation "
                          f"({grid.cell_size:.0f} m cells)")
    plot_training_curves(out / "training.png", {k: m.result_.history for k, m in models.items()})
    table["example_track"] = " ".join(f"{c},{r}" for c, r in longest.cells[:n_obs])
    table["seconds"] = round(time.perf_counter() - started, 1)
    table["best_model"] = best_kind
    table["protocol"] = {"mode": mode}
    (out / "metrics.json").write_text(json.dumps(table, indent=2))
    return table

