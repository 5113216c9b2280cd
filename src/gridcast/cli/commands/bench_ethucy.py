"""`gridcast bench ethucy`: leave-one-scene-out ETH/UCY benchmark (SGAN windows, 8 -> 12 at 2.5 Hz).

For every held-out scene: train on the other scenes' train split, keep the epoch with the best ADE
on their val split, report ADE/FDE (metres) on the held-out test split, beside constant velocity
and a linear fit computed on the very same windows. ``--seeds N`` trains N models per kind and
scene and reports the mean (and std) over seeds; ``--samples 20`` adds best-of-20, per pedestrian
and per window, labelled.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import gridcast.continuous.model as C
from gridcast.datasets.ethucy import find_scenes, load_scene
from gridcast.errors import InputError
from gridcast.cli.common import run_single_threaded

# tuned on eth/hotel/zara1 (docs/benchmarks-ethucy.md): 5 cm of observation jitter in training
# makes BIWI's jerky hand annotations far less harmful; 10 cosine epochs reach the val plateau;
# judging and keeping a moving average of the weights (decay 0.995 per step) is worth 0.005 m ADE;
# the neighbours' look ahead (velocity over 2 steps) 0.002 m, most on ZARA2 and UNIV (fourth session)
ETHUCY = {"epochs": 10, "patience": 4, "obs_noise": 0.05, "neighbours": 8, "nb_future": True, "ema": 0.995}
QUICK = {"epochs": 2, "hidden": 32, "modes": 20, "patience": 2, "ema": 0.0}  # too few steps to average
QUICK_TRAIN = 1500  # windows per fold in --quick: enough to run every code path, not to learn


def register(targets: argparse._SubParsersAction) -> None:
    p = targets.add_parser("ethucy", help="ETH/UCY pedestrians, leave one scene out (ADE/FDE in metres)")
    p.add_argument("--data", required=True, help="folder with <scene>/{train,val,test}/*.txt")
    p.add_argument("--cells", default="lstm,gru,rnn", help="cell kinds to train (default: lstm,gru,rnn)")
    p.add_argument("--samples", type=int, default=1, choices=(1, 20),
                   help="1: deterministic only; 20: also best-of-20 (per pedestrian and per window)")
    p.add_argument("--seeds", type=int, default=1, help="models per kind and scene; mean and std over them")
    p.add_argument("--scenes", default=None, help="comma list of held-out scenes (default: all found)")
    p.add_argument("--epochs", type=int, default=None, help="override the epoch budget")
    p.add_argument("--neighbours", type=int, default=None,
                   help="others attended per pedestrian (default 8; 0 = the single-agent model)")
    p.add_argument("--no-mirror", dest="mirror", action="store_false",
                   help="deterministic prediction from the inputs as seen only (default: averaged with the "
                        "prediction from their mirror image, mirrored back)")
    p.add_argument("--quick", action="store_true",
                   help="protocol check in about a minute: full windows and baselines, tiny models")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--out", default=None, help="also write results.json and table.md here")
    p.set_defaults(func=run)


def config_for(kind: str, args: argparse.Namespace, scale: float, seed: int) -> C.ForecasterConfig:
    """The tuned defaults (docs/benchmarks-ethucy.md), shrunk under --quick."""
    cfg = C.ForecasterConfig(kind=kind, scale=scale, seed=seed, **ETHUCY)
    for key, value in (QUICK.items() if args.quick else ()):
        setattr(cfg, key, value)
    if args.epochs:
        cfg.epochs = args.epochs
    if args.neighbours is not None:
        if args.neighbours < 0:
            raise InputError(f"--neighbours must be >= 0, got {args.neighbours}")
        cfg.neighbours = args.neighbours
    return cfg


def _entry(per_seed: list[dict[str, float]]) -> dict[str, float]:
    ade_m, ade_s = C.mean_std([r["ade"] for r in per_seed])
    fde_m, fde_s = C.mean_std([r["fde"] for r in per_seed])
    return {"ade": ade_m, "fde": fde_m, "ade_std": ade_s, "fde_std": fde_s}


def summarise(per_scene_seed: dict[str, list[dict[str, float]]]) -> dict:
    """{scene: [per-seed {ade, fde}]} -> {"scenes": {scene: mean/std}, "avg": mean/std of the
    per-seed average over scenes} (the std of AVG is over seeds, not over scenes)."""
    scenes = {s: _entry(v) for s, v in per_scene_seed.items()}
    n_seeds = len(next(iter(per_scene_seed.values())))
    avg_per_seed = [{m: float(np.mean([per_scene_seed[s][i][m] for s in per_scene_seed])) for m in ("ade", "fde")}
                    for i in range(n_seeds)]
    return {"scenes": scenes, "avg": _entry(avg_per_seed)}


def baseline_entry(per_scene: dict[str, dict[str, float]]) -> dict:
    return {"scenes": per_scene,
            "avg": {m: float(np.mean([v[m] for v in per_scene.values()])) for m in ("ade", "fde")}}


def run(args: argparse.Namespace) -> int:
    return run_single_threaded(_run, args)


class RunLog:
    """Each finished training run as one JSON line in ``OUT/runs.jsonl``, written and flushed at
    once: a crash or Ctrl-C an hour into a benchmark keeps every run that had finished."""

    def __init__(self, out: str | None) -> None:
        self.path = None
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            self.path = Path(out) / "runs.jsonl"
            self.path.write_text("")

    def add(self, **fields) -> None:
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(fields) + "\n")


def checked_kinds(args: argparse.Namespace) -> list[str]:
    """``--cells`` as a list of kinds, after checking it and ``--seeds`` (shared with bench mouse)."""
    try:
        kinds = C.parse_cells(args.cells)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if args.seeds < 1:
        raise InputError("--seeds must be >= 1")
    return kinds


def _run(args: argparse.Namespace) -> int:
    kinds = checked_kinds(args)
    scenes = find_scenes(args.data)
    if args.scenes:
        wanted = [s.strip() for s in args.scenes.split(",") if s.strip()]
        missing = [s for s in wanted if s not in scenes]
        if missing:
            raise InputError(f"{args.data}: no scene {', '.join(missing)} (found {', '.join(scenes)})")
        scenes = wanted
    start = time.perf_counter()
    log = (lambda msg: print(msg, file=sys.stderr, flush=True))
    base: dict[str, dict[str, dict[str, float]]] = {name: {} for name in ("cvm", "linear")}
    # res[kind][variant][scene] = list of {ade, fde}, one per seed (one for the seed ensemble)
    res: dict = {k: {} for k in kinds}
    counts, timing = {}, {k: 0.0 for k in kinds}
    runs = RunLog(args.out)
    for scene in scenes:
        fold = load_scene(args.data, scene)
        if len(fold.test) == 0 or len(fold.train) == 0 or len(fold.val) == 0:
            raise InputError(f"{args.data}/{scene}: a split has no 20-frame window with >= 2 pedestrians")
        test_obs, test_fut = fold.test.observed, fold.test.future
        counts[scene] = {"trajectories": len(fold.test), "windows": fold.test.n_windows,
                         "train": len(fold.train), "val": len(fold.val)}
        for name in base:
            e = C.errors_of(C.BASELINES[name](test_obs, test_fut.shape[1]), test_fut)
            base[name][scene] = {m: float(v.mean()) for m, v in e.items()}
        train = fold.train
        if args.quick and len(train) > QUICK_TRAIN:
            train = train.subset(np.random.default_rng(0).choice(len(train), QUICK_TRAIN, replace=False))
        scale = C.typical_step(train.observed)
        for kind in kinds:
            t0 = time.perf_counter()
            models, samplers = [], []
            for seed in range(args.seeds):
                cfg = config_for(kind, args, scale, seed)
                model, info = C.fit(C.prepare(train.observed, train.future, cfg, train.window),
                                    C.prepare(fold.val.observed, fold.val.future, cfg, fold.val.window), cfg)
                models.append(model)
                samplers.append(info["sampler"])
                got = evaluate([model], [info["sampler"]], test_obs, test_fut, fold.test.window, args.samples, seed,
                               args.mirror)
                for variant, value in got.items():
                    res[kind].setdefault(variant, {}).setdefault(scene, []).append(value)
                runs.add(scene=scene, kind=kind, seed=seed, epochs=info["epochs_run"], **got,
                         cvm=base["cvm"][scene], seconds=round(time.perf_counter() - t0, 1))
                log(f"{scene:6s} {kind:4s} seed {seed}: ade {got['det']['ade']:.3f} fde {got['det']['fde']:.3f} "
                    f"(cvm {base['cvm'][scene]['ade']:.3f}/{base['cvm'][scene]['fde']:.3f}; "
                    f"{info['epochs_run']} epochs, {time.perf_counter() - t0:.0f} s)")
            if args.seeds > 1:  # the seeds' models together: averaged means, pooled mixtures
                got = evaluate(models, samplers, test_obs, test_fut, fold.test.window, args.samples, 0, args.mirror)
                for variant, value in got.items():
                    res[kind].setdefault(f"ens_{variant}", {})[scene] = [value]
            timing[kind] += time.perf_counter() - t0
    result: dict = {"models": {}, "baselines": {n: baseline_entry(v) for n, v in base.items()}}
    k = args.samples
    names = {"ped": f"best_of_{k}_per_pedestrian", "win": f"best_of_{k}_per_window",
             "gauss": f"best_of_{k}_gaussian_per_pedestrian"}
    for kind in kinds:
        entry = summarise(res[kind]["det"])
        for variant, name in names.items():
            if variant in res[kind]:
                entry[name] = summarise(res[kind][variant])
        if args.seeds > 1:
            ens = summarise(res[kind]["ens_det"])
            for variant, name in names.items():
                if f"ens_{variant}" in res[kind]:
                    ens[name] = summarise(res[kind][f"ens_{variant}"])
            entry[f"ensemble_of_{args.seeds}_seeds"] = ens
        entry["seconds"] = round(timing[kind], 1)
        result["models"][kind] = entry
    result["protocol"] = {"obs": 8, "horizon": 12, "skip": 1, "min_peds": 2, "unit": "m",
                          "neighbours": config_for(kinds[0], args, 1.0, 0).neighbours,
                          "scenes": scenes, "seeds": args.seeds, "mirror": bool(args.mirror),
                          "quick": bool(args.quick), "test_counts": counts,
                          "samples_note": "best-of-K: 'per_pedestrian' = each pedestrian's own best of the "
                                          "mixture's K most probable trajectories; 'per_window' = one index "
                                          "per window (sgan); 'gaussian' = K draws around the mean"}
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result, indent=2))
        (out / "table.md").write_text(markdown_table(result))
    if args.json:
        print(json.dumps(result))
    else:
        print(markdown_table(result))
    return 0


def evaluate(models: list, samplers: list, obs: np.ndarray, fut: np.ndarray, windows: np.ndarray,
             samples: int, seed: int, mirror: bool = True) -> dict[str, dict[str, float]]:
    """Deterministic ADE/FDE of (the average of) ``models``, each with its mirror view if
    ``mirror`` (`continuous.predict`); with ``samples`` > 1 also best-of-K
    from the ``samplers``' mixtures (per pedestrian and per window) and from Gaussian draws around
    the deterministic models' paths (per pedestrian)."""
    data = C.prepare(obs, None, models[0].cfg, windows)
    got = {"det": {m: float(v.mean()) for m, v in C.errors_of(C.predict(models, data, mirror), fut).items()}}
    if samples > 1:
        modes = C.sample(samplers, data, samples, method="modes")
        got["ped"] = C.best_of(modes, fut)
        got["win"] = C.best_of(modes, fut, windows)
        got["gauss"] = C.best_of(C.sample(models, data, samples, method="gaussian", seed=seed), fut)
    return got


def markdown_table(result: dict) -> str:
    """Per-scene ADE/FDE rows: our kinds (mean ± std over seeds), then the baselines."""
    scenes = result["protocol"]["scenes"]
    lines = ["| method | " + " | ".join(s.upper() for s in scenes) + " | AVG |",
             "|---" * (len(scenes) + 2) + "|"]

    def cell(v: dict) -> str:
        if v.get("ade_std"):
            return f"{v['ade']:.3f}±{v['ade_std']:.3f} / {v['fde']:.3f}±{v['fde_std']:.3f}"
        return f"{v['ade']:.3f} / {v['fde']:.3f}"

    rows = []
    for kind, entry in result["models"].items():
        rows.append((kind.upper(), entry))
        for key in sorted(k for k in entry if k.startswith("best_of")):
            rows.append((f"{kind.upper()} {key.replace('_', ' ')}", entry[key]))
        for key in (k for k in entry if k.startswith("ensemble_of")):
            rows.append((f"{kind.upper()} {key.replace('_', ' ')}", entry[key]))
            for sub in sorted(k for k in entry[key] if k.startswith("best_of")):
                rows.append((f"{kind.upper()} {key.replace('_', ' ')}, {sub.replace('_', ' ')}", entry[key][sub]))
    rows += [(name.upper() if name == "cvm" else name, entry) for name, entry in result["baselines"].items()]
    for name, entry in rows:
        lines.append(f"| {name} | " + " | ".join(cell(entry["scenes"][s]) for s in scenes) + f" | {cell(entry['avg'])} |")
    return "\n".join(lines) + "\n"
