"""Peak memory (RSS) of a training run on ETH/UCY, measured in a fresh child process.

The child loads one leave-one-scene-out fold the way `gridcast bench ethucy` does (scene ``eth``
held out: the largest training set, the other four scenes' train splits), builds the inputs and
trains `gridcast.continuous.model`'s default model (LSTM, hidden 96, 20 modes) for a few epochs, then
reports its own peak resident set size (VmHWM: everything the process ever held at once, Python
and torch included). Memory use of this trainer does not grow after the first epoch
(same batches, same buffers), so a short run measures the peak of a full one.

Line: ``train_ethucy_peak_rss_mb`` (value: MB; baseline: the 1.5 GB budget of issue 6; ratio:
value / 1536). Skipped when ``../shared/data/ethucy`` is not there.
Usage: ``.venv/bin/python benchmarks/bench_memory.py [--epochs 2] [--data DIR]``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speedkit import line  # noqa: E402

BUDGET_MB = 1536.0
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ethucy"


def child(data: Path, epochs: int, scene: str = "eth") -> dict:
    """Train in this process and report its peak RSS."""
    import torch

    import gridcast.continuous.model as C
    from gridcast.datasets.ethucy import load_scene

    torch.set_num_threads(1)
    start = time.perf_counter()
    fold = load_scene(data, scene)
    cfg = C.ForecasterConfig(kind="lstm", scale=C.typical_step(fold.train.observed), epochs=epochs, patience=epochs,
                             obs_noise=0.05, neighbours=8)  # as `gridcast bench ethucy` trains
    train = C.prepare(fold.train.observed, fold.train.future, cfg, fold.train.window)
    val = C.prepare(fold.val.observed, fold.val.future, cfg, fold.val.window)
    _, info = C.fit(train, val, cfg)
    return {"peak_rss_mb": peak_rss_mb(), "windows": len(fold.train), "epochs": info["epochs_run"],
            "seconds": time.perf_counter() - start}


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM (Linux) belongs to the process's own address space; getrusage's
    max RSS survives exec, so after a fork it can report the parent's size (it did: 751 MB for a run
    that peaks at 472 MB, when the parent had just parsed a large CSV)."""
    try:
        for row in Path("/proc/self/status").read_text().splitlines():
            if row.startswith("VmHWM:"):
                return float(row.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def run(data: Path = DEFAULT_DATA, epochs: int = 2, log=sys.stderr) -> list[dict]:
    """The memory line, or nothing when the data is missing."""
    if not Path(data).is_dir():
        print(f"# memory: skipped ({data} not found)", file=log)
        return []
    out = subprocess.run([sys.executable, __file__, "--child", "--data", str(data), "--epochs", str(epochs)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(f"# memory: child failed: {out.stderr.strip().splitlines()[-1:]}", file=log)
        return []
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"# memory: peak RSS {result['peak_rss_mb']:.0f} MB training on {result['windows']} ETH/UCY windows, "
          f"{result['epochs']} epochs, {result['seconds']:.0f} s", file=log)
    return [line("train_ethucy_peak_rss_mb", result["peak_rss_mb"], "MB", f"budget {BUDGET_MB:.0f} MB",
                 result["peak_rss_mb"] / BUDGET_MB)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.data, args.epochs)))
        return 0
    for entry in run(args.data, args.epochs):
        print(json.dumps(entry), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
