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

import contextlib
import fcntl
import hashlib
import json
import os
import re
import stat
import tempfile
import time
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


TRAINER_STATE_NAME = "resume"


def trainer_state_dir(directory: str | os.PathLike) -> Path:
    """The trainer-state folder (``resume/``) of a model directory, checked to stay inside it: a
    ``resume`` symlink to another folder would have `--resume` read, and every epoch's save write,
    files outside the model directory."""
    inside(directory, TRAINER_STATE_NAME, TRAINER_STATE_NAME, CheckpointError)
    return Path(directory) / TRAINER_STATE_NAME


def refuse_special_outputs(directory: str | os.PathLike, names: tuple[str, ...]) -> None:
    """Refuse a model directory where a file a run rewrites in place (its log, plot, lock) is a
    symlink, a FIFO, a device or a folder: a crafted ``train_log.jsonl -> ~/notes.txt`` would be
    truncated by ``--resume``, a FIFO would hang it, ``/dev/zero`` would be read without end."""
    for name in names:
        path = Path(directory) / name
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            raise CheckpointError(f"{path} is a symlink (to {os.readlink(path)}); gridcast rewrites this file, "
                                  "so it must be a plain file inside the model directory")
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{path} is not a regular file; gridcast rewrites this file, so it must be "
                                  "a plain file inside the model directory")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one.

    The file gets the mode any new file of the user gets (0666 less the umask): `mkstemp` alone
    would leave it 0600, unreadable to the group that shares the model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic set-and-restore
    os.umask(mask)
    return mask


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
                    fmt: str = FORMAT, require_finite: bool = True) -> Path:
    """Save `tensors` and `config` into `directory` atomically; returns the directory.

    `fmt` names what the directory holds (a model, or a trainer's resume state), checked on load.
    `require_finite`: refuse NaN/inf in a floating tensor (a diverged model is never written).
    The save holds the directory's writer lock (`directory_lock`, waiting up to `LOCK_WAIT_S` for
    another writer), and removes only stale weights this process wrote: a file another writer
    created may be what its ``config.json`` names."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if require_finite:
        for name, tensor in tensors.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(f"refusing to save {directory}: tensor {name!r} holds NaN/inf values "
                                      "(the training diverged; try a lower --lr)")
    blob = save_safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    digest = hashlib.sha256(blob).hexdigest()
    weights_name = f"weights-{digest[:16]}.safetensors"
    with directory_lock(directory, wait_s=LOCK_WAIT_S):
        mine = _WRITTEN.setdefault(str(directory.resolve()), set())
        if not (directory / weights_name).exists():
            atomic_write_bytes(directory / weights_name, blob)
            mine.add(weights_name)
        document = {"format": fmt, "schema_version": SCHEMA_VERSION, "weights": weights_name,
                    "weights_sha256": digest, **config}
        atomic_write_bytes(directory / CONFIG_NAME, json.dumps(document, indent=2, sort_keys=True).encode())
        for stale in sorted(mine - {weights_name}):
            (directory / stale).unlink(missing_ok=True)
            mine.discard(stale)
    return directory


LOCK_NAME = ".gridcast.lock"
LOCK_WAIT_S = 30.0
# weights files this process wrote, per resolved directory: the only ones its cleanup may remove
_WRITTEN: dict[str, set[str]] = {}
# writer locks this process holds: resolved directory -> [open lock file, depth] (re-entrant)
_HELD: dict[str, list] = {}


class DirectoryBusy(CheckpointError):
    """Another process is writing the model directory (it holds the directory's writer lock)."""


@contextlib.contextmanager
def directory_lock(directory: str | os.PathLike, wait_s: float = 0.0):
    """Hold the one-writer lock of a model directory (``fcntl.flock`` on ``.gridcast.lock``, which
    records the holder's pid). Re-entrant within a process (`fit` holds it while its saves take it
    again); another process waits up to `wait_s`, then gets `DirectoryBusy` naming the holder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = str(directory.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield directory
        finally:
            _HELD[key][1] -= 1
        return
    refuse_special_outputs(directory, (LOCK_NAME,))  # a lock symlinked to a user's file is never truncated
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        handle = os.fdopen(os.open(directory / LOCK_NAME, flags, 0o666), "a+", encoding="utf-8")
    except OSError as exc:
        raise CheckpointError(f"{directory / LOCK_NAME}: cannot open the writer lock ({exc.strerror})") from None
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise DirectoryBusy(f"{directory} is being written by another gridcast process (pid {holder}); "
                                        "wait for it to finish or choose another --out") from None
                time.sleep(0.05)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        _HELD[key] = [handle, 1]
        try:
            yield directory
        finally:
            del _HELD[key]
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


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
