"""How long can each cell remember? A recall task on the grid.

A trip starts in one of the ``side x side`` cells of a small grid, then visits `delay` random
cells (the distractors), then a question step asks: where did the trip start? Only the first cell
answers it, so the network has to carry it through `delay` steps of irrelevant input:

    step:    0          1 .. delay           delay + 1
    input:   start cell  random cells         "question" flag
    target:                                   the start cell (one of side^2 classes)

Cells enter one-hot (what an embedding of a cell id is, before training). An oracle that reads
step 0 is always right; anything without memory of step 0 is at chance, 1 / side^2.

`max_delay` trains a fresh network per delay with one fixed budget (hidden size, optimiser steps,
batch, learning rate -- the same for every kind) and reports the largest delay solved at >= 95 %
accuracy on fresh samples.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gridcast.errors import InputError
from gridcast.insight.experiment import KINDS
from gridcast.nn.recurrent import Recurrent

THRESHOLD = 0.95


@dataclass(frozen=True)
class RecallTask:
    """The recall task for one delay. ``blind=True`` replaces the start cell by a distractor in the
    input (the label stays): the information is gone, so nothing can beat chance -- a control."""

    side: int = 4
    delay: int = 8
    blind: bool = False

    def __post_init__(self) -> None:
        if self.side < 2 or self.delay < 0:
            raise InputError(f"recall task needs side >= 2 and delay >= 0, got side {self.side}, delay {self.delay}")

    @property
    def classes(self) -> int:
        return self.side * self.side

    @property
    def input_size(self) -> int:
        return self.classes + 1  # one-hot cell + the question flag

    @property
    def steps(self) -> int:
        return self.delay + 2

    @property
    def chance(self) -> float:
        return 1.0 / self.classes

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """n trips: inputs (n, delay + 2, side^2 + 1) and the start cell's id (n,)."""
        cells = torch.randint(0, self.classes, (n, self.delay + 1), generator=generator)
        labels = cells[:, 0].clone()
        if self.blind:
            cells[:, 0] = torch.randint(0, self.classes, (n,), generator=generator)
        x = torch.zeros(n, self.steps, self.input_size)
        x[:, : self.delay + 1].scatter_(2, cells.unsqueeze(-1), 1.0)
        x[:, -1, self.classes] = 1.0
        return x, labels

    def oracle(self, x: Tensor) -> Tensor:
        """The perfect-memory answer: the cell at step 0."""
        return x[:, 0, : self.classes].argmax(-1)

    def last_cell(self, x: Tensor) -> Tensor:
        """A memoryless answer: the most recent cell before the question."""
        return x[:, -2, : self.classes].argmax(-1)

    def cell_xy(self, ids: Tensor) -> Tensor:
        """Class ids -> (col, row) on the task's grid (for pictures)."""
        return torch.stack([ids % self.side, ids // self.side], dim=-1)


class RecallNet(nn.Module):
    """Recurrent(kind) over the trip, a linear read-out of the last hidden state."""

    def __init__(self, kind: str, task: RecallTask, hidden: int, **cell_options) -> None:
        super().__init__()
        self.recurrent = Recurrent(kind, task.input_size, hidden, **cell_options)
        self.head = nn.Linear(hidden, task.classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.recurrent(x).output[:, -1])


@dataclass
class MemoryBudget:
    """What every kind gets, for every delay."""

    hidden: int = 32
    steps: int = 600            # Adam steps at most (stops early once solved)
    batch: int = 64             # fresh trips per step: there is no overfitting to worry about
    lr: float = 1e-2
    clip_norm: float = 1.0
    check_every: int = 50
    test_size: int = 2000


@dataclass
class RecallResult:
    accuracy: float
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)

    @property
    def solved(self) -> bool:
        return self.accuracy >= THRESHOLD


@torch.no_grad()
def accuracy(predict, task: RecallTask, n: int = 2000, seed: int = 12345) -> float:
    """Share of `n` fresh trips on which ``predict(x)`` names the start cell."""
    x, y = task.sample(n, torch.Generator().manual_seed(seed))
    return float((predict(x) == y).float().mean())


def train_recall(task: RecallTask, kind: str, budget: MemoryBudget | None = None, seed: int = 0,
                 forget_bias: float | None = None, **cell_options) -> tuple[RecallNet, RecallResult]:
    """Train a fresh network on `task`; stop at the budget or once 99 % of a check batch is right."""
    from gridcast.insight.gates import set_forget_bias

    b = budget or MemoryBudget()
    torch.manual_seed(seed)
    net = RecallNet(kind, task, b.hidden, **cell_options)
    if forget_bias is not None:
        set_forget_bias(net.recurrent, forget_bias)
    optimiser = torch.optim.Adam(net.parameters(), lr=b.lr)
    generator = torch.Generator().manual_seed(seed)
    check_x, check_y = task.sample(512, torch.Generator().manual_seed(seed + 999))
    losses, started, step = [], time.perf_counter(), 0
    for step in range(1, b.steps + 1):
        x, y = task.sample(b.batch, generator)
        loss = F.cross_entropy(net(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if b.clip_norm > 0:
            nn.utils.clip_grad_norm_(net.parameters(), b.clip_norm)
        optimiser.step()
        losses.append(float(loss.detach()))
        if step % b.check_every == 0:
            with torch.no_grad():
                if float((net(check_x).argmax(-1) == check_y).float().mean()) >= 0.99:
                    break
    net.eval()
    acc = accuracy(lambda x: net(x).argmax(-1), task, b.test_size, seed=seed + 12345)
    return net, RecallResult(acc, step, time.perf_counter() - started, losses)


def max_delay(kind: str, budget: MemoryBudget | None = None, side: int = 4, cap: int = 64, refine: int = 1,
              seed: int = 0, log=lambda *a: None, **cell_options) -> dict:
    """The largest delay solved at >= 95 %: delays 1, 2, 4, ... up to `cap` until the first failure,
    then `refine` bisection steps between the last success and that failure.

    Returns {"max_delay": int, "first_failure": int or None (None: `cap` itself was solved),
    "accuracy_by_delay": {delay: acc}, "steps_by_delay": ..., "seconds": ...}.
    """
    results: dict[int, RecallResult] = {}

    def attempt(delay: int) -> bool:
        _, r = train_recall(RecallTask(side, delay), kind, budget, seed, **cell_options)
        results[delay] = r
        log(f"    {kind}{_options_label(cell_options)} delay {delay}: accuracy {r.accuracy:.3f} "
            f"after {r.steps} steps ({r.seconds:.1f} s)")
        return r.solved

    best, failed, delay = 0, None, 1
    while delay <= cap:
        if not attempt(delay):
            failed = delay
            break
        best, delay = delay, delay * 2
    for _ in range(refine if failed is not None else 0):
        if failed - best <= 1:
            break
        middle = (best + failed) // 2
        if attempt(middle):
            best = middle
        else:
            failed = middle
    return {"max_delay": best,
            "first_failure": failed,
            "accuracy_by_delay": {str(d): r.accuracy for d, r in sorted(results.items())},
            "steps_by_delay": {str(d): r.steps for d, r in sorted(results.items())},
            "seconds": float(sum(r.seconds for r in results.values()))}


def memory_experiment(kinds: dict[str, dict] | tuple[str, ...] = KINDS,
                      budget: MemoryBudget | None = None, side: int = 4, cap: int = 64, refine: int = 1,
                      seeds: tuple[int, ...] = (0,), log=lambda *a: None) -> dict:
    """`max_delay` for each kind (a name, or {label: {"kind": ..., cell options...}}) and seed.

    Returns the **contract** shape ``{"kinds": {label: {"max_delay": int}}}`` (the median over seeds,
    rounded down), with per-seed details beside it.
    """
    b = budget or MemoryBudget()
    specs = {k: {"kind": k} for k in kinds} if not isinstance(kinds, dict) else kinds
    out: dict = {"kinds": {}, "settings": {**asdict(b), "side": side, "chance": 1.0 / side ** 2, "cap": cap,
                                           "threshold": THRESHOLD, "seeds": list(seeds)}}
    for label, spec in specs.items():
        options = {k: v for k, v in spec.items() if k != "kind"}
        per_seed = [max_delay(spec["kind"], b, side, cap, refine, seed, log, **options) for seed in seeds]
        delays = [r["max_delay"] for r in per_seed]
        out["kinds"][label] = {"max_delay": int(np.floor(np.median(delays))), "max_delay_by_seed": delays,
                               "runs": per_seed}
        log(f"  {label}: max delay {out['kinds'][label]['max_delay']} (per seed {delays})")
    return out


def _options_label(options: dict) -> str:
    return "" if not options else " (" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")"
