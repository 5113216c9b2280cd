"""A trainer state's config (``resume/config.json``) checked field by field before `--resume` uses it.

Why: the state's JSON holds the epoch counter, the loss history and the optimizer's and scheduler's
own dictionaries, which torch loads as given; a crafted ``"epoch": "abc"``, an ``lr`` of 1e300, a
one-element ``betas`` or a scheduler entry that overwrites an attribute would otherwise surface as a
traceback mid-training, a hang (a negative epoch) or a run that silently trains nothing. The
optimizer's and scheduler's dictionaries must have exactly the shape and types of freshly built ones
(the same keys, list lengths and value types); the construction constants must be equal to them.
"""
from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any

from gridcast.errors import CheckpointError

MAX_EPOCHS = 10**9
# what changes while training; every other scheduler entry is a construction constant
SCHEDULER_STATE = {"best", "last_epoch", "num_bad_epochs", "cooldown_counter", "_last_lr"}
RANGES = {"lr": (0.0, 1e3), "_last_lr": (0.0, 1e3), "eps": (0.0, 1.0), "weight_decay": (0.0, 1e3),
          "betas": (0.0, 1.0)}


def _fail(where: str | Path, field: str, detail: str) -> CheckpointError:
    return CheckpointError(f"{where}: training state {field} {detail}")


def _number(value: object) -> bool:
    return type(value) in (int, float) and not math.isnan(value)


def _like(saved: Any, fresh: Any, field: str, where: str | Path) -> None:
    """`saved` must have the structure and value types of `fresh` (numbers: not NaN)."""
    if isinstance(fresh, dict):
        if not isinstance(saved, dict) or set(saved) != set(fresh):
            raise _fail(where, field, f"must have the entries {sorted(fresh)}, got "
                                      f"{sorted(saved) if isinstance(saved, dict) else type(saved).__name__}")
        for key in fresh:
            _like(saved[key], fresh[key], f"{field}.{key}", where)
        return
    if isinstance(fresh, (list, tuple)):
        if not isinstance(saved, list) or len(saved) != len(fresh):
            raise _fail(where, field, f"must be a list of {len(fresh)}, got {saved!r:.80}")
        for i, (a, b) in enumerate(zip(saved, fresh)):
            _like(a, b, f"{field}[{i}]", where)
        return
    if fresh is None or isinstance(fresh, bool):
        ok = isinstance(saved, bool) or (fresh is None and saved is None)
    elif isinstance(fresh, int):
        ok = type(saved) is int
    elif isinstance(fresh, float):
        ok = _number(saved)
    elif isinstance(fresh, str):
        ok = isinstance(saved, str)
    else:
        return
    if not ok:
        raise _fail(where, field, f"must be like {fresh!r}, got {saved!r:.80}")


def _ranges(node: Any, field: str, where: str | Path) -> None:
    """The numeric entries of RANGES, wherever they sit, within their bounds (lr 1e300 overflows float32)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in RANGES:
                lo, hi = RANGES[key]
                for v in value if isinstance(value, list) else [value]:
                    if not (_number(v) and lo <= v <= hi and (v > 0 or key not in ("lr", "_last_lr", "eps"))):
                        raise _fail(where, f"{field}.{key}", f"must be finite numbers in [{lo:g}, {hi:g}], got {value!r:.80}")
            else:
                _ranges(value, f"{field}.{key}", where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _ranges(value, f"{field}[{i}]", where)


def _count(doc: dict, name: str, hi: int, where: str | Path) -> int:
    value = doc.get(name)
    if not (type(value) is int and 0 <= value <= hi):
        raise _fail(where, name, f"must be an integer from 0 to {hi}, got {value!r:.80}")
    return value


def check_trainer_document(doc: dict, fresh_optimizer: dict, fresh_scheduler: dict, max_epochs: int | None,
                           where: str | Path) -> None:
    """Refuse a trainer state whose counters, history, optimizer or scheduler entries are not what
    gridcast writes. `fresh_*` are ``state_dict()`` of the optimizer and scheduler built for this run;
    `max_epochs` the run's epoch budget (a state past it would train nothing and say nothing)."""
    from gridcast.nextcell.training import EpochLog  # the one definition of a history entry

    epoch = _count(doc, "epoch", MAX_EPOCHS if max_epochs is None else max_epochs, where)
    _count(doc, "waited", MAX_EPOCHS, where)
    if not isinstance(doc.get("has_best"), bool):
        raise _fail(where, "has_best", f"must be true or false, got {doc.get('has_best')!r:.80}")
    result = doc.get("result")
    if not isinstance(result, dict):
        raise _fail(where, "result", "must be an object")
    history = result.get("history")
    if not isinstance(history, list) or len(history) > epoch:
        raise _fail(where, "result.history", f"must be a list of at most {epoch} epochs")
    known = {f.name for f in fields(EpochLog)}
    for i, entry in enumerate(history):
        if not (isinstance(entry, dict) and set(entry) <= known
                and all(v is None or type(v) in (int, float) for v in entry.values())):
            raise _fail(where, f"result.history[{i}]", f"must hold the numbers of one epoch, got {entry!r:.80}")
    best_epoch, best_loss = result.get("best_epoch"), result.get("best_val_loss")
    if not (best_epoch is None or (type(best_epoch) is int and 0 <= best_epoch <= epoch)):
        raise _fail(where, "result.best_epoch", f"must be an epoch from 0 to {epoch}, got {best_epoch!r:.80}")
    if not (best_loss is None or (_number(best_loss) and math.isfinite(best_loss))):
        raise _fail(where, "result.best_val_loss", f"must be a finite number or null, got {best_loss!r:.80}")
    if not isinstance(result.get("stopped_early"), bool):
        raise _fail(where, "result.stopped_early", "must be true or false")
    optimizer = doc.get("optimizer")
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict):
        raise _fail(where, "optimizer", "must be an object with param_groups and state")
    _like(optimizer.get("param_groups"), fresh_optimizer["param_groups"], "optimizer.param_groups", where)
    _ranges(optimizer["param_groups"], "optimizer.param_groups", where)
    scheduler = doc.get("scheduler")
    _like(scheduler, fresh_scheduler, "scheduler", where)
    for key, value in fresh_scheduler.items():
        if key not in SCHEDULER_STATE and scheduler[key] != value and not (value != value):  # NaN-safe
            raise _fail(where, f"scheduler.{key}", f"must be {value!r} (how gridcast builds it), got {scheduler[key]!r:.80}")
    _ranges({"_last_lr": scheduler["_last_lr"]}, "scheduler", where)
    for key in ("last_epoch", "num_bad_epochs", "cooldown_counter"):
        if scheduler[key] < 0:
            raise _fail(where, f"scheduler.{key}", f"must be >= 0, got {scheduler[key]}")
