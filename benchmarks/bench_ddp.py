"""Data-parallel training throughput: samples/s of `Forecaster.fit` on the GeoLife benchmark's
training set, at 1 and 2 processes x 1 thread (torchrun, gloo) beside 1 process x 1 thread and
1 process x 2 threads, all in the same run.

A sample is one training chunk (a track of up to 256 steps) seen once; throughput is chunks x
epochs / the loop's own epoch seconds (validation included, data loading and model set-up not).
Every configuration trains the same model at fit defaults from the same seed for `--epochs`
epochs (no early stopping). Two DDP rows: `--batch-size` per process (each step sees 2 x as many
tracks), and half of it per process (the same global batch, so the same steps as one process).

    python benchmarks/bench_ddp.py --data /work/shared/data/geolife_skmob --epochs 2
    python benchmarks/bench_ddp.py --data /work/shared/data/geolife_skmob --epochs 4 --mode fixed

`--mode collapsed` (the default) trains on 270 short, skewed tracks (2-43 cells, 9 batches an epoch):
a synchronised step lasts as long as the longest track of the global batch, so halving the steps
saves at most 1.28x of the recurrent time there; `--mode fixed` (one cell per 60 s, up to 256) is
the longer, less skewed set (bound 1.53x from the lengths alone, plus the per-step costs halved).

Each configuration is a fresh interpreter (threads fixed by OMP_NUM_THREADS before torch loads).
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


def worker(data: str, epochs: int, batch_size: int, mode: str = "collapsed") -> None:
    """One process (or one rank) of a measurement: prints rank 0's numbers as JSON."""
    import torch

    from gridcast.datasets.geolife import load_geolife
    from gridcast.nextcell.distributed import join_from_env, leave
    from gridcast.nextcell.forecaster import Forecaster

    world = join_from_env()
    commute = load_geolife(data, mode=mode)
    model = Forecaster()
    started = time.perf_counter()
    model.fit(commute.train, commute.val, epochs=epochs, batch_size=batch_size, patience=epochs + 1, calibrate=False)
    wall = time.perf_counter() - started
    seconds = sum(e.seconds for e in model.result_.history)
    chunks = sum(-(-len(t) // model.train_config_.max_len) for t in commute.train if len(t) >= 2)
    if world.main:
        print(json.dumps({"processes": world.size, "threads": torch.get_num_threads(), "batch_per_process": batch_size,
                          "train_tracks": len(commute.train), "chunks": chunks, "epochs": len(model.result_.history),
                          "loop_s": round(seconds, 3), "fit_wall_s": round(wall, 3),
                          "samples_per_s": round(chunks * len(model.result_.history) / seconds, 2),
                          "final_val_loss": model.result_.history[-1].val_loss}), flush=True)
    leave()


def measure(processes: int, threads: int, batch_size: int, args: argparse.Namespace) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    script = [str(Path(__file__).resolve()), WORKER, args.data, str(args.epochs), str(batch_size), args.mode]
    return run_worker(script, processes, env, args.timeout, torchrun=args.torchrun_single)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == WORKER:
        worker(argv[1], int(argv[2]), int(argv[3]), argv[4])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "geolife_skmob"))
    p.add_argument("--epochs", type=int, default=2, help="epochs per configuration (bounded: no early stopping)")
    p.add_argument("--batch-size", type=int, default=32, help="per process (fit's default)")
    p.add_argument("--repeats", type=int, default=1, help="runs per configuration; the median is printed")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    p.add_argument("--torchrun-single", action="store_true", help="run the 1-process rows under torchrun too")
    p.add_argument("--mode", choices=("collapsed", "fixed"), default="collapsed",
                   help="the benchmark's protocol: cell changes, or one cell per 60 s step (longer tracks)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    configs = [("1 process x 1 thread", 1, 1, args.batch_size), ("1 process x 2 threads", 1, 2, args.batch_size),
               ("2 processes x 1 thread", 2, 1, args.batch_size),
               ("2 processes x 1 thread, half batch", 2, 1, max(1, args.batch_size // 2))]
    rows, load_before = [], os.getloadavg()[0]
    for name, processes, threads, batch in configs:
        runs = sorted((measure(processes, threads, batch, args) for _ in range(args.repeats)),
                      key=lambda r: r["samples_per_s"])
        row = {"config": name, **runs[len(runs) // 2], "all_samples_per_s": [r["samples_per_s"] for r in runs]}
        rows.append(row)
        print(f"  {name}: {row['samples_per_s']} samples/s", file=sys.stderr, flush=True)
    base = rows[0]["samples_per_s"]
    for row in rows:
        row["speedup_vs_1x1"] = round(row["samples_per_s"] / base, 3)
    load = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # other work on the machine skews every row
    if args.json:
        print(json.dumps({"cores": os.cpu_count(), "load_average_1min": load, "rows": rows}, indent=2))
        return 0
    print(f"GeoLife training set: {rows[0]['train_tracks']} tracks, {rows[0]['chunks']} chunks; "
          f"{args.epochs} epochs each; {os.cpu_count()} cores; 1-min load average {load[0]} -> {load[1]}")
    print(f"{'configuration':38} {'batch/proc':>10} {'samples/s':>10} {'vs 1x1':>7} {'val loss':>9}  all runs")
    for row in rows:
        print(f"{row['config']:38} {row['batch_per_process']:>10} {row['samples_per_s']:>10.1f} "
              f"{row['speedup_vs_1x1']:>6.2f}x {row['final_val_loss']:>9.4f}  {row['all_samples_per_s']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
