"""Baselines every continuous benchmark reports beside the models, measured on the very same windows.

Array conventions shared with the models: ``obs`` (N, T_obs, 2) -> (N, horizon, 2).
"""
from __future__ import annotations

import numpy as np


def constant_position(obs: np.ndarray, horizon: int) -> np.ndarray:
    """Stay at the last observed position."""
    return np.repeat(np.asarray(obs)[:, -1:], horizon, axis=1)


def constant_velocity(obs: np.ndarray, horizon: int) -> np.ndarray:
    """Extrapolate the last observed step (backward difference: uses no future position)."""
    obs = np.asarray(obs, dtype=np.float64)
    step = obs[:, -1] - obs[:, -2]
    k = np.arange(1, horizon + 1, dtype=np.float64)[None, :, None]
    return obs[:, -1:] + k * step[:, None]


def linear_fit(obs: np.ndarray, horizon: int) -> np.ndarray:
    """Least-squares line through all observed positions against time, extrapolated."""
    obs = np.asarray(obs, dtype=np.float64)
    t_obs = obs.shape[1]
    t = np.arange(t_obs, dtype=np.float64)
    design = np.stack([np.ones_like(t), t], axis=1)  # (T, 2)
    coef = np.linalg.pinv(design) @ obs  # (N, 2, 2): [intercept; slope] per coordinate
    t_new = np.arange(t_obs, t_obs + horizon, dtype=np.float64)
    return coef[:, :1] + t_new[None, :, None] * coef[:, 1:2]


BASELINES = {"constant_position": constant_position, "cvm": constant_velocity, "linear": linear_fit}
