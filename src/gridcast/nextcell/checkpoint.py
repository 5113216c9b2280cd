"""Model directories: safetensors weights + one JSON config, written so a crash never breaks them.

Layout of a model directory::

    config.json                   schema version, model settings, grid, vocabulary, normalisation,
                                  and the name of the weights file it belongs to
    weights-<sha8>.safetensors    the tensors (no pickle: loading a file can never run code)

A save writes the weights under a new content-addressed name, then atomically replaces
``config.json`` (temp file, fsync, rename), then removes stale weights. Killing the process at any
moment leaves either the old or the new checkpoint, both loadable.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save as save_safetensors_bytes

from gridcast.errors import CheckpointError
from gridcast.nextcell.weights_file import TensorSpec, read_weights
from gridcast.safe_files import inside, read_json_inside

FORMAT = "gridcast-model"
SCHEMA_VERSION = 1
CONFIG_NAME = "config.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(directory: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict[str, Any],
                    fmt: str = FORMAT) -> Path:
    """Save `tensors` and `config` into `directory` atomically; returns the directory.

    `fmt` names what the directory holds (a model, or a trainer's resume state), checked on load."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    blob = save_safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    digest = hashlib.sha256(blob).hexdigest()
    weights_name = f"weights-{digest[:16]}.safetensors"
    if not (directory / weights_name).exists():
        atomic_write_bytes(directory / weights_name, blob)
    document = {"format": fmt, "schema_version": SCHEMA_VERSION, "weights": weights_name,
                "weights_sha256": digest, **config}
    atomic_write_bytes(directory / CONFIG_NAME, json.dumps(document, indent=2, sort_keys=True).encode())
    for stale in directory.glob("weights-*.safetensors"):
        if stale.name != weights_name:
            stale.unlink(missing_ok=True)
    return directory


def read_config(directory: str | os.PathLike, fmt: str = FORMAT) -> dict[str, Any]:
    """The ``config.json`` of a model (or trainer-state) directory, read as a sandbox: a regular file
    inside the directory, at most `MAX_JSON_BYTES`, JSON within depth and number limits
    (`gridcast.safe_files`, the reader `gridcast.ingest.gridded_file.load_like` shares), naming a
    weights file that is itself a plain file name inside the directory."""
    directory = Path(directory)
    if not directory.exists():
        raise CheckpointError(f"model directory {directory} does not exist")
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a model directory (expected a folder with {CONFIG_NAME})")
    path = directory / CONFIG_NAME
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"{directory} holds no {CONFIG_NAME}: not a gridcast model directory")
    # NaN/Infinity pass the parser (gridcast wrote them in loss histories); the fields that must be
    # finite are checked by the loader that uses them (`gridcast.nextcell.model_check`)
    document = read_json_inside(directory, CONFIG_NAME, CheckpointError, allow_nonfinite=True)
    if not isinstance(document, dict) or document.get("format") != fmt:
        raise CheckpointError(f"{path} is not a {fmt} config (format {document.get('format') if isinstance(document, dict) else None!r})")
    version = document.get("schema_version")
    if version != SCHEMA_VERSION or type(version) is not int:
        raise CheckpointError(f"{path} has schema version {version!r}; this gridcast reads version {SCHEMA_VERSION}")
    for key in ("weights", "weights_sha256"):
        if not isinstance(document.get(key), str):
            raise CheckpointError(f"{path} lacks the {key!r} entry")
    if not re.fullmatch(r"[0-9a-f]{64}", document["weights_sha256"]):
        raise CheckpointError(f"{path}: weights_sha256 is not a SHA-256 hex digest")
    if "/" in document["weights"] or document["weights"] in (".", ".."):
        raise CheckpointError(f"{path}: weights {document['weights']!r} points outside the model directory "
                              "(it must be a file name in it)")
    inside(directory, document["weights"], "weights", CheckpointError)
    return document


def load_checkpoint(directory: str | os.PathLike, fmt: str = FORMAT,
                    check: Callable[[dict[str, TensorSpec], dict[str, Any]], None] | None = None,
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, config) of a model directory; every failure is a `CheckpointError` naming the file.

    `check(specs, config)` runs on the weights header (names, dtypes, shapes) before any tensor data
    is read: the caller refuses a config whose shapes the weights do not have, or that is too large
    (`gridcast.nextcell.weights_file` holds the size caps). Floating tensors must be finite."""
    config = read_config(directory, fmt)
    path = inside(directory, config["weights"], "weights", CheckpointError)
    if not path.exists():
        raise CheckpointError(f"{Path(directory) / config['weights']} is missing: the checkpoint in {directory} is incomplete")
    tensors = read_weights(path, config["weights_sha256"],
                           None if check is None else (lambda specs: check(specs, config)))
    return tensors, config
