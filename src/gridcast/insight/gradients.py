"""The vanishing-gradient picture, measured: |dLoss/dh_{T-k}| against k on real trips.

Setup: windows of `length` consecutive cells of real route-14 trips; the loss is the cross-entropy
of the next-cell prediction at the *last* step only, so the gradient reaching h_{T-k} is purely the
part that travelled k steps back in time. ``norm_by_k[k]`` is the mean over windows of
``|dLoss/dh_{T-k}|`` (k = 0 is the last step, which feeds the loss directly); ``decay_1_50`` is
``norm_by_k[1] / norm_by_k[50]``: above 1 the signal from 50 steps back is weaker (vanishing),
below 1 stronger (exploding). Over seeds, curves are averaged on the log scale (geometric mean).

The gradients are autograd's total derivatives w.r.t. each h_t (every path, through the LSTM cell
state too); `check_hidden_gradient` compares them with central finite differences.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gridcast.errors import InputError
from gridcast.insight.experiment import KINDS, FitSettings, RealData, fit_forecaster
from gridcast.insight.gates import encode_track, unroll
from gridcast.nextcell.features import UNKNOWN
from gridcast.nextcell.forecaster import Forecaster
from gridcast.nextcell.network import ForecasterNet
from gridcast.tracks import Track


def windows(model: Forecaster, tracks: list[Track], length: int, stride: int = 5) -> tuple[Tensor, Tensor, Tensor]:
    """Windows of `length` cells whose following cell is known to the model: ids (N, L),
    features (N, L, F) and the target id of the cell after each window (N,)."""
    ids, feats, targets = [], [], []
    for track in tracks:
        i, f, t = encode_track(model, track.cells)
        for end in range(len(track) - 1, length - 1, -stride):  # window = cells [end - length, end)
            target = int(i[0, end])
            if target == UNKNOWN:
                continue
            ids.append(i[0, end - length:end])
            # features are relative to the whole track, so a window sees the same inputs it would in context
            feats.append(f[0, end - length:end])
            targets.append(target)
    if not ids:
        longest = max((len(t) for t in tracks), default=0)
        raise InputError(f"no trip has more than {length} cells (longest: {longest}); use a shorter --length")
    return torch.stack(ids), torch.stack(feats), torch.tensor(targets)


def hidden_gradient_norms(net: ForecasterNet, ids: Tensor, features: Tensor, targets: Tensor) -> dict[str, np.ndarray]:
    """Mean over sequences of |dLoss/dh_{T-k}| for k = 0..T-1 (and |dLoss/dc_{T-k}| for an LSTM).

    The loss is summed over sequences, so each sequence's gradient is that of its own loss.
    """
    if getattr(net.config, "head", "plain") != "plain":
        raise InputError("gradient reach is measured on the plain cell-id head; this model has the "
                         f"{net.config.head!r} head")
    net.eval()
    out = unroll(net, ids, features, keep_grad=False)
    loss = F.cross_entropy(out.logits[:, -1], targets, reduction="sum")
    tensors = out.hidden + out.cell
    grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    steps = len(out.hidden)
    norms = np.array([0.0 if g is None else float(g.norm(dim=-1).mean()) for g in grads])
    result = {"hidden": norms[:steps][::-1].copy()}  # reversed: index k = distance from the last step
    if out.cell:
        result["cell"] = norms[steps:][::-1].copy()
    return result


def decay(norm_by_k: np.ndarray, near: int = 1, far: int = 50) -> float:
    """norm(near) / norm(far): how many times weaker the gradient from `far` steps back is."""
    if len(norm_by_k) <= far:
        raise InputError(f"need at least {far + 1} steps to measure the decay to k = {far}, got {len(norm_by_k)}")
    return float(norm_by_k[near] / max(norm_by_k[far], 1e-300))


def check_hidden_gradient(net: ForecasterNet, ids: Tensor, features: Tensor, targets: Tensor, t: int,
                          eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """dLoss/dh_t by autograd and by central finite differences (perturbing h_t unit by unit).

    Run in float64 on a tiny net: the two agree to ~1e-8 when the unroll is right.
    """
    net.eval()
    out = unroll(net, ids, features, keep_grad=False)
    loss = F.cross_entropy(out.logits[:, -1], targets, reduction="sum")
    auto = torch.autograd.grad(loss, out.hidden[t])[0].detach()
    numeric = torch.zeros_like(auto)
    with torch.no_grad():
        for b in range(auto.shape[0]):
            for j in range(auto.shape[1]):
                delta = torch.zeros_like(auto)
                delta[b, j] = eps
                up = F.cross_entropy(unroll(net, ids, features, {t: delta}, keep_grad=False).logits[:, -1], targets, reduction="sum")
                down = F.cross_entropy(unroll(net, ids, features, {t: -delta}, keep_grad=False).logits[:, -1], targets, reduction="sum")
                numeric[b, j] = (up - down) / (2 * eps)
    return auto.numpy(), numeric.numpy()


def gradient_experiment(data: RealData, kinds: tuple[str, ...] = KINDS, seeds: tuple[int, ...] = (0, 1, 2),
                        settings: FitSettings | None = None, length: int = 60, log=lambda *a: None) -> dict:
    """|dLoss/dh_{T-k}| at initialisation and after training, per kind and seed, plus the gradient
    norm before clipping during training.

    Returns the **contract** shape ``{"kinds": {kind: {"norm_by_k": [...], "decay_1_50": float}}}``
    (after training; with 0 epochs that is the initialisation), with extra keys beside: the same at
    initialisation (``init_*``), per-seed decays, the LSTM cell-state path, and clipping statistics.
    """
    s = settings or FitSettings()
    tracks = data.train + data.test  # a measurement, not an evaluation: every long trip helps
    result: dict = {"kinds": {}, "settings": {"epochs": s.epochs, "hidden": s.hidden, "seeds": list(seeds),
                                              "length": length, "clip_norm": s.clip_norm}}
    histories: dict[str, list] = {}
    for kind in kinds:
        init, trained, cell_init, cell_trained, clip = [], [], [], [], []
        for seed in seeds:
            untrained = fit_forecaster(data.train, kind, seed, _with_epochs(s, 0), grid=data.grid)
            batch = windows(untrained, tracks, length)
            norms = hidden_gradient_norms(untrained.net_, *batch)
            init.append(norms["hidden"])
            cell_init.append(norms.get("cell"))
            model = fit_forecaster(data.train, kind, seed, s, grid=data.grid)
            norms = hidden_gradient_norms(model.net_, *windows(model, tracks, length))
            trained.append(norms["hidden"])
            cell_trained.append(norms.get("cell"))
            history = model.result_.history
            histories.setdefault(kind, history)
            pre = np.array([h.grad_norm_max for h in history]) if history else np.zeros(1)
            clip.append((float(np.mean([h.grad_norm_mean for h in history])) if history else 0.0, float(pre.max()),
                         float(np.mean([h.clipped_fraction for h in history])) if history else 0.0))
            log(f"  {kind} seed {seed}: decay 1->50 init {decay(init[-1]):.3g}, trained {decay(trained[-1]):.3g}")
        mean_init, mean_trained = geometric_mean(init), geometric_mean(trained)
        row = {
            "norm_by_k": mean_trained.tolist(),
            "decay_1_50": decay(mean_trained),
            "init_norm_by_k": mean_init.tolist(),
            "init_decay_1_50": decay(mean_init),
            # the same decay as a per-step factor: the share of the gradient that survives one more step back
            "retained_per_step": decay(mean_trained) ** (-1.0 / 49),
            "init_retained_per_step": decay(mean_init) ** (-1.0 / 49),
            "decay_1_50_by_seed": [decay(n) for n in trained],
            "init_decay_1_50_by_seed": [decay(n) for n in init],
            "norm_by_k_by_seed": [n.tolist() for n in trained],
            "init_norm_by_k_by_seed": [n.tolist() for n in init],
            "grad_norm_before_clip_mean": float(np.mean([c[0] for c in clip])),
            "grad_norm_before_clip_max": float(np.max([c[1] for c in clip])),
            "clipped_fraction": float(np.mean([c[2] for c in clip])),
        }
        if cell_init[0] is not None:
            row["cell_norm_by_k"] = geometric_mean(cell_trained).tolist()
            row["init_cell_norm_by_k"] = geometric_mean(cell_init).tolist()
        result["kinds"][kind] = row
    result["histories"] = histories
    return result


def geometric_mean(curves: list[np.ndarray]) -> np.ndarray:
    """Mean over seeds on the log scale: norms spread over many decades, and an arithmetic mean
    would simply report the largest seed."""
    return np.exp(np.mean(np.log(np.maximum(np.asarray(curves, dtype=np.float64), 1e-300)), axis=0))


def _with_epochs(s: FitSettings, epochs: int) -> FitSettings:
    from dataclasses import replace

    return replace(s, epochs=epochs)
