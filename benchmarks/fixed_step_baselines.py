"""Next-cell baselines at a fixed time step (no collapse: most steps are stays), on three real datasets.

    python benchmarks/fixed_step_baselines.py --data $DATA [--json]

* Liverpool bus route 14 (bundled): the demo's 100 m / 30 s / 10 min gap, 11 earliest trips train,
  5 latest test; routes continue each test trip from its first half to its end.
* GeoLife (``$DATA/geolife_skmob``): 250 m / 60 s / 10 min gap, per person by local day 70/10/20
  (training and validation fit the baselines); 10-step routes.
* Movebank fishers (``$DATA/movebank_fishers``): 100 m / 600 s / 1 h gap, per animal the first 70%
  of its time span trains (tracks ending by then), tracks starting after it test; 10-step routes.

Baselines only (`default_baselines()`, fitted on the training tracks): the rows a model at a fixed
step has to beat, `stay` and `markov*_dwell` first among them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gridcast.datasets.geolife import GEOLIFE_COLUMNS, GEOLIFE_FILE, GEOLIFE_UTC_OFFSET_H, split_per_user, user_map
from gridcast.datasets.liverpool import N_TRAIN, load_liverpool_gridded
from gridcast.ingest.columns import ColumnMap
from gridcast.ingest.pipeline import grid_tracks
from gridcast.nextcell.baselines import default_baselines
from gridcast.nextcell.evaluation import evaluate
from gridcast.tracks import Track, split_by_time

FISHER_COLUMNS = {"track": "individual-local-identifier", "time": "timestamp", "lat": "location-lat",
                  "lon": "location-long"}


def liverpool(_data: Path):
    _, _, gridded = load_liverpool_gridded()
    tracks = gridded.tracks(collapse=False, min_len=2)
    train, test = split_by_time(tracks, (N_TRAIN / len(tracks), 1 - N_TRAIN / len(tracks)))
    return train, test, gridded.grid, None


def geolife(data: Path):
    gridded = grid_tracks(data / "geolife_skmob" / GEOLIFE_FILE, cell_size=250.0, step=60.0,
                          columns=ColumnMap(**GEOLIFE_COLUMNS), max_gap=600.0)
    shift = GEOLIFE_UTC_OFFSET_H * 3600.0
    tracks = [Track(t.id, t.cells, t.times + shift) for t in gridded.tracks(collapse=False, min_len=2)]
    people = {t.id.rsplit("#", 1)[0]: t.id.rsplit("#", 1)[0] for t in tracks}
    train, val, test = split_per_user(tracks, user_map([t.id for t in tracks], people), (0.7, 0.1, 0.2), by="day")
    return train + val, test, gridded.grid, 10


def fishers(data: Path):
    gridded = grid_tracks(data / "movebank_fishers" / "fishers.csv.gz", cell_size=100.0, step=600.0,
                          columns=ColumnMap(**FISHER_COLUMNS), max_gap=3600.0)
    tracks = gridded.tracks(collapse=False, min_len=2)
    animal = {t.id: t.id.rsplit("#", 1)[0] for t in tracks}
    span: dict[str, tuple[float, float]] = {}
    for t in tracks:
        lo, hi = span.get(animal[t.id], (np.inf, -np.inf))
        span[animal[t.id]] = (min(lo, t.times[0]), max(hi, t.times[-1]))
    cut = {a: lo + 0.7 * (hi - lo) for a, (lo, hi) in span.items()}
    train = [t for t in tracks if t.times[-1] <= cut[animal[t.id]]]
    test = [t for t in tracks if t.times[0] >= cut[animal[t.id]]]
    return train, test, gridded.grid, 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="the shared data folder ($DATA)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = {}
    for name, load in (("liverpool", liverpool), ("geolife", geolife), ("fishers", fishers)):
        train, test, grid, horizon = load(args.data)
        rows = evaluate(None, [b.fit(train) for b in default_baselines()], test, grid=grid, horizon=horizon)
        out[name] = {"train_tracks": len(train), "test_tracks": len(test), "n": rows["n"], "baselines": rows["baselines"]}
    if args.json:
        print(json.dumps(out, indent=1))
        return
    for name, entry in out.items():
        print(f"{name}: {entry['train_tracks']} train / {entry['test_tracks']} test tracks, {entry['n']} next steps")
        print(f"  {'':20s} {'acc@1':>7} {'acc@5':>7} {'mrr':>7} {'ade m':>7} {'fde m':>7}")
        for b, m in entry["baselines"].items():
            print(f"  {b:20s} " + " ".join(f"{m[k]:7.3f}" for k in ("acc@1", "acc@5", "mrr"))
                  + f" {m['ade']:7.0f} {m['fde']:7.0f}")


if __name__ == "__main__":
    main()
