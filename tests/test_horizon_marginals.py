"""``acc@1+k`` from marginals: "which cell at t + k" is the mode of the distribution of the cell k
steps ahead, not the likeliest path's cell and not the most frequent of a few samples.

+1 is exactly the next-step distribution, so ``acc@1+1`` equals next-step ``acc@1`` by construction;
a chain with a known marginal shows where a greedy rollout's cell is not the marginal's mode.
"""
import numpy as np
import pytest

from gridcast.nextcell.baselines import default_baselines
from gridcast.nextcell.evaluation import HORIZONS, baseline_marginal_modes, evaluate
from gridcast.nextcell.forecaster import Forecaster
from gridcast.nextcell.sampling import marginal_modes
from gridcast.tracks import Track

P_MOVE = 0.6
START = np.array([(0, 0), (1, 0), (2, 0), (3, 0)])
FORK = (3, 0)


def _trip(rng: np.random.Generator, branch: tuple[int, int]) -> np.ndarray:
    """The shared start, then along `branch`, moving on with p = 0.6 and staying otherwise at every step."""
    moves = np.cumsum(rng.random(20) < P_MOVE)
    return np.concatenate([START, np.array(FORK) + moves[:, None] * np.array(branch)])


@pytest.fixture(scope="module")
def fork():
    rng = np.random.default_rng(0)
    tracks = [Track(str(i), _trip(rng, ((1, 0), (0, 1))[i % 2])) for i in range(80)]
    test = [Track(f"t{i}", _trip(rng, ((1, 0), (0, 1))[i % 2])) for i in range(6)]
    return Forecaster(cell="gru", hidden=32).fit(tracks, epochs=40, seed=0), test


def test_acc_at_1_plus_1_is_next_step_acc_at_1_for_the_model_and_every_baseline(fork):
    model, test = fork
    result = evaluate(model, default_baselines(), test)
    assert result["model"]["acc@1+1"] == result["model"]["acc@1"]
    for name, metrics in result["baselines"].items():
        assert metrics["acc@1+1"] == metrics["acc@1"], name
    for k in HORIZONS:
        assert 0.0 <= result["model"][f"acc@1+{k}"] <= 1.0


def test_the_marginal_one_step_ahead_is_the_top_of_the_next_step_distribution(fork):
    model, test = fork
    prefixes = [START[:2], START, test[0].cells[:9], test[1].cells[:12]]
    modes = marginal_modes(model, prefixes, 3, n=16, seed=0)
    for prefix, mode in zip(prefixes, modes):
        assert tuple(mode[0]) == model.predict_next(prefix, 1)[0].cell


def test_the_model_marginal_two_steps_ahead_matches_the_exact_one(fork):
    """The exact marginal two steps ahead by enumeration (sum over every next cell c1 of
    p(c1) p(c | c1), from `predict_next` alone): the estimated mode carries (within sampling noise)
    the most mass of it."""
    model, test = fork
    for prefix in (START, test[2].cells[:10]):
        exact: dict = {}
        for first in model.predict_next(prefix, 10_000):
            if first.p < 1e-4:
                continue
            for second in model.predict_next(np.vstack([prefix, first.cell]), 10_000):
                exact[second.cell] = exact.get(second.cell, 0.0) + first.p * second.p
        mode = marginal_modes(model, [prefix], 2, seed=0, continuing=True)[0]
        assert exact[tuple(int(v) for v in mode[1])] >= max(exact.values()) - 0.05


class Chain:
    """A duck-typed baseline over a known chain: from A to B (0.4), C (0.3) or D (0.3); B goes to F,
    C and D both go to E. Greedy: A, B, F; the marginal two steps ahead: E (0.6) against F (0.4)."""

    name = "chain"
    NEXT = {(0, 0): {(1, 0): 0.4, (0, 1): 0.3, (0, 2): 0.3}, (1, 0): {(5, 5): 1.0},
            (0, 1): {(9, 9): 1.0}, (0, 2): {(9, 9): 1.0}}

    def scores(self, prefix):
        return dict(self.NEXT.get(tuple(int(v) for v in prefix[-1]), {}))

    def rollout(self, prefix, horizon):
        cells, out = [tuple(int(v) for v in prefix[-1])], []
        for _ in range(horizon):
            scores = self.scores(np.asarray(cells))
            if not scores:
                break
            cells.append(min(scores.items(), key=lambda kv: (-kv[1], kv[0]))[0])
            out.append(cells[-1])
        return out


def test_a_baseline_marginal_mode_is_not_its_greedy_cell():
    chain = Chain()
    prefix = np.array([[0, 0]])
    assert chain.rollout(prefix, 2) == [(1, 0), (5, 5)]
    modes = baseline_marginal_modes(chain, prefix, 3)
    assert modes.tolist() == [[1, 0], [9, 9], [9, 9]]  # a route whose chain names nothing stays put


def test_pruning_keeps_the_mode_of_the_likeliest_paths():
    modes = baseline_marginal_modes(Chain(), np.array([[0, 0]]), 2, width=1)
    assert modes.tolist() == [[1, 0], [5, 5]]  # with one path kept the marginal is that path's
