"""Training-step speed of `Recurrent` against the matching `torch.nn` module, same run, same weights.

One step = forward over a (64, 20, 2) batch, a weighted-sum loss, backward, AdamW step: the
workload of the issue's anchors. `torch.nn.LSTM/GRU/RNN` run PyTorch's fused CPU kernels (oneDNN);
`Recurrent` runs them too on its own parameters (fused path) or its explicit equations with the
hand-written backward (explicit path). All variants of one (kind, hidden) are timed in turns
(A B C C B A ...); the ratio is the median over rounds of ours / torch timed back to back
(`speedkit.paired_ratio`): < 1 is faster than torch.

Lines: ``train_fused_{lstm,gru,rnn}_h{64,256}`` (ratio vs the torch.nn module) and
``train_explicit_lstm_h{64,256}`` (ratio vs nn.LSTM); value = median ms per step.
Usage: ``.venv/bin/python benchmarks/bench_train.py [--repeats N] [--threads 1]``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speedkit import interleaved, line, median, paired_ratio  # noqa: E402

from gridcast.recurrent import Recurrent  # noqa: E402

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


def run(hiddens: tuple[int, ...] = (64, 256), kinds: tuple[str, ...] = ("lstm", "gru", "rnn"),
        repeats: int | None = None, seconds: float = 6.0, log=sys.stderr) -> list[dict]:
    """All training lines; each (kind, hidden) group is measured interleaved.

    ``repeats=None`` sizes each group to about `seconds` of measuring (30 to 200 rounds): the median
    of paired ratios narrows with the square root of the rounds, and cheap groups can afford more.
    """
    lines = []
    for kind in kinds:
        for hidden in hiddens:
            paths = ("torch", "fused", "explicit") if kind == "lstm" else ("torch", "fused")
            steps = {p: training_step(kind, hidden, p) for p in paths}
            rounds = repeats
            if rounds is None:
                probe = interleaved(steps, 2, warmup=1)
                per_round = sum(median(t) for t in probe.values())
                rounds = int(min(200, max(30, seconds / max(per_round, 1e-6))))
            times = interleaved(steps, rounds, warmup=0)
            ms = {p: median(t) * 1e3 for p, t in times.items()}
            base = f"torch.nn.{MODULES[kind].__name__}"
            lines.append(line(f"train_fused_{kind}_h{hidden}", ms["fused"], "ms/step", base,
                              paired_ratio(times["fused"], times["torch"])))
            if "explicit" in ms:
                lines.append(line(f"train_explicit_{kind}_h{hidden}", ms["explicit"], "ms/step", base,
                                  paired_ratio(times["explicit"], times["torch"])))
            print(f"# {kind} h{hidden}: " + ", ".join(f"{p} {v:.2f} ms" for p, v in ms.items()) + f" ({rounds} rounds)", file=log)
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
