"""Leave-one-scene-out ETH/UCY benchmark (SGAN windows, 8 -> 12 at 2.5 Hz), callable from Python;
`gridcast bench ethucy` prints what `run_ethucy` returns.

For every held-out scene: train on the other scenes' train split, keep the epoch with the best ADE
on their val split, report ADE/FDE (metres) on the held-out test split, beside constant velocity
and a linear fit computed on the very same windows. ``seeds=N`` trains N models per kind and
scene and reports the mean (and std) over seeds, and the seeds' ensemble; ``samples=20`` adds
best-of-20, per pedestrian and per window, labelled.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from gridcast.bench.run_log import RunLog
from gridcast.bench.summary import baseline_entry, summarise
from gridcast.continuous.baselines import BASELINES
from gridcast.continuous.config import ContinuousConfig, typical_step
from gridcast.continuous.features import prepare
from gridcast.continuous.model import ContinuousForecaster
from gridcast.continuous.predict import predict, sample
from gridcast.continuous.train import fit
from gridcast.datasets.ethucy import find_scenes, load_scene
from gridcast.errors import InputError
from gridcast.kinds import CELL_KINDS, parse_kinds
from gridcast.metrics import best_of_k, per_example_errors

# tuned on eth/hotel/zara1 (docs/benchmarks-ethucy.md): 5 cm of observation jitter in training
# makes BIWI's jerky hand annotations far less harmful; 10 cosine epochs reach the val plateau;
# judging and keeping a moving average of the weights (decay 0.995 per step) is worth 0.005 m ADE;
# the neighbours' look ahead (velocity over 2 steps) 0.002 m, most on ZARA2 and UNIV (fourth session)
ETHUCY = {"epochs": 10, "patience": 4, "obs_noise": 0.05, "neighbours": 8, "nb_future": True, "ema": 0.995}
QUICK = {"epochs": 2, "hidden": 32, "modes": 20, "patience": 2, "ema": 0.0}  # too few steps to average
QUICK_TRAIN = 1500  # windows per fold in quick mode: enough to run every code path, not to learn
SAMPLES_NOTE = ("best-of-K: 'per_pedestrian' = each pedestrian's own best of the mixture's K most probable "
                "trajectories; 'per_window' = one index per window (sgan); 'gaussian' = K draws around the mean")


def config_for(kind: str, scale: float, seed: int, quick: bool = False, epochs: int | None = None,
               neighbours: int | None = None) -> ContinuousConfig:
    """The tuned defaults (docs/benchmarks-ethucy.md), shrunk under ``quick``."""
    cfg = ContinuousConfig(kind=kind, scale=scale, seed=seed, **ETHUCY)
    for key, value in (QUICK.items() if quick else ()):
        setattr(cfg, key, value)
    if epochs:
        cfg.epochs = epochs
    if neighbours is not None:
        if neighbours < 0:
            raise InputError(f"--neighbours must be >= 0, got {neighbours}")
        cfg.neighbours = neighbours
    return cfg


def evaluate(models: list[ContinuousForecaster], samplers: list[ContinuousForecaster], obs: np.ndarray,
             fut: np.ndarray, windows: np.ndarray, samples: int, seed: int,
             mirror: bool = True) -> dict[str, dict[str, float]]:
    """Deterministic ADE/FDE of (the average of) ``models``, each with its mirror view if
    ``mirror`` (`continuous.predict`); with ``samples`` > 1 also best-of-K
    from the ``samplers``' mixtures (per pedestrian and per window) and from Gaussian draws around
    the deterministic models' paths (per pedestrian)."""
    data = prepare(obs, None, models[0].cfg, windows)
    got = {"det": {m: float(v.mean()) for m, v in per_example_errors(predict(models, data, mirror), fut).items()}}
    if samples > 1:
        modes = sample(samplers, data, samples, method="modes")
        got["ped"] = best_of_k(modes, fut)
        got["win"] = best_of_k(modes, fut, windows)
        got["gauss"] = best_of_k(sample(models, data, samples, method="gaussian", seed=seed), fut)
    return got


def held_out_scenes(data_dir: str | Path, scenes: Sequence[str] | None) -> list[str]:
    """The scenes to hold out in turn: ``scenes`` (checked against those found) or every one found."""
    found = find_scenes(data_dir)
    if scenes is None:
        return found
    missing = [s for s in scenes if s not in found]
    if missing:
        raise InputError(f"{data_dir}: no scene {', '.join(missing)} (found {', '.join(found)})")
    return list(scenes)


def run_ethucy(data_dir: str | Path, kinds: str | Sequence[str] = CELL_KINDS, *, seeds: int = 1, samples: int = 1,
               scenes: Sequence[str] | None = None, epochs: int | None = None, neighbours: int | None = None,
               mirror: bool = True, quick: bool = False, out: str | Path | None = None,
               log: Callable[[str], None] | None = None) -> dict:
    """Train and test every kind on every held-out scene; the `gridcast bench ethucy --json` result.

    ``epochs``, ``neighbours`` override the tuned `config_for` defaults; ``mirror`` averages each
    deterministic prediction with its mirror view; ``quick`` checks the protocol in about a minute
    (full windows and baselines, tiny models on a subset). ``out``: a folder for runs.jsonl (each
    run as it finishes), results.json and table.md. ``log`` receives one line per trained model.
    """
    kinds = list(parse_kinds(kinds if isinstance(kinds, str) else ",".join(kinds), flag="kinds"))
    if seeds < 1:
        raise InputError("--seeds must be >= 1")
    log = log or (lambda msg: None)
    scenes = held_out_scenes(data_dir, scenes)
    start = time.perf_counter()
    base: dict[str, dict[str, dict[str, float]]] = {name: {} for name in ("cvm", "linear")}
    # res[kind][variant][scene] = list of {ade, fde}, one per seed (one for the seed ensemble)
    res: dict = {k: {} for k in kinds}
    counts, timing = {}, {k: 0.0 for k in kinds}
    runs = RunLog(out)
    for scene in scenes:
        fold = load_scene(data_dir, scene)
        if len(fold.test) == 0 or len(fold.train) == 0 or len(fold.val) == 0:
            raise InputError(f"{data_dir}/{scene}: a split has no 20-frame window with >= 2 pedestrians")
        test_obs, test_fut = fold.test.observed, fold.test.future
        counts[scene] = {"trajectories": len(fold.test), "windows": fold.test.n_windows,
                         "train": len(fold.train), "val": len(fold.val)}
        for name in base:
            e = per_example_errors(BASELINES[name](test_obs, test_fut.shape[1]), test_fut)
            base[name][scene] = {m: float(v.mean()) for m, v in e.items()}
        train = fold.train
        if quick and len(train) > QUICK_TRAIN:
            train = train.subset(np.random.default_rng(0).choice(len(train), QUICK_TRAIN, replace=False))
        scale = typical_step(train.observed)
        for kind in kinds:
            t0 = time.perf_counter()
            models, samplers = [], []
            for seed in range(seeds):
                cfg = config_for(kind, scale, seed, quick, epochs, neighbours)
                model, info = fit(prepare(train.observed, train.future, cfg, train.window),
                                  prepare(fold.val.observed, fold.val.future, cfg, fold.val.window), cfg)
                models.append(model)
                samplers.append(info["sampler"])
                got = evaluate([model], [info["sampler"]], test_obs, test_fut, fold.test.window, samples, seed,
                               mirror)
                for variant, value in got.items():
                    res[kind].setdefault(variant, {}).setdefault(scene, []).append(value)
                runs.add(scene=scene, kind=kind, seed=seed, epochs=info["epochs_run"], **got,
                         cvm=base["cvm"][scene], seconds=round(time.perf_counter() - t0, 1))
                log(f"{scene:6s} {kind:4s} seed {seed}: ade {got['det']['ade']:.3f} fde {got['det']['fde']:.3f} "
                    f"(cvm {base['cvm'][scene]['ade']:.3f}/{base['cvm'][scene]['fde']:.3f}; "
                    f"{info['epochs_run']} epochs, {time.perf_counter() - t0:.0f} s)")
            if seeds > 1:  # the seeds' models together: averaged means, pooled mixtures
                got = evaluate(models, samplers, test_obs, test_fut, fold.test.window, samples, 0, mirror)
                for variant, value in got.items():
                    res[kind].setdefault(f"ens_{variant}", {})[scene] = [value]
            timing[kind] += time.perf_counter() - t0
    result: dict = {"models": {kind: _model_entry(res[kind], samples, seeds, timing[kind]) for kind in kinds},
                    "baselines": {n: baseline_entry(v) for n, v in base.items()}}
    result["protocol"] = {"obs": 8, "horizon": 12, "skip": 1, "min_peds": 2, "unit": "m",
                          "neighbours": config_for(kinds[0], 1.0, 0, quick, epochs, neighbours).neighbours,
                          "scenes": scenes, "seeds": seeds, "mirror": bool(mirror),
                          "quick": bool(quick), "test_counts": counts, "samples_note": SAMPLES_NOTE}
    result["seconds"] = round(time.perf_counter() - start, 1)
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.json").write_text(json.dumps(result, indent=2))
        (folder / "table.md").write_text(markdown_table(result))
    return result


def _model_entry(res: dict, samples: int, seeds: int, seconds: float) -> dict:
    """One kind's results: deterministic, each best-of-K variant, and (seeds > 1) the ensemble's."""
    names = {"ped": f"best_of_{samples}_per_pedestrian", "win": f"best_of_{samples}_per_window",
             "gauss": f"best_of_{samples}_gaussian_per_pedestrian"}
    entry = summarise(res["det"])
    for variant, name in names.items():
        if variant in res:
            entry[name] = summarise(res[variant])
    if seeds > 1:
        ens = summarise(res["ens_det"])
        for variant, name in names.items():
            if f"ens_{variant}" in res:
                ens[name] = summarise(res[f"ens_{variant}"])
        entry[f"ensemble_of_{seeds}_seeds"] = ens
    entry["seconds"] = round(seconds, 1)
    return entry


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
