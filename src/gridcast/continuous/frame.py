"""The canonical frame: each window translated so its last observed position is the origin and
rotated so its last observed step points along +x.

The network never sees absolute positions or headings, so it cannot overfit a scene's layout, and
a model trained on four scenes transfers to the fifth.
"""
from __future__ import annotations

import numpy as np


def canonical_frame(obs: np.ndarray, min_step: float) -> tuple[np.ndarray, np.ndarray]:
    """Origin and rotation that put the last observed position at 0 and its last step along +x.

    A step shorter than ``min_step`` has a meaningless heading; then the whole observed
    displacement gives it, and if that is short too the window is not rotated.
    Returns origin (N, 2) and rotation matrices R (N, 2, 2) with ``local = (world - origin) @ R``.
    """
    obs = np.asarray(obs, dtype=np.float64)
    last = obs[:, -1] - obs[:, -2]
    whole = obs[:, -1] - obs[:, 0]
    use = np.where((np.linalg.norm(last, axis=1) >= min_step)[:, None], last, whole)
    angle = np.where(np.linalg.norm(use, axis=1) >= min_step, np.arctan2(use[:, 1], use[:, 0]), 0.0)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.stack([np.stack([c, -s], axis=1), np.stack([s, c], axis=1)], axis=1)  # rows: x, y
    return obs[:, -1].copy(), rot


def to_local(points: np.ndarray, origin: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """World (N, T, 2) -> each window's own frame."""
    return np.einsum("ntc,ncd->ntd", np.asarray(points, np.float64) - origin[:, None], rot)


def to_world(points: np.ndarray, origin: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Inverse of `to_local` for (N, T, 2) or (K, N, T, 2) arrays."""
    points = np.asarray(points, np.float64)
    if points.ndim == 4:
        return np.einsum("kntd,ncd->kntc", points, rot) + origin[None, :, None]
    return np.einsum("ntd,ncd->ntc", points, rot) + origin[:, None]
