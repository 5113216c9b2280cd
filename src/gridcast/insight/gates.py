"""Gates and hidden states of a trained forecaster, exposed: an explicit unroll that keeps every
h_t for autograd, gate traces along a real trip and the numbers a gate heatmap suggests.

Traces come from the cells' own step-by-step path (`gridcast.nn.cells`), the only one that names
every gate; see the table "where the gates live" in `gridcast.nn.cells`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from gridcast.errors import InputError
from gridcast.nextcell.features import UNKNOWN
from gridcast.nextcell.forecaster import Forecaster
from gridcast.nextcell.network import ForecasterNet
from gridcast.nn.recurrent import Recurrent


def set_forget_bias(recurrent: Recurrent, value: float) -> None:
    """Set every LSTM layer's forget-gate bias so that sigma(bias) starts at sigma(value), not 0.5."""
    if recurrent.kind != "lstm":
        raise InputError("a forget bias only exists in an LSTM")
    with torch.no_grad():
        for cell in recurrent.layers:
            h = cell.hidden_size
            cell.bias_ih[h:2 * h].fill_(value / 2)  # PyTorch order i, f, g, o: rows H..2H are the forget gate
            cell.bias_hh[h:2 * h].fill_(value / 2)


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
    ids, features = model.encode(cells)  # the model's own inputs (time features, if it was built with them)
    ids = torch.from_numpy(ids)[None]
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
