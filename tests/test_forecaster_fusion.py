"""The fusion head: Markov prior (leave-one-track-out), window moves for unseen cells, time inputs,
checkpoint round trip, and old settings still loading as the plain head."""
import json

import numpy as np
import pytest
import torch

from gridcast.nextcell import CellForecasterConfig, Forecaster, MarkovPrior
from gridcast.nextcell.features import NO_CELL, time_features, window_geometry
from gridcast.tracks import Track

ROUTE = np.array([[x, 3] for x in range(14, 0, -1)])


def _commutes(n=8):
    """Out along row 3 in the morning, back along row 3 in the evening, a side trip now and then."""
    tracks = []
    for day in range(n):
        t0 = day * 86400.0
        tracks.append(Track(f"out{day}", ROUTE, t0 + 8 * 3600 + 60.0 * np.arange(len(ROUTE))))
        tracks.append(Track(f"back{day}", ROUTE[::-1], t0 + 18 * 3600 + 60.0 * np.arange(len(ROUTE))))
    return tracks


@pytest.fixture(scope="module")
def fusion():
    torch.manual_seed(0)
    model = Forecaster(cell="gru", hidden=24, embed=8, head="fusion", time_features=True, min_tracks=2)
    return model.fit(_commutes(), epochs=25, lr=0.01, patience=25, seed=0)


def test_prior_leaves_a_tracks_own_transitions_out():
    a, b = ROUTE[:4], ROUTE[:4]
    prior = MarkovPrior([a, b])
    cells, feats, evidence = prior.entries((14, 3), (13, 3))
    assert cells == [(12, 3)] and feats[0, 0] == 1.0 and np.isclose(evidence[0], np.log1p(2))
    cells, feats, _ = prior.entries((14, 3), (13, 3), exclude=MarkovPrior.transitions(a))
    assert cells == [(12, 3)] and np.isclose(feats[0, 2], np.log1p(1))  # the other track's count only
    only = MarkovPrior([a])
    assert only.entries((14, 3), (13, 3), exclude=MarkovPrior.transitions(a))[0] == []


def test_fusion_follows_the_route_and_ranks_match_prefix_scoring(fusion):
    assert fusion.predict_next(ROUTE[:4], k=1)[0].cell == (10, 3)
    ranks, nll = fusion.ranks_along(ROUTE)
    assert (ranks[1:] == 1).all() and np.isfinite(nll).all()
    for n in (1, 3, 7):
        scores = fusion.next_cell_scores(ROUTE[:n])
        best = max(scores, key=scores.get)
        assert (ranks[n - 1] == 1) == (best == tuple(ROUTE[n]))
        assert sum(scores.values()) <= 1.0 + 1e-6


def test_fusion_can_name_a_cell_never_seen_in_training(fusion):
    prefix = np.array([[3, 3], [2, 3], [1, 3]])  # the route's end, heading on into unknown land
    top = [n.cell for n in fusion.predict_next(prefix, k=5)]
    assert any(c not in {tuple(x) for x in fusion.vocab_.cells} for c in top)
    ranks, _ = fusion.ranks_along(np.vstack([prefix, [[0, 3]]]))
    assert ranks[-1] < 2**31 - 1  # a plain cell-id softmax cannot rank (0, 3) at all


def test_round_trip_keeps_prior_and_predictions(fusion, tmp_path):
    fusion.save(tmp_path / "m")
    loaded = Forecaster.load(tmp_path / "m")
    times = 8 * 3600 + 60.0 * np.arange(5)
    for prefix, t in ((ROUTE[:5], times), (ROUTE[:1], None)):
        assert [(n.cell, round(n.p, 6)) for n in loaded.predict_next(prefix, 5, times=t)] == \
               [(n.cell, round(n.p, 6)) for n in fusion.predict_next(prefix, 5, times=t)]
    assert loaded.beam(ROUTE[:3], 4, 2)[0].cells == fusion.beam(ROUTE[:3], 4, 2)[0].cells
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model"]["head"] == "fusion" and config["model"]["time_features"] is True


def test_settings_saved_before_the_fusion_head_load_as_plain():
    old = {"cell": "lstm", "target": "cell", "hidden": 8, "layers": 1, "embed": 4, "dropout": 0.1,
           "init_state": "zeros", "max_move": 2, "offset_loss": "gaussian"}
    config = CellForecasterConfig.from_dict(old)
    assert config.head == "plain" and config.time_features is False and config.min_tracks == 1


def test_fusion_needs_the_cell_target():
    from gridcast.errors import InputError

    with pytest.raises(InputError, match="fusion"):
        CellForecasterConfig(target="move", head="fusion")


def test_time_features_are_periodic_and_zero_without_times():
    t = np.array([0.0, 3600.0, 86400.0, 7 * 86400.0])
    f = time_features(t, 4)
    assert np.allclose(f[0, :4], f[3, :4], atol=1e-6)  # a week later: same clock, same weekday
    assert np.allclose(f[0, :2], f[2, :2], atol=1e-6) and not np.allclose(f[0, 2:4], f[2, 2:4])
    assert (f[:, 4] == 1).all() and (time_features(None, 3) == 0).all()


def test_window_geometry_prefers_the_heading():
    moves = np.array([[1, 0], [0, 1], [-1, 0]])
    g = window_geometry(moves, np.array([[1, 0]]))
    assert g[0, 0, 0] > g[0, 1, 0] > g[0, 2, 0]
    assert NO_CELL < -10**18


def test_ensemble_of_one_is_the_model_and_rollouts_agree(fusion):
    from gridcast.nextcell import Ensemble

    one = Ensemble([fusion])
    assert np.array_equal(one.ranks_along(ROUTE)[0], fusion.ranks_along(ROUTE)[0])
    assert one.rollout(ROUTE[:3], 5) == fusion.rollout(ROUTE[:3], 5)
    cands, logp, end = one.step_distributions(ROUTE[:4])
    total = np.exp(logp[-1][np.isfinite(logp[-1])]).sum() + np.exp(end[-1])
    assert total == pytest.approx(1.0, abs=1e-5)


def test_ensemble_refuses_models_of_other_data(fusion):
    from gridcast.errors import InputError
    from gridcast.nextcell import Ensemble

    other = Forecaster(cell="gru", hidden=8, embed=4, head="fusion").fit([Track("x", ROUTE + 50)] * 3, epochs=1)
    with pytest.raises(InputError, match="same tracks"):
        Ensemble([fusion, other])
