"""Model inputs from the observed part of each window, and `Prepared`, the tensors fit / predict /
sample take.

Inputs are built from the observed part only (`make_inputs` takes ``obs`` positions and nothing
else; ``future`` only ever becomes the target), so no future position can leak into a prediction;
a test perturbs the futures to prove it. Everything is in the canonical frame (`frame`) and
divided by the typical step (``ContinuousConfig.scale``): displacement inputs, so one model
fits metres and pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gridcast.continuous.config import ContinuousConfig
from gridcast.continuous.frame import canonical_frame, to_local
from gridcast.continuous.neighbours import neighbour_features

CONTEXT = 4  # absolute context features: last x, y / absolute, heading cos, sin


def make_inputs(obs: np.ndarray, scale: float, canonical: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model inputs from observed positions only.

    Returns features (N, T_obs - 1, 4): [step dx, dy, position relative to last x, y] / scale in
    the local frame, and the frame (origin (N, 2), rotation (N, 2, 2)) to map predictions back.
    """
    obs = np.asarray(obs, dtype=np.float64)
    if canonical:
        origin, rot = canonical_frame(obs, min_step=0.05 * scale)
    else:
        origin, rot = obs[:, -1].copy(), np.repeat(np.eye(2)[None], len(obs), axis=0)
    local = np.einsum("ntc,ncd->ntd", obs - origin[:, None], rot)
    steps = np.diff(local, axis=1)
    feats = np.concatenate([steps, local[:, 1:]], axis=2) / scale
    return feats.astype(np.float32), origin, rot


@dataclass
class Prepared:
    """Tensors for a set of windows, in the local frame and divided by ``scale``; the world
    arrays stay beside them so training can re-derive inputs from jittered observations."""

    feats: Tensor
    cv: Tensor
    target: Tensor | None
    origin: np.ndarray
    rot: np.ndarray
    obs: np.ndarray
    future: np.ndarray | None
    ctx: Tensor | None = None
    nb: Tensor | None = None           # (N, neighbours, NEIGHBOUR_FEATURES)
    groups: np.ndarray | None = None   # window id of each example: who is whose neighbour


def prepare(obs: np.ndarray, future: np.ndarray | None, cfg: ContinuousConfig,
            groups: np.ndarray | None = None) -> Prepared:
    """Inputs from ``obs`` alone; ``future`` (if given) only becomes the target. ``groups``: the
    window id of each example, needed when ``cfg.neighbours`` > 0."""
    feats, origin, rot = make_inputs(obs, cfg.scale, cfg.canonical)
    cv = torch.from_numpy(feats[:, -1, :2].copy())
    target = None
    if future is not None:
        target = torch.from_numpy((to_local(future, origin, rot) / cfg.scale).astype(np.float32))
    ctx = None
    if cfg.absolute > 0:
        last = np.asarray(obs, np.float64)[:, -1] / cfg.absolute
        ctx = torch.from_numpy(np.column_stack([last, rot[:, 0, 0], rot[:, 1, 0]]).astype(np.float32))
    nb = None
    if cfg.neighbours > 0:
        if groups is None:
            raise ValueError("cfg.neighbours > 0 needs the window id of every example (groups)")
        nb = torch.from_numpy(neighbour_features(obs, origin, rot, cfg.scale, np.asarray(groups), cfg.neighbours,
                                                 cfg.nb_future))
    return Prepared(torch.from_numpy(feats), cv, target, origin, rot, obs, future, ctx, nb, groups)


def jittered(data: Prepared, cfg: ContinuousConfig, rng: np.random.Generator) -> Prepared:
    """The training set with observation noise of a random level per window (0 to ``obs_noise``).

    Why: annotation noise differs between recordings (BIWI's hand clicks are jerkier than UCY's
    splines); a model that has seen both clean and jerky histories learns how much to trust the
    last step. The frame and the target follow the noisy last position, as they would at test time.
    """
    level = rng.uniform(0, cfg.obs_noise, size=(len(data.obs), 1, 1))
    noisy = data.obs + rng.normal(size=data.obs.shape) * level
    return prepare(noisy, data.future, cfg, data.groups)
