"""Out-of-core gridding: raw points of any size -> a gridded dataset directory, in bounded memory.

    >>> from gridcast.ingest import ColumnMap, grid_to_dataset
    >>> result = grid_to_dataset("points/", "gridded/", cell_size=250, step=60,  # doctest: +SKIP
    ...                          columns=ColumnMap(lat="lat", lon="lon"), memory_limit=2 << 30)

Step 1 (`gridcast.ingest.buckets`) reads every batch once, validates it exactly as the in-memory
path does and spills the kept points by a stable hash of the track id. Step 2 grids bucket by
bucket with the in-memory pipeline itself (`grid_tracks` on one bucket's points), so every track
gets the cells it gets in memory: a first pass over the buckets finds the grid's origin (the data's
lower-left corner, as `Grid.covering`), the second grids each bucket on that grid and writes its
``part=NN``. The projection is the UTM zone of the median of every 16th kept point (in memory: of
the points used; they differ only for data straddling a zone boundary).

Engines: ``"local"`` runs the buckets one after another in this process; ``"dask"`` runs each
bucket's work as a Dask task on a distributed Client (a LocalCluster, or the scheduler at an
address). Workers read the spill files and write the parts by path, so on a real cluster the
output and its staging directory must be on storage every worker sees.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time as _time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd

from gridcast.errors import InputError
from gridcast.grid import Grid
from gridcast.ingest import projection, sources, validate
from gridcast.ingest.buckets import read_bucket, spill
from gridcast.ingest.columns import ColumnMap
from gridcast.ingest.dataset import DATASET_FILE
from gridcast.ingest.gridded_file import write_gridded
from gridcast.ingest.memory import DEFAULT_MEMORY_LIMIT
from gridcast.ingest.pipeline import NothingLeft, _open_checked, _reading_notes, grid_tracks
from gridcast.ingest.report import IngestReport
from gridcast.jsonsafe import json_safe

#: Bytes of memory a bucket may take per byte of input (text ~45 B a point, ~200 B a point gridded).
_GROWTH = 8
_GZIP_RATIO = 5  # a gzip CSV of GPS points inflates about this much
ENGINES = ("local", "dask")


@dataclass
class DatasetResult:
    """What an out-of-core run wrote: the dataset directory, its grid, and the report over it all."""

    out: str
    grid: Grid
    report: IngestReport
    buckets: int


def choose_buckets(input_bytes: int, memory_limit: float) -> int:
    """Enough buckets that one bucket's gridding fits in half the memory limit (at least 8).

    >>> choose_buckets(10 << 20, 2 << 30), choose_buckets(4 << 30, 2 << 30)
    (8, 32)
    """
    need = math.ceil(input_bytes * _GROWTH / (memory_limit / 2))
    return int(min(4096, max(8, 2 ** math.ceil(math.log2(max(need, 1))))))


def _input_bytes(src: sources.Source) -> int:
    subs = getattr(src, "subs", [src])
    sizes = [os.path.getsize(s.name) * (_GZIP_RATIO if s.name.lower().endswith(".gz") else 1)
             for s in subs if os.path.isfile(s.name)]
    return int(sum(sizes))


def _frame(path: str, names: np.ndarray, roles: dict[str, str]) -> pd.DataFrame:
    """One bucket's spilled points as the frame `grid_tracks` reads (track ids as a categorical)."""
    t = read_bucket(path)
    code = t.column("code").to_numpy()
    uniq, inv = np.unique(code, return_inverse=True)
    track = pd.Categorical.from_codes(inv.astype(np.int32), pd.Index(names[uniq].astype(str)))
    return pd.DataFrame({"track": track, "time": t.column("t").to_numpy(),
                         roles["a"]: t.column("a").to_numpy(), roles["b"]: t.column("b").to_numpy()})


def bucket_extent(path: str, names: np.ndarray, roles: dict[str, str], kw: dict) -> tuple[float, float] | None:
    """Pass 1 of a bucket: the lower-left corner of its resampled points (None: it has none)."""
    try:
        gt = grid_tracks(_frame(path, names, roles), collapse=False, min_points=1, **kw)
    except NothingLeft:
        return None
    return float(gt.frame["x"].min()), float(gt.frame["y"].min())


def grid_bucket(path: str, names: np.ndarray, roles: dict[str, str], kw: dict, out: str | None,
                meta: dict) -> dict:
    """Pass 2 of a bucket: grid it on the dataset's grid, write its part (if any), return its report."""
    try:
        gt = grid_tracks(_frame(path, names, roles), **kw)
    except NothingLeft as exc:
        return exc.report.to_dict()
    gt.meta.update(meta)
    if out is not None:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        write_gridded(gt, out)
    return gt.report.to_dict()


def _run(engine: str, scheduler: str | None, fn, jobs: list[tuple], workers: int):
    """`fn(*job)` for every job, here or as Dask tasks; results in job order."""
    if engine == "local":
        return [fn(*job) for job in jobs]
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("--engine dask needs the dask extra: pip install 'gridcast[dask]'") from None
    cluster = None
    try:
        if scheduler:
            try:
                client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise InputError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc})") from None
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1",
                                   dashboard_address=None, processes=True)
            client = Client(cluster)
        with client:
            futures = client.map(fn, *zip(*jobs), pure=False)
            return client.gather(futures)
    finally:
        if cluster is not None:
            cluster.close()


def grid_to_dataset(
    source, out: str | os.PathLike, *, cell_size: float | None, step: float | None, columns: ColumnMap,
    max_gap: float | None = None, like: Grid | None = None, crs: str | None = None, strict: bool = False,
    collapse: bool = False, min_points: int = 2, sep: str | None = None, memory_limit: float | None = None,
    engine: str = "local", scheduler: str | None = None, buckets: int | None = None, workers: int = 2,
) -> DatasetResult:
    """Grid `source` (a file, directory or glob) into the dataset directory `out`; the arguments mean
    what they mean for `grid_tracks`. `memory_limit` bounds the memory of every step (default 4 GiB);
    `engine` is "local" or "dask" (`scheduler`: a Dask scheduler address; none: a LocalCluster of
    `workers` processes on 127.0.0.1)."""
    t0 = _time.perf_counter()
    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    out = os.fspath(out).rstrip("/") or "/"
    if os.path.exists(out) and not (os.path.isdir(out) and not os.listdir(out)):
        raise InputError(f"--out {out}/: exists and is not an empty directory; choose a new directory")
    limit = DEFAULT_MEMORY_LIMIT if memory_limit is None else memory_limit
    src, want, geographic, cell_size, crs = _open_checked(source, columns, cell_size, step, max_gap, min_points,
                                                          like, crs, sep, False)
    n_buckets = buckets or choose_buckets(_input_bytes(src), limit)
    staging = f"{out}.tmp-{os.getpid()}"
    os.makedirs(os.path.join(staging, "spill"))
    try:
        return _grid_staged(src, out, staging, want, geographic, strict, n_buckets, cell_size, step, max_gap, like,
                            crs, collapse, min_points, limit, engine, scheduler, workers, t0)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _grid_staged(src, out, staging, want, geographic, strict, n_buckets, cell_size, step, max_gap, like, crs,
                 collapse, min_points, limit, engine, scheduler, workers, t0) -> DatasetResult:
    spilled = spill(src, want, geographic, strict, os.path.join(staging, "spill"), n_buckets)
    messages = _reading_notes(SimpleNamespace(time_kind=spilled.time_kind, lenient=spilled.lenient,
                                              non_utf8=spilled.non_utf8), want["time"])
    if geographic and crs is None and len(spilled.sample_a):
        crs = projection.local_crs(spilled.sample_b, spilled.sample_a)
        messages.append(f"projected lat/lon to {crs} (the UTM zone of the median position)")
    names = np.array(spilled.names, dtype=object)
    roles = {"a": "lat", "b": "lon"} if geographic else {"a": "x", "b": "y"}
    cmap = ColumnMap(track="track", time="time", **{roles["a"]: roles["a"], roles["b"]: roles["b"]})
    order = sorted(spilled.files)
    base = dict(step=step, columns=cmap, max_gap=max_gap, strict=strict, memory_limit=limit / 2)
    if like is not None:
        grid = like
    elif not geographic:
        grid = Grid(cell_size=float(cell_size), crs=crs, step=None if step is None else float(step))
    else:
        corners = _run(engine, scheduler, bucket_extent,
                       [(spilled.files[k], names, roles, {**base, "cell_size": cell_size, "crs": crs}) for k in order],
                       workers)
        corners = [c for c in corners if c is not None]
        if not corners:
            raise InputError(f"{src.name}: no usable tracks left after cleaning (read {spilled.read} rows)")
        x0, y0 = min(c[0] for c in corners), min(c[1] for c in corners)
        grid = Grid.covering(np.array([x0]), np.array([y0]), cell_size, crs=crs,
                             step=None if step is None else float(step))
    width = max(2, len(str(n_buckets - 1)))
    meta = {"source": src.name, "columns": want, "time_kind": spilled.time_kind, "max_gap": max_gap,
            "collapse": bool(collapse), "min_points": int(min_points), "buckets": n_buckets}
    kw = {**base, "cell_size": None, "like": grid, "collapse": collapse, "min_points": min_points}
    jobs = [(spilled.files[k], names, roles, kw, os.path.join(staging, f"part={k:0{width}d}", "part-0.parquet"), meta)
            for k in order]
    parts = _run(engine, scheduler, grid_bucket, jobs, workers)
    report = _total(spilled, parts, messages, n_buckets)
    if report.kept <= 0:
        shown = ", ".join(f"{k} {v}" for k, v in report.dropped.items())
        raise InputError(f"{src.name}: no usable tracks left after cleaning (read {report.read} rows; dropped: {shown})")
    shutil.rmtree(os.path.join(staging, "spill"))
    report.timed(_time.perf_counter() - t0)
    with open(os.path.join(staging, DATASET_FILE), "w") as f:
        json.dump(json_safe({"grid": grid.to_dict(), "report": report.to_dict(), "ingest": meta}), f)
    if os.path.isdir(out):
        os.rmdir(out)  # empty, checked above
    os.replace(staging, out)
    return DatasetResult(out=out, grid=grid, report=report, buckets=n_buckets)


def _total(spilled, parts: list[dict], messages: list[str], n_buckets: int) -> IngestReport:
    """The report over the whole dataset: step 1's drops plus every bucket's."""
    dropped = {k: v for k, v in spilled.counts.items() if v}
    tracks = 0
    for p in parts:
        for k, v in p.get("dropped", {}).items():
            dropped[k] = dropped.get(k, 0) + int(v)
        tracks += int(p.get("tracks", 0))
    report = IngestReport(read=spilled.read)
    report.dropped = {r: int(dropped[r]) for r in validate.REASONS if dropped.get(r)}
    report.kept = report.read - sum(report.dropped.values())
    report.tracks = tracks
    report.messages = messages + [f"gridded out of core in {n_buckets} track-hash buckets (part=NN)"]
    return report

