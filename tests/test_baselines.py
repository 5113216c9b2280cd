import numpy as np
import pytest

from gridcast.metrics import MISS_RANK, ranking_metrics
from gridcast.nextcell.baselines import ConstantVelocity, Markov, Stay
from gridcast.nextcell.evaluation import baseline_ranks, route_errors
from gridcast.tracks import Track

A = Track("a", np.array([[0, 0], [1, 0], [2, 0], [3, 0]]))
B = Track("b", np.array([[5, 5], [1, 0], [1, 1], [1, 2]]))


def test_stay_and_constant_velocity():
    prefix = np.array([[0, 0], [1, 1]])
    assert Stay().scores(prefix) == {(1, 1): 1.0}
    assert ConstantVelocity().scores(prefix) == {(2, 2): 1.0}
    assert ConstantVelocity().rollout(prefix, 3) == [(2, 2), (3, 3), (4, 4)]


def test_markov2_uses_the_longer_context_first_then_backs_off():
    m = Markov(2).fit([A, B, A])
    assert max(m.scores(np.array([[0, 0], [1, 0]])).items(), key=lambda kv: kv[1])[0] == (2, 0)
    assert max(m.scores(np.array([[5, 5], [1, 0]])).items(), key=lambda kv: kv[1])[0] == (1, 1)
    # Unseen context of order 2: back off to order 1 at (1, 0), where (2, 0) was seen twice and (1, 1) once.
    scores = m.scores(np.array([[9, 9], [1, 0]]))
    assert scores[(2, 0)] > scores[(1, 1)]


def test_spatial_back_off_ranks_near_cells_first_for_an_unseen_cell():
    m = Markov(2, spatial=True).fit([A, B])
    ranked = sorted(m.scores(np.array([[40, 40], [3, 1]])).items(), key=lambda kv: -kv[1])
    assert ranked[0][0] in {(3, 0), (2, 0)}  # nearest trained cells, not the globally frequent ones


def test_misses_never_count_as_hits():
    ranks = baseline_ranks(Stay(), A.cells)
    assert (ranks == MISS_RANK).all()
    assert ranking_metrics(ranks) == {"acc@1": 0.0, "acc@5": 0.0, "mrr": ranking_metrics(ranks)["mrr"]}
    assert ranking_metrics(ranks)["mrr"] < 1e-6


def test_route_errors_pad_an_early_end():
    ade, fde = route_errors(lambda prefix, n: [(2, 0)], [A], cut=0.5)
    # truth after [0,0],[1,0] is [2,0],[3,0]; prediction [2,0] then stays -> errors 0 and 1
    assert ade.tolist() == [0.5] and fde.tolist() == [1.0]


def test_most_frequent_next_never_backs_off():
    from gridcast.nextcell.baselines import MostFrequentNext

    m = MostFrequentNext().fit([A, B, A])
    assert m.scores(np.array([[1, 0]])) == {(2, 0): 2 / 3, (1, 1): 1 / 3}
    assert m.scores(np.array([[9, 9]])) == {}  # Markov(1) would fall back to global counts here
    assert Markov(1).fit([A, B, A]).scores(np.array([[9, 9]]))


def test_neighbour_back_off_names_unseen_cells_along_the_heading():
    from gridcast.nextcell.baselines import MarkovNeighbours

    m = MarkovNeighbours(2).fit([A])
    ranked = sorted(m.scores(np.array([[20, 20], [21, 20]])).items(), key=lambda kv: -kv[1])
    assert ranked[0][0] == (22, 20)  # straight on, though no training track was ever there
    seen = sorted(m.scores(np.array([[0, 0], [1, 0]])).items(), key=lambda kv: -kv[1])
    assert seen[0][0] == (2, 0)  # counts first


def test_paired_difference_is_zero_for_identical_predictors_and_signed():
    from gridcast.nextcell.evaluation import paired_difference

    ours = [np.array([1, 1, 3]), np.array([2, MISS_RANK])]
    same = paired_difference(ours, ours, "acc@1")
    assert same == {"diff": 0.0, "lo": 0.0, "hi": 0.0}
    worse = [np.array([2, 2, 3]), np.array([2, MISS_RANK])]
    d = paired_difference(ours, worse, "acc@1")
    assert d["diff"] == pytest.approx(2 / 5) and d["lo"] >= 0 and d["hi"] > 0
    with pytest.raises(ValueError):
        paired_difference(ours, [np.array([1])], "mrr")


def test_rollouts_do_not_depend_on_the_order_of_training_tracks():
    """From (1, 0), A goes on to (2, 0) and B to (1, 1), once each: a tie. It goes to the smaller
    cell whichever track came first, so the same data always gives the same route error."""
    from gridcast.nextcell.baselines import default_baselines

    for forward, backward in zip(default_baselines(), default_baselines()):
        forward.fit([A, B])
        backward.fit([B, A])
        prefix = np.array([[9, 9], [1, 0]])
        assert forward.rollout(prefix, 3) == backward.rollout(prefix, 3), forward.name
    assert Markov(1).fit([B, A]).rollout(np.array([[1, 0]]), 1) == [(1, 1)]
