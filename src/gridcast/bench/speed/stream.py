"""Streaming latency: one new point of one track -> its top-5 next cells, per point.

`gridcast.nextcell.streaming.StreamingPredictor` (hidden 64, one LSTM layer, 1,027 outputs: a 32 x 32 block
of cells) against the eager PyTorch loop one would write first: an `nn.Embedding` lookup, an
`nn.LSTMCell` step and an `nn.Linear` head under `torch.no_grad()`, softmax and `topk`, with the
same weights, the same features and the same per-track state dictionary. Both see the same points
of 100 interleaved tracks; each point is timed for both, back to back, alternating who goes first.

Lines: ``stream_p50_us`` and ``stream_p99_us`` (value: ours, microseconds; ratio: ours / baseline at
the same percentile), in wall-clock time. On a shared machine wall p99 mostly measures preemption
by other processes (a time slice is ~ms), for both alike; stderr also gives percentiles of thread
CPU time, which leave out the time spent descheduled.

The fusion head (``gridcast fit``'s default for cell targets) is measured in a second pass,
``run(fusion=True)`` (the script's default; ``gridcast bench speed`` keeps to the contract lines):
the same points go, in turns, to three predictors of the same size (hidden 64, 32 x 32 cells):
the plain head's `StreamingPredictor`, the fusion head's (its packed path), and the fusion head
through the model's own distribution code per point (the path it took before it was packed).
Lines ``stream_fusion_p50_us`` / ``stream_fusion_p99_us``: ratio against that model-code path;
extra keys ``plain_us`` and ``ratio_vs_plain`` give the plain head at the same percentile, same run.

Usage: ``python -m gridcast.bench.speed.stream [--points 20000] [--fusion-points 5000] [--no-fusion]``.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time

import numpy as np
import torch

from gridcast.bench.speed.kit import line, random_forecaster, random_walks
from gridcast.nextcell.config import CellForecasterConfig
from gridcast.nextcell.features import PAD, RESERVED, UNKNOWN, CellVocab, Normalisation
from gridcast.nextcell.forecaster import Forecaster, NextCell
from gridcast.nextcell.network import ForecasterNet
from gridcast.nextcell.prior import MarkovPrior
from gridcast.nextcell.streaming import StreamingPredictor
from gridcast.nextcell.training import TrainConfig

BASELINE = "eager nn.LSTMCell+Linear"
FUSION_BASELINE = "fusion head via the model's _distribution per point"


def fusion_forecaster(hidden: int = 64, side: int = 32, seed: int = 0) -> Forecaster:
    """`gridcast.bench.speed.kit.random_forecaster`'s LSTM with the fusion head, its Markov prior counted on
    200 random walks of 100 steps (20,000 transitions) over the same block of cells."""
    torch.manual_seed(seed)
    config = CellForecasterConfig(cell="lstm", hidden=hidden, embed=32, dropout=0.0, head="fusion")
    cols, rows = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    cells = np.stack([cols.ravel(), rows.ravel()], axis=1)
    model = Forecaster(config)
    model.vocab_, model.norm_ = CellVocab(cells), Normalisation.fit(cells, config.max_move)
    model.train_config_, model.train_tracks_ = TrainConfig(), []
    model.prior_ = MarkovPrior(random_walks(200, 100, side=side, seed=seed + 1))
    model.net_ = ForecasterNet(config, len(model.vocab_), model.output_size())
    with torch.no_grad():
        model.net_.head.weight.mul_(4.0)
    model.net_.eval()
    return model


class ModelCodeStream(StreamingPredictor):
    """The fusion head's streaming path before it was packed: the packed recurrent step, then the
    model's own `_distribution` (context built per point in Python, torch fusion_logits)."""

    def _top(self, h, state):
        logits = self._logits
        np.dot(h, self._head_w, out=logits)
        logits += self._head_b
        return self._top_general(logits, state)


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
        self.ids, self.norm = model.vocab_.index, model.norm_
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


def run_fusion(points: int = 5_000, tracks: int = 100, log=sys.stderr) -> list[dict]:
    """Plain head, fusion head (packed) and fusion head (model code), in turns on the same points."""
    plain_model, fusion_model = random_forecaster("lstm", hidden=64, side=32), fusion_forecaster()
    start = time.perf_counter()
    fusion = StreamingPredictor(fusion_model, k=5)
    build = time.perf_counter() - start
    streams = {"plain": StreamingPredictor(plain_model, k=5), "fusion": fusion,
               "model code": ModelCodeStream(fusion_model, k=5)}
    walks = random_walks(tracks, max(2, points // tracks), seed=7)
    order = [(t, i) for i in range(walks[0].shape[0]) for t in range(tracks)]
    for t, i in order[: 2 * tracks]:
        for s in streams.values():
            s.update(("w", t), walks[t][i])
    for t, i in order[:50]:  # the packed path gives the model's answers (the tests check every case)
        a, b = fusion.update(("c", t), walks[t][i]), streams["model code"].update(("c", t), walks[t][i])
        assert [x.cell for x in a] == [x.cell for x in b], "fusion fast path disagrees with the model"
    names = list(streams)
    times = {name: np.empty(len(order)) for name in names}
    gc.collect()
    wall = time.perf_counter
    for k, (t, i) in enumerate(order):
        cell = walks[t][i]
        turn = names[k % 3:] + names[:k % 3]  # every predictor takes every position equally often
        for name in turn:
            a = wall()
            streams[name].update(t, cell)
            times[name][k] = wall() - a
    pct = {name: [np.percentile(v, q) * 1e6 for q in (50, 99)] for name, v in times.items()}
    f, p, m = pct["fusion"], pct["plain"], pct["model code"]
    print(f"# stream fusion: wall p50/p99: packed fusion {f[0]:.1f}/{f[1]:.1f} us, plain head {p[0]:.1f}/{p[1]:.1f} us "
          f"(fusion/plain {f[0] / p[0]:.2f}/{f[1] / p[1]:.2f}), model code {m[0]:.1f}/{m[1]:.1f} us "
          f"({len(order)} points; packing the fusion head took {build * 1e3:.0f} ms)", file=log)
    return [line(f"stream_fusion_p{q}_us", f[j], "us", FUSION_BASELINE, f[j] / m[j],
                 plain_us=p[j], ratio_vs_plain=f[j] / p[j]) for j, q in enumerate((50, 99))]


def run(points: int = 20_000, tracks: int = 100, log=sys.stderr, fusion: bool = False,
        fusion_points: int = 5_000) -> list[dict]:
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
    lines = [line("stream_p50_us", p50, "us", BASELINE, p50 / b50),
             line("stream_p99_us", p99, "us", BASELINE, p99 / b99)]
    if fusion:
        lines += run_fusion(points=fusion_points, tracks=tracks, log=log)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--fusion-points", type=int, default=5_000)
    parser.add_argument("--no-fusion", action="store_true", help="only the contract lines")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for entry in run(points=args.points, fusion=not args.no_fusion, fusion_points=args.fusion_points):
        print(json.dumps(entry), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
