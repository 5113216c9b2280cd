"""Gridding at scale: N points in M CSV files, out of core (`gridcast grid DIR --out DS/`) against
the in-memory path (`gridcast grid DIR --out FILE.parquet`) in the same run, each in a fresh child
process whose peak RSS is its own (os.wait4).

    .venv/bin/python benchmarks/bench_grid_scale.py                      # 2 M points, 10 files (~1 min)
    .venv/bin/python benchmarks/bench_grid_scale.py --points 50000000 --files 50 --skip-in-memory

The points are random-walk GPS tracks (lat/lon around Liverpool, one fix every 5 s, 60 s resampling
step, 250 m cells); every track's points are spread over all files, so the buckets have real work.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_inputs(folder: Path, points: int, files: int, tracks: int, seed: int = 0) -> None:
    """`points` fixes of `tracks` random walks, cut by time into `files` CSV files."""
    rng = np.random.default_rng(seed)
    per = points // tracks
    start_lat = 53.40 + rng.normal(0, 0.05, tracks)
    start_lon = -2.98 + rng.normal(0, 0.05, tracks)
    cut = np.linspace(0, per, files + 1).astype(int)
    for k in range(files):
        lo, hi = cut[k], cut[k + 1]
        with open(folder / f"points-{k:03d}.csv", "w") as f:
            f.write("track,time,lat,lon\n")
            for t0 in range(0, tracks, 1000):  # a block of tracks at a time keeps memory small
                ids = np.arange(t0, min(t0 + 1000, tracks))
                steps = np.arange(lo, hi)
                rng_b = np.random.default_rng([seed, k, t0])
                lat = start_lat[ids, None] + 1e-5 * steps[None, :] + rng_b.normal(0, 2e-5, (len(ids), len(steps)))
                lon = start_lon[ids, None] + 1e-5 * steps[None, :] + rng_b.normal(0, 2e-5, (len(ids), len(steps)))
                tt = np.broadcast_to(5.0 * steps[None, :], lat.shape)
                tr = np.broadcast_to(ids[:, None], lat.shape)
                block = np.column_stack([tr.ravel(), tt.ravel(), lat.ravel(), lon.ravel()])
                np.savetxt(f, block, fmt=["t%d", "%.1f", "%.6f", "%.6f"], delimiter=",")


def run(argv: list[str]) -> tuple[float, int, int]:
    """(seconds, peak RSS bytes, exit status) of one gridcast command in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gridcast", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(proc.stderr.read().decode()[-2000:], file=sys.stderr)
    return seconds, usage.ru_maxrss * 1024, code


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=2_000_000)
    p.add_argument("--files", type=int, default=10)
    p.add_argument("--tracks", type=int, default=2_000)
    p.add_argument("--memory-limit", default="2GiB")
    p.add_argument("--engine", default="local", choices=("local", "dask"))
    p.add_argument("--skip-in-memory", action="store_true", help="only the out-of-core run (inputs too big to hold)")
    p.add_argument("--workdir", help="where inputs and outputs go (default: a temporary folder)")
    args = p.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gridscale-"))
    inputs = work / "in"
    if not inputs.exists():
        inputs.mkdir(parents=True)
        t = time.perf_counter()
        write_inputs(inputs, args.points, args.files, args.tracks)
        print(f"wrote {args.points:,} points in {args.files} files ({sum(f.stat().st_size for f in inputs.iterdir()) / 2**20:,.0f} MiB) "
              f"in {time.perf_counter() - t:.0f} s")
    n = args.points // args.tracks * args.tracks
    common = ["--cell-size", "250", "--step", "60", "--max-gap", "600", "--json"]
    rows = []
    shutil.rmtree(work / "ds", ignore_errors=True)
    s, rss, code = run(["grid", str(inputs), "--out", f"{work / 'ds'}/", "--memory-limit", args.memory_limit,
                        "--engine", args.engine, *common])
    rows.append((f"out of core ({args.engine}, --memory-limit {args.memory_limit})", s, rss, code))
    if not args.skip_in_memory:
        s, rss, code = run(["grid", str(inputs), "--out", str(work / "mem.parquet"), "--memory-limit", "64GiB", *common])
        rows.append(("in memory (baseline, same run)", s, rss, code))
    print(f"gridding {n:,} points in {args.files} files (250 m cells, 60 s step)")
    print(f"{'path':<48}{'seconds':>9}{'points/s':>13}{'peak RSS':>11}  exit")
    for name, s, rss, code in rows:
        print(f"{name:<48}{s:>9.1f}{n / s:>13,.0f}{rss / 2**30:>9.2f} GiB  {code}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r[3] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
