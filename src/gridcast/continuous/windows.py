"""The observed / future split of a set of windows, shared by every continuous dataset."""
from __future__ import annotations

import numpy as np


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
