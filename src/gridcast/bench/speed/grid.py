"""Preprocessing speed: raw GPS CSV -> 60 s step -> UTM -> 250 m cells -> Parquet, end to end.

Generates a GeoLife-like CSV (`lat,lng,datetime,uid`, ~5 s fixes, 40 users, gaps of minutes to
hours) of `n_points` rows in a temporary directory (never committed), then times
`gridcast.ingest.pipeline.grid_tracks` + `write_gridded` beside a plain pandas + numpy + pyproj implementation
of the same steps (the baseline the benchmark data's notes describe), alternating runs, median of
`repeats`. Prints one JSON line (the `gridcast bench speed` shape):

    {"name": "grid_points_per_s", "value": ..., "unit": "points/s", "baseline": "pandas", "ratio": ...}

ratio = our throughput / pandas throughput. Details (seconds, agreement of the two outputs) go to
stderr. Usage: `python -m gridcast.bench.speed.grid [--points 5000000] [--repeats 3]`.
trackintel and movingpandas are not installed in this environment, so they are not timed here.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyproj

from gridcast.ingest.columns import ColumnMap
from gridcast.ingest.gridded_file import write_gridded
from gridcast.ingest.pipeline import grid_tracks

CELL, STEP, MAX_GAP = 250.0, 60.0, 600.0


def generate(path: str, n_points: int, users: int = 40, seed: int = 0) -> None:
    """A GeoLife-like CSV: per user, a random walk around Beijing at 1-10 s fixes with some long gaps."""
    rng = np.random.default_rng(seed)
    per = n_points // users
    with open(path, "wb") as f:
        f.write(b"lat,lng,datetime,uid\n")
        for k in range(users):
            m = per if k < users - 1 else n_points - per * (users - 1)
            dt = rng.choice(np.array([1, 2, 5, 5, 5, 5, 10]), size=m)
            gaps = rng.random(m) < 0.002
            dt[gaps] += rng.integers(600, 40_000, int(gaps.sum()))
            t = 1_224_741_185 + k * 3 * 86_400 + np.cumsum(dt)
            lat = 39.9 + np.cumsum(rng.normal(0, 2e-5, m))
            lng = 116.3 + np.cumsum(rng.normal(0, 2e-5, m))
            table = pa.table({
                "lat": np.round(lat, 6), "lng": np.round(lng, 6),
                "datetime": pa.array(t.astype("datetime64[s]")), "uid": pa.array([f"{k:03d}"] * m),
            })
            pcsv.write_csv(table, f, pcsv.WriteOptions(include_header=False, quoting_style="none"))


def ours(path: str, out: str) -> int:
    gt = grid_tracks(path, cell_size=CELL, step=STEP, max_gap=MAX_GAP,
                     columns=ColumnMap(track="uid", time="datetime", lat="lat", lon="lng"))
    write_gridded(gt, out)
    return len(gt.frame)


def pandas_pipeline(path: str, out: str) -> int:
    """The same steps written the plain way: pandas read/clean/sort, pyproj, a loop of np.interp per part."""
    df = pd.read_csv(path, dtype={"uid": str})
    t = pd.to_datetime(df["datetime"], format="ISO8601", utc=True, errors="coerce")
    df["t"] = (t - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    ok = df["t"].notna() & df["lat"].between(-90, 90) & df["lng"].between(-180, 180)
    df = df[ok].sort_values(["uid", "t"], kind="stable").drop_duplicates(["uid", "t"])
    zone = int((df["lng"].median() + 180) // 6) + 1
    crs = f"EPSG:{(32600 if df['lat'].median() >= 0 else 32700) + zone}"
    tr = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    df["x"], df["y"] = tr.transform(df["lng"].to_numpy(), df["lat"].to_numpy())
    new = (df["uid"] != df["uid"].shift()) | (df["t"].diff() > MAX_GAP)
    df["part"] = new.cumsum()
    pieces = []
    for _, g in df.groupby("part", sort=False):
        tt = g["t"].to_numpy()
        ticks = np.arange(np.ceil(tt[0] / STEP), np.floor(tt[-1] / STEP) + 1) * STEP
        if len(ticks) < 2:
            continue
        pieces.append(pd.DataFrame({
            "track": g["uid"].iloc[0], "time": ticks,
            "x": np.interp(ticks, tt, g["x"].to_numpy()), "y": np.interp(ticks, tt, g["y"].to_numpy()),
        }))
    res = pd.concat(pieces, ignore_index=True)
    ox = np.floor(res["x"].min() / CELL) * CELL
    oy = np.floor(res["y"].min() / CELL) * CELL
    res["col"] = np.floor((res["x"] - ox) / CELL + 0.5).astype(np.int64)
    res["row"] = np.floor((res["y"] - oy) / CELL + 0.5).astype(np.int64)
    res["step"] = res.groupby((res["time"].diff() != STEP).cumsum()).cumcount()
    res.to_parquet(out)
    return len(res)


def _time(fn, path: str, out: str) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process over all its threads, output rows)."""
    t0, c0 = time.perf_counter(), time.process_time()
    n = fn(path, out)
    return time.perf_counter() - t0, time.process_time() - c0, n


def run(n_points: int = 5_000_000, repeats: int = 3, baseline: bool = True, log=sys.stderr) -> dict:
    """Time both pipelines on a generated CSV; the `gridcast bench speed` line (ratio NaN without baseline)."""
    with tempfile.TemporaryDirectory(prefix="gridcast-bench-") as tmp:
        path = os.path.join(tmp, "points.csv")
        generate(path, n_points)
        size = os.path.getsize(path)
        times: dict[str, list[float]] = {"ours": [], "pandas": []}
        rows: dict[str, int] = {}
        for _ in range(repeats):
            for name, fn in (("ours", ours), ("pandas", pandas_pipeline)):
                if name == "pandas" and not baseline:
                    continue
                sec, cpu, rows[name] = _time(fn, path, os.path.join(tmp, f"{name}.parquet"))
                times[name].append(sec)
                print(f"bench_grid: {name} {sec:.2f} s wall, {cpu:.2f} s CPU ({n_points / sec:,.0f} points/s; "
                      f"load average {os.getloadavg()[0]:.1f})", file=log)
        if baseline:
            a = pd.read_parquet(os.path.join(tmp, "ours.parquet"))
            b = pd.read_parquet(os.path.join(tmp, "pandas.parquet"))
            print(f"bench_grid: output rows ours {rows['ours']:,} pandas {rows['pandas']:,}; "
                  f"cells equal on common rows: {_agreement(a, b):.4f}", file=log)
    ours_s = statistics.median(times["ours"])
    value = n_points / ours_s
    ratio = (statistics.median(times["pandas"]) / ours_s) if baseline else float("nan")
    print(f"bench_grid: {n_points:,} points, {size / 1e6:.0f} MB CSV, {os.cpu_count()} cores; "
          f"median ours {ours_s:.2f} s" + (f", pandas {statistics.median(times['pandas']):.2f} s" if baseline else ""),
          file=log)
    return {"name": "grid_points_per_s", "value": value, "unit": "points/s", "baseline": "pandas", "ratio": ratio}


def _agreement(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Share of (track, time) rows present in both outputs that land on the same cell."""
    a = a.assign(uid=a["track"].str.split("#").str[0])
    m = a.merge(b, left_on=["uid", "time"], right_on=["track", "time"], suffixes=("", "_b"))
    if len(m) == 0:
        return float("nan")
    return float(((m["col"] == m["col_b"]) & (m["row"] == m["row_b"])).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=5_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-baseline", action="store_true", help="time gridcast only")
    args = p.parse_args(argv)
    print(json.dumps(run(args.points, args.repeats, baseline=not args.no_baseline)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
