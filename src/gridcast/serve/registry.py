"""The served models: each loaded once through `Forecaster.load` (so every check of a model
directory applies), with what the endpoints read from it."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from gridcast import __version__
from gridcast.errors import InputError
from gridcast.nextcell.answers import Place
from gridcast.nextcell.checkpoint import read_config
from gridcast.nextcell.export import is_stripped
from gridcast.nextcell.forecaster import Forecaster

#: Cell centres a served model keeps for its session answers (cleared when full).
MAX_CACHED_CENTRES = 100_000


@dataclass
class ServedModel:
    """One model behind the API. `lock` serialises the (threaded) whole-prefix predictions."""

    name: str
    directory: Path
    model: Forecaster
    config: dict
    lock: threading.Lock = field(default_factory=threading.Lock)
    centres: dict = field(default_factory=dict)  # cell -> its centre entries, for session answers

    def next_json(self, nexts) -> list[dict]:
        """`nexts` as the ``"next"`` entries of ``predict --json`` (`answers.answer_json`), with cell
        centres cached: projecting back costs ~0.3 ms a call, most of a one-point request."""
        place = self.place(self.collapses)
        out = [{"cell": list(n.cell), "p": n.p} for n in nexts]
        if place is None:
            return out
        centres = self.centres
        missing = [n.cell for n in nexts if n.cell not in centres]
        if missing:
            if len(centres) > MAX_CACHED_CENTRES:
                centres.clear()
            keys = place.keys
            for cell, centre in zip(missing, place.coords(missing)):
                centres[tuple(cell)] = dict(zip(keys, centre))
        for entry, n in zip(out, nexts):
            entry.update(centres[n.cell])
        return out

    @property
    def stripped(self) -> bool:
        return is_stripped(self.config)

    @property
    def collapses(self) -> bool:
        return bool((self.model.preprocessing or {}).get("collapse"))

    @property
    def weights_sha256(self) -> str:
        return str(self.config.get("weights_sha256", ""))

    def place(self, collapsed: bool) -> Place | None:
        return None if self.model.grid is None else Place(self.model.grid, timed=not collapsed)

    def summary(self) -> dict:
        """The `/v1/models` entry: name, cell kind, target, grid and the version that wrote it."""
        grid = self.model.grid
        return {"name": self.name, "cell": self.model.config.cell, "target": self.model.config.target,
                "grid": grid.to_dict() if grid is not None else None,
                "gridcast_version": self.config.get("gridcast_version", __version__)}


def parse_model_specs(specs: list[str]) -> list[tuple[str, Path]]:
    """``MODEL_DIR`` or ``NAME=MODEL_DIR`` -> (name, directory); a name defaults to the basename.

    Raises:
        InputError: a name used twice, or a name that is not URL-safe.
    """
    out: list[tuple[str, Path]] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or os.path.exists(spec):
            name, path = Path(spec).resolve().name, spec
        if not name or not all(ch.isalnum() or ch in "-_." for ch in name):
            raise InputError(f"model {spec!r}: name {name!r} must be letters, digits, '-', '_' or '.'")
        if any(name == seen for seen, _ in out):
            raise InputError(f"model {spec!r}: the name {name!r} is used twice; give NAME=MODEL_DIR")
        out.append((name, Path(path)))
    if not out:
        raise InputError("give at least one MODEL_DIR")
    return out


def load_models(specs: list[str]) -> dict[str, ServedModel]:
    """Load every model of `specs` (see `parse_model_specs`), by name."""
    served = {}
    for name, directory in parse_model_specs(specs):
        model = Forecaster.load(directory)
        served[name] = ServedModel(name, directory, model, read_config(directory))
    return served
