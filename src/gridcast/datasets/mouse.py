"""Balabit mouse cursor logs -> movements at a fixed step -> (obs, horizon) windows, split by user.

Protocol (the one of the benchmark data's baseline notes), chosen so numbers compare with its anchors:

* drop rows holding the 65535 sentinel (the RDP client's "no position");
* cut each session into movements at time gaps > 0.5 s and after click events (button pressed
  or released), so a window never spans an idle pause or a click;
* resample every movement at 50 ms by linear interpolation over the client timestamp (rows with
  the same timestamp keep the last position);
* windows of 8 observed + 12 predicted points, stride 4, inside one movement;
* split by user: test users 23, 29, 9; of the rest, ``val_users`` select the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gridcast.continuous.windows import ObservedFuture
from gridcast.errors import InputError

SENTINEL = 65535
TEST_USERS = ("23", "29", "9")
VAL_USERS = ("35",)
STEP, MAX_GAP, OBS, HORIZON, STRIDE = 0.05, 0.5, 8, 12, 4
CLICK_STATES = ("Pressed", "Released")
COLUMNS = ("client timestamp", "state", "x", "y")


@dataclass
class MouseWindows(ObservedFuture):
    """``traj`` (N, obs + horizon, 2) pixels; ``user``, ``session`` (N,) strings; ``movement`` (N,)
    a movement id unique within this object (for plots and grouped bootstrap)."""

    traj: np.ndarray
    user: np.ndarray
    session: np.ndarray
    movement: np.ndarray
    obs: int = OBS

    def subset(self, index) -> "MouseWindows":
        return MouseWindows(self.traj[index], self.user[index], self.session[index], self.movement[index], self.obs)


def read_session(path: str | Path) -> pd.DataFrame:
    """One session CSV -> time (s), x, y, click flag; sentinel rows dropped; sorted by time."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, usecols=list(COLUMNS))
    except ValueError as exc:
        raise InputError(f"{path}: expected columns {', '.join(COLUMNS)} ({exc})") from None
    frame = frame.rename(columns={"client timestamp": "t"})
    for col in ("t", "x", "y"):
        if not pd.api.types.is_numeric_dtype(frame[col]):
            bad = pd.to_numeric(frame[col], errors="coerce").isna() & frame[col].notna()
            raise InputError(f"{path}: row {int(np.argmax(bad.values)) + 2} has a non-numeric {col!r}")
    frame = frame[(frame.x != SENTINEL) & (frame.y != SENTINEL)].dropna(subset=["t", "x", "y"])
    frame = frame.assign(click=frame.state.isin(CLICK_STATES)).sort_values("t", kind="stable")
    return frame[["t", "x", "y", "click"]].reset_index(drop=True)


def movements(frame: pd.DataFrame, max_gap: float = MAX_GAP, min_duration: float = 0.0) -> list[np.ndarray]:
    """Cut a session into movements: (M, 3) arrays of t, x, y.

    A new movement starts after a gap > ``max_gap`` and after every click row (pressed or
    released); the click row itself is the last point of the movement it ends (the cursor got
    there). This is the cut that reproduces the shared baselines exactly (24,054 test windows).
    Movements shorter than ``min_duration`` seconds are left out (most are: single twitches).
    """
    t = frame.t.to_numpy(np.float64)
    xy = frame[["x", "y"]].to_numpy(np.float64)
    click = frame.click.to_numpy(bool)
    new = np.ones(len(t), dtype=bool)
    new[1:] = (np.diff(t) > max_gap) | click[:-1]
    starts = np.nonzero(new)[0] if len(t) else np.zeros(0, dtype=np.int64)
    if len(t):
        starts[0] = 0
    ends = np.r_[starts[1:], len(t)]
    long = t[ends - 1] - t[starts] >= min_duration - 1e-9
    return [np.column_stack([t[a:b], xy[a:b]]) for a, b in zip(starts[long], ends[long])]


def resample(movement: np.ndarray, step: float = STEP) -> np.ndarray:
    """Linear interpolation at ``t0, t0 + step, ...`` up to the last time; (M', 2) positions.
    Rows sharing a timestamp keep the last one (the position the client reported last)."""
    t, xy = movement[:, 0], movement[:, 1:]
    last = np.ones(len(t), dtype=bool)
    last[:-1] = t[1:] != t[:-1]
    t, xy = t[last], xy[last]
    if len(t) < 2:
        return xy[:0]
    grid = t[0] + step * np.arange(int(np.floor((t[-1] - t[0]) / step + 1e-9)) + 1)
    return np.column_stack([np.interp(grid, t, xy[:, 0]), np.interp(grid, t, xy[:, 1])])


def windows_of(points: np.ndarray, obs: int = OBS, horizon: int = HORIZON, stride: int = STRIDE) -> np.ndarray:
    """All (obs + horizon)-point windows of one resampled movement at the given stride."""
    seq = obs + horizon
    if len(points) < seq:
        return np.zeros((0, seq, 2))
    starts = np.arange(0, len(points) - seq + 1, stride)
    return points[starts[:, None] + np.arange(seq)[None]]


def session_windows(frame: pd.DataFrame, obs: int = OBS, horizon: int = HORIZON, stride: int = STRIDE,
                    step: float = STEP, max_gap: float = MAX_GAP) -> tuple[np.ndarray, np.ndarray]:
    """All windows of one session at once: the same cut, resampling and windows as
    `movements` -> `resample` -> `windows_of`, vectorised over movements (tens of thousands of
    them per session, so a Python loop costs seconds). Returns windows (W, seq, 2) and the
    movement index of each within the session."""
    seq = obs + horizon
    t = frame.t.to_numpy(np.float64)
    xy = frame[["x", "y"]].to_numpy(np.float64)
    click = frame.click.to_numpy(bool)
    if len(t) == 0:
        return np.zeros((0, seq, 2)), np.zeros(0, np.int64)
    new = np.ones(len(t), dtype=bool)
    new[1:] = (np.diff(t) > max_gap) | click[:-1]
    seg = np.cumsum(new) - 1
    keep = np.ones(len(t), dtype=bool)
    keep[:-1] = (t[1:] != t[:-1]) | new[1:]  # same timestamp inside a movement: keep the last row
    t, xy, seg = t[keep], xy[keep], seg[keep]
    n_seg = int(seg[-1]) + 1
    first = np.searchsorted(seg, np.arange(n_seg))
    last = np.r_[first[1:], len(t)] - 1
    t0, dur = t[first], t[last] - t[first]
    n_points = np.where(last > first, np.floor(dur / step + 1e-9).astype(np.int64) + 1, 0)
    n_win = np.where(n_points >= seq, (n_points - seq) // stride + 1, 0)
    # movements laid end to end on one time axis, 1 s apart, so one np.interp serves them all
    offset = np.r_[0.0, np.cumsum(dur + 1.0)[:-1]]
    axis = t - t0[seg] + offset[seg]
    win_seg = np.repeat(np.arange(n_seg), n_win)
    k = np.arange(len(win_seg)) - np.repeat(np.cumsum(n_win) - n_win, n_win)
    query = (k[:, None] * stride + np.arange(seq)[None]) * step
    query = offset[win_seg][:, None] + np.minimum(query, dur[win_seg][:, None])
    out = np.stack([np.interp(query, axis, xy[:, 0]), np.interp(query, axis, xy[:, 1])], axis=-1)
    return out, win_seg


def load(root: str | Path, obs: int = OBS, horizon: int = HORIZON, stride: int = STRIDE,
         step: float = STEP, max_gap: float = MAX_GAP) -> MouseWindows:
    """Every session under ``root/training_files/user*/session_*`` (or ``root/user*/...``)."""
    root = Path(root)
    base = root / "training_files" if (root / "training_files").is_dir() else root
    if not base.is_dir():
        raise InputError(f"{root}: not a directory")
    sessions = sorted(p for p in base.glob("user*/session_*") if p.is_file())
    if not sessions:
        raise InputError(f"{root}: no user*/session_* files (expected the Balabit training_files layout)")
    trajs, users, names, moves = [], [], [], []
    move_base = 0
    for path in sessions:
        w, mv = session_windows(read_session(path), obs, horizon, stride, step, max_gap)
        trajs.append(w)
        users.append(np.full(len(w), path.parent.name.removeprefix("user")))
        names.append(np.full(len(w), path.name))
        moves.append(mv + move_base)
        move_base += int(mv.max()) + 1 if len(mv) else 0
    traj = np.concatenate(trajs)
    if not len(traj):
        raise InputError(f"{root}: no movement long enough for {obs + horizon} points at {step} s")
    return MouseWindows(traj, np.concatenate(users), np.concatenate(names), np.concatenate(moves), obs)


def split_by_user(data: MouseWindows, test_users=TEST_USERS, val_users=VAL_USERS
                  ) -> tuple[MouseWindows, MouseWindows, MouseWindows]:
    """train / val / test by user: no window of a held-out user is ever seen in training."""
    test = np.isin(data.user, list(test_users))
    val = np.isin(data.user, list(val_users)) & ~test
    return data.subset(~test & ~val), data.subset(val), data.subset(test)
