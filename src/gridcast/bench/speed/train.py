"""Training-step speed of `Recurrent` against the matching `torch.nn` module, same run, same weights.

One step = forward over a (64, 20, 2) batch, a weighted-sum loss, backward, AdamW step: the
workload the speed goals were set on. `torch.nn.LSTM/GRU/RNN` run PyTorch's fused CPU kernels (oneDNN);
`Recurrent` runs them too on its own parameters (fused path) or its explicit equations with the
hand-written backward (explicit path). Each of our paths is timed against torch in its own session,
alternating (A B B A ...); the ratio is the median over rounds of ours / torch timed back to back
(`gridcast.bench.speed.kit.paired_ratio`): < 1 is faster than torch.

Lines: ``train_fused_{lstm,gru,rnn}_h{64,256}`` and ``train_explicit_{lstm,gru,rnn}_h{64,256}``, each
a ratio vs the matching torch.nn module (the explicit path is held to <= 1.5x for all three kinds);
value = median ms per step.
Usage: ``python -m gridcast.bench.speed.train [--repeats N] [--threads 1]``.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

import torch

from gridcast.bench.speed.kit import interleaved, line, median, paired_ratio
from gridcast.nn.recurrent import Recurrent

MODULES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
BATCH, STEPS, INPUT = 64, 20, 2


def training_step(kind: str, hidden: int, path: str, seed: int = 0) -> Callable[[], None]:
    """A closure doing one full training step with `path` in {"torch", "fused", "explicit"}."""
    torch.manual_seed(seed)
    reference = MODULES[kind](INPUT, hidden, batch_first=True)
    if path == "torch":
        module, forward = reference, (lambda x: reference(x)[0])
    else:
        rec = Recurrent(kind, INPUT, hidden)
        with torch.no_grad():  # identical starting weights
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(rec.layers[0], name).copy_(getattr(reference, f"{name}_l0"))
        fused = path == "fused"
        module, forward = rec, (lambda x: rec(x, fused=fused).output)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(BATCH, STEPS, INPUT, generator=generator)
    weight = torch.randn(BATCH, STEPS, hidden, generator=generator) / (BATCH * STEPS)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        (forward(x) * weight).sum().backward()
        optimizer.step()

    return step


def _session(kind: str, hidden: int, path: str, repeats: int | None, seconds: float) -> tuple[dict, int]:
    """torch and one of our paths, alternating; rounds sized to `seconds` unless `repeats` is given."""
    steps = {"torch": training_step(kind, hidden, "torch"), path: training_step(kind, hidden, path)}
    rounds = repeats
    if rounds is None:
        probe = interleaved(steps, 2, warmup=1)
        per_round = sum(median(t) for t in probe.values())
        rounds = int(min(200, max(40, seconds / max(per_round, 1e-6))))
    return interleaved(steps, rounds, warmup=0 if repeats is None else 2), rounds


def run(hiddens: tuple[int, ...] = (64, 256), kinds: tuple[str, ...] = ("lstm", "gru", "rnn"),
        repeats: int | None = None, seconds: float = 8.0, log=sys.stderr) -> list[dict]:
    """All training lines. Each of our paths is timed against torch in its own session, the two
    strictly alternating, so every pair of a paired ratio ran back to back.

    ``repeats=None`` sizes each session to about `seconds` of rounds (40 to 200): the median of
    paired ratios narrows with the square root of the rounds, and cheap sessions can afford more.
    """
    lines = []
    for kind in kinds:
        base = f"torch.nn.{MODULES[kind].__name__}"
        for hidden in hiddens:
            for path in ("fused", "explicit"):
                times, rounds = _session(kind, hidden, path, repeats, seconds)
                ours, theirs = median(times[path]) * 1e3, median(times["torch"]) * 1e3
                ratio = paired_ratio(times[path], times["torch"])
                lines.append(line(f"train_{path}_{kind}_h{hidden}", ours, "ms/step", base, ratio))
                print(f"# {kind} h{hidden} {path}: {ours:.2f} ms, torch {theirs:.2f} ms, paired ratio {ratio:.3f} "
                      f"({rounds} rounds)", file=log)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="rounds per group (default: ~6 s of rounds each)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for entry in run(repeats=args.repeats):
        print(json.dumps(entry), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
