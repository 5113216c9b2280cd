"""`ContinuousConfig`: everything needed to rebuild a continuous model, and `typical_step`, the
data's own unit that the model's inputs and outputs are divided by."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ContinuousConfig:
    """Everything needed to rebuild a model; saved beside its weights."""

    kind: str = "lstm"          # rnn | lstm | gru
    hidden: int = 96            # recurrent width
    layers: int = 1
    embed: int = 32             # input projection width
    horizon: int = 12
    modes: int = 20             # mixture components (0: no mixture head)
    scale: float = 0.4          # typical step length in data units (m for pedestrians, px for mice)
    canonical: bool = True      # relative + rotated frame (False: relative only, random rotations)
    flip: bool = True           # mirror augmentation across the heading axis
    speed_aug: float = 0.0      # random speed scaling in [1 - a, 1 + a] while training
    obs_noise: float = 0.0      # max std (data units) of jitter added to observed positions in training
    absolute: float = 0.0       # > 0: also feed the last absolute position / this and the heading
                                # (screens have edges and fixed menus; scenes differ, so 0 there)
    neighbours: int = 0         # > 0: attend over this many nearest others' observed tracks in the
                                # same window (pedestrians avoid each other); 0 = single agent
    nb_future: bool = False     # also describe each neighbour by where both of you will be if you keep
                                # your recent velocities (relative positions 4, 8, 12 steps ahead, closest approach)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch: int = 256
    epochs: int = 60
    patience: int = 8
    clip: float = 1.0
    mode_weight: float = 1.0    # weight of the mixture loss beside the deterministic one
    seed: int = 0
    ema: float = 0.0            # > 0: judge and keep a moving average of the weights (decay per step)


def typical_step(obs: np.ndarray) -> float:
    """Mean observed step length: the input/output scale (``ContinuousConfig.scale``), so one
    config fits metres and pixels."""
    steps = np.linalg.norm(np.diff(np.asarray(obs, np.float64), axis=1), axis=-1)
    value = float(steps.mean()) if steps.size else 1.0
    return value if value > 0 else 1.0
