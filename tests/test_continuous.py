"""The continuous forecaster: baselines, the local frame, no future leakage, training, sampling."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import gridcast.continuous as C
from gridcast.datasets.ethucy import load_split
from gridcast.errors import InputError
from gridcast.kinds import CELL_KINDS, parse_kinds
from gridcast.metrics import best_of_k, per_example_errors

TINY = Path(__file__).resolve().parent / "data" / "ethucy_tiny"


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is faster than two spinning ones on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _lines(n: int = 5, steps: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    start, vel = rng.normal(size=(n, 1, 2)), rng.normal(size=(n, 1, 2))
    return start + vel * np.arange(steps)[None, :, None]


def test_baselines_on_straight_lines():
    traj = _lines()
    obs, fut = traj[:, :8], traj[:, 8:]
    np.testing.assert_allclose(C.constant_velocity(obs, 12), fut, atol=1e-9)
    np.testing.assert_allclose(C.linear_fit(obs, 12), fut, atol=1e-9)
    np.testing.assert_allclose(C.constant_position(obs, 12), np.repeat(obs[:, -1:], 12, axis=1))


def test_local_frame_round_trip_and_heading():
    traj = _lines(seed=1)
    feats, origin, rot = C.make_inputs(traj[:, :8], scale=1.0)
    local = C.to_local(traj, origin, rot)
    np.testing.assert_allclose(local[:, 7], 0, atol=1e-12)      # last observed at the origin
    np.testing.assert_allclose(local[:, 7:, 1], 0, atol=1e-9)   # heading along +x
    assert (local[:, 8, 0] > 0).all()
    np.testing.assert_allclose(C.to_world(local, origin, rot), traj, atol=1e-9)
    np.testing.assert_allclose(feats[:, :, :2], np.diff(local[:, :8], axis=1), atol=1e-6)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_untrained_model_is_constant_velocity(kind):
    w = load_split(TINY, "alpha", "test")
    cfg = C.ContinuousConfig(kind=kind, hidden=16, modes=3, scale=C.typical_step(w.observed))
    data = C.prepare(w.observed, None, cfg)
    pred = C.predict(C.ContinuousForecaster(cfg), data)
    np.testing.assert_allclose(pred, C.constant_velocity(w.observed, 12), atol=1e-4)


@pytest.mark.parametrize("absolute", [0.0, 10.0])
def test_no_future_leakage(absolute):
    """Perturbing the future positions (everyone's) changes the targets but never the inputs,
    the neighbour context or the predictions."""
    w = load_split(TINY, "alpha", "test")
    cfg = C.ContinuousConfig(kind="lstm", hidden=16, modes=4, scale=0.4, absolute=absolute, neighbours=3,
                             nb_future=True)  # the look ahead extrapolates observed steps only
    torch.manual_seed(0)
    model = C.ContinuousForecaster(cfg)
    for p in model.parameters():  # non-zero heads, so predictions depend on the inputs
        torch.nn.init.normal_(p, std=0.1)
    perturbed = w.traj.copy()
    perturbed[:, w.obs:] += np.random.default_rng(0).normal(scale=5.0, size=perturbed[:, w.obs:].shape)
    a = C.prepare(w.traj[:, :w.obs], w.traj[:, w.obs:], cfg, w.window)
    b = C.prepare(perturbed[:, :w.obs], perturbed[:, w.obs:], cfg, w.window)
    assert torch.equal(a.feats, b.feats) and torch.equal(a.cv, b.cv) and torch.equal(a.nb, b.nb)
    assert a.nb[:, :, -1].gt(0).any()  # the windows do have neighbours
    assert (a.ctx is None) == (absolute == 0) and (a.ctx is None or torch.equal(a.ctx, b.ctx))
    assert not torch.equal(a.target, b.target)
    np.testing.assert_array_equal(C.predict(model, a), C.predict(model, b))
    np.testing.assert_array_equal(C.sample(model, a, 4), C.sample(model, b, 4))
    # and the observed part does matter: the check above is not vacuous
    moved = w.traj.copy()
    moved[:, 3] += 0.5
    assert not np.allclose(C.predict(model, C.prepare(moved[:, :w.obs], None, cfg, w.window)), C.predict(model, a))


def test_fit_learns_a_turn_and_samples(kind="gru"):
    """Walkers that always turn left: CVM misses the turn, a trained model (any cell) does not."""
    rng = np.random.default_rng(0)
    n, steps = 400, 20
    speed = rng.uniform(0.2, 0.6, size=n)
    heading = rng.uniform(0, 2 * np.pi, size=n)
    turn = np.where(np.arange(steps) >= 8, 0.12, 0.0).cumsum()
    ang = heading[:, None] + turn[None]
    vel = speed[:, None, None] * np.stack([np.cos(ang), np.sin(ang)], axis=-1)
    traj = np.cumsum(vel, axis=1) + rng.normal(size=(n, 1, 2))
    cfg = C.ContinuousConfig(kind=kind, hidden=24, modes=3, scale=0.4, epochs=8, patience=8,
                             lr=1e-2, flip=False, batch=128, obs_noise=0.01)
    tr = C.prepare(traj[:300, :8], traj[:300, 8:], cfg)
    va = C.prepare(traj[300:, :8], traj[300:, 8:], cfg)
    model, info = C.fit(tr, va, cfg)
    pred = C.predict(model, va)
    ours = per_example_errors(pred, traj[300:, 8:])["ade"].mean()
    cvm = per_example_errors(C.constant_velocity(traj[300:, :8], 12), traj[300:, 8:])["ade"].mean()
    assert ours < 0.5 * cvm, (ours, cvm)
    assert info["epochs_run"] >= 1 and info["best_val_ade"] < np.inf
    # each output is kept from its own best validation epoch
    sampler = info["sampler"]
    det, mix = C.validation_scores(model, va), C.validation_scores(sampler, va)
    assert det["ade"] == pytest.approx(min(h["val_ade"] for h in info["history"]), abs=1e-5)
    assert mix["best_of_modes"] == pytest.approx(min(h["val_best_of_modes"] for h in info["history"]), abs=1e-5)
    assert det["ade"] <= mix["ade"] + 1e-6 and mix["best_of_modes"] <= det["best_of_modes"] + 1e-6
    for method in ("modes", "gaussian"):
        s = C.sample(model, va, 3, method=method)
        assert s.shape == (3, 100, 12, 2) and np.isfinite(s).all()
    with pytest.raises(ValueError):
        C.sample(model, va, 4, method="modes")  # only 3 components


def test_neighbour_features_in_the_pedestrians_own_frame():
    """Two walkers side by side, heading +y: for each, the other is 1 m to its side (x in the
    canonical frame is the heading), 0 m ahead; a third window's lone walker has none."""
    t = np.arange(8)[:, None] * np.array([0.0, 0.4])
    obs = np.stack([t, t + [1.0, 0.0], t + [50.0, 0.0]])           # walkers 0, 1 share window 7
    groups = np.array([7, 7, 9])
    cfg = C.ContinuousConfig(scale=0.4, neighbours=2)
    p = C.prepare(obs, None, cfg, groups)
    nb = p.nb.numpy()
    assert nb.shape == (3, 2, C.NEIGHBOUR_FEATURES)
    last0 = nb[0, 0, 2 * 7: 2 * 7 + 2] * 0.4                          # walker 1's last position, seen by 0
    np.testing.assert_allclose(last0, [0.0, -1.0], atol=1e-6)          # heading +y -> +x; +x world -> -y local
    np.testing.assert_allclose(nb[1, 0, 14:16] * 0.4, [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(nb[0, 0, 16:18], [1.0, 0.0], atol=1e-6)  # its last step: 0.4 m ahead / scale
    assert nb[0, 0, -1] == pytest.approx(1 / (1 + 1.0 / 0.4)) and not nb[0, 1].any() and not nb[2].any()


def test_mirror_augmentation_mirrors_the_neighbours_too():
    cfg = C.ContinuousConfig(scale=0.4, neighbours=2, flip=True)
    nb = torch.randn(64, 2, C.NEIGHBOUR_FEATURES)
    nb[..., -1] = 0.5
    feats, cv, target = torch.randn(64, 7, 4), torch.randn(64, 2), torch.randn(64, 12, 2)
    f2, cv2, t2, nb2 = C.augment(feats, cv, target, cfg, torch.Generator().manual_seed(0), nb)
    flipped = cv2[:, 1] != cv[:, 1]
    assert flipped.any() and (~flipped).any()
    ys = torch.arange(C.NEIGHBOUR_FEATURES - 1) % 2 == 1
    assert torch.equal(nb2[flipped][..., :-1][..., ys], -nb[flipped][..., :-1][..., ys])
    assert torch.equal(nb2[..., :-1][..., ~ys], nb[..., :-1][..., ~ys]) and torch.equal(nb2[..., -1], nb[..., -1])
    assert torch.equal(nb2[~flipped], nb[~flipped])


def test_look_ahead_of_two_walkers_meeting_head_on():
    """A walks +x, B walks towards it 4.8 m ahead at the same speed: under constant velocity they
    meet after 6 steps, and B is 1.6 m ahead after 4, 1.6 m behind after 8, 4.8 m behind after 12."""
    t = np.arange(8)[:, None] * np.array([0.4, 0.0])
    obs = np.stack([t, [2 * 7 * 0.4 + 4.8, 0.0] - t])  # at the last step A is at 2.8 m, B at 7.6 m
    cfg = C.ContinuousConfig(scale=0.4, neighbours=1, nb_future=True)
    nb = C.prepare(obs, None, cfg, np.array([0, 0])).nb.numpy()
    assert nb.shape == (2, 1, C.NEIGHBOUR_FEATURES + C.FUTURE_FEATURES)
    look = nb[0, 0, C.NEIGHBOUR_FEATURES - 1: -1] * np.r_[[0.4] * 6, 1, 1]
    np.testing.assert_allclose(look, [1.6, 0, -1.6, 0, -4.8, 0, 0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(nb[1], nb[0], atol=1e-6)  # the same encounter seen from B
    jerk = obs.copy()
    jerk[1, -1, 1] += 0.2   # B's last click 0.2 m off: velocities come from the last 2 steps, so
    moved = C.prepare(jerk, None, cfg, np.array([0, 0])).nb.numpy()[0, 0, C.NEIGHBOUR_FEATURES - 1:]
    assert moved[1] * 0.4 == pytest.approx(0.2 + 4 * 0.1)  # 4 steps on, B is 0.6 m (not 1.0) off


@pytest.mark.parametrize("nb_future", [False, True])
def test_mirrored_world_mirrors_every_feature_and_the_symmetrised_prediction(nb_future):
    """Reflecting the scene (world y -> -y) negates exactly the local y features (the mask used by
    augmentation and by mirrored prediction), and `predict(mirror=True)` is then exactly mirror
    symmetric while a plain prediction is not."""
    w = load_split(TINY, "alpha", "test")
    cfg = C.ContinuousConfig(kind="gru", hidden=16, modes=3, scale=0.4, neighbours=3, nb_future=nb_future)
    flip = np.array([1.0, -1.0])
    a = C.prepare(w.observed, None, cfg, w.window)
    b = C.prepare(w.observed * flip, None, cfg, w.window)
    assert a.nb[:, :, -1].gt(0).any()
    mask = C.neighbour_y_mask(a.nb.shape[-1])
    torch.testing.assert_close(b.nb, a.nb * torch.where(mask, -1.0, 1.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(C.mirrored(a).feats, b.feats, atol=1e-5, rtol=0)
    torch.manual_seed(0)
    model = C.ContinuousForecaster(cfg)
    for p in model.parameters():  # non-zero heads: an untrained model would be symmetric anyway
        torch.nn.init.normal_(p, std=0.1)
    np.testing.assert_allclose(C.predict(model, b, mirror=True), C.predict(model, a, mirror=True) * flip, atol=1e-4)
    assert not np.allclose(C.predict(model, b), C.predict(model, a) * flip, atol=1e-3)
    with pytest.raises(ValueError, match="mirror"):
        screen = C.ContinuousConfig(scale=0.4, absolute=10.0)
        C.predict(C.ContinuousForecaster(screen), C.prepare(w.observed, None, screen), mirror=True)


def test_neighbour_model_trains_and_needs_its_groups():
    w = load_split(TINY, "alpha", "test")
    cfg = C.ContinuousConfig(kind="gru", hidden=16, modes=4, scale=0.4, neighbours=3, epochs=2)
    data = C.prepare(w.observed, w.future, cfg, w.window)
    model, info = C.fit(data, data, cfg)
    assert info["epochs_run"] == 2 and np.isfinite(C.predict(model, data)).all()
    with pytest.raises(ValueError, match="groups"):
        C.prepare(w.observed, None, cfg)


def test_best_of_k_per_pedestrian_and_per_window():
    true = np.zeros((2, 1, 2))
    samples = np.zeros((2, 2, 1, 2))
    samples[0, 0, 0] = [1, 0]   # sample 0: ped 0 off by 1, ped 1 exact
    samples[1, 1, 0] = [3, 0]   # sample 1: ped 0 exact, ped 1 off by 3
    per_ped = best_of_k(samples, true)
    assert per_ped == {"ade": 0.0, "fde": 0.0}
    per_window = best_of_k(samples, true, groups=np.array([7, 7]))
    assert per_window["ade"] == pytest.approx(0.5)  # sample 0 wins the window: (1 + 0) / 2
    assert best_of_k(samples, true, groups=np.array([1, 2]))["ade"] == 0.0


def test_cell_kinds_of_the_continuous_benchmarks():
    """``--cells`` goes through the one parser (user's order, duplicates dropped, names checked),
    and every kind it accepts builds a continuous model."""
    assert parse_kinds("GRU, lstm,gru") == ("gru", "lstm")
    with pytest.raises(InputError, match="lstm,gru,rnn"):
        parse_kinds("lstm,transformer")
    for kind in CELL_KINDS:
        assert C.ContinuousForecaster(C.ContinuousConfig(kind=kind, hidden=4, modes=2)).encoder is not None


def _turning_walkers(n: int = 120, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    turn = np.where(np.arange(20) >= 8, 0.12, 0.0).cumsum()
    ang = rng.uniform(0, 2 * np.pi, size=n)[:, None] + turn[None]
    vel = rng.uniform(0.2, 0.6, size=n)[:, None, None] * np.stack([np.cos(ang), np.sin(ang)], axis=-1)
    return np.cumsum(vel, axis=1)


def test_weight_average_follows_its_decay():
    """Decay ~0: the average is the last step's weights, so training is unchanged. Decay ~1: the
    average never leaves the first step's weights, one small step from constant velocity."""
    traj = _turning_walkers(320)
    kw = dict(kind="lstm", hidden=12, modes=0, scale=0.4, epochs=6, patience=6, lr=1e-2, batch=64)
    data = C.prepare(traj[:, :8], traj[:, 8:], C.ContinuousConfig(**kw))
    plain, _ = C.fit(data, data, C.ContinuousConfig(**kw, ema=0.0))
    instant, _ = C.fit(data, data, C.ContinuousConfig(**kw, ema=1e-12))
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(instant.state_dict()[name], value)
    frozen, _ = C.fit(data, data, C.ContinuousConfig(**kw, ema=1 - 1e-12))
    cvm = C.constant_velocity(traj[:, :8], 12)
    moved = {name: np.abs(C.predict(m, data) - cvm).mean() for name, m in (("plain", plain), ("frozen", frozen))}
    assert moved["frozen"] < 0.2 * moved["plain"], moved
    with pytest.raises(ValueError, match="ema"):
        C.fit(data, data, C.ContinuousConfig(**kw, ema=1.0))


def test_ensemble_samples_take_turns():
    """Two members, two samples: each member's own most probable path, not two near-copies."""
    traj = _turning_walkers(10)
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = C.ContinuousForecaster(C.ContinuousConfig(kind="gru", hidden=8, modes=4, scale=0.4))
        for p in model.mode_head[-1].parameters():
            torch.nn.init.normal_(p, std=0.5)  # the untrained head is all zeros: give it modes
        members.append(model)
    data = C.prepare(traj[:, :8], None, members[0].cfg)
    both = C.sample(members, data, 2)
    for i, model in enumerate(members):
        np.testing.assert_allclose(both[i], C.sample(model, data, 1)[0], atol=1e-6)
    with pytest.raises(ValueError, match="components"):
        C.sample(members, data, 9)
