"""StreamingPredictor: point-by-point answers equal `Forecaster.predict_next` on the prefix so far,
for every cell kind, stacked layers and each target, the fusion head's packed path included (unseen
cells, tracks leaving the vocabulary, jumps, time features); per-track state; bounded memory."""
import numpy as np
import pytest
import torch

from gridcast.errors import InputError
from gridcast.nextcell import (
    CellForecasterConfig,
    CellVocab,
    Forecaster,
    ForecasterNet,
    MarkovPrior,
    Normalisation,
    StreamingPredictor,
    TrainConfig,
)
from gridcast.nextcell.streaming import _PackedFusion
from gridcast.tracks import Track


def random_model(cell="lstm", target="cell", layers=1, init_state="zeros", side=8, seed=0, head="plain",
                 time_features=False, **options):
    """A Forecaster with random (peaked) weights over a side x side block: no training needed."""
    torch.manual_seed(seed)
    config = CellForecasterConfig(cell=cell, target=target, hidden=16, layers=layers, embed=8, dropout=0.0,
                                  init_state=init_state, head=head, time_features=time_features)
    cols, rows = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    cells = np.stack([cols.ravel(), rows.ravel()], axis=1)
    model = Forecaster(config)
    model.vocab_, model.norm_ = CellVocab(cells), Normalisation.fit(cells, config.max_move)
    model.train_config_, model.train_tracks_ = TrainConfig(), []
    if head == "fusion":
        # The counts reach 3 cells beyond the vocabulary (unseen candidates the window can name) and
        # include jumps (unseen candidates out of reach, which no slot can name).
        jumps = [np.array([[3, 3], [3, 7], [side + 5, 3], [3, 3], [3, 4], [side + 1, 4]]),
                 np.array([[side + 1, 2], [side - 1, 2], [side + 6, side + 6], [side - 1, 2]])]
        model.prior_ = MarkovPrior([walk(30, seed=s, side=side + 3) for s in range(20)] + jumps)
    model.net_ = ForecasterNet(config, len(model.vocab_), model.output_size())
    with torch.no_grad():
        model.net_.head.weight.mul_(4.0)
        for p in model.net_.recurrent.parameters():
            p.normal_(0.0, 0.5)  # also makes learned initial states non-zero
        if head == "fusion":
            model.net_.evidence_weight.normal_(0.0, 0.5)
    model.net_.eval()
    return model


def walk(n=10, seed=1, side=8):
    rng = np.random.default_rng(seed)
    return np.clip(rng.integers(0, side, 2) + np.cumsum(rng.integers(-1, 2, (n, 2)), axis=0), 0, side - 1)


def _assert_same(got, ref, tol=2e-5):
    assert [g.cell for g in got] == [r.cell for r in ref]
    assert np.allclose([g.p for g in got], [r.p for r in ref], atol=tol)


@pytest.mark.parametrize("cell,layers,init_state", [("lstm", 1, "zeros"), ("gru", 1, "zeros"), ("rnn", 1, "zeros"),
                                                     ("lstm", 2, "learned"), ("gru", 2, "learned"), ("rnn", 3, "zeros")])
@pytest.mark.parametrize("target", ["cell", "move"])
def test_each_update_equals_predict_next_on_the_prefix(cell, layers, init_state, target):
    model = random_model(cell, target, layers, init_state)
    stream = StreamingPredictor(model, k=4)
    track = walk()
    for n in range(1, len(track) + 1):
        _assert_same(stream.update("t", track[n - 1]), model.predict_next(track[:n], k=4))


def test_offset_target_and_relu_rnn():
    model = random_model("lstm", "offset")
    stream = StreamingPredictor(model, k=3)
    track = walk(6)
    for n in range(1, len(track) + 1):
        _assert_same(stream.update(7, track[n - 1]), model.predict_next(track[:n], k=3), tol=1e-4)
    model = random_model("rnn", nonlinearity="relu")
    stream = StreamingPredictor(model, k=2)
    for n in range(1, len(track) + 1):
        _assert_same(stream.update("r", track[n - 1]), model.predict_next(track[:n], k=2))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_time_features_follow_the_points_times(cell):
    model = random_model(cell, time_features=True, layers=2)
    stream = StreamingPredictor(model, k=3)
    track = walk(8)
    times = 1_700_000_000.0 + np.cumsum(np.array([0, 30, 45, 3600, 5, 60, 86_400, 10], dtype=float))
    for n in range(1, len(track) + 1):
        _assert_same(stream.update("t", track[n - 1], t=times[n - 1]), model.predict_next(track[:n], k=3, times=times[:n]))
    stream = StreamingPredictor(model, k=3)  # no times: as predict_next without times
    for n in range(1, 5):
        _assert_same(stream.update("u", track[n - 1]), model.predict_next(track[:n], k=3))


def excursion(side=8):
    """In the vocabulary, out past its edge (unseen cells, some in the counts), jumps beyond the
    window both ways, a repeated cell, far away and back."""
    e = side - 1
    return np.array([[e - 2, 4], [e - 1, 4], [e, 5], [e + 1, 5], [e + 2, 6], [e + 3, 6], [e + 6, 6], [e - 1, 6],
                     [e - 1, 6], [e - 2, 5], [3, 3], [3, 7], [3, 3], [3, 4], [e + 2, 4], [e + 20, e + 20],
                     [e + 21, e + 21], [2, 2], [side + 1, 2], [side - 1, 2]])


@pytest.mark.parametrize("cell,layers,init_state", [("lstm", 1, "zeros"), ("gru", 1, "zeros"), ("rnn", 1, "zeros"),
                                                     ("lstm", 2, "learned"), ("gru", 2, "learned")])
def test_fusion_head_packed_path_equals_predict_next(cell, layers, init_state):
    model = random_model(cell, layers=layers, init_state=init_state, head="fusion")
    stream = StreamingPredictor(model, k=5)
    stream.model = None  # the packed path needs nothing of the model after construction
    tracks = {"in": walk(12, seed=5), "out": excursion(), "far": walk(6, seed=6) + 30}
    for n in range(1, 21):
        for name, track in tracks.items():
            if n <= len(track):
                _assert_same(stream.update(name, track[n - 1]), model.predict_next(track[:n], k=5))


def test_fusion_head_names_unseen_cells_and_counts_beyond_the_vocabulary():
    model = random_model("gru", head="fusion")
    stream = StreamingPredictor(model, k=30)
    track = excursion()
    vocab = {tuple(c) for c in model.vocab_.cells}
    unseen = 0
    for n in range(1, len(track) + 1):
        got = stream.update("x", track[n - 1])
        _assert_same(got, model.predict_next(track[:n], k=30))
        unseen += sum(g.cell not in vocab for g in got)
    assert unseen > 0
    small = random_model("lstm", head="fusion", side=2, seed=3)  # k beyond the finite candidates
    stream = StreamingPredictor(small, k=40)
    path = np.array([(0, 0), (1, 1), (2, 1), (4, 4)])
    for n in range(1, len(path) + 1):
        got, ref = stream.update("s", path[n - 1]), small.predict_next(path[:n], k=40)
        assert len(got) == len(ref) < 40
        _assert_same(got, ref)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fusion_head_with_time_features(cell):
    model = random_model(cell, head="fusion", time_features=True, layers=2)
    stream = StreamingPredictor(model, k=4)
    track = excursion()[:10]
    times = 1_700_000_000.0 + np.cumsum(np.array([0, 30, 45, 3600, 5, 60, 86_400, 10, 0, 7], dtype=float))
    for n in range(1, len(track) + 1):
        _assert_same(stream.update("t", track[n - 1], t=times[n - 1]),
                     model.predict_next(track[:n], k=4, times=times[:n]))


def test_fusion_head_of_a_fitted_model_with_cells_left_out_of_the_vocabulary():
    route = np.array([[x, 3] for x in range(10, 0, -1)])
    tracks = [Track(f"r{i}", route) for i in range(4)] + [Track("once", np.array([[5, 3], [5, 4], [5, 5], [6, 6]]))]
    torch.manual_seed(0)
    model = Forecaster(cell="gru", hidden=12, embed=4, head="fusion", min_tracks=2)
    model.fit(tracks, val_tracks=tracks[:1], epochs=3, lr=0.01)
    assert (5, 5) not in model.vocab_.index and (5, 5) in model.prior_.n1  # counted, but no id
    stream = StreamingPredictor(model, k=5)
    for track in (np.array([[7, 3], [6, 3], [5, 3], [5, 4], [5, 5], [6, 6], [7, 7]]), route[::-1]):
        stream.reset("r")
        for n in range(1, len(track) + 1):
            _assert_same(stream.update("r", track[n - 1]), model.predict_next(track[:n], k=5))


def test_fusion_head_caches_stay_bounded(monkeypatch):
    monkeypatch.setattr(_PackedFusion, "UNSEEN_CACHE", 5)
    monkeypatch.setattr(_PackedFusion, "GEOMETRY_CACHE", 1)
    model = random_model("lstm", head="fusion")
    stream = StreamingPredictor(model, k=3, max_tracks=4)
    packed = stream._fused_head
    rng = np.random.default_rng(0)
    for i in range(60):
        track = i % 7
        cell = rng.integers(-20, 30, 2)
        stream.update(track, cell)
        assert len(stream) <= 4
        assert len(packed.unseen) <= 5 and len(packed.geometry) <= 9
    path = np.array([(40, 40), (41, 41), (45, 40), (7, 7)])
    for n in range(1, len(path) + 1):  # still equal after the caches were cleared
        _assert_same(stream.update("late", path[n - 1]), model.predict_next(path[:n], k=3))


def test_unknown_cells_and_interleaved_tracks_keep_their_own_state():
    model = random_model("gru")
    stream = StreamingPredictor(model, k=3)
    a, b = walk(8, seed=2), walk(8, seed=3) + 50  # b lives outside the vocabulary
    for n in range(1, 9):
        _assert_same(stream.update("a", a[n - 1]), model.predict_next(a[:n], k=3))
        _assert_same(stream.update("b", b[n - 1]), model.predict_next(b[:n], k=3))
    assert len(stream) == 2 and "a" in stream


def test_lru_eviction_bounds_the_number_of_tracks():
    model = random_model()
    stream = StreamingPredictor(model, k=2, max_tracks=3)
    track = walk(3)
    for tid in range(5):
        stream.update(tid, track[0])
    assert len(stream) == 3 and 0 not in stream and 1 not in stream
    stream.update(2, track[1])  # touching 2 makes 3 the least recently used
    stream.update("new", track[0])
    assert 3 not in stream and 2 in stream
    # An evicted track starts over: its next point is a fresh prefix.
    _assert_same(stream.update(0, track[1]), model.predict_next(track[1:2], k=2))


def test_idle_tracks_are_evicted_and_reset_forgets():
    model = random_model()
    clock = [0.0]
    stream = StreamingPredictor(model, idle_seconds=10, clock=lambda: clock[0])
    stream.update("old", (1, 1))
    clock[0] = 5.0
    stream.update("mid", (2, 2))
    clock[0] = 12.0
    stream.update("new", (3, 3))
    assert "old" not in stream and "mid" in stream and len(stream) == 2
    assert stream.evict_idle(now=100.0) == 2 and len(stream) == 0
    stream.update("x", (1, 1), t=200.0)
    assert stream.reset("x") and not stream.reset("x") and len(stream) == 0


def test_memory_stays_bounded_over_many_tracks():
    stream = StreamingPredictor(random_model(), k=1, max_tracks=50)
    for tid in range(2000):
        stream.update(tid, (tid % 8, (tid // 8) % 8))
    assert len(stream) == 50


def test_bad_settings_are_clear_errors():
    model = random_model()
    for kwargs in ({"k": 0}, {"max_tracks": 0}, {"idle_seconds": 0}):
        with pytest.raises(InputError):
            StreamingPredictor(model, **kwargs)
    with pytest.raises(InputError, match="not fitted"):
        StreamingPredictor(Forecaster())
