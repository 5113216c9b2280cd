"""Batch route prediction: beam search of width 5, 12 steps ahead, for 10,000 tracks at once.

`gridcast.nextcell.batch.beam_many` (the full `Forecaster.beam` rules: end-of-route candidates,
finished routes and their floor, float64 scores, `Route` objects out) against a hand-written loop
over PyTorch's fused modules doing the same search: `nn.LSTM` over the packed prefixes, then per
step `nn.LSTMCell` + `nn.Linear` + `log_softmax` over all tracks x beams and one `topk` over each
track's beams x cells. The baseline skips the end-of-route bookkeeping and returns tensors, so it
does a little less work. Same model (hidden 64, 1,027 outputs), same prefixes (8 cells), same
chunking; runs alternate, medians.

Line: ``rollout_beam5`` (value: our tracks per second; ratio: our throughput / the baseline's).
Usage: ``python -m gridcast.bench.speed.rollout [--tracks 10000] [--repeats 3]``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from gridcast.bench.speed.kit import interleaved, line, median, paired_ratio, random_forecaster, random_walks
from gridcast.nextcell.batch import ROWS_PER_CHUNK, beam_many
from gridcast.nextcell.features import PAD, RESERVED, UNKNOWN, step_features
from gridcast.nextcell.forecaster import Forecaster

BASELINE = "hand-written fused torch loop"


class FusedLoop:
    """The baseline: beam search as one would hand-write it with torch.nn.LSTM / LSTMCell."""

    def __init__(self, model: Forecaster) -> None:
        net, layer = model.net_, model.net_.recurrent.layers[0]
        self.lstm = torch.nn.LSTM(layer.input_size, layer.hidden_size, batch_first=True)
        self.cell = torch.nn.LSTMCell(layer.input_size, layer.hidden_size)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.lstm, f"{name}_l0").copy_(getattr(layer, name))
                getattr(self.cell, name).copy_(getattr(layer, name))
        self.embedding, self.head = net.embedding, net.head
        self.model = model
        self.cells = torch.from_numpy(model.vocab_.cells)
        norm = model.norm_
        self.centre, self.scale, self.move_scale = torch.tensor(norm.centre, dtype=torch.float32), norm.scale, norm.move_scale

    def features(self, cells: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        rel = (cells.float() - self.centre) / self.scale
        move = ((cells - previous).float() / self.move_scale).clamp(-3.0, 3.0)
        return torch.cat([rel, move], dim=-1)

    def log_probs(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.head(h)
        logits[:, PAD] = -math.inf
        logits[:, UNKNOWN] = -math.inf
        return torch.log_softmax(logits, dim=-1)[:, RESERVED:]

    @torch.no_grad()
    def __call__(self, prefixes: list[np.ndarray], horizon: int, width: int, chunk: int):
        out = []
        for start in range(0, len(prefixes), chunk):
            out.append(self._chunk(prefixes[start:start + chunk], horizon, width))
        return out

    def _chunk(self, prefixes, horizon, width):
        n, lengths = len(prefixes), torch.tensor([len(p) for p in prefixes])
        longest = int(lengths.max())
        ids = torch.full((n, longest), PAD, dtype=torch.long)
        feats = torch.zeros(n, longest, 4)
        for i, p in enumerate(prefixes):
            ids[i, :len(p)] = torch.from_numpy(self.model.vocab_.ids(p))
            prev = np.concatenate([p[:1], p[:-1]])
            feats[i, :len(p)] = torch.from_numpy(step_features(p, prev, self.model.norm_))
        packed = pack_padded_sequence(torch.cat([self.embedding(ids), feats], -1), lengths, batch_first=True,
                                      enforce_sorted=False)
        _, (h, c) = self.lstm(packed)
        score, j = self.log_probs(h[0]).topk(width, dim=1)                       # (N, W)
        cells = self.cells[j]                                                     # (N, W, 2)
        previous = torch.from_numpy(np.stack([p[-1] for p in prefixes]))[:, None].expand(n, width, 2)
        routes = [j]
        h, c = h[0].repeat_interleave(width, 0), c[0].repeat_interleave(width, 0)
        c_count = self.cells.shape[0]
        for _ in range(1, horizon):
            x = torch.cat([self.embedding(j.reshape(-1) + RESERVED), self.features(cells, previous).reshape(-1, 4)], 1)
            h, c = self.cell(x, (h, c))
            total = (score.reshape(-1, 1) + self.log_probs(h)).view(n, width * c_count)
            score, index = total.topk(width, dim=1)
            parent, j = index // c_count, index % c_count
            rows = (torch.arange(n)[:, None] * width + parent).reshape(-1)
            h, c = h[rows], c[rows]
            routes = [r.gather(1, parent) for r in routes] + [j]
            previous, cells = cells.gather(1, parent[..., None].expand(n, width, 2)), self.cells[j]
        return torch.stack(routes, dim=-1), score


def run(tracks: int = 10_000, horizon: int = 12, width: int = 5, prefix: int = 8, repeats: int = 3,
        log=sys.stderr) -> list[dict]:
    model = random_forecaster("lstm", hidden=64, side=32)
    prefixes = random_walks(tracks, prefix, seed=1)
    chunk = max(1, ROWS_PER_CHUNK // (width * len(model.vocab_)))
    baseline = FusedLoop(model)
    warm = prefixes[: min(len(prefixes), 200)]  # first calls pay one-off costs (allocator, kernels)
    beam_many(model, warm, horizon, width, chunk=chunk)
    baseline(warm, horizon, width, chunk)
    times = interleaved({"ours": lambda: beam_many(model, prefixes, horizon, width, chunk=chunk),
                         "baseline": lambda: baseline(prefixes, horizon, width, chunk)}, repeats, warmup=0)
    ours_s, base_s = median(times["ours"]), median(times["baseline"])
    print(f"# rollout: {tracks} tracks x {horizon} steps, beam {width}: ours {ours_s:.2f} s, {BASELINE} "
          f"{base_s:.2f} s", file=log)
    return [line("rollout_beam5", tracks / ours_s, "tracks/s", BASELINE, 1.0 / paired_ratio(times["ours"], times["baseline"]))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for entry in run(tracks=args.tracks, repeats=args.repeats):
        print(json.dumps(entry), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
