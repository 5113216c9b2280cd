"""Cursor continuation on the Balabit logs (pixels, 50 ms, 8 -> 12), callable from Python;
`gridcast bench mouse` prints what `run_mouse` returns.

Protocol in `gridcast.datasets.mouse`; test users 23, 29, 9 never reach training, user 35 selects
the epoch. Returns the same shape as `run_ethucy` (one pseudo-scene, ``"test_users"``) and writes
a PNG of a few test paths with every model's continuation.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import gridcast.datasets.mouse as M
from gridcast.bench.run_log import RunLog
from gridcast.bench.summary import baseline_entry, summarise
from gridcast.continuous.baselines import BASELINES
from gridcast.continuous.config import ContinuousConfig, typical_step
from gridcast.continuous.features import prepare
from gridcast.continuous.predict import predict, sample
from gridcast.continuous.train import fit
from gridcast.errors import InputError
from gridcast.kinds import CELL_KINDS, parse_kinds
from gridcast.metrics import best_of_k, per_example_errors

SCENE = "test_users"
QUICK = {"epochs": 2, "hidden": 32, "patience": 2}
QUICK_TRAIN = 3000
# 90k training windows: fewer, larger steps; the screen position matters (edges, fixed menus),
# so the last absolute position (/ 1000 px) and heading join the head input and mirroring is off
MOUSE = {"epochs": 12, "patience": 4, "batch": 512, "absolute": 1000.0, "flip": False}


def config_for(kind: str, scale: float, seed: int, quick: bool = False, epochs: int | None = None) -> ContinuousConfig:
    """The mouse defaults, shrunk under ``quick``."""
    cfg = ContinuousConfig(kind=kind, scale=scale, seed=seed, **MOUSE)
    for key, value in (QUICK.items() if quick else ()):
        setattr(cfg, key, value)
    if epochs:
        cfg.epochs = epochs
    return cfg


def run_mouse(data_dir: str | Path, kinds: str | Sequence[str] = CELL_KINDS, *, seeds: int = 1, samples: int = 1,
              epochs: int | None = None, quick: bool = False, out: str | Path = "gridcast-bench-mouse",
              log: Callable[[str], None] | None = None) -> dict:
    """Train every kind on the training users, test on the held-out users; the
    `gridcast bench mouse --json` result. Writes runs.jsonl, results.json and mouse_paths.png to
    ``out``; ``log`` receives one line per trained model."""
    kinds = list(parse_kinds(kinds if isinstance(kinds, str) else ",".join(kinds), flag="kinds"))
    if seeds < 1:
        raise InputError("--seeds must be >= 1")
    log = log or (lambda msg: None)
    start = time.perf_counter()
    data = M.load(data_dir)
    train, val, test = M.split_by_user(data)
    if not len(train) or not len(val) or not len(test):
        raise InputError(f"{data_dir}: need windows of training users, validation user(s) "
                         f"{', '.join(M.VAL_USERS)} and test users {', '.join(M.TEST_USERS)}")
    if quick and len(train) > QUICK_TRAIN:
        train = train.subset(np.random.default_rng(0).choice(len(train), QUICK_TRAIN, replace=False))
    obs, fut = test.observed, test.future
    base = {}
    preds = {}
    for name in ("constant_position", "cvm", "linear"):
        preds[name] = BASELINES[name](obs, fut.shape[1])
        base[name] = {SCENE: {m: float(v.mean()) for m, v in per_example_errors(preds[name], fut).items()}}
    scale = typical_step(train.observed)
    result: dict = {"models": {}}
    runs = RunLog(out)
    for kind in kinds:
        t0 = time.perf_counter()
        det, bo = [], []
        for seed in range(seeds):
            cfg = config_for(kind, scale, seed, quick, epochs)
            model, info = fit(prepare(train.observed, train.future, cfg), prepare(val.observed, val.future, cfg), cfg)
            te = prepare(obs, None, cfg)
            pred = predict(model, te)
            if seed == 0:
                preds[kind] = pred
            det.append({m: float(v.mean()) for m, v in per_example_errors(pred, fut).items()})
            if samples > 1:
                bo.append(best_of_k(sample(info["sampler"], te, samples), fut))
            runs.add(kind=kind, seed=seed, epochs=info["epochs_run"], det=det[-1],
                     **({f"best_of_{samples}": bo[-1]} if bo else {}))
            log(f"mouse {kind:4s} seed {seed}: ade {det[-1]['ade']:.1f} fde {det[-1]['fde']:.1f} px "
                f"({info['epochs_run']} epochs, {time.perf_counter() - t0:.0f} s)")
        entry = summarise({SCENE: det})
        if bo:
            entry[f"best_of_{samples}_per_window"] = summarise({SCENE: bo})
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        result["models"][kind] = entry
    result["baselines"] = {n: baseline_entry(v) for n, v in base.items()}
    result["protocol"] = {"obs": M.OBS, "horizon": M.HORIZON, "stride": M.STRIDE, "step_s": M.STEP,
                          "max_gap_s": M.MAX_GAP, "unit": "px", "test_users": list(M.TEST_USERS),
                          "val_users": list(M.VAL_USERS), "quick": bool(quick), "seeds": seeds,
                          "windows": {"train": len(train), "val": len(val), "test": len(test)}}
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    result["plot"] = str(folder / "mouse_paths.png")
    plot_paths(test, preds, folder / "mouse_paths.png")
    result["seconds"] = round(time.perf_counter() - start, 1)
    (folder / "results.json").write_text(json.dumps(result, indent=2))
    return result


def text_report(result: dict) -> str:
    """One line per model and baseline (ADE, FDE in pixels, std over seeds), then the plot's path."""
    lines = []
    for name, entry in list(result["models"].items()) + list(result["baselines"].items()):
        a = entry["avg"]
        std = f" (± {a['ade_std']:.1f} / {a['fde_std']:.1f})" if a.get("ade_std") else ""
        lines.append(f"{name:18s} ADE {a['ade']:6.1f}  FDE {a['fde']:6.1f} px{std}")
    lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)


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
