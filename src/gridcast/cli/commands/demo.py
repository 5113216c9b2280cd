"""`gridcast demo [--out DIR]`: train on the bundled real bus data and show the model beside baselines."""
from __future__ import annotations

import argparse

from gridcast.cli.common import SEED, check_flags, int_in, metrics_table, print_json
from gridcast.kinds import CELL_KINDS, parse_kinds

KEYS = ["acc@1", "acc@5", "mrr", "ade_cells", "fde_cells", "ade", "fde"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train on the bundled Liverpool bus trips; model vs baselines, plots",
                       description="Liverpool bus route 14 (bundled): GPS -> 100 m grid at 30 s -> RNN, LSTM and GRU "
                                   "trained on the 11 earliest trips, judged on the 5 latest beside baselines.")
    p.add_argument("--out", default="gridcast-demo", help="output directory (default: ./gridcast-demo)")
    p.add_argument("--cells", default=",".join(CELL_KINDS), help=f"cell kinds to train (default: {','.join(CELL_KINDS)})")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=("collapsed", "fixed"), default="collapsed",
                   help="collapsed: consecutive repeats collapsed (which cell next); fixed: one cell per 30 s step, "
                        "no collapse (default: collapsed)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_flags(args, {"epochs": int_in(1, 100_000), "seed": SEED})
    cells = parse_kinds(args.cells)
    import torch

    from gridcast.bench.demo import run_demo
    from gridcast.nextcell.evaluation import verdict

    torch.set_num_threads(1)  # small matmuls: a second thread only spin-waits when the cores are busy
    log = (lambda *a, **k: None) if args.json else print
    table = run_demo(args.out, cells, seed=args.seed, epochs=args.epochs, progress=not args.json, log=log,
                     mode=args.mode)
    if args.json:
        print_json(table)
        return 0
    rows = {f"{k.upper()} (ours)": m for k, m in table["models"].items()}
    rows.update(table["baselines"])
    print(f"\nHeld-out trips: {table['test_tracks']} ({table['n']} next-cell steps). Route error: continue each "
          "test trip from its first half; ade/fde in metres.")
    print(metrics_table(rows, KEYS))
    print()
    for metric in ("acc@1", "acc@5", "mrr", "ade", "fde"):
        print(verdict(table, metric))
    print(f"\nwrote {args.out}/model, {args.out}/prediction.png, {args.out}/training.png, {args.out}/metrics.json "
          f"[{table['seconds']} s]")
    print(f"try: gridcast evaluate {args.out}/model {args.out}/test.parquet")
    print(f"     gridcast predict {args.out}/model --track \"{table['example_track']}\" --horizon 10")
    return 0
