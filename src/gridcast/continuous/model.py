"""Continuous trajectory forecasting: observed positions in, future positions out.

The model (`ContinuousForecaster`) is an encoder over `gridcast.recurrent.Recurrent` (any cell
kind) with small heads; what makes a single-agent recurrent model strong here is mostly the framing:

* **relative, canonical frame** - every window is translated so the last observed position is the
  origin and rotated so the last observed step points along +x (`canonical_frame`). The network
  never sees absolute positions or headings, so it cannot overfit a scene's layout, and a model
  trained on four scenes transfers to the fifth.
* **displacement inputs** - the observed steps (and positions relative to the last one), scaled by
  a typical step length.
* **residual over constant velocity** - the heads predict per-step corrections to the constant
  velocity extrapolation, so an untrained network already equals CVM.
* **flip augmentation** - mirroring across the heading axis is a symmetry of walking (and pointing).
* **outputs** - a deterministic trajectory trained on the Euclidean error (the ADE itself); a
  mixture of K trajectories with weights, trained winner-takes-all (best-of-many) with a
  cross-entropy on the winner, for multi-modal prediction; a per-step Gaussian spread around the
  deterministic trajectory, for sampling.

Inputs are built from the observed part only (`make_inputs` takes ``obs`` positions and nothing
else), so no future position can leak into a prediction; a test perturbs the futures to prove it.

Baselines (`constant_position`, `constant_velocity`, `linear_fit`) share the array conventions:
``obs`` (N, T_obs, 2) -> (N, horizon, 2).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from gridcast.nn.recurrent import Recurrent

# ------------------------------------------------------------------------------------ baselines


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

class ObservedFuture:
    """For window sets holding ``traj`` (N, obs + horizon, 2) and ``obs``: the split every
    benchmark makes, in one place so no model can read past ``obs`` by accident."""

    traj: np.ndarray
    obs: int

    def __len__(self) -> int:
        return len(self.traj)

    @property
    def observed(self) -> np.ndarray:
        """(N, obs, 2): the only part a model may read."""
        return self.traj[:, : self.obs]

    @property
    def future(self) -> np.ndarray:
        """(N, horizon, 2): the targets."""
        return self.traj[:, self.obs:]


# -------------------------------------------------------------------------------------- framing


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


def to_local(points: np.ndarray, origin: np.ndarray, rot: np.ndarray) -> np.ndarray:
    return np.einsum("ntc,ncd->ntd", np.asarray(points, np.float64) - origin[:, None], rot)


def to_world(points: np.ndarray, origin: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Inverse of `to_local` for (N, T, 2) or (K, N, T, 2) arrays."""
    points = np.asarray(points, np.float64)
    if points.ndim == 4:
        return np.einsum("kntd,ncd->kntc", points, rot) + origin[None, :, None]
    return np.einsum("ntd,ncd->ntc", points, rot) + origin[:, None]

# ---------------------------------------------------------------------------------------- model


@dataclass
class ForecasterConfig:
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


SOCIAL = 32  # width of the pooled neighbour summary fed to the heads


class SocialAttention(nn.Module):
    """What the others in the scene are doing, as one vector per pedestrian.

    Each of the ``n`` nearest others is described by its whole observed track, relative to the
    pedestrian's last position in the pedestrian's own (canonical) frame, its last step and
    1 / (1 + distance) (`neighbour_features`). Each neighbour is embedded by a small MLP; the
    pedestrian's recurrent state asks which of them matter (dot-product attention) and receives
    their weighted sum. No neighbour (a lone pedestrian, or padding) gives a zero vector.
    """

    def __init__(self, hidden: int, n: int, features: int | None = None) -> None:
        super().__init__()
        self.n = n
        self.encode = nn.Sequential(nn.Linear(features or NEIGHBOUR_FEATURES, 64), nn.ReLU(), nn.Linear(64, SOCIAL))
        self.query = nn.Linear(hidden, SOCIAL)
        self.value = nn.Linear(SOCIAL, SOCIAL)

    def forward(self, state: Tensor, nb: Tensor) -> Tensor:
        present = nb[:, :, -1] > 0                                  # closeness > 0 <=> a real neighbour
        keys = self.encode(nb)                                      # (B, n, SOCIAL)
        score = (keys * self.query(state)[:, None]).sum(-1) / SOCIAL ** 0.5
        weight = torch.softmax(score.masked_fill(~present, -1e9), dim=1) * present.any(1, keepdim=True)
        return (weight[:, :, None] * self.value(keys)).sum(1)


class ContinuousForecaster(nn.Module):
    """Encoder (`Recurrent`) over observed steps; heads for a deterministic trajectory, a mixture
    of ``modes`` trajectories with weights, and a per-step Gaussian spread.

    Shapes: feats (B, T_obs - 1, 4), cv (B, 2) last local step / scale ->
    mean (B, H, 2), modes (B, K, H, 2), logits (B, K), log_sigma (B, H); all local, / scale.
    """

    def __init__(self, cfg: ForecasterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Sequential(nn.Linear(4, cfg.embed), nn.ReLU())
        self.encoder = Recurrent(cfg.kind, cfg.embed, cfg.hidden, num_layers=cfg.layers)
        h, out = cfg.hidden, cfg.horizon * 2

        extra = 4 + (CONTEXT if cfg.absolute > 0 else 0) + (SOCIAL if cfg.neighbours > 0 else 0)
        if cfg.neighbours > 0:
            self.social = SocialAttention(h, cfg.neighbours, neighbour_width(cfg.nb_future))

        def head(n_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(h + extra, h), nn.ReLU(), nn.Linear(h, n_out))

        self.mean_head = head(out)
        self.sigma_head = head(cfg.horizon)
        self.mode_head = head(cfg.modes * (out + 1)) if cfg.modes else None
        for m in (self.mean_head, self.mode_head):
            if m is not None:  # start exactly at constant velocity
                nn.init.zeros_(m[-1].weight)
                nn.init.zeros_(m[-1].bias)
        k = torch.arange(1, cfg.horizon + 1, dtype=torch.float32)
        self.register_buffer("steps_ahead", k.view(1, -1, 1), persistent=False)

    def _trajectory(self, residual_steps: Tensor, cv: Tensor) -> Tensor:
        """Per-step corrections (.., H, 2) -> positions: constant velocity plus the running sum."""
        base = self.steps_ahead * cv.unsqueeze(-2)  # (B, H, 2)
        if residual_steps.dim() == 4:
            base = base.unsqueeze(1)
        return base + residual_steps.cumsum(dim=-2)

    def forward(self, feats: Tensor, cv: Tensor, ctx: Tensor | None = None,
                nb: Tensor | None = None) -> dict[str, Tensor]:
        out = self.encoder(self.embed(feats)).output[:, -1]
        parts = [out, feats[:, -1]]  # the last step is the strongest cue
        if self.cfg.absolute > 0:
            parts.append(ctx)
        if self.cfg.neighbours > 0:
            parts.append(self.social(out, nb))
        z = torch.cat(parts, dim=1)
        batch, horizon = feats.shape[0], self.cfg.horizon
        result = {"mean": self._trajectory(self.mean_head(z).view(batch, horizon, 2), cv),
                  "log_sigma": self.sigma_head(z.detach()).clamp(-6, 4)}
        if self.mode_head is not None:
            raw = self.mode_head(z).view(batch, self.cfg.modes, -1)
            result["modes"] = self._trajectory(raw[..., :-1].reshape(batch, self.cfg.modes, horizon, 2), cv)
            result["logits"] = raw[..., -1]
        return result


def euclid(pred: Tensor, true: Tensor) -> Tensor:
    """Per-step Euclidean distance, safe gradient at zero."""
    return torch.sqrt(((pred - true) ** 2).sum(-1) + 1e-9)


def losses(out: dict[str, Tensor], target: Tensor, mode_weight: float) -> dict[str, Tensor]:
    """ADE of the mean; winner-takes-all ADE + winner cross-entropy for the modes; Gaussian NLL of
    the spread around the (detached) mean, so learning the spread never bends the mean."""
    mean_ade = euclid(out["mean"], target).mean()
    err2 = ((out["mean"].detach() - target) ** 2).sum(-1)  # (B, H)
    log_s = out["log_sigma"]
    nll = (2 * log_s + err2 / (2 * torch.exp(2 * log_s))).mean()
    total = mean_ade + 0.1 * nll
    parts = {"ade": mean_ade, "nll": nll}
    if "modes" in out:
        per_mode = euclid(out["modes"], target.unsqueeze(1)).mean(-1)  # (B, K)
        best = per_mode.argmin(dim=1)
        wta = per_mode.gather(1, best[:, None]).mean()
        ce = nn.functional.cross_entropy(out["logits"], best)
        total = total + mode_weight * (wta + 0.1 * ce)
        parts.update(wta=wta, ce=ce)
    parts["total"] = total
    return parts


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


CONTEXT = 4  # absolute context features: last x, y / absolute, heading cos, sin
OBS_STEPS = 8  # observed positions per neighbour track (the ETH/UCY protocol's 8)
NEIGHBOUR_FEATURES = 2 * OBS_STEPS + 3  # relative track (x, y per step), last step (x, y), closeness
FUTURE_AHEAD = (4, 8, 12)               # steps ahead of the constant-velocity look (nb_future)
FUTURE_FEATURES = 2 * len(FUTURE_AHEAD) + 2  # relative positions then, time and closeness of closest approach
LOOK_AHEAD_STEPS = 2                    # velocity of the look ahead: mean of this many last steps


def neighbour_width(future: bool) -> int:
    """Features per neighbour (the look ahead, ``ForecasterConfig.nb_future``, adds ``FUTURE_FEATURES``)."""
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


def prepare(obs: np.ndarray, future: np.ndarray | None, cfg: ForecasterConfig,
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


def jittered(data: Prepared, cfg: ForecasterConfig, rng: np.random.Generator) -> Prepared:
    """The training set with observation noise of a random level per window (0 to ``obs_noise``).

    Why: annotation noise differs between recordings (BIWI's hand clicks are jerkier than UCY's
    splines); a model that has seen both clean and jerky histories learns how much to trust the
    last step. The frame and the target follow the noisy last position, as they would at test time.
    """
    level = rng.uniform(0, cfg.obs_noise, size=(len(data.obs), 1, 1))
    noisy = data.obs + rng.normal(size=data.obs.shape) * level
    return prepare(noisy, data.future, cfg, data.groups)


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


def _augment(feats: Tensor, cv: Tensor, target: Tensor, cfg: ForecasterConfig, gen: torch.Generator,
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


def _moving_average(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``model``'s weights, updated after every step (None for
    decay 0). Why: the last steps' weights wander around the minimum with the noise of the batches;
    their average sits nearer its middle, like an ensemble of the last few hundred steps for free."""
    if decay <= 0:
        return None
    if decay >= 1:
        raise ValueError(f"ema must be in [0, 1), got {decay}")
    ema = torch.optim.swa_utils.get_ema_multi_avg_fn(decay)
    return torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=ema)


def fit(train: Prepared, val: Prepared, cfg: ForecasterConfig, log=None,
        max_seconds: float | None = None) -> tuple[ContinuousForecaster, dict]:
    """AdamW with gradient-norm clipping and a cosine learning rate.

    Keeps the weights (their moving average if ``cfg.ema`` > 0) of the epoch with the best
    validation ADE of the deterministic head, and separately those with the best validation
    best-of-K ADE of the mixture, ``info["sampler"]``: the two outputs peak at different epochs
    (a held-out scene may want the near-CVM average of the first epoch for its one trajectory while
    the mixture is still learning its spread). Stops after ``patience`` epochs without improvement
    of the deterministic head (or after ``max_seconds``); the mixture is the best of the epochs run.
    Returns the deterministic model and a small history."""
    if cfg.neighbours > 0 and (not cfg.canonical or cfg.speed_aug > 0):
        raise ValueError("neighbour context needs the canonical frame and no speed augmentation")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = ContinuousForecaster(cfg)
    averaged = _moving_average(model, cfg.ema)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr * 0.05)
    n = len(train.feats)
    best = {"ade": math.inf, "best_of_modes": math.inf}
    kept: dict[str, dict] = {}
    stale, history = 0, []
    start = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        data = jittered(train, cfg, rng) if cfg.obs_noise > 0 else train
        for i in range(0, n, cfg.batch):
            idx = order[i: i + cfg.batch]
            feats, cv, target, nb = _augment(data.feats[idx], data.cv[idx], data.target[idx], cfg, gen,
                                             None if data.nb is None else data.nb[idx])
            ctx = data.ctx[idx] if data.ctx is not None else None
            parts = losses(model(feats, cv, ctx, nb), target, cfg.mode_weight)
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            if averaged is not None:
                averaged.update_parameters(model)
            total += float(parts["total"].detach()) * len(idx)
        sched.step()
        judged = averaged.module if averaged is not None else model
        scores = validation_scores(judged, val)
        history.append({"epoch": epoch, "train_loss": total / n, **{f"val_{k}": v for k, v in scores.items()}})
        if log:
            log(f"epoch {epoch:3d} loss {total / n:.4f} val ade {scores['ade']:.4f}")
        improved = [key for key, value in scores.items() if value < best[key] - 1e-5]
        if improved:  # one copy serves both heads when they improve in the same epoch
            state = copy.deepcopy(judged.state_dict())
            for key in improved:
                best[key], kept[key] = scores[key], state
        stale = 0 if "ade" in improved else stale + 1
        if stale >= cfg.patience or (max_seconds and time.perf_counter() - start > max_seconds):
            break
    if "ade" in kept:
        model.load_state_dict(kept["ade"])
    model.eval()
    sampler = model
    if kept.get("best_of_modes", kept.get("ade")) is not kept.get("ade"):  # the mixture peaked in another epoch
        sampler = ContinuousForecaster(cfg)
        sampler.load_state_dict(kept["best_of_modes"])
        sampler.eval()
    return model, {"history": history, "best_val_ade": best["ade"], "epochs_run": len(history),
                   "seconds": time.perf_counter() - start, "config": asdict(cfg), "sampler": sampler}


@torch.no_grad()
def _run(models: list[ContinuousForecaster], data: Prepared, batch: int = 4096) -> dict[str, Tensor]:
    """All heads over a dataset in batches, ensembles stacked on a leading axis."""
    outs = []
    for model in models:
        model.eval()
        parts = [model(data.feats[i: i + batch], data.cv[i: i + batch],
                       None if data.ctx is None else data.ctx[i: i + batch],
                       None if data.nb is None else data.nb[i: i + batch])
                 for i in range(0, len(data.feats), batch)]
        outs.append({k: torch.cat([p[k] for p in parts]) for k in parts[0]})
    return {k: torch.stack([o[k] for o in outs]) for k in outs[0]}


def validation_scores(model: ContinuousForecaster, data: Prepared) -> dict[str, float]:
    """Deterministic ADE and (with a mixture) the best-of-K ADE over its components, in the
    model's scaled local frame (rotation keeps distances)."""
    out = _run([model], data)
    scores = {"ade": float(euclid(out["mean"][0], data.target).mean())}
    if "modes" in out:
        per_mode = euclid(out["modes"][0], data.target.unsqueeze(1)).mean(-1)  # (N, K)
        scores["best_of_modes"] = float(per_mode.min(dim=1).values.mean())
    return scores


MIRROR = torch.tensor([1.0, -1.0])  # local x stays, local y flips


def mirrored(data: Prepared) -> Prepared:
    """The same examples mirrored across their heading axis (every local y negated, neighbours
    too); the target, if any, is mirrored with them."""
    feats, cv, target, nb = _mirror_y(data.feats, data.cv, data.target, data.nb, MIRROR.view(1, 1, 2))
    return Prepared(feats, cv, target, data.origin, data.rot, data.obs, data.future, data.ctx, nb, data.groups)


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
    mean = _run(models, data)["mean"].mean(0)
    if mirror:
        if cfg.absolute > 0:
            raise ValueError("mirrored prediction needs a model without absolute context (a screen has no mirror symmetry)")
        mean = (mean + _run(models, mirrored(data))["mean"].mean(0) * MIRROR) / 2
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
    out = _run(models, data)
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

# ----------------------------------------------------------------------------- bench helpers

KINDS = ("lstm", "gru", "rnn")


def parse_cells(text: str) -> list[str]:
    """``"lstm,gru"`` -> ["lstm", "gru"], checked (the CLI turns the ValueError into one line)."""
    kinds = [k.strip().lower() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"--cells must name some of {', '.join(KINDS)}, got {text!r}")
    return list(dict.fromkeys(kinds))


def typical_step(obs: np.ndarray) -> float:
    """Mean observed step length: the input/output scale, so one config fits metres and pixels."""
    steps = np.linalg.norm(np.diff(np.asarray(obs, np.float64), axis=1), axis=-1)
    value = float(steps.mean()) if steps.size else 1.0
    return value if value > 0 else 1.0


def errors_of(pred: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    """Per-example ADE and FDE (N,), kept per example so scenes, windows and users can be pooled."""
    d = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(true, np.float64), axis=-1)
    return {"ade": d.mean(axis=1), "fde": d[:, -1]}


def best_of(samples: np.ndarray, true: np.ndarray, groups: np.ndarray | None = None) -> dict[str, float]:
    """Best-of-K ADE/FDE. Per example (``groups`` None): each pedestrian takes its own best sample
    (Social-STGCNN, Trajectron++). Per group (sgan): one sample index per window, the one with the
    lowest summed error over the window's pedestrians, chosen separately for ADE and FDE."""
    d = np.linalg.norm(np.asarray(samples, np.float64) - np.asarray(true, np.float64)[None], axis=-1)  # (K, N, T)
    a, f = d.mean(axis=2), d[:, :, -1]  # (K, N)
    if groups is None:
        return {"ade": float(a.min(axis=0).mean()), "fde": float(f.min(axis=0).mean())}
    _, g = np.unique(groups, return_inverse=True)
    n_g = int(g.max()) + 1
    sums_a = np.stack([np.bincount(g, weights=row, minlength=n_g) for row in a])  # (K, G)
    sums_f = np.stack([np.bincount(g, weights=row, minlength=n_g) for row in f])
    counts = np.bincount(g, minlength=n_g)
    return {"ade": float(sums_a.min(axis=0).sum() / counts.sum()),
            "fde": float(sums_f.min(axis=0).sum() / counts.sum())}


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one value) of per-seed results."""
    arr = np.asarray(values, np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
