"""Data-parallel training on torch.distributed: who this process is, and the few collectives the fit loop needs.

Every rank reads the same DATA and builds the vocabulary, normalisation and Markov prior from it
(deterministic functions of the tracks, so they are identical everywhere; the fit loop checks the
data fingerprint across ranks). Each optimisation step takes one *global* batch of
``--batch-size x world size`` chunks, drawn from the same seeded order on every rank, and each rank
trains on its contiguous share; the losses are weighted by each share's scored steps, so W processes
take the very steps one process takes with a W times larger batch.

gloo carries CPU tensors (the forecaster trains on CPU), nccl CUDA ones. Collectives time out
(``GRIDCAST_DDP_TIMEOUT_S``, default 300 s) so a dead rank stops the job instead of hanging it.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
from torch import nn

from gridcast.errors import GridcastError

TIMEOUT_ENV = "GRIDCAST_DDP_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0


class DistributedError(GridcastError):
    """The ranks of a data-parallel job disagree (other data, other settings)."""


class RankFailed(DistributedError):
    """A rank of the job died or stopped answering: the job stops (no hang), --resume continues it."""

    exit_code = 1


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank ``rank`` of ``size`` (0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs and the progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current_world() -> World:
    """The running process group's rank and size; a plain process is rank 0 of 1.

    >>> current_world()
    World(rank=0, size=1)
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return World(torch.distributed.get_rank(), torch.distributed.get_world_size())
    return World()


def launched_by_torchrun() -> bool:
    """torchrun (or `gridcast fit --nproc`) sets these for every worker it starts."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def timeout_s() -> float:
    """Seconds a collective may wait for the other ranks (``GRIDCAST_DDP_TIMEOUT_S``)."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise DistributedError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if not 1 <= value <= 86_400:
        raise DistributedError(f"{TIMEOUT_ENV}={raw!r} must be within [1, 86400] seconds")
    return value


def join_from_env() -> World:
    """Join the process group torchrun described in the environment (gloo; nccl where the
    training runs on CUDA). A plain process, or one already in a group, is left as it is."""
    if not launched_by_torchrun() or torch.distributed.is_initialized():
        return current_world()
    backend = "nccl" if torch.cuda.is_available() and os.environ.get("GRIDCAST_DDP_BACKEND") == "nccl" else "gloo"
    torch.distributed.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s()))
    return current_world()


def leave() -> None:
    """Leave the process group (a no-op outside one)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def rank_share(indices: np.ndarray, world: World) -> np.ndarray:
    """This rank's contiguous share of one global batch (shares differ in size by at most one).

    >>> rank_share(np.arange(5), World(1, 2)).tolist()
    [3, 4]
    """
    return np.array_split(np.asarray(indices), world.size)[world.rank]


class DistributedModel(nn.parallel.DistributedDataParallel):
    """DistributedDataParallel that also answers the wrapped network's own attributes (the loss
    reads e.g. ``net.evidence_weight``), so a loss written for the plain network runs on it."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def wrap(model: nn.Module) -> DistributedModel:
    """The network under DDP: gradients averaged across ranks during backward (the ranks start
    from rank 0's weights)."""
    return DistributedModel(model)


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sums over all ranks, in float64 (one collective for all values)."""
    tensor = torch.tensor(values, dtype=torch.float64)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def broadcast_from_main(obj: object) -> object:
    """Rank 0's `obj` on every rank (pickled: only between the job's own processes)."""
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def check_same_everywhere(value: str, what: str) -> None:
    """Refuse to train when ranks hold different `what` (say, other DATA on another machine):
    their gradients would be averaged over different vocabularies."""
    values: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    odd = [rank for rank, v in enumerate(values) if v != values[0]]
    if odd:
        raise DistributedError(f"rank(s) {', '.join(map(str, odd))} have other {what} than rank 0; every rank "
                               "must read the same DATA with the same flags")


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The torch seed of one rank's epoch (dropout): different per rank, and reproducible after
    --resume, which restarts at an epoch boundary."""
    return (int(seed) * 1_000_003 + epoch * 7919 + rank) % (2**63)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (for a rendezvous on one machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def launch_local(nproc: int, command: list[str]) -> int:
    """Run ``python -m gridcast COMMAND`` as `nproc` workers on this machine, as
    ``torchrun --standalone --nproc-per-node N -m gridcast COMMAND`` does (a c10d rendezvous on a
    free 127.0.0.1 port, no restarts). Each worker gets ``OMP_NUM_THREADS`` = cores / N unless it is
    set. Returns 0, or 2 when the workers refused the input (they printed why); raises
    `RankFailed` naming the rank that died otherwise."""
    import logging
    import sys
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # the failure is said once, below
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"gridcast-{uuid.uuid4().hex[:12]}",
                          rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{free_port()}", max_restarts=0,
                          monitor_interval=0.2)
    try:
        elastic_launch(config, sys.executable)("-m", "gridcast", *command)
    except ChildFailedError as exc:
        failures = sorted(exc.failures.items())
        if all(f.exitcode == 2 for _, f in failures):
            return 2
        # the agent SIGTERMs the survivors: the cause is the earliest failure that is not one of those
        causes = [item for item in failures if item[1].exitcode != -15] or failures
        rank, first = min(causes, key=lambda item: item[1].timestamp)
        raise RankFailed(f"worker rank {rank} of {nproc} {describe_exit(first.exitcode)}; the other workers were "
                         "stopped. The state of the last finished epoch is kept: rerun the same command with "
                         "--resume to continue") from None
    return 0


def describe_exit(code: int) -> str:
    """An exit code in words ("was killed by SIGKILL", "exited with status 1").

    >>> describe_exit(-9)
    'was killed by SIGKILL'
    """
    import signal

    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"
