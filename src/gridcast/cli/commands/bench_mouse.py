"""`gridcast bench mouse`: cursor continuation on the Balabit logs (pixels, 50 ms, 8 -> 12).

Protocol in `gridcast.mouse`; test users 23, 29, 9 never reach training, user 35 selects the
epoch. Prints the same JSON shape as `bench ethucy` (one pseudo-scene, ``"test_users"``) and
writes a PNG of a few test paths with every model's continuation.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import gridcast.continuous.model as C
import gridcast.datasets.mouse as M
from gridcast.errors import InputError
from gridcast.cli.common import run_single_threaded
from gridcast.cli.commands.bench_ethucy import RunLog, baseline_entry, checked_kinds, summarise

SCENE = "test_users"
QUICK = {"epochs": 2, "hidden": 32, "patience": 2}
QUICK_TRAIN = 3000
# 90k training windows: fewer, larger steps; the screen position matters (edges, fixed menus),
# so the last absolute position (/ 1000 px) and heading join the head input and mirroring is off
MOUSE = {"epochs": 12, "patience": 4, "batch": 512, "absolute": 1000.0, "flip": False}


def register(targets: argparse._SubParsersAction) -> None:
    p = targets.add_parser("mouse", help="Balabit mouse cursors, users held out (ADE/FDE in pixels)")
    p.add_argument("--data", required=True, help="the balabit_mouse folder (training_files/user*/session_*)")
    p.add_argument("--cells", default="lstm,gru,rnn", help="cell kinds to train (default: lstm,gru,rnn)")
    p.add_argument("--samples", type=int, default=1, choices=(1, 20), help="20: also best-of-20 per window")
    p.add_argument("--seeds", type=int, default=1, help="models per kind; mean and std over them")
    p.add_argument("--epochs", type=int, default=None, help="override the epoch budget")
    p.add_argument("--quick", action="store_true", help="protocol check: full windows and baselines, tiny models")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--out", default="gridcast-bench-mouse", help="folder for mouse_paths.png and results.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_single_threaded(_run, args)


def _run(args: argparse.Namespace) -> int:
    kinds = checked_kinds(args)
    start = time.perf_counter()
    data = M.load(args.data)
    train, val, test = M.split_by_user(data)
    if not len(train) or not len(val) or not len(test):
        raise InputError(f"{args.data}: need windows of training users, validation user(s) "
                         f"{', '.join(M.VAL_USERS)} and test users {', '.join(M.TEST_USERS)}")
    if args.quick and len(train) > QUICK_TRAIN:
        train = train.subset(np.random.default_rng(0).choice(len(train), QUICK_TRAIN, replace=False))
    obs, fut = test.observed, test.future
    base = {}
    preds = {}
    for name in ("constant_position", "cvm", "linear"):
        preds[name] = C.BASELINES[name](obs, fut.shape[1])
        base[name] = {SCENE: {m: float(v.mean()) for m, v in C.errors_of(preds[name], fut).items()}}
    scale = C.typical_step(train.observed)
    result: dict = {"models": {}}
    runs = RunLog(args.out)
    for kind in kinds:
        t0 = time.perf_counter()
        det, bo = [], []
        for seed in range(args.seeds):
            cfg = C.ForecasterConfig(kind=kind, scale=scale, seed=seed, **MOUSE)
            for key, value in (QUICK.items() if args.quick else ()):
                setattr(cfg, key, value)
            if args.epochs:
                cfg.epochs = args.epochs
            model, info = C.fit(C.prepare(train.observed, train.future, cfg),
                                C.prepare(val.observed, val.future, cfg), cfg)
            te = C.prepare(obs, None, cfg)
            pred = C.predict(model, te)
            if seed == 0:
                preds[kind] = pred
            det.append({m: float(v.mean()) for m, v in C.errors_of(pred, fut).items()})
            if args.samples > 1:
                bo.append(C.best_of(C.sample(info["sampler"], te, args.samples), fut))
            runs.add(kind=kind, seed=seed, epochs=info["epochs_run"], det=det[-1],
                     **({f"best_of_{args.samples}": bo[-1]} if bo else {}))
            print(f"mouse {kind:4s} seed {seed}: ade {det[-1]['ade']:.1f} fde {det[-1]['fde']:.1f} px "
                  f"({info['epochs_run']} epochs, {time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        entry = summarise({SCENE: det})
        if bo:
            entry[f"best_of_{args.samples}_per_window"] = summarise({SCENE: bo})
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        result["models"][kind] = entry
    result["baselines"] = {n: baseline_entry(v) for n, v in base.items()}
    result["protocol"] = {"obs": M.OBS, "horizon": M.HORIZON, "stride": M.STRIDE, "step_s": M.STEP,
                          "max_gap_s": M.MAX_GAP, "unit": "px", "test_users": list(M.TEST_USERS),
                          "val_users": list(M.VAL_USERS), "quick": bool(args.quick), "seeds": args.seeds,
                          "windows": {"train": len(train), "val": len(val), "test": len(test)}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result["plot"] = str(out / "mouse_paths.png")
    plot_paths(test, preds, out / "mouse_paths.png")
    result["seconds"] = round(time.perf_counter() - start, 1)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
    else:
        for name, entry in list(result["models"].items()) + list(result["baselines"].items()):
            a = entry["avg"]
            std = f" (± {a['ade_std']:.1f} / {a['fde_std']:.1f})" if a.get("ade_std") else ""
            print(f"{name:18s} ADE {a['ade']:6.1f}  FDE {a['fde']:6.1f} px{std}")
        print(f"plot: {result['plot']}")
    return 0


def plot_paths(test: M.MouseWindows, preds: dict[str, np.ndarray], path: Path, n: int = 6) -> None:
    """A few test windows that move far, from different movements: observed path, truth and
    every method's continuation, in screen coordinates (y down)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    travel = np.linalg.norm(test.traj[:, -1] - test.traj[:, 0], axis=1)
    order = np.argsort(-travel)
    picked, seen = [], set()
    for i in order[len(order) // 10:]:  # skip the longest 10%: mostly screen-wide jumps, not paths
        if test.movement[i] not in seen:
            picked.append(i)
            seen.add(test.movement[i])
        if len(picked) == n:
            break
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5))
    colours = {"constant_position": "grey", "cvm": "tab:orange", "linear": "tab:brown",
               "lstm": "tab:blue", "gru": "tab:purple", "rnn": "tab:red"}
    for ax, i in zip(axes.ravel(), picked):
        tr = test.traj[i]
        ax.plot(tr[:test.obs, 0], tr[:test.obs, 1], "k.-", label="observed")
        ax.plot(tr[test.obs - 1:, 0], tr[test.obs - 1:, 1], "g.-", label="truth")
        for name, p in preds.items():
            line = np.vstack([tr[test.obs - 1], p[i]])
            style = "x" if name == "constant_position" else "--"
            ax.plot(line[:, 0], line[:, 1], style, color=colours.get(name), label=name, alpha=0.85)
        ax.set_title(f"user {test.user[i]}", fontsize=9)
        ax.invert_yaxis()
        ax.set_aspect("equal", adjustable="datalim")
    for ax in axes.ravel()[len(picked):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle("Balabit test users: 8 observed points (50 ms) -> 12 predicted (pixels)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
