"""ETH/UCY pedestrian data: loading, the Social-GAN window rule and leave-one-scene-out splits.

The protocol (the one documented with the ETH/UCY data) is the one every paper on these splits uses,
so our numbers can stand beside theirs:

* each file is cut into windows of ``obs + horizon`` (8 + 12 = 20) consecutive *distinct frames*
  of that file, starting at every frame (skip 1);
* a pedestrian counts in a window only if present in all 20 frames;
* a window is kept only if it has at least two such pedestrians (sgan's ``num_peds > min_ped=1``);
* scene S is evaluated on ``S/test``; models train on ``S/train`` (the other scenes' train halves)
  and are selected on ``S/val``.

Windows are built per file with one pass per pedestrian (tracks are gap-free), not with sgan's
per-window Python loop, so all five scenes load in about a second.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gridcast.continuous.windows import ObservedFuture
from gridcast.errors import InputError

SCENES = ("eth", "hotel", "univ", "zara1", "zara2")
SPLITS = ("train", "val", "test")
OBS, HORIZON = 8, 12


@dataclass
class Windows(ObservedFuture):
    """Pedestrian-trajectories cut from windows.

    ``traj`` (N, obs + horizon, 2) positions in metres; ``window`` (N,) a window id unique within
    this object (pedestrians of one window share it; best-of-K per window needs it); ``ped`` (N,)
    pedestrian id within its file; ``file`` (N,) index into ``files``.
    """

    traj: np.ndarray
    window: np.ndarray
    ped: np.ndarray
    file: np.ndarray
    files: list[str] = field(default_factory=list)
    obs: int = OBS

    @property
    def n_windows(self) -> int:
        return int(len(np.unique(self.window)))

    def subset(self, index: np.ndarray) -> "Windows":
        return Windows(self.traj[index], self.window[index], self.ped[index], self.file[index],
                       self.files, self.obs)

    @staticmethod
    def concat(parts: list["Windows"]) -> "Windows":
        """Join window sets, keeping window ids and file indices distinct."""
        if not parts:
            return Windows(np.zeros((0, OBS + HORIZON, 2)), np.zeros(0, np.int64), np.zeros(0),
                           np.zeros(0, np.int64))
        trajs, wins, peds, fidx, files = [], [], [], [], []
        w_off = 0
        for p in parts:
            trajs.append(p.traj)
            wins.append(p.window + w_off)
            w_off += int(p.window.max()) + 1 if len(p.window) else 0
            peds.append(p.ped)
            fidx.append(p.file + len(files))
            files += p.files
        return Windows(np.concatenate(trajs), np.concatenate(wins), np.concatenate(peds),
                       np.concatenate(fidx), files, parts[0].obs)


def read_file(path: str | Path) -> np.ndarray:
    """Read a TAB/space separated ``frame ped x y`` file into an (R, 4) float array."""
    path = Path(path)
    try:
        data = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise InputError(f"{path}: not a 'frame ped x y' table ({exc})") from None
    if data.size == 0:
        return np.zeros((0, 4))
    if data.shape[1] != 4:
        raise InputError(f"{path}: expected 4 columns 'frame ped x y', found {data.shape[1]}")
    if not np.isfinite(data).all():
        row = int(np.nonzero(~np.isfinite(data).all(axis=1))[0][0]) + 1
        raise InputError(f"{path}: row {row} has a missing or non-numeric value")
    return data


def build_windows(data: np.ndarray, obs: int = OBS, horizon: int = HORIZON, skip: int = 1,
                  min_ped: int = 1, name: str = "") -> Windows:
    """Cut one file's ``frame ped x y`` rows into windows by the sgan rule.

    Windows start at every ``skip``-th distinct frame; a pedestrian counts if it covers all
    ``obs + horizon`` frames of the window; windows with ``> min_ped`` such pedestrians are kept.
    """
    seq = obs + horizon
    empty = Windows(np.zeros((0, seq, 2)), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64),
                    [name], obs)
    if len(data) == 0:
        return empty
    frames, frame_idx = np.unique(data[:, 0], return_inverse=True)
    starts_all = np.arange(0, len(frames) - seq + 1, skip)
    if len(starts_all) == 0:
        return empty
    per_start: dict[int, list[tuple[float, np.ndarray]]] = {}
    for ped in np.unique(data[:, 1]):
        rows = np.nonzero(data[:, 1] == ped)[0]
        rows = rows[np.argsort(frame_idx[rows], kind="stable")]
        fi = frame_idx[rows]
        if len(np.unique(fi)) != len(fi):
            raise InputError(f"{name}: pedestrian {ped:g} appears twice in one frame")
        xy = data[rows, 2:4]
        # a hole splits the track: a pedestrian counts only where it is present in all `seq` frames
        breaks = np.nonzero(np.diff(fi) != 1)[0] + 1
        for run_rows in np.split(np.arange(len(fi)), breaks):
            first, last = int(fi[run_rows[0]]), int(fi[run_rows[-1]])
            for s in range(first + (-first) % skip, last - seq + 2, skip):
                k = run_rows[0] + s - first
                per_start.setdefault(s, []).append((float(ped), xy[k: k + seq]))
    trajs, wins, peds = [], [], []
    window_id = 0
    for s in sorted(per_start):
        members = per_start[s]
        if len(members) <= min_ped:
            continue
        for ped, xy in members:
            trajs.append(xy)
            wins.append(window_id)
            peds.append(ped)
        window_id += 1
    if not trajs:
        return empty
    n = len(trajs)
    return Windows(np.stack(trajs), np.asarray(wins, np.int64), np.asarray(peds), np.zeros(n, np.int64),
                   [name], obs)


def load_split(root: str | Path, scene: str, split: str, obs: int = OBS,
               horizon: int = HORIZON) -> Windows:
    """All windows of ``root/scene/split/*.txt``, files in name order."""
    folder = Path(root) / scene / split
    if not folder.is_dir():
        raise InputError(f"{folder}: missing (expected <data>/<scene>/{{train,val,test}}/*.txt)")
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise InputError(f"{folder}: no .txt files")
    return Windows.concat([build_windows(read_file(f), obs, horizon, name=f"{scene}/{split}/{f.name}")
                           for f in files])


def find_scenes(root: str | Path) -> list[str]:
    """The scenes under ``root`` that have train, val and test folders, standard ones first."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    found = [p.name for p in root.iterdir() if p.is_dir() and all((p / s).is_dir() for s in SPLITS)]
    if not found:
        raise InputError(f"{root}: no <scene>/{{train,val,test}} folders found")
    return [s for s in SCENES if s in found] + sorted(s for s in found if s not in SCENES)


@dataclass
class SceneSplit:
    """One leave-one-scene-out fold: train and val from the other scenes, test on this one."""

    scene: str
    train: Windows
    val: Windows
    test: Windows


def load_scene(root: str | Path, scene: str) -> SceneSplit:
    """Load one fold exactly as distributed (the folders already hold the other scenes' files)."""
    return SceneSplit(scene, load_split(root, scene, "train"), load_split(root, scene, "val"),
                      load_split(root, scene, "test"))
