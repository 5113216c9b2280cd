"""`gridcast export MODEL_DIR --out DIR --strip-tracks`: a model directory to serve or share that
does not hand out people's raw tracks.

A model directory carries its training tracks (cells, in order) so the Markov prior and the
baselines can be rebuilt. Prediction needs only their order-1 and order-2 transition counts
(`prior.MarkovPrior`), which cells they visited (`coverage`) and, for a model with the stay term,
the dwell histogram stored beside them (`dwell.Dwell.histogram_`, kept as it is). Stripping replaces the tracks by
*pseudo-tracks* rebuilt from those aggregated counts alone: walks over (before, last) pairs that
together have exactly the original starts, order-1 and order-2 counts, so the prior, and with it
every prediction, is unchanged, while no pseudo-track is a person's trip (times, order of trips
and anything beyond three consecutive cells are gone). Baselines that read more than two cells of
context or dwell runs (`evaluate`) see the pseudo-tracks, not the originals.
"""
from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from gridcast.errors import InputError
from gridcast.nextcell.checkpoint import atomic_write_bytes, read_config
from gridcast.nextcell.forecaster import Forecaster
from gridcast.tracks import Track

__all__ = ["EXPORT_KEY", "aggregated_tracks", "export_model", "is_stripped"]

#: The config.json key an export adds: ``{"strip_tracks": bool, "tracks": int, "pseudo_tracks": int}``.
EXPORT_KEY = "export"

Cell = tuple[int, int]
Pair = tuple[Cell, Cell]


def aggregated_tracks(tracks: list[Track]) -> list[Track]:
    """Pseudo-tracks with the same track starts, order-1 and order-2 transition counts as `tracks`.

    Each track of two or more cells is a walk over (before, last) pairs starting at its first pair;
    the counts are an edge multiset of that graph. Greedy walks from the original starts use up what
    they can; what is left is balanced (it came from walks with these starts and ends), so it splits
    into closed cycles, each spliced into a walk at a pair the walk visits (Hierholzer). Tracks of
    one cell have no transitions and are dropped.

    >>> a = Track("a", np.array([[0, 0], [1, 0], [2, 0], [1, 0], [2, 0]]))
    >>> [t.cells.tolist() for t in aggregated_tracks([a])]
    [[[0, 0], [1, 0], [2, 0], [1, 0], [2, 0]]]
    """
    starts: Counter[Pair] = Counter()
    edges: defaultdict[Pair, Counter[Cell]] = defaultdict(Counter)
    for track in tracks:
        cells = [(int(c), int(r)) for c, r in np.asarray(track.cells).reshape(-1, 2)]
        if len(cells) < 2:
            continue
        starts[(cells[0], cells[1])] += 1
        for t in range(2, len(cells)):
            edges[(cells[t - 2], cells[t - 1])][cells[t]] += 1

    def take(node: Pair) -> Cell | None:
        out = edges.get(node)
        if not out:
            return None
        cell = next(iter(out))
        out[cell] -= 1
        if not out[cell]:
            del out[cell]
        return cell

    walks: list[list[Cell]] = []
    for pair, n in sorted(starts.items()):
        for _ in range(n):
            walk, node = list(pair), pair
            while (cell := take(node)) is not None:
                walk.append(cell)
                node = (node[1], cell)
            walks.append(walk)
    for walk in walks:  # splice the leftover cycles in
        i = 0
        while i < len(walk) - 1:
            node = (walk[i], walk[i + 1])
            if not edges.get(node):
                i += 1
                continue
            cycle, here = [], node
            while (cell := take(here)) is not None:
                cycle.append(cell)
                here = (here[1], cell)
            if here != node:  # cannot happen for counts that came from tracks
                raise RuntimeError("transition counts are not balanced")
            walk[i + 2:i + 2] = cycle
    return [Track(f"train-{i}", np.asarray(w, dtype=np.int64)) for i, w in enumerate(walks)]


def is_stripped(config: dict) -> bool:
    """Whether a model directory's config says its training tracks were replaced by pseudo-tracks."""
    return bool((config.get(EXPORT_KEY) or {}).get("strip_tracks"))


def export_model(model_dir: str | os.PathLike, out: str | os.PathLike, strip_tracks: bool = True) -> dict:
    """Write a copy of `model_dir` to `out` (a new or empty directory), with the training tracks
    replaced by `aggregated_tracks` when `strip_tracks`. Returns what config.json's ``export`` says.

    Raises:
        InputError: `out` is the model directory itself or a non-empty directory.
    """
    source, target = Path(model_dir), Path(out)
    if target.exists() and target.resolve() == source.resolve():
        raise InputError(f"--out {out}: is the model directory itself; export to a new directory")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError(f"--out {out}: exists and is not an empty directory; export to a new one")
    model = Forecaster.load(source)
    before = len(model.train_tracks_)
    if strip_tracks:
        model.train_tracks_ = aggregated_tracks(model.train_tracks_)
    model.save(target)
    config = read_config(target)
    config[EXPORT_KEY] = {"strip_tracks": bool(strip_tracks), "tracks": before,
                          "pseudo_tracks": len(model.train_tracks_)}
    atomic_write_bytes(target / "config.json", json.dumps(config, indent=2).encode())
    return config[EXPORT_KEY]
