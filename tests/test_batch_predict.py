"""beam_many / rollout_many equal Forecaster.beam / rollout track by track: the same routes in the
same order, the same ended flags, the same probabilities (to float rounding)."""
import numpy as np
import pytest
import torch

from gridcast.errors import InputError
from gridcast.nextcell import beam_many, predict_many, rollout_many
from gridcast.nextcell.features import END
from test_streaming import random_model, walk


def _prefixes(n=10, side=8, seed=0):
    rng = np.random.default_rng(seed)
    prefixes = [walk(int(rng.integers(1, 9)), seed=seed * 100 + i, side=side) for i in range(n)]
    prefixes.append(np.array([[40, 40], [41, 40]]))  # cells the model has never seen
    return prefixes


def _assert_equal_routes(got, ref):
    assert len(got) == len(ref)
    for g_routes, r_routes in zip(got, ref):
        assert [(r.cells, r.ended) for r in g_routes] == [(r.cells, r.ended) for r in r_routes]
        assert np.allclose([r.p for r in g_routes], [r.p for r in r_routes], rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("cell,target", [("lstm", "cell"), ("gru", "cell"), ("rnn", "cell"), ("lstm", "move"),
                                         ("gru", "move"), ("lstm", "offset")])
def test_beam_many_equals_beam_per_track(cell, target):
    model = random_model(cell, target, layers=2 if cell == "gru" else 1)
    if target != "offset":  # make ending likely, so finished routes and the floor rule are exercised
        with torch.no_grad():
            model.net_.head.bias[END if target == "cell" else model.moves_.end] += 3.0
    prefixes = _prefixes()
    got = beam_many(model, prefixes, horizon=4, width=3, chunk=4)  # several chunks, one ragged
    ref = [model.beam(p, 4, 3) for p in prefixes]
    _assert_equal_routes(got, ref)
    if target != "offset":
        assert any(r.ended for routes in ref for r in routes)


def test_rollout_many_equals_rollout_and_wide_beams():
    model = random_model("lstm", layers=2, init_state="learned")
    prefixes = _prefixes(n=6, seed=3)
    assert rollout_many(model, prefixes, horizon=5) == [model.rollout(p, 5) for p in prefixes]
    _assert_equal_routes(beam_many(model, prefixes, horizon=2, width=7), [model.beam(p, 2, 7) for p in prefixes])


def test_vectorised_ids_match_the_dict_index():
    """`CellVocab.ids` (vectorised, the batch path) and `CellVocab.index` (per cell, streaming) agree."""
    model = random_model()
    cells = np.array([[0, 0], [7, 7], [3, 5], [8, 0], [-1, 2], [2, 8], [100, -100], [-(2**31), 2**31 - 1]])
    expected = [model.vocab_.index.get((int(c), int(r)), 2) for c, r in cells]
    assert model.vocab_.ids(cells).tolist() == expected


def test_bad_arguments():
    model = random_model()
    with pytest.raises(InputError):
        beam_many(model, [np.array([[1, 1]])], horizon=0)
    with pytest.raises(InputError, match="empty"):
        beam_many(model, [np.zeros((0, 2))], horizon=2)


def test_fusion_head_and_time_features():
    prefixes = _prefixes(n=6, seed=4)
    model = random_model("gru", head="fusion")
    _assert_equal_routes(beam_many(model, prefixes, horizon=3, width=3, chunk=4), [model.beam(p, 3, 3) for p in prefixes])
    model = random_model("lstm", time_features=True)
    times = [1_700_000_000.0 + 60.0 * np.arange(len(p)) if i % 2 else None for i, p in enumerate(prefixes)]
    _assert_equal_routes(beam_many(model, prefixes, horizon=3, width=3, times=times),
                         [model.beam(p, 3, 3, times=t) for p, t in zip(prefixes, times)])


@pytest.mark.parametrize("cell,target,head", [("lstm", "cell", "plain"), ("gru", "cell", "fusion"), ("rnn", "move", "plain"),
                                              ("lstm", "offset", "plain")])
def test_predict_many_is_predict_next_with_end_and_beam_many(cell, target, head):
    """exact=True: bit for bit the two calls `gridcast predict MODEL DATA` made before; exact=False
    (one pass): the same answers up to float rounding."""
    model = random_model(cell, target, head=head)
    prefixes = _prefixes(n=7, seed=5)
    got = predict_many(model, prefixes, horizon=3, width=4, k=3)
    routes = beam_many(model, prefixes, horizon=3, width=4)
    for p, prediction, track_routes in zip(prefixes, got, routes):
        nexts, p_end = model.predict_next_with_end(p, 3)
        assert (prediction.next, prediction.p_end) == (nexts, p_end)
        assert prediction.routes == track_routes
    one_pass = predict_many(model, prefixes, horizon=3, width=4, k=3, exact=False)
    for exact, fast in zip(got, one_pass):
        assert fast.routes == exact.routes
        assert np.allclose([n.p for n in fast.next], [n.p for n in exact.next], rtol=1e-5, atol=1e-9)
        assert np.isclose(fast.p_end, exact.p_end, rtol=1e-5, atol=1e-9)
    with pytest.raises(InputError):
        predict_many(model, prefixes, horizon=3, k=0)
