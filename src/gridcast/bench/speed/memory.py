"""Peak memory (RSS) of a training run on ETH/UCY, measured in a fresh child process.

The child loads one leave-one-scene-out fold the way `gridcast bench ethucy` does (scene ``eth``
held out: the largest training set, the other four scenes' train splits), builds the inputs and
trains `gridcast.continuous`' default model (LSTM, hidden 96, 20 modes) for a few epochs, then
reports its own peak resident set size (VmHWM: everything the process ever held at once, Python
and torch included). Memory use of this trainer does not grow after the first epoch
(same batches, same buffers), so a short run measures the peak of a full one.

Line: ``train_ethucy_peak_rss_mb`` (value: MB; baseline: the 1.5 GB memory budget; ratio:
value / 1536). Skipped when no ETH/UCY folder is given (``data``: the ``ethucy`` folder of the
benchmark data).
Usage: ``python -m gridcast.bench.speed.memory [--epochs 2] [--data DIR]``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from gridcast.bench.speed.kit import line

BUDGET_MB = 1536.0


def child(data: Path, epochs: int, scene: str = "eth") -> dict:
    """Train in this process and report its peak RSS."""
    import torch

    from gridcast.continuous.config import ContinuousConfig, typical_step
    from gridcast.continuous.features import prepare
    from gridcast.continuous.train import fit
    from gridcast.datasets.ethucy import load_scene

    torch.set_num_threads(1)
    start = time.perf_counter()
    fold = load_scene(data, scene)
    cfg = ContinuousConfig(kind="lstm", scale=typical_step(fold.train.observed), epochs=epochs, patience=epochs,
                           obs_noise=0.05, neighbours=8)  # as `gridcast bench ethucy` trains
    train = prepare(fold.train.observed, fold.train.future, cfg, fold.train.window)
    val = prepare(fold.val.observed, fold.val.future, cfg, fold.val.window)
    _, info = fit(train, val, cfg)
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


def run(data: Path | None = None, epochs: int = 2, log=sys.stderr) -> list[dict]:
    """The memory line, or nothing when the data is missing."""
    if data is None:
        print("# memory: skipped (no ETH/UCY folder given: `gridcast bench speed --data DIR`, "
              "DIR holding ethucy/)", file=log)
        return []
    if not Path(data).is_dir():
        print(f"# memory: skipped ({data} not found)", file=log)
        return []
    out = subprocess.run([sys.executable, "-m", "gridcast.bench.speed.memory", "--child", "--data", str(data), "--epochs", str(epochs)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(f"# memory: child failed: {out.stderr.strip().splitlines()[-1:]}", file=log)
        return []
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"# memory: peak RSS {result['peak_rss_mb']:.0f} MB training on {result['windows']} ETH/UCY windows, "
          f"{result['epochs']} epochs, {result['seconds']:.0f} s", file=log)
    return [line("train_ethucy_peak_rss_mb", result["peak_rss_mb"], "MB", f"budget {BUDGET_MB:.0f} MB",
                 result["peak_rss_mb"] / BUDGET_MB)]


def main(argv: list[str] | None = None, default_data: Path | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data, help="the ETH/UCY folder of the benchmark data")
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
