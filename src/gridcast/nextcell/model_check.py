"""A model's config.json checked completely, and its weights header against it, before allocating.

Why: a model directory can come from anyone (and a served model makes it reachable by others).
``"hidden": 20000`` in a 2 KB config must not allocate gigabytes, a cell size of ``true`` or a NaN
scale must not answer absurd cells, and the weights must have exactly the shapes the config implies.
Every value is checked for type, range and finiteness here; sizes are capped (the caps below are
documented in the README); every failure is a `CheckpointError` naming the file and the field.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gridcast.errors import CheckpointError, InputError
from gridcast.grid import MAX_CELL, Grid
from gridcast.ingest.gridded_file import checked_preprocessing
from gridcast.nextcell.calibration import Calibration
from gridcast.nextcell.config import CellForecasterConfig
from gridcast.nextcell.features import Normalisation
from gridcast.nextcell.training import TrainConfig
from gridcast.nextcell.weights_file import DTYPE_BYTES, TensorSpec

MAX_PARAMETERS = 50_000_000   # network parameters of a loadable model (200 MB of float32)
MAX_HIDDEN = 8192
MAX_LAYERS = 16
MAX_EMBED = 4096
MAX_MOVE = 50                 # max_move: (2R+1)^2 move classes
MAX_VOCAB = 500_000           # cells in the vocabulary (a config.json of about 17 MB)
MAX_TRAIN_CELLS = 20_000_000   # cells of the stored training tracks (320 MB)
MAX_DWELL_ROWS = 5_000_000     # rows of a stored dwell histogram (200 MB; about 0.8 GB to index on load)
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
TORCH_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
                torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
INT_RANGES = {"hidden": (1, MAX_HIDDEN), "layers": (1, MAX_LAYERS), "embed": (1, MAX_EMBED),
              "max_move": (1, MAX_MOVE), "min_tracks": (1, 10**9)}
TRAIN_INTS = {"epochs": (0, 10**9), "batch_size": (1, 10**9), "patience": (0, 10**9), "max_len": (1, 10**9),
              "seed": (0, 2**63 - 1)}


def _bad(where: str, field: str, detail: str) -> CheckpointError:
    return CheckpointError(f"{where}: {field} {detail}")


def is_int(value: object) -> bool:
    return type(value) is int


def is_number(value: object) -> bool:
    """A finite JSON number (``true`` is not a number; NaN and infinities are refused)."""
    return type(value) in (int, float) and math.isfinite(value)


@dataclass
class CheckedConfig:
    """The pieces of a model's config.json, every one validated."""
    model: CellForecasterConfig
    grid: Grid | None
    vocab: np.ndarray           # (n, 2) int64
    norm: Normalisation
    train: TrainConfig
    calibration: Calibration
    preprocessing: dict
    output_size: int


def _model(d: object, where: str) -> CellForecasterConfig:
    if not isinstance(d, dict):
        raise _bad(where, "model", "must be an object")
    for name, (lo, hi) in INT_RANGES.items():
        if name in d and not (is_int(d[name]) and lo <= d[name] <= hi):
            raise _bad(where, f"model.{name}", f"must be an integer from {lo} to {hi}, got {d[name]!r}")
    if "dropout" in d and not (is_number(d["dropout"]) and 0 <= d["dropout"] < 1):
        raise _bad(where, "model.dropout", f"must be a number in [0, 1), got {d['dropout']!r}")
    for name in ("time_features",):
        if name in d and not isinstance(d[name], bool):
            raise _bad(where, f"model.{name}", f"must be true or false, got {d[name]!r}")
    kinds = {f.name: f.type for f in fields(CellForecasterConfig)}
    for name, value in d.items():
        if "str" in str(kinds.get(name, "")) and not isinstance(value, str):
            raise _bad(where, f"model.{name}", f"must be a string, got {value!r}")
    try:
        return CellForecasterConfig.from_dict(d)
    except (InputError, TypeError, ValueError) as exc:
        raise _bad(where, "model", f"is invalid ({exc})") from None


def _vocab(v: object, where: str) -> np.ndarray:
    if not isinstance(v, list) or len(v) > MAX_VOCAB:
        raise _bad(where, "vocab", f"must be a list of at most {MAX_VOCAB} [col, row] cells")
    for i, cell in enumerate(v):
        if not (type(cell) is list and len(cell) == 2 and is_int(cell[0]) and is_int(cell[1])
                and abs(cell[0]) <= MAX_CELL and abs(cell[1]) <= MAX_CELL):
            raise _bad(where, f"vocab[{i}]", f"must be [col, row] integers within +-{MAX_CELL}, got {cell!r}")
    return np.asarray(v, dtype=np.int64).reshape(-1, 2)


def _norm(d: object, where: str) -> Normalisation:
    if not isinstance(d, dict):
        raise _bad(where, "normalisation", "must be an object")
    centre = d.get("centre")
    if not (isinstance(centre, list) and len(centre) == 2 and all(is_number(c) and abs(c) <= 1e15 for c in centre)):
        raise _bad(where, "normalisation.centre", f"must be two finite numbers, got {centre!r}")
    for name in ("scale", "move_scale", "offset_std"):
        if (name in d or name != "offset_std") and not (is_number(d.get(name)) and 0 < d[name] <= 1e15):
            raise _bad(where, f"normalisation.{name}", f"must be a finite number > 0, got {d.get(name)!r}")
    return Normalisation.from_dict(d)


def _train(d: object, where: str) -> TrainConfig:
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise _bad(where, "train", "must be an object")
    known = {f.name for f in fields(TrainConfig)}
    for name, value in d.items():
        if name not in known:
            raise _bad(where, f"train.{name}", "is not a known training setting")
        if name in TRAIN_INTS:
            lo, hi = TRAIN_INTS[name]
            if not (is_int(value) and lo <= value <= hi):
                raise _bad(where, f"train.{name}", f"must be an integer from {lo} to {hi}, got {value!r}")
        elif not (is_number(value) and value >= 0):
            raise _bad(where, f"train.{name}", f"must be a finite number >= 0, got {value!r}")
    return TrainConfig(**d)


def _calibration(d: object, where: str) -> Calibration:
    if d is None:
        return Calibration.from_dict(None)
    if not isinstance(d, dict):
        raise _bad(where, "calibration", "must be an object")
    if d.get("method", "temperature") not in ("temperature", "none"):
        raise _bad(where, "calibration.method", f"must be 'temperature' or 'none', got {d.get('method')!r}")
    if "temperature" in d and not (is_number(d["temperature"]) and 1e-6 <= d["temperature"] <= 1e6):
        raise _bad(where, "calibration.temperature", f"must be a finite number from 1e-6 to 1e6, got {d['temperature']!r}")
    if "steps" in d and not (is_int(d["steps"]) and d["steps"] >= 0):
        raise _bad(where, "calibration.steps", f"must be an integer >= 0, got {d['steps']!r}")
    for name in ("nll_before", "nll_after"):  # informational; NaN allowed (written by older versions)
        if d.get(name) is not None and type(d[name]) not in (int, float):
            raise _bad(where, f"calibration.{name}", f"must be a number or null, got {d[name]!r}")
    try:
        return Calibration.from_dict(d)
    except (TypeError, ValueError) as exc:
        raise _bad(where, "calibration", f"is invalid ({exc})") from None


def check_config(config: dict[str, Any], where: str | Path) -> CheckedConfig:
    """Every value of a model's config.json, or a `CheckpointError` naming the field."""
    where = str(where)
    model = _model(config.get("model"), where)
    grid = None
    if config.get("grid") is not None:
        try:
            grid = Grid.from_dict(config["grid"])
        except InputError as exc:
            raise _bad(where, "grid", f"is invalid ({exc})") from None
    try:
        preprocessing = checked_preprocessing(config.get("preprocessing"), f"{where}")
    except InputError as exc:
        raise CheckpointError(str(exc)) from None
    output_size = config.get("output_size")
    if not (is_int(output_size) and 1 <= output_size <= MAX_VOCAB + 20_000):
        raise _bad(where, "output_size", f"must be a positive integer, got {output_size!r}")
    return CheckedConfig(model=model, grid=grid, vocab=_vocab(config.get("vocab"), where),
                         norm=_norm(config.get("normalisation"), where), train=_train(config.get("train"), where),
                         calibration=_calibration(config.get("calibration"), where), preprocessing=preprocessing,
                         output_size=output_size)


def estimated_parameters(model: CellForecasterConfig, vocab_size: int, output_size: int) -> int:
    """An upper estimate of the network's parameters, computed without building it."""
    gates, hidden = GATES.get(model.cell, 4), model.hidden
    total = vocab_size * model.embed + output_size * (hidden + 1) + 1000
    for layer in range(model.layers):
        inputs = model.input_size if layer == 0 else hidden
        total += gates * hidden * (inputs + hidden + 2) + 2 * hidden
    return total


def check_size(model: CellForecasterConfig, vocab_size: int, output_size: int, where: str | Path) -> None:
    """Refuse a network larger than `MAX_PARAMETERS` before it is built."""
    estimate = estimated_parameters(model, vocab_size, output_size)
    if estimate > MAX_PARAMETERS:
        raise CheckpointError(f"{where}: model of about {estimate:,} parameters (hidden {model.hidden}, layers "
                              f"{model.layers}, embed {model.embed}, vocabulary {vocab_size}) is over the cap of "
                              f"{MAX_PARAMETERS:,}")


def check_tensors(specs: dict[str, TensorSpec], expected: dict[str, torch.Tensor], data_prefix: str,
                  where: str | Path) -> None:
    """The weights header has exactly the network's tensors (names, shapes, dtypes), plus the
    optional training tracks (``data.train_cells`` (n, 2) and ``data.train_offsets`` (t + 1,), int64)
    and dwell histogram (``data.dwell_histogram`` (R, 5) int64)."""
    net = {k: v for k, v in specs.items() if not k.startswith(data_prefix)}
    missing, extra = sorted(set(expected) - set(net)), sorted(set(net) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{where}: config and weights do not fit together (missing {missing[:3]}, "
                              f"unexpected {extra[:3]})")
    for name, tensor in expected.items():
        spec = specs[name]
        if spec.shape != tuple(tensor.shape) or spec.dtype != TORCH_DTYPES.get(tensor.dtype):
            raise CheckpointError(f"{where}: config and weights do not fit together: tensor {name!r} is "
                                  f"{spec.dtype} {list(spec.shape)}, the config needs "
                                  f"{TORCH_DTYPES.get(tensor.dtype)} {list(tensor.shape)}")
    histogram = specs.get(data_prefix + "dwell_histogram")
    if histogram is not None and not (histogram.dtype == "I64" and len(histogram.shape) == 2
                                      and histogram.shape[1] == 5 and histogram.shape[0] <= MAX_DWELL_ROWS):
        raise CheckpointError(f"{where}: tensor '{data_prefix}dwell_histogram' must be int64 (R, 5) with R <= "
                              f"{MAX_DWELL_ROWS}, got {histogram.dtype} {list(histogram.shape)}")
    cells, offsets = specs.get(data_prefix + "train_cells"), specs.get(data_prefix + "train_offsets")
    if (cells is None) != (offsets is None):
        raise CheckpointError(f"{where}: the weights hold only one of {data_prefix}train_cells and train_offsets")
    if cells is not None:
        if not (cells.dtype == "I64" and len(cells.shape) == 2 and cells.shape[1] == 2
                and cells.shape[0] <= MAX_TRAIN_CELLS):
            raise CheckpointError(f"{where}: tensor '{data_prefix}train_cells' must be int64 (n, 2) with n <= "
                                  f"{MAX_TRAIN_CELLS}, got {cells.dtype} {list(cells.shape)}")
        if not (offsets.dtype == "I64" and len(offsets.shape) == 1 and offsets.shape[0] >= 1):
            raise CheckpointError(f"{where}: tensor '{data_prefix}train_offsets' must be int64 (t + 1,), got "
                                  f"{offsets.dtype} {list(offsets.shape)}")


def check_dwell_histogram(rows: np.ndarray, where: str | Path) -> None:
    """A stored `dwell.Dwell.histogram_`: int64 (R <= `MAX_DWELL_ROWS`, 5) rows (col, row, run length
    >= 1, ended 0/1, count >= 1) with cells within the grid's range and at most `MAX_TRAIN_CELLS`
    steps in all (what stored tracks could hold). Loading indexes the rows (one sort); a cell's table
    is built when asked, at most `dwell.MAX_RUN` + 1 long."""
    name = f"{where}: tensor 'data.dwell_histogram'"
    if rows.dtype != np.int64 or rows.ndim != 2 or rows.shape[1] != 5 or len(rows) > MAX_DWELL_ROWS:
        raise CheckpointError(f"{name} must be int64 (R, 5) with R <= {MAX_DWELL_ROWS}, got {rows.dtype} {list(rows.shape)}")
    if not len(rows):
        return
    cells, length, ended, count = rows[:, :2], rows[:, 2], rows[:, 3], rows[:, 4]
    if bool(((cells > MAX_CELL) | (cells < -MAX_CELL)).any()):
        raise CheckpointError(f"{name} holds cells beyond +-{MAX_CELL}")
    if bool((length < 1).any() | (count < 1).any() | ((ended != 0) & (ended != 1)).any()):
        raise CheckpointError(f"{name} needs run lengths and counts >= 1 and ended 0 or 1")
    if bool((length > MAX_TRAIN_CELLS).any() | (count > MAX_TRAIN_CELLS).any()) \
            or float((length.astype(np.float64) * count).sum()) > MAX_TRAIN_CELLS:
        raise CheckpointError(f"{name} counts more than {MAX_TRAIN_CELLS} steps in all")


def check_tracks(cells: np.ndarray, offsets: np.ndarray, where: str | Path) -> None:
    """Stored training tracks: offsets from 0, never decreasing, ending at the number of cells;
    cells within the grid's range."""
    if offsets[0] != 0 or offsets[-1] != len(cells) or (len(offsets) > 1 and bool((np.diff(offsets) < 0).any())):
        raise CheckpointError(f"{where}: tensor 'data.train_offsets' must rise from 0 to {len(cells)} "
                              f"(got {offsets[0]} .. {offsets[-1]}, or decreasing)")
    if bool(((cells > MAX_CELL) | (cells < -MAX_CELL)).any()):
        raise CheckpointError(f"{where}: tensor 'data.train_cells' holds cells beyond +-{MAX_CELL}")


TRAINER_PREFIXES = ("model.", "best.", "optim.", "rng.")


def check_trainer_tensors(specs: dict[str, TensorSpec], model: dict[str, torch.Tensor], where: str | Path) -> None:
    """A trainer's resume state (``resume/``) holds the model's tensors (``model.``, ``best.``, the
    optimizer's per-parameter state) and small RNG states: names from those families, ``model.`` and
    ``best.`` shapes exactly the model's, no tensor larger than the model's largest, and at most five
    times the model's bytes in all, so a crafted state cannot make the reader allocate beyond that."""
    largest = max((t.numel() for t in model.values()), default=0)
    budget = 5 * sum(t.numel() * t.element_size() for t in model.values()) + (1 << 20)
    for name, spec in specs.items():
        if not name.startswith(TRAINER_PREFIXES):
            raise CheckpointError(f"{where}: unexpected tensor {name!r} in a training state")
        if name.startswith(("model.", "best.")):
            key = name.split(".", 1)[1]
            if key not in model or spec.shape != tuple(model[key].shape):
                raise CheckpointError(f"{where}: training state tensor {name!r} {list(spec.shape)} does not fit the model")
        elif not name.startswith("rng.") and spec.numel > largest:
            raise CheckpointError(f"{where}: training state tensor {name!r} {list(spec.shape)} is larger than any "
                                  "tensor of the model")
    total = sum(s.numel * DTYPE_BYTES[s.dtype] for s in specs.values())
    if total > budget:
        raise CheckpointError(f"{where}: training state of {total} bytes is over {budget} (five times the model)")
