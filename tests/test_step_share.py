"""A short training batch moves the weights in proportion to its chunks, not as far as a full one.

Why it matters (issue 14): with length bucketing the chunks left over after the full batches are
always the longest tracks; when their batch took a full optimizer step, two repeated routes that
differ by one cell (tests/test_repeated_routes.py, 20 trips each way) split 0.73 / 0.25 instead of
their training shares of 0.5 / 0.5.
"""
from dataclasses import replace

import numpy as np
import pytest
import torch

from gridcast.nextcell.forecaster import Forecaster
from gridcast.tracks import Track

LONG = np.array([(x, 3) for x in range(14, 0, -1)])            # 14 cells
SHORT = np.array([(14, 3)] + [(14, 3 + k) for k in range(1, 13)])  # 13 cells


@pytest.fixture(scope="module")
def fitted():
    tracks = [Track(f"l{i}", LONG) for i in range(17)] + [Track(f"s{i}", SHORT) for i in range(17)]
    model = Forecaster(hidden=16).fit(tracks, val_tracks=tracks[:2], epochs=1, calibrate=False)
    return model, model._chunks(tracks, 256, training=True)


def test_bucketed_batches_say_which_share_of_a_full_step_they_are(fitted):
    model, encoded = fitted
    batches = list(model._shuffled_batches(encoded, 32, bucket=True)(np.random.default_rng(0)))
    assert sorted(len(b.lengths) for b in batches) == [2, 32]
    for batch in batches:
        assert batch.share == pytest.approx(len(batch.lengths) / 32)
    leftover = min(batches, key=lambda b: len(b.lengths))
    assert leftover.lengths.tolist() == [14, 14]  # bucketing leaves the longest tracks over


def test_a_short_batch_keeps_its_loss_and_scales_its_gradient(fitted):
    model, encoded = fitted
    leftover = min(model._shuffled_batches(encoded, 32, bucket=True)(np.random.default_rng(0)),
                   key=lambda b: len(b.lengths))
    model.net_.eval()  # no dropout: both passes see the same network

    def loss_and_grads(batch):
        model.net_.zero_grad()
        loss = model._loss(model.net_, batch)
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in model.net_.parameters() if p.grad is not None]

    scaled_loss, scaled = loss_and_grads(leftover)
    full_loss, full = loss_and_grads(replace(leftover, share=1.0))
    assert scaled_loss == pytest.approx(full_loss)  # what the log shows is the batch's real mean loss
    assert len(scaled) == len(full) > 0
    for s, f in zip(scaled, full):
        torch.testing.assert_close(s, f * (2 / 32))


def test_fewer_chunks_than_a_batch_holds_are_one_full_batch(fitted):
    """A data set smaller than --batch-size trains as it always did: its one batch is a full step."""
    model, encoded = fitted
    batches = list(model._shuffled_batches(encoded[:11], 32, bucket=True)(np.random.default_rng(0)))
    assert [(len(b.lengths), b.share) for b in batches] == [(11, 1.0)]
