"""The point forecast ("where will it be at t + k") beside the beam ("which way"), sampled routes,
and the multi-horizon metrics of `evaluate`.

The two-route case has a known distribution: at a fixed step, trips run along a shared start to a
fork, then take the east or the north branch (50/50) and at every step move on with p = 0.6 or
stay with p = 0.4. The likeliest *sequence* is "one branch at full speed" (the beam commits to it);
the position that minimises the expected distance is elsewhere, and the expected distances are
computed exactly from the binomial of moves, not through the code under test.
"""
import json
import math

import numpy as np
import pytest

from gridcast.cli import main
from gridcast.errors import InputError
from gridcast.nextcell.baselines import default_baselines
from gridcast.nextcell.evaluation import HORIZONS, evaluate, horizon_cases, horizon_stride, route_cases
from gridcast.nextcell.forecaster import Forecaster
from gridcast.nextcell.sampling import (
    DEFAULT_SAMPLES,
    POINT_TOP_P,
    expected_distance,
    modal_cells,
    point_forecast,
    point_forecasts,
    sample_routes,
)
from gridcast.tracks import Track

P_MOVE = 0.6
FORK = (3, 0)
START = np.array([(0, 0), (1, 0), (2, 0), FORK])
BRANCHES = ((1, 0), (0, 1))  # east, north
AFTER = 24  # steps after the fork in every training track
HORIZON = 8


def _trip(rng: np.random.Generator, branch: tuple[int, int]) -> np.ndarray:
    moves = np.cumsum(rng.random(AFTER) < P_MOVE)
    return np.concatenate([START, np.array(FORK) + moves[:, None] * np.array(branch)])


@pytest.fixture(scope="module")
def fork_model():
    rng = np.random.default_rng(0)
    tracks = [Track(str(i), _trip(rng, BRANCHES[i % 2])) for i in range(80)]
    return Forecaster(cell="gru", hidden=32).fit(tracks, epochs=40, seed=0)


def _expected_error(path: np.ndarray) -> float:
    """Mean over steps k = 1..H of E|| path[k] - truth(k) || under the true fork distribution."""
    total = 0.0
    for k in range(1, len(path) + 1):
        for branch in BRANCHES:
            for m in range(k + 1):
                p = 0.5 * math.comb(k, m) * P_MOVE ** m * (1 - P_MOVE) ** (k - m)
                truth = np.array(FORK) + m * np.array(branch)
                total += p * float(np.linalg.norm(np.asarray(path[k - 1], float) - truth))
    return total / len(path)


def _best_cell_error(k: int) -> float:
    """The least expected distance any cell near the fork has at step k (brute force)."""
    best = math.inf
    for x in range(FORK[0], FORK[0] + k + 1):
        for y in range(0, k + 1):
            best = min(best, _expected_error_at(np.array([x, y]), k))
    return best


def _expected_error_at(cell: np.ndarray, k: int) -> float:
    out = 0.0
    for branch in BRANCHES:
        for m in range(k + 1):
            p = 0.5 * math.comb(k, m) * P_MOVE ** m * (1 - P_MOVE) ** (k - m)
            out += p * float(np.linalg.norm(cell - (np.array(FORK) + m * np.array(branch))))
    return out


def test_point_forecast_minimises_expected_distance_where_the_beam_commits_to_a_branch(fork_model):
    beam = fork_model.beam(START, HORIZON, width=3)[0]
    beam_path = np.array(beam.cells + [beam.cells[-1]] * (HORIZON - len(beam.cells))) if beam.cells else \
        np.repeat(START[-1:], HORIZON, axis=0)
    point = point_forecasts(fork_model, [START], HORIZON)[0]
    ours, theirs = _expected_error(point), _expected_error(beam_path)
    optimum = float(np.mean([_best_cell_error(k) for k in range(1, HORIZON + 1)]))
    # the beam's likeliest sequence runs one branch at full speed: off the fork, on one axis
    assert beam_path[-1][1] == 0 or beam_path[-1][0] == FORK[0]
    assert tuple(beam_path[-1]) != FORK
    print(f"expected error: point {ours:.3f}, beam {theirs:.3f}, best cells {optimum:.3f}")
    assert ours < 0.85 * theirs, (ours, theirs, point.tolist(), beam_path.tolist())
    assert ours <= 1.1 * optimum, (ours, optimum, point.tolist())
    # the same with the default number of samples over seeds: better than the beam every time
    for seed in range(3):
        assert _expected_error(point_forecasts(fork_model, [START], HORIZON, seed=seed)[0]) < theirs


def test_samples_follow_the_models_distribution_and_repeat_by_seed(fork_model):
    a = sample_routes(fork_model, [START, START[:2]], 5, n=30, seed=7)
    b = sample_routes(fork_model, [START, START[:2]], 5, n=30, seed=7)
    c = sample_routes(fork_model, [START, START[:2]], 5, n=30, seed=8)
    assert all(np.array_equal(x.cells, y.cells) and np.array_equal(x.ended, y.ended) for x, y in zip(a, b))
    assert not all(np.array_equal(x.cells, y.cells) for x, y in zip(a, c))
    assert a[0].cells.shape == (30, 5, 2)
    # the first step's frequencies are the model's next-cell probabilities (4,000 draws: +-0.025)
    first = sample_routes(fork_model, [START], 1, n=4000, seed=0)[0]
    nexts, p_end = fork_model.predict_next_with_end(START, k=5)
    for n in nexts:
        freq = float(np.mean(np.all(first.cells[:, 0] == n.cell, axis=1) & (first.ended < 0)))
        assert abs(freq - n.p) < 0.025, (n, freq)
    assert abs(float(np.mean(first.ended == 0)) - p_end) < 0.025


def test_an_ended_sample_stays_where_it_ended_and_continuing_never_ends(fork_model):
    end_of_track = _trip(np.random.default_rng(1), BRANCHES[0])  # the end of a training track: ends are likely
    drawn = sample_routes(fork_model, [end_of_track], 6, n=200, seed=0)[0]
    ended = np.flatnonzero(drawn.ended >= 0)
    assert len(ended), "no sample ended where training tracks end"
    for i in ended:
        step = int(drawn.ended[i])
        stay = drawn.cells[i, step - 1] if step else end_of_track[-1]
        assert (drawn.cells[i, step:] == stay).all()
        assert len(drawn.route(i)) == step
    going = sample_routes(fork_model, [end_of_track], 6, n=200, seed=0, continuing=True)[0]
    assert (going.ended == -1).all()


def test_medoid_and_mean_on_known_samples():
    # three samples at step 2: two near (4, 0), one far: the medoid is a visited cell, the mean is not
    samples = np.array([[[0, 0], [4, 0]], [[0, 0], [5, 0]], [[0, 0], [0, 9]]])
    medoid, mean = point_forecast(samples), point_forecast(samples, "mean")
    assert medoid.tolist() == [[0, 0], [4, 0]] and mean.tolist() == [[0, 0], [3, 3]]
    weights = np.ones(3) / 3
    assert expected_distance(medoid, samples, weights) < expected_distance(mean, samples, weights)
    rng = np.random.default_rng(0)
    for _ in range(20):  # the medoid's total distance to the samples is the least among them, every step
        s = rng.integers(-5, 6, size=(7, 3, 2))
        m = point_forecast(s)
        for k in range(3):
            totals = np.linalg.norm(s[:, k, None] - s[None, :, k], axis=-1).sum(axis=1)
            assert np.isclose(np.linalg.norm(s[:, k] - m[k], axis=-1).sum(), totals.min())
    with pytest.raises(InputError, match="unknown point forecast"):
        point_forecast(samples, "median")
    assert modal_cells(np.array([[[1, 1]], [[2, 2]], [[2, 2]]])).tolist() == [[2, 2]]


def _stays_after_its_end(route: list, case) -> np.ndarray:
    """A greedy route that ends before the truth does stays at its last cell (as `evaluate` scores it)."""
    cells = np.asarray(route, dtype=np.int64).reshape(-1, 2)
    cells = cells if len(cells) else case.prefix[-1:]
    return np.concatenate([cells, np.repeat(cells[-1:], len(case.truth) - len(cells), axis=0)])


def test_evaluate_reports_the_point_forecast_best_of_n_and_horizons_reproducibly(fork_model):
    rng = np.random.default_rng(5)
    test = [Track(f"t{i}", _trip(rng, BRANCHES[i % 2])) for i in range(6)]
    baselines = default_baselines()
    first = evaluate(fork_model, baselines, test)
    again = evaluate(fork_model, default_baselines(), test)
    assert first["model"] == again["model"]  # seeded: the same numbers every run
    model = first["model"]
    n = DEFAULT_SAMPLES
    for key in ("ade_cells", "fde_cells", "ade_cells_greedy", "fde_cells_greedy", f"ade_cells_best_of_{n}",
                f"fde_cells_best_of_{n}", *(f"acc@1+{k}" for k in HORIZONS)):
        assert key in model and np.isfinite(model[key]), key
    assert model[f"ade_cells_best_of_{n}"] <= model["ade_cells"] + 1e-9
    # ade is the point forecast's, computed here from the public pieces
    cases = route_cases(test)
    points = point_forecasts(fork_model, [c.prefix for c in cases], max(len(c.truth) for c in cases),
                             continuing=True)
    errors = [np.linalg.norm(p[:len(c.truth)] - c.truth, axis=1).mean() for p, c in zip(points, cases)]
    assert np.isclose(model["ade_cells"], np.mean(errors))
    greedy = [_stays_after_its_end(fork_model.rollout(c.prefix, len(c.truth)), c) for c in cases]
    assert np.isclose(model["ade_cells_greedy"], np.mean([np.linalg.norm(g - c.truth, axis=1).mean()
                                                          for g, c in zip(greedy, cases)]))
    # baselines: acc@1+1 is next-step acc@1; acc@1+k from their marginals (stay's: its last cell), on the same cases
    stay = first["baselines"]["stay"]
    assert stay["acc@1+1"] == stay["acc@1"]
    ahead = horizon_cases(test, horizon_stride(test))
    for k in HORIZONS[1:]:
        hits = [np.array_equal(c.prefix[-1], c.truth[k - 1]) for c in ahead if len(c.truth) >= k]
        assert np.isclose(stay[f"acc@1+{k}"], np.mean(hits))


def test_cli_predict_returns_point_and_samples_and_evaluate_the_new_keys(fork_model, tmp_path, capsys):
    fork_model.save(tmp_path / "m")
    assert main(["predict", str(tmp_path / "m"), "--track", "0,0 1,0 2,0 3,0", "--horizon", "5", "--samples", "4",
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert len(got["point"]["cells"]) == 5 and len(got["samples"]) == 4
    assert got["point"]["cells"] == point_forecasts(fork_model, [START], 5)[0].tolist()
    drawn = sample_routes(fork_model, [START], 5, n=4, seed=0, top_p=POINT_TOP_P)[0]
    assert [s["cells"] for s in got["samples"]] == [[list(c) for c in drawn.route(i)] for i in range(4)]
    assert [s["ended"] for s in got["samples"]] == [bool(e >= 0) for e in drawn.ended]
    assert main(["predict", str(tmp_path / "m"), "--track", "0,0 1,0", "--samples", "-1"]) == 2
    assert "--samples" in capsys.readouterr().err


def test_sampling_rejects_bad_arguments(fork_model):
    with pytest.raises(InputError, match="horizon and samples"):
        sample_routes(fork_model, [START], 0)
    with pytest.raises(InputError, match="top_p"):
        sample_routes(fork_model, [START], 2, top_p=0.0)
    with pytest.raises(InputError, match="empty"):
        sample_routes(fork_model, [np.zeros((0, 2))], 2)
