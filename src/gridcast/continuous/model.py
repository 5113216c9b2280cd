"""The network: an encoder over `gridcast.nn.recurrent.Recurrent` (any cell kind) with small heads,
attention over neighbours, and the losses.

* **residual over constant velocity** - the heads predict per-step corrections to the constant
  velocity extrapolation, so an untrained network already equals CVM.
* **outputs** - a deterministic trajectory trained on the Euclidean error (the ADE itself); a
  mixture of K trajectories with weights, trained winner-takes-all (best-of-many) with a
  cross-entropy on the winner, for multi-modal prediction; a per-step Gaussian spread around the
  deterministic trajectory, for sampling.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from gridcast.continuous.config import ContinuousConfig
from gridcast.continuous.features import CONTEXT, Prepared
from gridcast.continuous.neighbours import NEIGHBOUR_FEATURES, neighbour_width
from gridcast.nn.recurrent import Recurrent

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

    def __init__(self, cfg: ContinuousConfig) -> None:
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


@torch.no_grad()
def batched_outputs(models: list[ContinuousForecaster], data: Prepared, batch: int = 4096) -> dict[str, Tensor]:
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
