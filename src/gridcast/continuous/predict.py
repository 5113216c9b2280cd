"""Predictions in world units from trained models (one, or an ensemble as a list): the
deterministic path (`predict`, optionally averaged with its mirror view) and K samples (`sample`)."""
from __future__ import annotations

import numpy as np
import torch

from gridcast.continuous.features import Prepared
from gridcast.continuous.frame import to_world
from gridcast.continuous.model import ContinuousForecaster, batched_outputs
from gridcast.continuous.symmetry import MIRROR, mirrored


def predict(models: ContinuousForecaster | list[ContinuousForecaster], data: Prepared,
            mirror: bool = False) -> np.ndarray:
    """Deterministic prediction (N, H, 2) in world units; an ensemble averages its members.

    ``mirror``: also predict from the mirrored inputs and average with that prediction mirrored
    back. Walking has no handedness and the models were trained with mirrored copies, yet each
    learns the symmetry only approximately; averaging the two views removes the asymmetric part of
    the error, like a free two-member ensemble. Not for models that see the screen (``absolute``),
    which has no such symmetry."""
    models = models if isinstance(models, list) else [models]
    cfg = models[0].cfg
    mean = batched_outputs(models, data)["mean"].mean(0)
    if mirror:
        if cfg.absolute > 0:
            raise ValueError("mirrored prediction needs a model without absolute context (a screen has no mirror symmetry)")
        mean = (mean + batched_outputs(models, mirrored(data))["mean"].mean(0) * MIRROR) / 2
    return to_world(mean.numpy() * cfg.scale, data.origin, data.rot)


def sample(models: ContinuousForecaster | list[ContinuousForecaster], data: Prepared, k: int,
           method: str = "modes", seed: int = 0) -> np.ndarray:
    """K predictions per example (K, N, H, 2) in world units.

    ``modes``: the mixture's K most probable component trajectories, no randomness; an ensemble
    takes its members' components in turns (every member's most probable, then every member's
    second, ...), since members agree on their likeliest paths and a pool ranked by weight alone
    would spend its K on near-copies of them; ``gaussian``: K draws from the per-step Gaussian around
    the deterministic trajectory, with noise correlated along the path (a random walk) so a draw is
    a plausible path rather than jitter.
    """
    models = models if isinstance(models, list) else [models]
    out = batched_outputs(models, data)
    scale = models[0].cfg.scale
    if method == "modes":
        if "modes" not in out:
            raise ValueError("this model has no mixture head (modes=0)")
        m, n, kk, h, _ = out["modes"].shape
        if k > m * kk:
            raise ValueError(f"asked for {k} samples but the mixture has {m * kk} components")
        ranked = out["logits"].argsort(dim=-1, descending=True)                      # (M, N, K)
        trajs = out["modes"].gather(2, ranked[..., None, None].expand(m, n, kk, h, 2))
        chosen = trajs.permute(2, 0, 1, 3, 4).reshape(kk * m, n, h, 2)[:k]           # rank-major turns
        local = chosen.numpy() * scale
    elif method == "gaussian":
        mean = out["mean"].mean(0)
        sigma = torch.exp(out["log_sigma"].mean(0))  # (N, H)
        gen = torch.Generator().manual_seed(seed)
        # increments whose running sum has the per-step marginal std sigma_t
        var = sigma ** 2
        inc_std = torch.sqrt(torch.clamp(torch.diff(var, dim=1, prepend=torch.zeros_like(var[:, :1])), min=0))
        noise = torch.randn((k,) + mean.shape, generator=gen) * inc_std[None, :, :, None]
        local = (mean[None] + noise.cumsum(dim=2)).numpy() * scale
    else:
        raise ValueError(f"unknown sampling method {method!r} (modes, gaussian)")
    return to_world(local, data.origin, data.rot)
