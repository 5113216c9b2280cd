import numpy as np

from gridcast.baselines import ConstantVelocity, Markov, Stay
from gridcast.evaluation import baseline_ranks, route_errors
from gridcast.metrics import MISS_RANK, ranking_metrics
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
