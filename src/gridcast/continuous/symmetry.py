"""Symmetries of the data, applied to inputs and targets alike: the mirror across the heading axis
(walking and pointing have no handedness), random rotations in the relative frame, speed scaling.

Mirroring is defined once (`_mirror_y`) and serves both training augmentation (`augment`) and the
mirror view at prediction (`mirrored`); a mirrored pedestrian sees mirrored neighbours.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from gridcast.continuous.config import ContinuousConfig
from gridcast.continuous.features import Prepared
from gridcast.continuous.neighbours import neighbour_y_mask

MIRROR = torch.tensor([1.0, -1.0])  # local x stays, local y flips


def _mirror_y(feats: Tensor, cv: Tensor, target: Tensor | None, nb: Tensor | None,
              sign: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Multiply every local y by ``sign[..., 1]`` (sign (B or 1, 1, 2), x entries 1): the one
    definition of mirroring across the heading axis, for training augmentation and for the mirror
    view at prediction alike (a mirrored pedestrian sees mirrored neighbours)."""
    feats, cv = feats * sign.repeat(1, 1, 2), cv * sign[:, 0]
    if target is not None:
        target = target * sign
    if nb is not None:
        nb = nb * torch.where(neighbour_y_mask(nb.shape[-1]), sign[:, :, 1:], 1.0)
    return feats, cv, target, nb


def mirrored(data: Prepared) -> Prepared:
    """The same examples mirrored across their heading axis (every local y negated, neighbours
    too); the target, if any, is mirrored with them."""
    feats, cv, target, nb = _mirror_y(data.feats, data.cv, data.target, data.nb, MIRROR.view(1, 1, 2))
    return Prepared(feats, cv, target, data.origin, data.rot, data.obs, data.future, data.ctx, nb, data.groups)


def augment(feats: Tensor, cv: Tensor, target: Tensor, cfg: ContinuousConfig, gen: torch.Generator,
            nb: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Random mirror across the heading axis (canonical) or random rotation (relative frame),
    and optional speed scaling: all are symmetries of the data, applied to inputs and targets alike
    (a mirrored pedestrian sees mirrored neighbours)."""
    b = feats.shape[0]
    if cfg.canonical:
        sign = torch.ones(b, 1, 2)
        if cfg.flip and cfg.absolute <= 0:  # a mirror is no symmetry of a screen with edges
            sign[:, :, 1] = torch.where(torch.rand(b, 1, generator=gen) < 0.5, -1.0, 1.0)
        feats, cv, target, nb = _mirror_y(feats, cv, target, nb, sign)
    else:
        theta = torch.rand(b, generator=gen) * 2 * math.pi
        c, s = torch.cos(theta), torch.sin(theta)
        rot = torch.stack([torch.stack([c, -s], 1), torch.stack([s, c], 1)], 1)  # (B, 2, 2)
        if cfg.flip:
            mirror = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
            rot = rot * torch.stack([torch.ones(b), mirror], 1)[:, None, :]
        f = feats.view(b, -1, 2, 2)
        feats = torch.einsum("btjc,bcd->btjd", f, rot).reshape(feats.shape)
        cv, target = torch.einsum("bc,bcd->bd", cv, rot), torch.einsum("btc,bcd->btd", target, rot)
    if cfg.speed_aug > 0:
        k = 1 + cfg.speed_aug * (2 * torch.rand(b, 1, generator=gen) - 1)
        feats, cv, target = feats * k[:, :, None], cv * k, target * k[:, :, None]
    return feats, cv, target, nb
