"""Streaming latency: one new point of one track -> its top-5 next cells, per point.

`gridcast.streaming.StreamingPredictor` (hidden 64, one LSTM layer, 1,027 outputs: a 32 x 32 block
of cells) against the eager PyTorch loop one would write first: an `nn.Embedding` lookup, an
`nn.LSTMCell` step and an `nn.Linear` head under `torch.no_grad()`, softmax and `topk`, with the
same weights, the same features and the same per-track state dictionary. Both see the same points
of 100 interleaved tracks; each point is timed for both, back to back, alternating who goes first.

Lines: ``stream_p50_us`` and ``stream_p99_us`` (value: ours, microseconds; ratio: ours / baseline at
the same percentile), in wall-clock time. On a shared machine wall p99 mostly measures preemption
by other processes (a time slice is ~ms), for both alike; stderr also gives percentiles of thread
CPU time, which leave out the time spent descheduled. Usage: ``.venv/bin/python benchmarks/bench_stream.py [--points 20000]``.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speedkit import line, random_forecaster, random_walks  # noqa: E402

from gridcast.forecaster import Forecaster, NextCell  # noqa: E402
from gridcast.models import PAD, RESERVED, UNKNOWN  # noqa: E402
from gridcast.streaming import StreamingPredictor  # noqa: E402

BASELINE = "eager nn.LSTMCell+Linear"


class EagerStream:
    """The baseline: per point, eager torch modules on (1, ...) tensors."""

    def __init__(self, model: Forecaster, k: int = 5) -> None:
        net = model.net_
        layer = net.recurrent.layers[0]
        self.cell = torch.nn.LSTMCell(layer.input_size, layer.hidden_size)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.cell, name).copy_(getattr(layer, name))
        self.embedding, self.head, self.k = net.embedding, net.head, k
        self.ids, self.norm = model.vocab_._index, model.norm_
        self.cells = [tuple(int(v) for v in c) for c in model.vocab_.cells]
        self.state: dict = {}

    @torch.no_grad()
    def update(self, track_id, cell) -> list[NextCell]:
        col, row = int(cell[0]), int(cell[1])
        state = self.state.get(track_id)
        if state is None:
            zeros = torch.zeros(1, self.cell.hidden_size)
            state = self.state[track_id] = [zeros, zeros, (col, row)]
        last_col, last_row = state[2]
        n = self.norm
        features = torch.tensor([[(col - n.centre[0]) / n.scale, (row - n.centre[1]) / n.scale,
                                  min(3.0, max(-3.0, (col - last_col) / n.move_scale)),
                                  min(3.0, max(-3.0, (row - last_row) / n.move_scale))]])
        token = torch.tensor([self.ids.get((col, row), UNKNOWN)])
        x = torch.cat([self.embedding(token), features], dim=1)
        h, c = self.cell(x, (state[0], state[1]))
        state[0], state[1], state[2] = h, c, (col, row)
        logits = self.head(h)[0]
        logits[PAD] = -math.inf
        logits[UNKNOWN] = -math.inf
        top = torch.topk(torch.softmax(logits, 0)[RESERVED:], self.k)
        return [NextCell(self.cells[j], p) for p, j in zip(top.values.tolist(), top.indices.tolist())]


def run(points: int = 20_000, tracks: int = 100, log=sys.stderr) -> list[dict]:
    model = random_forecaster("lstm", hidden=64, side=32)
    ours, base = StreamingPredictor(model, k=5), EagerStream(model, k=5)
    walks = random_walks(tracks, max(2, points // tracks))
    order = [(t, i) for i in range(walks[0].shape[0]) for t in range(tracks)]
    for t, i in order[: 2 * tracks]:  # warm up both (first points also create the track states)
        ours.update(("w", t), walks[t][i])
        base.update(("w", t), walks[t][i])
    mine, theirs = np.empty(len(order)), np.empty(len(order))
    mine_cpu, theirs_cpu = np.empty(len(order)), np.empty(len(order))
    gc.collect()
    wall, cpu = time.perf_counter, time.thread_time  # thread CPU time: what an unshared core would see
    for k, (t, i) in enumerate(order):
        cell = walks[t][i]
        first, second = (ours, base) if k % 2 else (base, ours)
        a, ac = wall(), cpu()
        first.update(t, cell)
        b, bc = wall(), cpu()
        second.update(t, cell)
        c, cc = wall(), cpu()
        if k % 2:
            mine[k], theirs[k], mine_cpu[k], theirs_cpu[k] = b - a, c - b, bc - ac, cc - bc
        else:
            theirs[k], mine[k], theirs_cpu[k], mine_cpu[k] = b - a, c - b, bc - ac, cc - bc
    p50, p99 = (np.percentile(mine, q) * 1e6 for q in (50, 99))
    b50, b99 = (np.percentile(theirs, q) * 1e6 for q in (50, 99))
    c50, c99 = (np.percentile(mine_cpu, q) * 1e6 for q in (50, 99))
    d50, d99 = (np.percentile(theirs_cpu, q) * 1e6 for q in (50, 99))
    print(f"# stream: wall: ours p50 {p50:.1f} us p99 {p99:.1f} us; {BASELINE} p50 {b50:.1f} us p99 {b99:.1f} us "
          f"({len(order)} points)", file=log)
    print(f"# stream: thread CPU time: ours p50 {c50:.1f} us p99 {c99:.1f} us; baseline p50 {d50:.1f} us "
          f"p99 {d99:.1f} us", file=log)
    return [line("stream_p50_us", p50, "us", BASELINE, p50 / b50), line("stream_p99_us", p99, "us", BASELINE, p99 / b99)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for entry in run(points=args.points):
        print(json.dumps(entry), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
