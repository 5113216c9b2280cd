"""What the others in a window are doing, as features per pedestrian: their observed tracks in the
pedestrian's own frame and, optionally, a constant-velocity look ahead at each encounter.

Observed positions only (a test perturbs the futures). The layout of a neighbour's features is
named here once, so mirroring (`neighbour_y_mask`) and the model's width (`neighbour_width`) follow it.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

OBS_STEPS = 8  # observed positions per neighbour track (the ETH/UCY protocol's 8)
NEIGHBOUR_FEATURES = 2 * OBS_STEPS + 3  # relative track (x, y per step), last step (x, y), closeness
FUTURE_AHEAD = (4, 8, 12)               # steps ahead of the constant-velocity look (nb_future)
FUTURE_FEATURES = 2 * len(FUTURE_AHEAD) + 2  # relative positions then, time and closeness of closest approach
LOOK_AHEAD_STEPS = 2                    # velocity of the look ahead: mean of this many last steps


def neighbour_width(future: bool) -> int:
    """Features per neighbour (the look ahead, ``ContinuousConfig.nb_future``, adds ``FUTURE_FEATURES``)."""
    return NEIGHBOUR_FEATURES + (FUTURE_FEATURES if future else 0)


def neighbour_y_mask(width: int) -> Tensor:
    """Which neighbour features are local y coordinates (mirroring negates them)."""
    mask = torch.zeros(width, dtype=torch.bool)
    mask[1:2 * OBS_STEPS + 2:2] = True                      # the track and the last step
    if width > NEIGHBOUR_FEATURES:
        start = 2 * OBS_STEPS + 2
        mask[start + 1:start + 2 * len(FUTURE_AHEAD):2] = True  # the constant-velocity look ahead
    return mask


def neighbour_features(obs: np.ndarray, origin: np.ndarray, rot: np.ndarray, scale: float,
                       groups: np.ndarray, n: int, future: bool = False) -> np.ndarray:
    """(N, n, NEIGHBOUR_FEATURES [+ FUTURE_FEATURES]): for each example the ``n`` nearest others of its window (by
    distance at the last observed step), each as its observed track relative to this example's
    last position, in this example's frame, / ``scale``; then its last step and 1 / (1 + distance).
    Observed positions only (a test perturbs the futures). Rows beyond a window's size stay zero.

    ``future``: before the closeness, also where the neighbour will be relative to this example if
    both keep their recent velocity (``FUTURE_AHEAD`` steps ahead), and when (/ horizon) and how
    close (1 / (1 + distance)) they pass. Why: the embedding sees each neighbour alone, without
    this example's own velocity, so it cannot work out an approaching collision by itself."""
    obs = np.asarray(obs, np.float64)
    if obs.shape[1] != OBS_STEPS:
        raise ValueError(f"neighbour features expect {OBS_STEPS} observed steps, got {obs.shape[1]}")
    out = np.zeros((len(obs), n, neighbour_width(future)), np.float32)
    order = np.argsort(groups, kind="stable")
    bounds = np.r_[0, np.nonzero(np.diff(groups[order]))[0] + 1, len(order)]
    last = obs[:, -1]
    for a, b in zip(bounds[:-1], bounds[1:]):
        members = order[a:b]
        k = min(n, len(members) - 1)
        if k <= 0:
            continue
        d = np.linalg.norm(last[members][None] - last[members][:, None], axis=-1)
        np.fill_diagonal(d, np.inf)
        nearest = np.argsort(d, axis=1)[:, :k]                              # (m, k) indices into members
        others = obs[members][nearest]                                      # (m, k, T, 2)
        rel = np.einsum("mktc,mcd->mktd", others - origin[members][:, None, None], rot[members]) / scale
        step = rel[:, :, -1] - rel[:, :, -2]
        close = 1.0 / (1.0 + np.take_along_axis(d, nearest, axis=1) / scale)
        parts = [rel.reshape(len(members), k, -1), step]
        if future:
            parts += _look_ahead(rel, obs[members], rot[members], scale)
        out[members, :k] = np.concatenate(parts + [close[..., None]], axis=-1)
    return out


def _look_ahead(rel: np.ndarray, own: np.ndarray, rot: np.ndarray, scale: float) -> list[np.ndarray]:
    """Constant-velocity look ahead for `neighbour_features`: ``rel`` (m, k, T, 2) the neighbours'
    tracks relative to each example (local, / scale), ``own`` (m, T, 2) the examples' own tracks
    and ``rot`` their frames. Velocities are the mean of the last ``LOOK_AHEAD_STEPS`` steps: one
    step's annotation noise, multiplied by 12 steps ahead, would swamp the look."""
    k = LOOK_AHEAD_STEPS
    own_velocity = np.einsum("mc,mcd->md", (own[:, -1] - own[:, -1 - k]) / k, rot) / scale   # (m, 2)
    closing = (rel[:, :, -1] - rel[:, :, -1 - k]) / k - own_velocity[:, None]                # relative velocity
    horizon = max(FUTURE_AHEAD)
    t = np.arange(1, horizon + 1, dtype=np.float64)
    gap = rel[:, :, -1, None] + t[None, None, :, None] * closing[:, :, None]                  # (m, k, H, 2)
    dist = np.linalg.norm(gap, axis=-1)
    when = np.round(dist, 6).argmin(axis=-1)        # a constant distance passes closest at once, not at random
    ahead = [gap[:, :, a - 1] for a in FUTURE_AHEAD]
    return ahead + [((when + 1) / horizon)[..., None], (1.0 / (1.0 + dist.min(axis=-1)))[..., None]]
