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


# ------------------------------------------------------------------ spatial back-off of routes
def test_markov_routes_back_off_spatially_never_to_the_global_mode():
    """A cell far away is by far the most frequent; a route from an unseen cell must not jump there."""
    from gridcast.nextcell.baselines import MarkovNeighbours

    far = Track("far", np.array([[50, 50], [50, 51]] * 20))
    road = Track("road", np.array([[0, 0], [1, 0], [2, 0], [3, 0], [4, 0]]))
    for baseline in (Markov(1), Markov(2), Markov(2, spatial=True), MarkovNeighbours(2)):
        baseline.fit([far, road])
        # next to the road (unseen, one row above it): the road's cells move +1 column
        assert baseline.rollout(np.array([[1, 1], [2, 1]]), 3) == [(3, 1), (4, 1), (5, 1)], baseline.name
        # nowhere near anything: constant velocity, then stay after a one-cell prefix
        assert baseline.rollout(np.array([[20, 20], [21, 21]]), 2) == [(22, 22), (23, 23)], baseline.name
        assert baseline.rollout(np.array([[20, 20]]), 2) == [(20, 20), (20, 20)], baseline.name
        # a known context still follows its counts, and leaves the road at its end by the last move
        assert baseline.rollout(np.array([[2, 0], [3, 0]]), 3) == [(4, 0), (5, 0), (6, 0)], baseline.name


def test_markov_scores_keep_their_definition():
    """Ranking (top-k) still fills with globally frequent cells after an unseen one: only routes changed."""
    far = Track("far", np.array([[50, 50], [50, 51]] * 20))
    scores = Markov(1).fit([far, A]).scores(np.array([[9, 9]]))
    assert max(scores, key=scores.get) in {(50, 50), (50, 51)}


# ------------------------------------------------------------------ a fixed time step: dwell
def _dwelling(track_id: str, start: int, length: int, dwell: int) -> Track:
    """East along row 0, `dwell` steps in every cell (a fixed time step: most steps are stays)."""
    cols = np.repeat(np.arange(start, start + length), dwell)
    return Track(track_id, np.stack([cols, np.zeros_like(cols)], axis=1))


def test_markov_with_dwell_beats_stay_at_a_fixed_step_with_known_dwell():
    """Every cell is held exactly 3 steps. Stay names 2 of 3 next steps and never moves; a plain
    Markov chain on the uncollapsed sequence ranks "stay" first everywhere (2/3 of the moves from
    each cell are stays) and, rolled out, never moves either; Markov-with-dwell knows when to move."""
    from gridcast.metrics import ranking_metrics
    from gridcast.nextcell.baselines import MarkovDwell
    from gridcast.nextcell.evaluation import evaluate

    train = [_dwelling(f"t{i}", i, 12, 3) for i in range(6)]
    test = [_dwelling(f"x{i}", i + 2, 8, 3) for i in range(3)]
    dwell1, dwell2 = MarkovDwell(1).fit(train), MarkovDwell(2).fit(train)
    stay, plain = Stay(), Markov(1).fit(train)
    result = evaluate(None, [dwell1, dwell2, stay, plain], test)["baselines"]
    assert result["stay"]["acc@1"] == pytest.approx(2 / 3, abs=0.05)
    assert result["markov1"]["acc@1"] == pytest.approx(result["stay"]["acc@1"])
    for name in ("markov1_dwell", "markov2_dwell"):
        assert result[name]["acc@1"] > result["stay"]["acc@1"] + 0.25, name
        assert result[name]["ade_cells"] < 0.5 * result["stay"]["ade_cells"], name
        assert result[name]["ade_cells"] < 0.5 * result["markov1"]["ade_cells"], name
    # the route itself: one more step in (2, 0) (two were spent), then three in each next cell
    assert dwell1.rollout(np.array([[1, 0]] * 3 + [[2, 0]] * 2), 5) == [(2, 0), (3, 0), (3, 0), (3, 0), (4, 0)]
    ranks = np.concatenate([baseline_ranks(dwell1, t.cells) for t in test])
    assert ranking_metrics(ranks)["acc@1"] > 0.9


def test_dwell_counts_a_tracks_last_run_as_cut_not_ended():
    """A track that stops while still in a cell (cut at a gap) says "stayed at least this long"."""
    from gridcast.nextcell.baselines import Dwell

    ended_once = Dwell([np.array([[0, 0], [0, 0], [1, 0]])], prior=0.0)
    assert ended_once.hazard((0, 0), 2) == 1.0  # left after 2 steps
    cut = Dwell([np.array([[0, 0], [0, 0], [1, 0]]), np.array([[0, 0], [0, 0], [0, 0]])], prior=0.0)
    assert cut.hazard((0, 0), 2) == 0.5  # one left after 2, one was still there when cut
    assert cut.hazard((0, 0), 3) == 0.0  # the cut run was still there after 3 steps
    assert cut.hazard((0, 0), 4) == pytest.approx(cut.tail_)  # no run lasted 4: the overall rate of moves
    assert cut.hazards((0, 0), 5)[1:].tolist() == [cut.hazard((0, 0), n) for n in range(1, 5)]
    assert cut.remaining((0, 0), 1, cap=100) >= 1


def test_default_baselines_are_unfitted_until_fit_and_say_so():
    from gridcast.nextcell.baselines import default_baselines

    fresh = default_baselines()
    assert {b.name for b in fresh if not b.fitted} == {b.name for b in fresh} - {"stay", "constant_velocity"}
    assert all(b.fit([A, B]).fitted for b in fresh)
    names = [b.name for b in fresh]
    assert len(set(names)) == len(names) and {"markov1_dwell", "markov2_dwell"} <= set(names)
