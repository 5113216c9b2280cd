"""`StreamingPredictor.feed_many` (a live track's batch in one call) leaves exactly the state that
`feed` point by point leaves: the same next answer, the same saved state, repeats and cells outside
the vocabulary included."""
from __future__ import annotations

import numpy as np
import pytest

from gridcast.nextcell.forecaster import Forecaster
from gridcast.nextcell.streaming import StreamingPredictor
from serve_model import fitted_model


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_feed_many_equals_feed_point_by_point(tmp_path_factory, cell):
    model = Forecaster.load(fitted_model(tmp_path_factory, cell=cell))
    route = model.train_tracks_[0].cells.tolist()
    cells = route + [route[-1], route[-1], [route[-1][0] + 10**4, 5]] + route[:5]
    times = [1_700_000_000.0 + 30 * i for i in range(len(cells))]
    for given in (None, times):
        one, many = StreamingPredictor(model, k=5), StreamingPredictor(model, k=5)
        many.update("t", route[0])          # an existing track goes on from its state
        one.update("t", route[0])
        for i, c in enumerate(cells[:-1]):
            one.feed("t", c, None if given is None else given[i])
        many.feed_many("t", np.asarray(cells[:-1]), None if given is None else given[:-1])
        last = None if given is None else given[-1]
        assert one.update("t", cells[-1], last) == many.update("t", cells[-1], last)
        a, b = one.state_of("t"), many.state_of("t")
        if given is None:  # wall-clock stamps differ by the time between the two calls
            a.pop("seen"), b.pop("seen")
        assert a == b


def test_feed_many_of_a_new_track_and_of_nothing(tmp_path_factory):
    model = Forecaster.load(fitted_model(tmp_path_factory))
    route = model.train_tracks_[0].cells[:6]
    one, many = StreamingPredictor(model, k=3), StreamingPredictor(model, k=3)
    many.feed_many("new", np.zeros((0, 2), np.int64))
    assert "new" not in many
    for c in route.tolist():
        one.feed("new", c, 5.0)
    many.feed_many("new", route, [5.0] * len(route))
    assert one.state_of("new") == many.state_of("new")
