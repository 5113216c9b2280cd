"""`gridcast explain {gates,gradients,memory,ablations,diagram,compare} ... --out DIR [--json]`.

Each subcommand measures one question about the cells on real route-14 trips (or on the recall
task), writes its figures and a ``<name>.json`` to DIR, and prints a short answer -- or, with
``--json``, the measurement itself (a **contract** for ``gradients`` and ``memory``:
docs/contracts.md).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gridcast.cli.common import SEED, check_flags, print_json
from gridcast.errors import InputError
from gridcast.kinds import CELL_KINDS, parse_kinds

TOPICS = ("gates", "gradients", "memory", "ablations", "diagram", "compare")
# The order explain draws and prints the kinds in by default: simplest cell first.
DEFAULT_ORDER = ("rnn", "lstm", "gru")
if sorted(DEFAULT_ORDER) != sorted(CELL_KINDS):
    raise ImportError(f"explain's DEFAULT_ORDER {DEFAULT_ORDER} must name exactly the kinds {CELL_KINDS}")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("explain", help="measure and draw how RNN, LSTM and GRU work (gates, gradients, memory...)",
                            description="Answer questions about RNN, LSTM and GRU by measurement: "
                                        "each topic writes figures and JSON to --out.")
    topics = parser.add_subparsers(dest="topic", required=True, metavar="TOPIC")

    def topic(name: str, help: str, cells: bool = True, fit: bool = True) -> argparse.ArgumentParser:
        p = topics.add_parser(name, help=help, description=help)
        p.add_argument("--out", default="gridcast-explain", help="output directory (default: ./gridcast-explain)")
        p.add_argument("--json", action="store_true", help="print the measurement as JSON")
        if cells:
            default = ",".join(DEFAULT_ORDER)
            p.add_argument("--cells", default=default, help=f"cell kinds (default: {default})")
        if fit:
            p.add_argument("--epochs", type=int, default=80, help="training epochs on the real trips (default: 80)")
            p.add_argument("--hidden", type=int, default=64, help="hidden size (default: 64)")
        p.set_defaults(func=run)
        return p

    p = topic("gates", "gate and state activations of a trained model along one real trip, as heatmaps")
    p.add_argument("--model", metavar="MODEL_DIR", help="trace this saved model instead of training one per kind")
    p.add_argument("--track", help='cells "x,y x,y ..." to trace (default: the longest held-out route-14 trip, '
                                   "or with --model the model's longest training trip)")
    p.add_argument("--seed", type=int, default=0)

    p = topic("gradients", "|dLoss/dh(T-k)| against k at initialisation and after training; gradient norm around clipping")
    p.add_argument("--seeds", type=int, default=3, help="seeds per kind (default: 3)")
    p.add_argument("--length", type=int, default=60, help="window length in steps, > 50 (default: 60)")

    p = topic("memory", "recall task: the largest delay each kind bridges at >= 95 percent accuracy, same budget", fit=False)
    _memory_args(p, cap=64)
    p.add_argument("--seeds", type=int, default=1, help="seeds (max_delay is their median; default: 1)")

    p = topic("ablations", "no-forget / coupled LSTM vs LSTM vs GRU; tanh vs ReLU RNN (recall task and real trips)",
              cells=False)
    p.add_argument("--part", choices=("gates", "activation", "all"), default="all",
                   help="gates: the LSTM variants; activation: tanh vs ReLU; all (default)")
    _memory_args(p, cap=16)
    p.add_argument("--seeds", type=int, default=1, help="seeds for every run (default: 1)")

    p = topic("diagram", "drawings of the cells, generated from the cell definitions (PNG and SVG)", fit=False)
    p.add_argument("--variants", action="store_true", help="also draw the ablation variants (no-forget, coupled, ReLU)")
    p.add_argument("--format", default="png,svg", help="comma-separated formats (default: png,svg)")

    p = topic("compare", "accuracy, training time per epoch and parameter count on the same real data and budget")
    p.add_argument("--seeds", type=int, default=3, help="seeds per kind (default: 3)")


def _memory_args(p: argparse.ArgumentParser, cap: int) -> None:
    p.add_argument("--max-delay", type=int, default=cap, help=f"longest delay tried (default: {cap})")
    p.add_argument("--steps", type=int, default=600, help="Adam steps per delay at most (default: 600)")
    p.add_argument("--mem-hidden", type=int, default=32, help="hidden size on the recall task (default: 32)")
    p.add_argument("--side", type=int, default=4, help="the recall grid is side x side cells (default: 4)")
    p.add_argument("--refine", type=int, default=1, help="bisection steps after the first failure (default: 1)")


# ------------------------------------------------------------------------------------ helpers
def _positive(args: argparse.Namespace, *names: str, minimum: int = 1, maximum: int = 100_000) -> None:
    """Integer flags in [minimum, maximum]: the upper cap keeps a typo from running for days."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and not minimum <= value <= maximum:
            raise InputError(f"--{name.replace('_', '-')} must be >= {minimum} and <= {maximum}, got {value}")


def _settings(args: argparse.Namespace):
    from gridcast.insight.experiment import FitSettings

    _positive(args, "hidden")
    _positive(args, "epochs", minimum=0)
    return FitSettings(epochs=args.epochs, hidden=args.hidden)


def _budget(args: argparse.Namespace):
    from gridcast.insight.memory import MemoryBudget

    _positive(args, "max_delay", "steps", "mem_hidden")
    _positive(args, "refine", minimum=0)
    _positive(args, "side", minimum=2)
    return MemoryBudget(hidden=args.mem_hidden, steps=args.steps)


def _finish(args: argparse.Namespace, out: Path, result: dict, files: list[Path], summary: list[str],
            started: float) -> int:
    result = {k: v for k, v in result.items() if k != "histories"}
    result["files"] = [str(f) for f in files]
    result["seconds"] = round(time.perf_counter() - started, 1)
    (out / f"{args.topic}.json").write_text(json.dumps(_jsonable(result), indent=1))
    if args.json:
        print_json(_jsonable(result))
    else:
        print("\n".join(summary))
        print(f"wrote {', '.join(str(f) for f in files)}, {out / (args.topic + '.json')} [{result['seconds']} s]")
    return 0


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# ------------------------------------------------------------------------------------- topics
def run(args: argparse.Namespace) -> int:
    from gridcast.insight.experiment import one_thread

    check_flags(args, {"seed": SEED})
    _positive(args, "length", maximum=10_000)
    _positive(args, "hidden", "mem_hidden", maximum=4096)
    one_thread()
    out = Path(args.out)
    started = time.perf_counter()
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, flush=True))
    handler = {"gates": _gates, "gradients": _gradients, "memory": _memory, "ablations": _ablations,
               "diagram": _diagram, "compare": _compare}[args.topic]
    # validate everything before anything is written or trained
    prepared = handler(args, out, log, prepare=True)
    out.mkdir(parents=True, exist_ok=True)
    result, files, summary = handler(args, out, log, prepare=False, prepared=prepared)
    return _finish(args, out, result, files, summary, started)


def _gates(args, out, log, prepare, prepared=None):
    from gridcast.insight.experiment import fit_forecaster, liverpool, pick_track
    from gridcast.insight.gates import gate_summary, gate_traces
    from gridcast.insight.plots import plot_gates
    from gridcast.nextcell.forecaster import Forecaster
    from gridcast.tracks import Track, parse_track

    if prepare:
        settings = _settings(args)
        track = Track("--track", parse_track(args.track)) if args.track else None
        if track is not None and len(track) < 2:
            raise InputError("--track needs at least 2 cells")
        if args.model:
            model = Forecaster.load(args.model)
            return settings, track, {model.config.cell: model}
        return settings, track, None
    settings, track, models = prepared
    if models is None:
        data = liverpool()
        track = track or pick_track(data)
        models = {}
        for kind in parse_kinds(args.cells):
            log(f"training {kind} on {len(data.train)} route-14 trips ({settings.epochs} epochs)")
            models[kind] = fit_forecaster(data.train, kind, args.seed, settings, grid=data.grid)
        where = f"held-out route-14 trip {track.id}" if not args.track else "the given track"
    else:
        model = next(iter(models.values()))
        track = track or max(model.train_tracks_, key=len)
        where = f"trip {track.id} of the model's training data" if not args.track else "the given track"
    result, files, summary = {"kinds": {}, "track": {"id": track.id, "steps": len(track)}}, [], []
    for kind, model in models.items():
        traces = gate_traces(model, track.cells)
        files.append(plot_gates(out / f"gates_{kind}.png", track.cells, traces, kind,
                                title=f"{kind.upper()} along {where} ({len(track)} cells)"))
        stats = gate_summary(traces)
        result["kinds"][kind] = {"summary": stats}
        summary.append(f"{kind}: " + ", ".join(f"{k} {v:.3f}" for k, v in stats.items()))
    return result, files, summary


def _gradients(args, out, log, prepare, prepared=None):
    from gridcast.insight.experiment import liverpool
    from gridcast.insight.gradients import gradient_experiment
    from gridcast.insight.plots import plot_clipping, plot_gradients

    if prepare:
        _positive(args, "seeds")
        if args.length <= 50:
            raise InputError(f"--length must be > 50 to measure the decay from k = 1 to k = 50, got {args.length}")
        return _settings(args), parse_kinds(args.cells)
    settings, kinds = prepared
    log(f"|dLoss/dh(T-k)| on {args.length}-step windows of route-14 trips, {args.seeds} seeds, {settings.epochs} epochs")
    result = gradient_experiment(liverpool(), kinds, tuple(range(args.seeds)), settings, args.length, log=log)
    files = [plot_gradients(out / "gradients.png", result),
             plot_clipping(out / "clipping.png", result["histories"], settings.clip_norm)]
    summary = [f"{kind}: gradient from 50 steps back is {row['init_decay_1_50']:.3g}x weaker than from 1 step at "
               f"initialisation, {row['decay_1_50']:.3g}x after training (each step back keeps "
               f"{row['init_retained_per_step']:.2f} -> {row['retained_per_step']:.2f}); largest norm before clipping "
               f"{row['grad_norm_before_clip_max']:.3g} (clipped in {100 * row['clipped_fraction']:.0f}% of steps)"
               for kind, row in result["kinds"].items()]
    return result, files, summary


def _memory(args, out, log, prepare, prepared=None):
    from gridcast.insight.memory import memory_experiment
    from gridcast.insight.plots import plot_memory

    if prepare:
        _positive(args, "seeds")
        return _budget(args), parse_kinds(args.cells)
    budget, kinds = prepared
    log(f"recall task on a {args.side}x{args.side} grid: hidden {budget.hidden}, <= {budget.steps} steps per delay")
    result = memory_experiment(kinds, budget, args.side, args.max_delay, args.refine, tuple(range(args.seeds)), log=log)
    files = [plot_memory(out / "memory.png", result)]
    summary = [f"{kind}: remembers the start cell over {row['max_delay']} distractor steps at >= 95%"
               for kind, row in result["kinds"].items()]
    return result, files, summary


def _ablations(args, out, log, prepare, prepared=None):
    import numpy as np

    from gridcast.insight.ablations import activation_ablation, gate_ablation, summarise_gate_ablation
    from gridcast.insight.experiment import liverpool
    from gridcast.insight.plots import plot_bars, plot_gradient_curves, plot_loss_curves, plot_memory

    if prepare:
        _positive(args, "seeds")
        return _settings(args), _budget(args)
    settings, budget = prepared
    seeds = tuple(range(args.seeds))
    data = liverpool()
    result, files, summary = {}, [], []
    if args.part in ("gates", "all"):
        log("LSTM variants and GRU")
        gates = gate_ablation(data, budget=budget, settings=settings, cap=args.max_delay, refine=args.refine,
                              seeds=seeds, log=log)
        table = summarise_gate_ablation(gates)
        result["gates"] = {"variants": table, "memory": gates["memory"]}
        files.append(plot_memory(out / "ablation_memory.png", gates["memory"],
                                 title="Recall task: which gates are needed to remember?"))
        files.append(plot_bars(out / "ablation_tracks.png", [
            ("max delay (recall task)", {k: v["max_delay"] for k, v in table.items()}, None),
            ("acc@1 on held-out trips (mean ± sd)", {k: v["acc@1"] for k, v in table.items()},
             {k: v["acc@1_std"] for k, v in table.items()}),
            ("NLL on held-out trips (mean ± sd)", {k: v["nll"] for k, v in table.items()},
             {k: v["nll_std"] for k, v in table.items()})],
            title="Forget gate, input gate, both, or tied together"))
        files.append(plot_loss_curves(out / "ablation_loss.png", gates["histories"], "LSTM variants on route-14 trips"))
        summary += [f"{k}: max delay {v['max_delay']}{'+ (the cap)' if v['reached_cap'] else ''}, "
                    f"acc@1 {v['acc@1']:.3f} ± {v['acc@1_std']:.3f}, nll {v['nll']:.3f}" for k, v in table.items()]
    if args.part in ("activation", "all"):
        log("tanh vs ReLU RNN")
        act = activation_ablation(data, settings, seeds=seeds, log=log)
        result["activation"] = {k: v for k, v in act.items() if k != "histories"}
        files.append(plot_loss_curves(out / "ablation_tanh_relu.png", act["histories"],
                                      "RNN: tanh vs ReLU, with and without clipping"))
        files.append(plot_gradient_curves(out / "ablation_tanh_relu_reach.png",
                                          {k: np.asarray(v) for k, v in act["reach"].items()},
                                          "|dLoss/dh(T-k)|: tanh vs ReLU RNN"))
        for name, row in act["runs"].items():
            summary.append(f"{name}: acc@1 {row['acc@1']:.3f}, final train loss {row['final_train_loss']:.3f}, "
                           f"max gradient norm {row['grad_norm_before_clip_max']:.3g}, "
                           f"loss NaN/inf in {row['diverged']}/{row['seeds']} runs")
    return result, files, summary


def _diagram(args, out, log, prepare, prepared=None):
    from gridcast.insight.diagrams import DIAGRAMS, cell_spec, draw_all
    from gridcast.nn.cells import make_cell

    if prepare:
        formats = tuple(f.strip().lower() for f in args.format.split(",") if f.strip())
        bad = [f for f in formats if f not in ("png", "svg", "pdf")]
        if bad or not formats:
            raise InputError(f"--format takes png, svg and/or pdf; got {args.format!r}")
        names = tuple(f"cell_{k}" for k in parse_kinds(args.cells))
        if args.variants:
            names += tuple(n for n in DIAGRAMS if n.count("_") > 1)
        return formats, names
    formats, names = prepared
    drawn = draw_all(out, names, formats)
    files = [p for paths in drawn.values() for p in paths]

    result = {"cells": {}}
    for stem in drawn:
        kind, options = DIAGRAMS[stem]
        spec = cell_spec(make_cell(kind, 20, 64, **options))
        result["cells"][stem] = {"gates": {g.name: g.activation for g in spec.gates}, "states": spec.states,
                                 "shapes": {k: list(v) for k, v in spec.shapes.items()}}
    summary = [f"{stem}: " + ", ".join(f"{n} ({a})" for n, a in row["gates"].items()) for stem, row in result["cells"].items()]
    return result, files, summary


def _compare(args, out, log, prepare, prepared=None):
    from gridcast.insight.compare import compare_kinds
    from gridcast.insight.experiment import liverpool
    from gridcast.insight.plots import plot_bars, plot_loss_curves

    if prepare:
        _positive(args, "seeds")
        return _settings(args), parse_kinds(args.cells)
    settings, kinds = prepared
    data = liverpool()
    log(f"{', '.join(kinds)} on {len(data.train)} route-14 trips, {settings.epochs} epochs, hidden {settings.hidden}, "
        f"{args.seeds} seeds")
    result = compare_kinds(data, kinds, tuple(range(args.seeds)), settings, log=log)
    rows = result["kinds"]
    best_name, best = max(result["baselines"].items(), key=lambda kv: kv[1]["acc@1"])
    files = [plot_bars(out / "compare.png", [
        ("acc@1 on held-out trips (mean ± sd)", {k: r["acc@1"] for k, r in rows.items()},
         {k: r["acc@1_std"] for k, r in rows.items()}),
        ("ms per training epoch (best)", {k: 1000 * r["seconds_per_epoch_best"] for k, r in rows.items()}, None),
        ("ms per forward+backward (torch kernels)", {k: r["fwd_bwd_ms_fused"] for k, r in rows.items()}, None),
        ("ms per forward+backward (gridcast cells)", {k: r["fwd_bwd_ms_explicit"] for k, r in rows.items()}, None),
        ("parameters in the recurrent layer", {k: r["params_recurrent"] for k, r in rows.items()}, None)],
        title=f"Same data, same budget ({settings.epochs} epochs, hidden {settings.hidden}, {args.seeds} seeds)",
        reference={0: (best["acc@1"], f"best baseline: {best_name}")}),
        plot_loss_curves(out / "compare_loss.png", result["histories"], "Training loss, seed 0")]
    summary = [f"{k}: acc@1 {r['acc@1']:.3f} ± {r['acc@1_std']:.3f}, acc@5 {r['acc@5']:.3f}, "
               f"{1000 * r['seconds_per_epoch_best']:.0f} ms/epoch (best; median {1000 * r['seconds_per_epoch']:.0f}), "
               f"fused fwd+bwd {r['fwd_bwd_ms_fused']:.1f} ms, "
               f"{r['params_recurrent']} recurrent parameters" for k, r in rows.items()]
    summary.append(f"strongest baseline {best_name}: acc@1 {best['acc@1']:.3f}")
    return result, files, summary
