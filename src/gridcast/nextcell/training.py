"""The fit loop: AdamW, gradient-norm clipping, LR on plateau, early stopping, JSONL log, progress.

Gradient clipping is on by default (gates tame vanishing gradients, not exploding ones) and the
norm *before* clipping is logged every epoch, so exploding gradients are visible.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from gridcast.errors import GridcastError
from gridcast.jsonsafe import json_safe
from gridcast.nextcell.distributed import (
    World,
    all_sum,
    broadcast_from_main,
    check_same_everywhere,
    current_world,
    epoch_seed,
    wrap,
)


class TrainingError(GridcastError):
    """Training cannot go on (e.g. the loss became NaN); the message names the epoch and batch."""


@dataclass
class TrainConfig:
    """Optimisation settings; saved with the model."""

    epochs: int = 40            # upper bound; early stopping usually ends sooner
    batch_size: int = 32        # tracks (or track chunks) per step
    lr: float = 3e-3            # AdamW learning rate
    weight_decay: float = 1e-4
    clip_norm: float = 1.0      # max global gradient norm; 0 disables clipping
    patience: int = 6           # epochs without validation improvement before stopping
    max_len: int = 256          # longer tracks are cut into chunks of this many steps for training
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_loss: float | None
    grad_norm_mean: float
    grad_norm_max: float
    clipped_fraction: float
    lr: float
    seconds: float
    skipped_batches: int = 0


@dataclass
class TrainResult:
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float | None = None
    stopped_early: bool = False


def seed_everything(seed: int) -> None:
    """Fix every RNG a run touches, so the same seed and data give the same model."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def fit(model: nn.Module, batches: Callable[[np.random.Generator], Iterable], val_batches: list,
        loss_fn: Callable[[nn.Module, object], torch.Tensor], config: TrainConfig,
        log_path: str | Path | None = None, on_improve: Callable[[int], None] | None = None,
        progress: bool = False, description: str = "fit", state_dir: str | Path | None = None,
        resume: bool = False, skip_nonfinite: bool = False, settings: dict | None = None) -> TrainResult:
    """Train `model` in place and leave it at its best validation epoch.

    Args:
        batches: called once per epoch with a seeded generator; yields training batches.
        val_batches: fixed validation batches (split by track upstream). Empty -> train loss decides.
        loss_fn: ``loss_fn(model, batch) -> scalar``.
        log_path: JSONL file, one line per epoch.
        on_improve: called with the epoch number after each new best (e.g. to write a checkpoint).
        state_dir: after every epoch, the whole trainer state (weights, best weights, optimizer,
            scheduler, every RNG) is saved here atomically, so that `resume=True` continues a killed
            run and ends with the same weights, bit for bit, as a run that was never interrupted.
        skip_nonfinite: skip a batch whose loss is NaN/inf (counted in the log) instead of stopping.
        settings: what the run was started with; a resume with different settings is refused.

    Inside a torch.distributed process group (torchrun) the loop is data-parallel
    (`gridcast.nextcell.distributed`): `batches` yields this rank's share of each global batch,
    gradients and losses are summed across ranks, every decision (LR, early stopping, non-finite
    batches) is taken on the all-reduced numbers, and rank 0 alone writes the log, the state and
    the checkpoints (`on_improve`) and shows the progress bar.
    """
    from tqdm.auto import tqdm

    world = current_world()
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    loop = LoopState()
    if world.distributed:
        check_same_everywhere(json.dumps(_jsonable(settings or {}), sort_keys=True, default=str),
                              "data or training settings")
    if resume:
        if state_dir is None:
            raise TrainingError("resume needs the directory of the interrupted run")
        if world.distributed:
            loop = _restore_from_main(state_dir, model, optimizer, scheduler, rng, settings, world)
        else:
            loop = restore_trainer_state(state_dir, model, optimizer, scheduler, rng, settings)
    step_model = wrap(model) if world.distributed else model
    if not world.main:
        log_path, on_improve, state_dir, progress = None, None, None, False
    if log_path:
        _truncate_log(Path(log_path), loop.epoch)
    log = open(log_path, "a", encoding="utf-8") if log_path else None
    epochs = range(loop.epoch + 1, config.epochs + 1) if not loop.result.stopped_early else range(0)
    bar = tqdm(epochs, desc=description, disable=True if not progress else None,  # None: only on a terminal
               leave=False, unit="epoch")
    result = loop.result
    try:
        for epoch in bar:
            started = time.perf_counter()
            model.train()
            if world.distributed:  # each rank its own dropout masks, the same again after --resume
                torch.manual_seed(epoch_seed(config.seed, epoch, world.rank))
            losses, norms, skipped = [], [], 0
            for index, batch in enumerate(batches(rng)):
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(step_model, batch)
                if world.distributed:
                    loss, global_loss = _global_loss(loss, float(batch.weight), world)
                else:
                    global_loss = loss
                if not torch.isfinite(global_loss):
                    if skip_nonfinite:
                        skipped += 1
                        continue
                    raise TrainingError(f"loss became {global_loss.item()} at epoch {epoch}, batch {index + 1}; "
                                        "training stopped and the best model so far is kept "
                                        "(try a lower --lr, or --skip-nonfinite)")
                loss.backward()
                limit = config.clip_norm if config.clip_norm > 0 else math.inf
                norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), limit)))
                optimizer.step()
                losses.append(float(global_loss.detach()))
            if not losses:
                raise TrainingError(f"every batch of epoch {epoch} had a non-finite loss; training stopped")
            val_loss = _evaluate(model, val_batches, loss_fn, world)
            monitored = val_loss if val_loss is not None else float(np.mean(losses))
            scheduler.step(monitored)
            entry = EpochLog(epoch, float(np.mean(losses)), val_loss, float(np.mean(norms)), float(np.max(norms)),
                             float(np.mean(np.asarray(norms) > config.clip_norm)) if config.clip_norm > 0 else 0.0,
                             optimizer.param_groups[0]["lr"], time.perf_counter() - started, skipped)
            result.history.append(entry)
            if log:
                log.write(json.dumps(json_safe(asdict(entry)), allow_nan=False) + "\n")  # NaN -> null
                log.flush()
            bar.set_postfix(train=f"{entry.train_loss:.3f}", val="-" if val_loss is None else f"{val_loss:.3f}")
            finite = math.isfinite(monitored)  # a NaN/inf validation loss is never the best epoch
            if finite and (result.best_val_loss is None or monitored < result.best_val_loss - 1e-6):
                result.best_val_loss, result.best_epoch, loop.waited = monitored, epoch, 0
                loop.best_state = copy.deepcopy(model.state_dict())
                if on_improve:
                    on_improve(epoch)
            else:
                loop.waited += 1
                if loop.waited >= config.patience:
                    result.stopped_early = True
            loop.epoch = epoch
            if state_dir is not None:
                save_trainer_state(state_dir, loop, model, optimizer, scheduler, rng, settings)
            if result.stopped_early:
                break
        if result.history and loop.best_state is None:
            raise TrainingError(f"no epoch of {len(result.history)} reached a finite validation loss "
                                f"(last: {result.history[-1].val_loss}); no model was written "
                                "(try a lower --lr or a smaller --clip)")
    finally:
        bar.close()
        if log:
            log.close()
        if loop.best_state is not None:
            model.load_state_dict(loop.best_state)
        model.eval()
    return result


@dataclass
class LoopState:
    """Where a training loop stands after `epoch` completed epochs."""

    epoch: int = 0
    waited: int = 0
    best_state: dict | None = None
    result: TrainResult = field(default_factory=TrainResult)


TRAINER_FORMAT = "gridcast-trainer-state"


def save_trainer_state(directory: str | Path, loop: LoopState, model: nn.Module, optimizer: torch.optim.Optimizer,
                       scheduler, rng: np.random.Generator, settings: dict | None) -> None:
    """Everything needed to continue exactly where the loop stands (safetensors + JSON, atomic)."""
    from gridcast.nextcell.checkpoint import save_checkpoint

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if loop.best_state is not None:
        tensors.update({f"best.{k}": v for k, v in loop.best_state.items()})
    optim = optimizer.state_dict()
    optim_keys = {}
    for index, state in optim["state"].items():
        optim_keys[str(index)] = {}
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value
                optim_keys[str(index)][key] = "tensor"
            else:
                optim_keys[str(index)][key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    legacy = np.random.get_state()
    tensors["rng.numpy_legacy"] = torch.from_numpy(np.asarray(legacy[1], dtype=np.int64))
    config = {
        "epoch": loop.epoch, "waited": loop.waited, "has_best": loop.best_state is not None,
        "result": {"history": [asdict(h) for h in loop.result.history], "best_epoch": loop.result.best_epoch,
                   "best_val_loss": loop.result.best_val_loss, "stopped_early": loop.result.stopped_early},
        "optimizer": {"param_groups": optim["param_groups"], "state": optim_keys},
        "scheduler": scheduler.state_dict(),
        "rng": {"generator": rng.bit_generator.state, "python": _jsonable(random.getstate()),
                "numpy_legacy": [legacy[0], int(legacy[2]), int(legacy[3]), float(legacy[4])]},
        "settings": settings or {},
    }
    save_checkpoint(directory, tensors, config, fmt=TRAINER_FORMAT, require_finite=False)  # the loop judges NaN


def restore_trainer_state(directory: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                          rng: np.random.Generator, settings: dict | None) -> LoopState:
    """Put model, optimizer, scheduler and every RNG back where `save_trainer_state` left them."""
    from gridcast.errors import CheckpointError
    from gridcast.nextcell.checkpoint import load_checkpoint, read_config
    from gridcast.nextcell.model_check import check_trainer_tensors
    from gridcast.nextcell.resume_check import check_trainer_document

    if not (Path(directory) / "config.json").exists():
        raise TrainingError(f"nothing to resume: {directory} holds no saved training state")
    saved = read_config(directory, TRAINER_FORMAT).get("settings") or {}  # the sandboxed reader
    if not isinstance(saved, dict):
        raise CheckpointError(f"{directory}: training state settings must be an object")
    if settings is not None and "data" in settings:
        check_same_data(directory, saved.get("data"), settings["data"])
    if settings is not None and saved != _jsonable(settings):
        changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != _jsonable(settings).get(k))
        raise TrainingError(f"cannot resume {directory} with different settings ({', '.join(changed)}); "
                            "resume with the settings of the interrupted run")
    max_epochs = (settings or {}).get("train", {}).get("epochs") if isinstance((settings or {}).get("train"), dict) else None
    check_trainer_document(read_config(directory, TRAINER_FORMAT), optimizer.state_dict(), scheduler.state_dict(),
                           max_epochs if type(max_epochs) is int else None, directory)
    expected = model.state_dict()  # the header must fit the model before any tensor data is read
    tensors, config = load_checkpoint(directory, fmt=TRAINER_FORMAT,
                                      check=lambda specs, _: check_trainer_tensors(specs, expected, directory))
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} if config["has_best"] else None
        state = {}
        for index, keys in config["optimizer"]["state"].items():
            state[int(index)] = {key: tensors[f"optim.{index}.{key}"] if kind == "tensor" else kind
                                 for key, kind in keys.items()}
        optimizer.load_state_dict({"state": state, "param_groups": config["optimizer"]["param_groups"]})
        scheduler.load_state_dict(config["scheduler"])
        torch.set_rng_state(tensors["rng.torch"])
        kind, pos, has_gauss, gauss = config["rng"]["numpy_legacy"]
        np.random.set_state((kind, tensors["rng.numpy_legacy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(_tuplify(config["rng"]["python"]))
        rng.bit_generator.state = config["rng"]["generator"]
        result = config["result"]
        history = [EpochLog(**h) for h in result["history"]]
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{directory}: training state is damaged ({str(exc).splitlines()[0]})") from None
    return LoopState(config["epoch"], config["waited"], best,
                     TrainResult(history, result["best_epoch"], result["best_val_loss"], result["stopped_early"]))


def data_fingerprint(tracks: Iterable, val_tracks: Iterable, preprocessing: dict | None) -> str:
    """sha256 of the gridded cells (training, then validation tracks, in order) and the
    preprocessing: `--resume` over other data of the same size would mix weights fitted on one
    dataset with the vocabulary of another."""
    digest = hashlib.sha256()
    for part, group in (("train", tracks), ("val", val_tracks)):
        digest.update(part.encode())
        for track in group:
            cells = np.ascontiguousarray(np.asarray(track.cells, dtype=np.int64))
            digest.update(np.int64(len(cells)).tobytes())
            digest.update(cells.tobytes())
    digest.update(json.dumps(json_safe(preprocessing or {}), sort_keys=True, default=str).encode())
    return digest.hexdigest()


def check_same_data(directory: str | Path, saved: str | None, current: str) -> None:
    """Refuse to resume a state saved for other data. A state without a fingerprint (saved before
    gridcast recorded one) cannot be checked, so it is refused too: a silent mix is worse than a
    fresh start."""
    if saved is None:
        raise TrainingError(f"cannot resume {directory}: its training state has no data fingerprint (saved by an "
                            "older gridcast), so DATA cannot be checked; start afresh without --resume")
    if saved != current:
        raise TrainingError(f"cannot resume {directory}: DATA is not the data the interrupted run trained on "
                            f"(fingerprint {current[:12]} vs {saved[:12]}: other cells or preprocessing); "
                            "resume with the same DATA and gridding flags, or start afresh without --resume")


def training_memory_bytes(vocab: int, outputs: int, batch: int, length: int, embed: int, hidden: int,
                          layers: int) -> int:
    """Rough peak bytes of one training step: the (batch x length x outputs) logits with what the
    fusion head builds beside them (distances, masks, softmax and their gradients: 8 float32
    copies), the recurrent activations, and the embedding and head weights with their gradients and
    AdamW moments (4 copies). Kept deliberately simple: it exists to refuse jobs that are off by
    orders of magnitude (30 600 cells at batch 32 x 256 steps: about 8 GiB; such a job had passed
    2 GB of RSS after 5 minutes without finishing an epoch), not to predict RSS."""
    steps = batch * length
    activations = steps * (8 * outputs + 8 * hidden * layers + 2 * embed)
    weights = 4 * (vocab * embed + outputs * hidden + layers * 4 * hidden * (hidden + embed))
    return 4 * (activations + weights)


def _jsonable(obj):
    if isinstance(obj, (tuple, list)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    return obj


def _tuplify(obj):
    return tuple(_tuplify(v) for v in obj) if isinstance(obj, list) else obj


def _truncate_log(path: Path, epochs: int) -> None:
    """Keep the first `epochs` lines of a JSONL log: a resumed run rewrites what came after."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)[:epochs]
    path.write_text("".join(lines), encoding="utf-8")


@torch.no_grad()
def _evaluate(model: nn.Module, batches: list, loss_fn, world: World = World()) -> float | None:
    """Weighted mean validation loss; under DDP each rank scores every W-th batch and the sums are
    all-reduced, so every rank takes its LR and early-stopping decisions on the same number."""
    if not batches:
        return None
    model.eval()
    total, weight = 0.0, 0.0
    for batch in batches[world.rank::world.size]:
        n = float(getattr(batch, "weight", 1.0))
        total += float(loss_fn(model, batch)) * n
        weight += n
    if world.distributed:
        total, weight = all_sum([total, weight])
    return total / max(weight, 1e-12)


def _global_loss(loss: torch.Tensor, steps: float, world: World) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's loss rescaled so that DDP's gradient average is the gradient of the global
    batch's mean loss (shares weighted by their scored steps), and that global loss itself. A NaN
    on any rank makes the global loss NaN, so every rank skips (or stops at) the same batch."""
    part = float(loss.detach()) * steps if steps > 0 else 0.0  # an empty share adds nothing
    total_steps, total = all_sum([steps, part])
    scale = world.size * steps / max(total_steps, 1e-12)
    return loss * scale, torch.tensor(total / max(total_steps, 1e-12))


def _restore_from_main(state_dir: str | Path, model: nn.Module, optimizer, scheduler, rng: np.random.Generator,
                       settings: dict | None, world: World) -> LoopState:
    """Rank 0 reads the saved state (only it has written one) and hands it to every rank; a
    refusal (other data, damaged state) is raised on every rank, so none waits for the others."""
    payload: object = None
    refusal: GridcastError | None = None
    if world.main:
        try:
            loop = restore_trainer_state(state_dir, model, optimizer, scheduler, rng, settings)
            payload = ("ok", loop, model.state_dict(), optimizer.state_dict(), scheduler.state_dict(),
                       rng.bit_generator.state)
        except GridcastError as exc:
            refusal, payload = exc, ("error", str(exc))
    payload = broadcast_from_main(payload)
    if payload[0] == "error":
        if refusal is not None:
            raise refusal
        raise TrainingError(f"rank 0 could not resume: {payload[1]}")
    if not world.main:
        _, loop, weights, optim, sched, generator = payload
        model.load_state_dict(weights)
        optimizer.load_state_dict(optim)
        scheduler.load_state_dict(sched)
        rng.bit_generator.state = generator
    return payload[1]
