"""The reference case at `gridcast fit` defaults: Home->A and Home->B repeated (the routes of
tests/test_repeated_routes.py), NA trips to A and NB to B; fitted through the CLI per seed, then the
two most probable routes from the shared start and their p. The README's numbers for 10/20/40 trips
each way and 30/10 come from this.

    .venv/bin/python benchmarks/repeated_routes.py 20 20 --seeds 0,1,2
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from gridcast.cli import main as gridcast  # noqa: E402
from test_repeated_routes import ROUTE_A, ROUTE_B  # noqa: E402


def write(path: Path, to_a: int, to_b: int) -> None:
    lines = ["track,time,x,y"]
    for name, route, count in (("a", ROUTE_A, to_a), ("b", ROUTE_B, to_b)):
        for r in range(count):
            lines += [f"{name}{r},{t},{x},{y}" for t, (x, y) in enumerate(route)]
    path.write_text("\n".join(lines) + "\n")


def home_to_a(to_a: int, to_b: int, seed: int) -> float:
    """p of the Home->A route from the shared start, at fit defaults with this seed."""
    with tempfile.TemporaryDirectory() as tmp:
        data, model = Path(tmp) / "routes.csv", Path(tmp) / "model"
        write(data, to_a, to_b)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert gridcast(["fit", str(data), "--x-col", "x", "--y-col", "y", "--cell-size", "1", "--out", str(model),
                             "--no-progress", "--seed", str(seed)]) == 0
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert gridcast(["predict", str(model), "--track", "14,3", "--horizon", "20", "--top-k", "2", "--json"]) == 0
    routes = json.loads(out.getvalue())["routes"]
    return sum(r["p"] for r in routes if [tuple(c) for c in r["cells"]] == ROUTE_A[1:])


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("to_a", type=int)
    p.add_argument("to_b", type=int)
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args()
    share = args.to_a / (args.to_a + args.to_b)
    for seed in map(int, args.seeds.split(",")):
        p_a = home_to_a(args.to_a, args.to_b, seed)
        print(f"{args.to_a}/{args.to_b} seed {seed}: Home->A p = {p_a:.3f} (training share {share:.2f}; "
              f"{'within' if abs(p_a - share) <= 0.10 else 'NOT within'} 0.10)", flush=True)
