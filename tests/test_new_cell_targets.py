"""New-cell targets while training (`new_cell_targets`, the fusion head's default).

Why it exists: every training cell has an id (`min_tracks` 1), so without them no training step
ever went into a cell without one — the head's slots for cells without an id were only ever pushed
down — while 10-28% of the shared test sets' steps go into one (docs/benchmarks-fixed-step.md, "New
cells while training"). A training step into a cell that no other training track visits (what a
test track meets as a new cell) now counts as right on that cell's own slot *or* on the slot that
names it as a new cell; revisits keep their own slots. Prediction is unchanged.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gridcast.nextcell import Forecaster
from gridcast.nextcell.config import CellForecasterConfig
from gridcast.nextcell.features import END, RESERVED
from gridcast.nextcell.forecaster import _step_share
from gridcast.tracks import Track

ROW = [(x, 0) for x in range(8)]


def exploring() -> list[Track]:
    """Six tracks run along the same row, then each steps into a cell no other track visits."""
    return [Track(f"t{y}", np.array(ROW + [(8, y)])) for y in range(-3, 3)]


@pytest.fixture(scope="module")
def model() -> Forecaster:
    torch.manual_seed(0)
    return Forecaster(hidden=16, embed=8, max_move=3).fit(exploring(), epochs=5, seed=0)


def trained(model: Forecaster) -> list[Track]:
    """The training tracks whose end cell has an id (the validation track's has none)."""
    return [t for t in model.train_tracks_ if model.vocab_.ids(t.cells[-1:])[0] >= RESERVED]


def test_the_step_into_a_cell_only_its_track_visits_may_name_it_as_new(model):
    track = trained(model)[0]
    own_id = int(model.vocab_.ids(track.cells[-1:])[0])
    _, _, targets, mask, context = model._encode(track, exclude_own=True)
    radius, side = model.config.max_move, 2 * model.config.max_move + 1
    dx, dy = (track.cells[-1] - track.cells[-2]).tolist()
    window_slot = (dx + radius) * side + (dy + radius)
    assert targets[-2] == own_id and mask[-2]                         # its own slot, as before ...
    assert context["alt"][-2] == len(model.vocab_) + window_slot      # ... or the new-cell slot
    assert (context["alt"][:-2] == -1).all() and context["alt"][-1] == -1  # along the shared row: one target
    assert context["window"][-2, window_slot] == -1                  # the window shows it without an id
    _, _, plain_targets, _, plain = model._encode(track)             # validation and prediction: as before
    assert "alt" not in plain and plain["window"][-2, window_slot] == own_id and plain_targets[-2] == own_id


def test_the_loss_adds_both_slots_of_a_new_cell_and_is_cross_entropy_elsewhere(model):
    batch = model._batch([model._encode(t, exclude_own=True) for t in trained(model)[:3]])
    model.net_.eval()                                                 # no dropout: the same outputs twice
    with torch.no_grad():
        outputs, _, _ = model.net_(batch.ids, batch.features, batch.lengths)
    logp = torch.log_softmax(model._logits(outputs.flatten(0, 1), batch.context), dim=-1)
    targets = batch.targets.flatten().masked_fill(~batch.mask.flatten(), END)
    alt = batch.context["alt"]
    assert int((alt >= 0).sum()) == 3                                 # one step into a new cell per track
    mine = logp[torch.arange(len(targets)), targets]
    either = torch.where(alt >= 0, torch.logaddexp(mine, logp[torch.arange(len(targets)), alt.clamp(min=0)]), mine)
    mask = batch.mask.flatten().float()
    expected = _step_share(-(either * mask).sum() / mask.sum(), batch.share)
    with torch.no_grad():
        assert model._loss(model.net_, batch).item() == pytest.approx(expected.item(), rel=1e-5)
    plain = Forecaster.__new__(Forecaster)
    plain.__dict__.update(model.__dict__)
    plain.config = CellForecasterConfig(**{**model.config.to_dict(), "new_cell_targets": False})
    assert "alt" not in plain._encode(trained(model)[0], exclude_own=True)[4]


def test_fit_uses_them_for_the_fusion_head_and_old_configs_do_not(model):
    assert model.config.new_cell_targets is True
    assert Forecaster(head="plain", hidden=8).fit(exploring(), epochs=1).config.new_cell_targets is False
    old = CellForecasterConfig(head="fusion").to_dict()
    del old["new_cell_targets"]
    assert CellForecasterConfig.from_dict(old).new_cell_targets is False
    with pytest.raises(Exception, match="new_cell_targets"):
        CellForecasterConfig(head="fusion", new_cell_targets="sometimes")
