"""Measurements that answer the seed notes' questions about RNN, LSTM and GRU on real tracks.

The notes end with questions a blog post answers by assertion ("LSTMs solve vanishing gradients",
"GRUs train faster", "the input gate makes the forget gate redundant"). This package answers them by
measuring trained gridcast models; every number in ``docs/understanding.md`` comes from here:

* this module: the shared pieces -- the real data (Liverpool bus route 14), fitting a forecaster
  (optionally with a cell variant), an explicit unroll that exposes every hidden state to autograd,
  gate traces on a real trip, and the speed/size/accuracy comparison;
* `gridcast.insight_gradients`: dLoss/dh_{T-k} against k, and the gradient norm around clipping;
* `gridcast.insight_memory`: the recall task (report the cell seen k steps ago);
* `gridcast.insight_ablations`: no-forget / coupled LSTM, forget bias, tanh vs ReLU RNN;
* `gridcast.insight_plots`: their figures.

Experiments run on one thread: the machines this runs on are shared, and one-thread timings are
the ones that compare fairly between cell kinds.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from gridcast.errors import InputError
from gridcast.nextcell.forecaster import Forecaster, _batched
from gridcast.grid import Grid
from gridcast.nextcell.network import UNKNOWN, ForecasterConfig, ForecasterNet, sequence_features
from gridcast.nn.recurrent import Recurrent
from gridcast.tracks import Track, split_by_track
from gridcast.nextcell.training import TrainConfig, fit as fit_loop

KINDS = ("rnn", "lstm", "gru")


def one_thread() -> None:
    """Pin torch to one thread so experiments neither fight nor depend on the machine's load."""
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------ the data
@dataclass
class RealData:
    """Training and test trips on their grid (the `gridcast demo` protocol)."""

    train: list[Track]
    test: list[Track]
    grid: Grid | None
    name: str = "Liverpool bus route 14"


@functools.lru_cache(maxsize=1)
def liverpool() -> RealData:
    """The bundled route-14 trips, split by time as `gridcast demo` does (11 earliest train, 5 latest test)."""
    try:
        from gridcast.datasets.liverpool import load_liverpool

        train, test, grid, _ = load_liverpool()
    except ImportError as exc:  # gridcast.ingest missing in a partial install
        raise InputError(f"the bundled Liverpool data cannot be gridded here ({exc})") from None
    return RealData(train, test, grid)


# ------------------------------------------------------------------------------------- fitting
@dataclass
class FitSettings:
    """One training budget, shared by every cell kind that is compared (fairness by construction)."""

    epochs: int = 80            # each epoch is one pass over the (few) training trips
    hidden: int = 64
    embed: int = 16
    lr: float = 5e-3
    clip_norm: float = 1.0      # 0 disables clipping (the tanh-vs-ReLU stability experiment)
    val_fraction: float = 0.2
    dropout: float = 0.1
    patience: int = 1000        # effectively off: the budget, not early stopping, ends training
    extra: dict = field(default_factory=dict)


def fit_forecaster(tracks: list[Track], kind: str, seed: int = 0, settings: FitSettings | None = None,
                   grid: Grid | None = None, forget_bias: float | None = None, log_path=None,
                   **cell_options) -> Forecaster:
    """Train a next-cell `Forecaster` on `tracks`; `cell_options` select a cell variant.

    ``Forecaster`` builds its network from a config that has no cell variants, so a variant is made
    by building the standard network untrained, swapping in a `Recurrent` with the variant's cells,
    and running the same training loop on it. `forget_bias` sets the LSTM forget gate's bias
    (split evenly between ``bias_ih`` and ``bias_hh``) at initialisation. `log_path` keeps the epoch
    log (JSONL), which survives a `TrainingError` when the loss blows up.
    """
    s = settings or FitSettings()
    config = ForecasterConfig(cell=kind, target="cell", hidden=s.hidden, embed=s.embed, dropout=s.dropout)
    train, val = split_by_track(tracks, s.val_fraction, seed)
    train_config = TrainConfig(epochs=s.epochs, lr=s.lr, clip_norm=s.clip_norm, patience=s.patience, seed=seed)
    model = Forecaster(config, grid=grid)
    if not cell_options and forget_bias is None:
        return model.fit(train, val_tracks=val, train=train_config, log_path=log_path)
    model.fit(train, val_tracks=val, train=TrainConfig(epochs=0, seed=seed))  # vocabulary, normalisation, net
    torch.manual_seed(seed)
    old = model.net_.recurrent
    model.net_.recurrent = Recurrent(kind, old.input_size, old.hidden_size, num_layers=old.num_layers,
                                     init_state=old.init_state, **cell_options)
    if forget_bias is not None:
        set_forget_bias(model.net_.recurrent, forget_bias)
    encoded = model._chunks(train, train_config.max_len)
    val_batches = [model._batch(chunk) for chunk in _batched(model._chunks(val, train_config.max_len), 64)]

    def batches(rng: np.random.Generator):
        order = rng.permutation(len(encoded))
        for start in range(0, len(order), train_config.batch_size):
            yield model._batch([encoded[i] for i in order[start:start + train_config.batch_size]])

    model.train_config_ = train_config
    model.result_ = fit_loop(model.net_, batches, val_batches, model._loss, train_config, log_path=log_path)
    return model


def set_forget_bias(recurrent: Recurrent, value: float) -> None:
    """Set every LSTM layer's forget-gate bias so that sigma(bias) starts at sigma(value), not 0.5."""
    if recurrent.kind != "lstm":
        raise InputError("a forget bias only exists in an LSTM")
    with torch.no_grad():
        for cell in recurrent.layers:
            h = cell.hidden_size
            cell.bias_ih[h:2 * h].fill_(value / 2)  # PyTorch order i, f, g, o: rows H..2H are the forget gate
            cell.bias_hh[h:2 * h].fill_(value / 2)


def count_parameters(module: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


# ------------------------------------------------------------------------------ explicit unroll
class Unrolled(NamedTuple):
    """A forward pass with every step's top-layer hidden (and LSTM cell) state kept as its own tensor,
    so autograd can report dLoss/dh_t for each t (``hidden[t].grad`` after ``backward``)."""

    logits: Tensor          # (B, T, O)
    hidden: list[Tensor]    # T tensors (B, H)
    cell: list[Tensor]      # T tensors (B, H); empty unless LSTM


def unroll(net: ForecasterNet, ids: Tensor, features: Tensor, perturb: dict[int, Tensor] | None = None,
           keep_grad: bool = True) -> Unrolled:
    """Run `net` step by step over equal-length sequences (no padding), using the cells' own `step`.

    Args:
        perturb: {t: delta} adds delta to the top layer's h_t before it feeds step t+1 and the head
            (for finite-difference checks of dLoss/dh_t).
        keep_grad: call ``retain_grad`` on every h_t and c_t.
    """
    rec = net.recurrent
    x = net.inputs(ids, features)
    batch, steps = ids.shape
    state = rec.initial_state(batch, x)
    hidden: list[Tensor] = []
    cells: list[Tensor] = []
    top = rec.num_layers - 1
    for index, layer in enumerate(rec.layers):
        proj = layer.project_input(x)
        s = (state[0][index], state[1][index]) if rec.is_lstm else state[index]
        outputs = []
        for t in range(steps):
            s = layer.step(proj[:, t], s)
            h = s[0] if rec.is_lstm else s
            if index == top:
                if perturb and t in perturb:
                    h = h + perturb[t]
                    s = (h, s[1]) if rec.is_lstm else h
                if keep_grad and h.requires_grad:
                    h.retain_grad()
                    if rec.is_lstm:
                        s[1].retain_grad()
                hidden.append(h)
                if rec.is_lstm:
                    cells.append(s[1])
            outputs.append(h)
        x = torch.stack(outputs, dim=1)
    return Unrolled(net.head(x), hidden, cells)


def encode_track(model: Forecaster, cells: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
    """(1, T) ids, (1, T, F) features and (1, T) next-cell targets of one track, as the model sees it."""
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    ids = torch.from_numpy(model.vocab_.ids(cells))[None]
    own = getattr(model, "_features", None)  # the model's own inputs (time features, if it was built with them)
    features = own(cells, None) if own is not None else sequence_features(cells, model.norm_)
    targets = torch.cat([ids[:, 1:], torch.full((1, 1), UNKNOWN)], dim=1)
    return ids, torch.from_numpy(np.asarray(features, dtype=np.float32))[None], targets


# ----------------------------------------------------------------------------------- gate traces
@torch.no_grad()
def gate_traces(model: Forecaster, cells: np.ndarray, layer: int = -1) -> dict[str, np.ndarray]:
    """Every gate and state of one layer along a track: {name: (T, H) array}, names as in the cells."""
    ids, features, _ = encode_track(model, cells)
    model.net_.eval()
    _, _, gates = model.net_(ids, features, return_gates=True)
    return {name: value[0].numpy() for name, value in gates[layer].items()}


def gate_summary(traces: dict[str, np.ndarray]) -> dict[str, float]:
    """Numbers a heatmap suggests, measured: mean of each gate, share of saturated values
    (< 0.1 or > 0.9), and for LSTM how far the forget gate is from the coupled rule f = 1 - i."""
    out: dict[str, float] = {}
    for name in ("forget", "input", "output", "update", "reset"):
        if name in traces:
            g = traces[name]
            out[f"{name}_mean"] = float(g.mean())
            out[f"{name}_saturated"] = float(((g < 0.1) | (g > 0.9)).mean())
    if "forget" in traces and "input" in traces:
        f, i = traces["forget"].ravel(), traces["input"].ravel()
        out["forget_vs_1_minus_input_corr"] = _corr(f, 1.0 - i)
        out["forget_plus_input_mean"] = float((f + i).mean())
        # a forget gate of f keeps a memory for about 1 / (1 - f) steps
        out["memory_steps_median"] = float(np.median(1.0 / np.clip(1.0 - f, 1e-3, None)))
    for name in ("cell", "hidden"):
        if name in traces:
            out[f"{name}_abs_max"] = float(np.abs(traces[name]).max())
    if "hidden" in traces and "cell" not in traces:
        # |h| > 0.95 means tanh' = 1 - h^2 < 0.1: a saturated unit passes almost no gradient back
        out["hidden_saturated"] = float((np.abs(traces["hidden"]) > 0.95).mean())
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def pick_track(data: RealData) -> Track:
    """The default trip to trace: the longest held-out route-14 trip (the one the demo plots)."""
    return max(data.test, key=len)


# ---------------------------------------------------------------------------------- comparison
def time_recurrent(kinds: tuple[str, ...], hidden: int, input_size: int, batch: int = 16, steps: int = 64,
                   repeats: int = 20, fused: bool = True) -> dict[str, float]:
    """Seconds for one forward + backward of each kind's recurrent layer alone (best of `repeats`).

    The kinds take turns, run after run, so a burst of load from other jobs on a shared machine hits
    them all alike, and the best run is the least disturbed one. Training time per epoch is reported
    beside it, but that also includes the data pipeline, the head and validation.
    """
    torch.manual_seed(0)
    layers = {kind: Recurrent(kind, input_size, hidden) for kind in kinds}
    x = torch.randn(batch, steps, input_size)
    best = {kind: float("inf") for kind in kinds}
    for attempt in range(repeats + 1):  # the first round warms up allocators and kernels
        for kind, rec in layers.items():
            started = time.perf_counter()
            rec(x, fused=fused).output.square().mean().backward()
            if attempt:
                best[kind] = min(best[kind], time.perf_counter() - started)
            rec.zero_grad(set_to_none=True)
    return best


def next_cell_metrics(model: Forecaster, tracks: list[Track]) -> dict[str, float]:
    """``acc@1``, ``acc@5``, ``mrr``, ``nll`` over every step of `tracks` (one causal pass each)."""
    from gridcast.metrics import ranking_metrics

    ranks, nll = zip(*(model.ranks_along(t.cells) for t in tracks if len(t) >= 2))
    metrics = ranking_metrics(np.concatenate(ranks))
    finite = np.concatenate(nll)
    finite = finite[np.isfinite(finite)]
    metrics["nll"] = float(finite.mean()) if len(finite) else float("nan")
    return metrics


def compare_kinds(data: RealData, kinds: tuple[str, ...] = KINDS, seeds: tuple[int, ...] = (0, 1, 2),
                  settings: FitSettings | None = None, log=lambda *a: None) -> dict:
    """Accuracy, training time per epoch and parameter count of each kind on the same data and budget.

    Returns ``{"kinds": {kind: {metric: mean, metric_std: std, "params": int, ...}}, "baselines": ...}``.
    """
    from gridcast.nextcell.baselines import default_baselines
    from gridcast.nextcell.evaluation import evaluate

    s = settings or FitSettings()
    out: dict = {"kinds": {}, "settings": {"epochs": s.epochs, "hidden": s.hidden, "lr": s.lr, "seeds": list(seeds),
                                            "train_tracks": len(data.train), "test_tracks": len(data.test)}}
    histories = {}
    for kind in kinds:
        runs = []
        for seed in seeds:
            model = fit_forecaster(data.train, kind, seed, s, grid=data.grid)
            metrics = next_cell_metrics(model, data.test)
            history = model.result_.history
            metrics["seconds_per_epoch"] = float(np.median([h.seconds for h in history]))
            metrics["seconds_per_epoch_best"] = float(np.min([h.seconds for h in history]))  # least disturbed
            metrics["final_train_loss"] = history[-1].train_loss
            runs.append(metrics)
            histories.setdefault(kind, history)
            log(f"  {kind} seed {seed}: acc@1 {metrics['acc@1']:.3f}, {metrics['seconds_per_epoch'] * 1000:.0f} ms/epoch")
        row = {}
        for key in runs[0]:
            values = np.array([r[key] for r in runs], dtype=np.float64)
            row[key] = float(values.mean())
            row[f"{key}_std"] = float(values.std())
        row["params_recurrent"] = count_parameters(model.net_.recurrent)
        row["params_total"] = count_parameters(model.net_)
        input_size = model.net_.recurrent.input_size
        out["kinds"][kind] = row
    for fused, key in ((True, "fwd_bwd_ms_fused"), (False, "fwd_bwd_ms_explicit")):
        for kind, seconds in time_recurrent(tuple(kinds), s.hidden, input_size, fused=fused).items():
            out["kinds"][kind][key] = 1000 * seconds
    baselines = [b.fit(data.train) for b in default_baselines()]
    result = evaluate(None, baselines, data.test, grid=data.grid)
    out["baselines"] = {name: {k: v for k, v in m.items() if k in ("acc@1", "acc@5", "mrr")}
                        for name, m in result["baselines"].items()}
    out["histories"] = histories
    return out
