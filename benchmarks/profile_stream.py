"""Where one `StreamingPredictor.update` spends its time, stage by stage.

Times each stage of the update path in isolation (best of 7 x 2,000 calls, so the figures are what a
quiet core does, not what a busy machine adds), beside the full `update` and the eager baseline of
`gridcast.bench.speed.stream`; then the same for the fusion head (packed path, its stages, and the model's own
distribution code it replaced). Usage: ``.venv/bin/python benchmarks/profile_stream.py``.
"""
from __future__ import annotations

import sys
import timeit

import numpy as np
import torch

from gridcast.bench.speed.kit import random_forecaster
from gridcast.bench.speed.stream import EagerStream, ModelCodeStream, fusion_forecaster
from gridcast.nextcell.streaming import StreamingPredictor


def best_us(stmt, namespace: dict, number: int = 2000) -> float:
    return min(timeit.repeat(stmt, globals=namespace, number=number, repeat=7)) / number * 1e6


def main() -> int:
    torch.set_num_threads(1)
    model = random_forecaster("lstm", hidden=64, side=32)
    stream, eager = StreamingPredictor(model, k=5), EagerStream(model, k=5)
    stream.update("t", (5, 5))
    eager.update("t", (5, 5))
    state = stream._tracks["t"]
    H, packed = stream._hidden, stream._packed[0]
    h = state.z[0][:H]
    ns = {"stream": stream, "eager": eager, "state": state, "np": np, "packed": packed, "h": h,
          "z": state.z[0], "pre": stream._pre, "table": stream._table}
    stages = [
        ("full update (ours)", "stream.update('t', (5, 6))"),
        ("  recurrent step: features, table row, z @ W, gates", "stream._step(state, 5, 6)"),
        ("    of which z @ W (68 x 256)", "np.dot(z, packed.weight, out=pre)"),
        ("  head, softmax normaliser, top 5, NextCell", "stream._top(h, state)"),
        ("    of which h @ W_head (64 x 1027)", "np.dot(h, stream._head_w, out=stream._logits)"),
        ("full update (eager nn.LSTMCell + Linear)", "eager.update('t', (5, 6))"),
    ]
    fmodel = fusion_forecaster()
    fusion, slow = StreamingPredictor(fmodel, k=5), ModelCodeStream(fmodel, k=5)
    for s in (fusion, slow):
        s.update("t", (5, 5))
        s.update("t", (5, 6))   # (5, 5) -> (5, 6): the benchmark's walks give this an order-2 context
    fstate = fusion._tracks["t"]
    packed = fusion._fused_head
    fh = fstate.z[0][:H]
    logits = fusion._logits
    ns.update({"fusion": fusion, "slow": slow, "fstate": fstate, "fh": fh, "fused": packed, "flogits": logits,
               "fw": fusion._head_w, "fb": fusion._head_b, "before": fstate.before, "cur": fstate.last})
    stages += [
        ("full update, fusion head (packed)", "fusion.update('t', (5, 6))"),
        ("  recurrent step", "fusion._step(fstate, 5, 6)"),
        ("  h @ W_head + b (64 x 1061)", "np.dot(fh, fw, out=flogits); np.add(flogits, fb, out=flogits)"),
        ("  fusion logits, softmax, top 5, NextCell", "np.dot(fh, fw, out=flogits); np.add(flogits, fb, out=flogits); "
                                                     "fused.top(flogits, before, cur, 5)"),
        ("full update, fusion head (model's _distribution)", "slow.update('t', (5, 6))"),
    ]
    width = max(len(name) for name, _ in stages)
    for name, stmt in stages:
        print(f"{name:<{width}}  {best_us(stmt, ns):7.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
