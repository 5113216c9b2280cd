"""Does data-parallel training give as good a model? Test metrics of `Forecaster.fit` at fit
defaults on the GeoLife benchmark, 3 seeds in one process x 1 thread and 3 seeds in 2 processes x
1 thread (torchrun, gloo; `--batch-size` per process, as `gridcast fit --nproc 2` does), each scored
on the test tracks the way `gridcast bench geolife` scores a model (`bench.commute`: acc@1, acc@5
and MRR over every test step, ADE/FDE in metres of the point forecast from half of each test track).

Prints per metric the single-process min / mean / max over seeds, the same for DDP, and whether the
DDP mean lies within the single-process [min, max] (the goal of issue 17: "within the 3-seed spread").

    nice -n 5 python benchmarks/ddp_metrics.py --data /work/shared/data/geolife_skmob --mode fixed

Each run is a fresh interpreter (threads fixed by OMP_NUM_THREADS before torch loads); every
finished run is appended to `--log` (JSON lines) the moment it ends, so a long run loses nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from worker_launch import run_worker

WORKER = "--worker"
METRICS = ("acc@1", "acc@5", "mrr", "ade", "fde")
HIGHER_IS_BETTER = ("acc@1", "acc@5", "mrr")


def worker(data: str, seed: int, mode: str, batch_size: int) -> None:
    """One training run (or one rank of it): rank 0 prints its test metrics as JSON."""
    import numpy as np
    import torch

    from gridcast.bench.commute import point_route_errors
    from gridcast.datasets.geolife import HORIZON, load_geolife
    from gridcast.nextcell.distributed import join_from_env, leave
    from gridcast.nextcell.evaluation import metric_values, model_ranks
    from gridcast.nextcell.forecaster import Forecaster

    world = join_from_env()
    commute = load_geolife(data, mode=mode)
    test = [t for t in commute.test if len(t) >= 2]
    started = time.perf_counter()
    torch.manual_seed(seed)  # as bench.commute.run_benchmark does before each seed
    model = Forecaster(grid=commute.grid).fit(commute.train, val_tracks=commute.val, seed=seed, batch_size=batch_size)
    seconds = time.perf_counter() - started
    if world.main:
        ranks = np.concatenate(model_ranks(model, test)[0])
        ade, fde = point_route_errors(model, test, 0.5, HORIZON)
        metres = commute.grid.cell_size if commute.grid is not None and commute.grid.metric else 1.0
        out = {k: float(metric_values(ranks, k).mean()) for k in HIGHER_IS_BETTER}
        out.update({"ade": float(ade.mean()) * metres, "fde": float(fde.mean()) * metres})
        print(json.dumps({"processes": world.size, "seed": seed, "batch_per_process": batch_size,
                          "epochs": len(model.result_.history), "best_epoch": model.result_.best_epoch,
                          "best_val_loss": model.result_.best_val_loss, "fit_s": round(seconds, 1),
                          "test_steps": int(len(ranks)), "test_tracks": len(test), **out}), flush=True)
    leave()


def run(processes: int, seed: int, args: argparse.Namespace) -> dict:
    batch = args.batch_size if processes == 1 or args.ddp_batch_size is None else args.ddp_batch_size
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    script = [str(Path(__file__).resolve()), WORKER, args.data, str(seed), args.mode, str(batch)]
    return run_worker(script, processes, env, args.timeout)


def spread_table(single: list[dict], ddp: list[dict]) -> list[dict]:
    """Per metric: min/mean/max over the single-process seeds and the DDP seeds, and whether the DDP
    mean lies within the single-process [min, max].

    >>> rows = spread_table([{"mrr": 0.5}, {"mrr": 0.7}], [{"mrr": 0.6}, {"mrr": 0.66}])
    >>> rows[0]["within"], rows[0]["ddp_mean"]
    (True, 0.63)
    """
    rows = []
    for key in METRICS:
        a = [r[key] for r in single if key in r]
        b = [r[key] for r in ddp if key in r]
        if not a or not b:
            continue
        mean_b = sum(b) / len(b)
        rows.append({"metric": key, "single_min": min(a), "single_mean": sum(a) / len(a), "single_max": max(a),
                     "ddp_min": min(b), "ddp_mean": round(mean_b, 12), "ddp_max": max(b),
                     "within": min(a) <= mean_b <= max(a)})
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == WORKER:
        worker(argv[1], int(argv[2]), argv[3], int(argv[4]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "geolife_skmob"))
    p.add_argument("--mode", choices=("collapsed", "fixed"), default="fixed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batch-size", type=int, default=32, help="per process (fit's default)")
    p.add_argument("--ddp-batch-size", type=int, default=None,
                   help="per process in the 2-process runs (default: --batch-size; half of it: the same global batch)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    p.add_argument("--log", default=None, help="append every finished run here (JSON lines)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    results: dict[int, list[dict]] = {1: [], 2: []}
    load_before = os.getloadavg()[0]
    for seed in args.seeds:
        for processes in (1, 2):
            row = run(processes, seed, args)
            results[processes].append(row)
            print(f"  {processes} process(es), seed {seed}: " + "  ".join(f"{k} {row[k]:.4g}" for k in METRICS)
                  + f"  ({row['epochs']} epochs, {row['fit_s']} s)", file=sys.stderr, flush=True)
            if args.log:
                with open(args.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"mode": args.mode, **row}) + "\n")
    rows = spread_table(results[1], results[2])
    load = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    if args.json:
        print(json.dumps({"mode": args.mode, "seeds": args.seeds, "load_average_1min": load, "rows": rows,
                          "runs": results}, indent=2))
        return 0
    print(f"GeoLife --mode {args.mode}, fit defaults, seeds {args.seeds}: 1 process x 1 thread vs 2 processes x "
          f"1 thread (batch per process {args.batch_size} / {args.ddp_batch_size or args.batch_size}); load {load[0]} -> {load[1]}")
    print(f"{'metric':7} {'1 proc min':>10} {'mean':>8} {'max':>8}   {'DDP min':>8} {'mean':>8} {'max':>8}   within")
    for r in rows:
        print(f"{r['metric']:7} {r['single_min']:>10.4f} {r['single_mean']:>8.4f} {r['single_max']:>8.4f}   "
              f"{r['ddp_min']:>8.4f} {r['ddp_mean']:>8.4f} {r['ddp_max']:>8.4f}   {'yes' if r['within'] else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
