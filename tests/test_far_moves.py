"""The fusion head's far moves: with ``far="distance"`` a vocabulary cell outside the move window
gets less probability the farther it lies from the current cell (the shared far logit of the
original head gives every far cell the same, which made sampled routes jump across the map);
old checkpoints keep the shared logit, and the streaming fast path computes the same numbers."""
import json

import numpy as np
import pytest
import torch

from gridcast.nextcell import CellForecasterConfig, Forecaster
from gridcast.nextcell.dwell import STAY_FEATURES
from gridcast.nextcell.features import END, GEOMETRY_FEATURES, RESERVED
from gridcast.nextcell.network import far_distance, fusion_logits, fusion_size
from gridcast.nextcell.prior import PRIOR_FEATURES
from gridcast.nextcell.streaming import StreamingPredictor
from gridcast.tracks import Track

RADIUS = 2
CURRENT = np.array([13, 13])


def _walks(n_tracks=24, length=30, seed=0):
    """Random walks on a 24 x 24 field: neighbour moves, and 10% of steps a jump of exactly 3 cells
    (outside the 5 x 5 window), never farther."""
    rng = np.random.default_rng(seed)
    tracks = []
    for i in range(n_tracks):
        pos = rng.integers(0, 24, 2)
        cells = [pos.copy()]
        for _ in range(length - 1):
            step = rng.integers(-1, 2, 2) if rng.random() > 0.1 else rng.choice([-3, 3], 2)
            pos = np.clip(pos + step, 0, 23)
            cells.append(pos.copy())
        tracks.append(Track(str(i), np.array(cells)))
    return tracks


@pytest.fixture(scope="module")
def walks():
    return _walks()


@pytest.fixture(scope="module")
def distance_model(walks):
    torch.manual_seed(0)
    return Forecaster(cell="gru", hidden=8, embed=4, far="distance").fit(walks, epochs=4, seed=0, lr=0.01)


def _logits(vocab_cells, decay_output, with_distance):
    """Fusion logits for one step at CURRENT with every head output zero except the decay."""
    v = len(vocab_cells) + RESERVED
    window = torch.full((1, (2 * RADIUS + 1) ** 2), -1, dtype=torch.long)
    outputs = torch.zeros(1, fusion_size(v, RADIUS, "distance"))
    outputs[0, -1] = decay_output
    distances = far_distance(torch.tensor(vocab_cells), torch.from_numpy(CURRENT[None]), RADIUS) if with_distance else None
    empty = torch.zeros(0, dtype=torch.long)
    return fusion_logits(outputs, v, window, empty, empty, torch.zeros(0, PRIOR_FEATURES), torch.zeros(1, 2),
                         torch.zeros(2, PRIOR_FEATURES), torch.zeros(1, window.shape[1], GEOMETRY_FEATURES),
                         distances)[0]


def test_far_cells_fall_with_distance_and_window_cells_and_the_end_are_untouched():
    cells = [[13 + d, 13] for d in (1, 2, 3, 5, 9, 20)]
    shared = _logits(cells, 0.0, with_distance=False)
    decayed = _logits(cells, 2.0, with_distance=True)
    far = decayed[RESERVED:].tolist()
    assert far[0] == far[1] == shared[RESERVED].item()          # in the window: no decay
    assert far[1] > far[2] > far[3] > far[4] > far[5]           # outside: falls with the distance
    b = float(torch.nn.functional.softplus(torch.tensor(2.0)))
    assert np.isclose(far[1] - far[5], b * np.log(20 / RADIUS), atol=1e-5)  # rate b per log(d / R)
    assert len(set(shared[RESERVED:].tolist())) == 1            # the shared far logit: all equal
    assert decayed[END] == shared[END]


def test_a_trained_model_puts_its_far_mass_near_the_current_cell(distance_model):
    """Trained jumps are 3 cells long: a cell 3 away must be far likelier than one 9+ away."""
    prefix = np.array([[12, 12], [12, 13], [13, 13]])
    p = {n.cell: n.p for n in distance_model.predict_next(prefix, k=10_000)}
    def ring(lo, hi):
        return [q for c, q in p.items() if lo <= max(abs(c[0] - 13), abs(c[1] - 13)) <= hi]
    assert np.mean(ring(3, 3)) > 5 * np.mean(ring(9, 99))
    assert sum(ring(9, 99)) < 0.2  # the shared head measured 0.48 here: half the mass 9+ cells away


def test_streaming_fast_path_equals_predict_next_for_the_decayed_head(distance_model, walks):
    stream = StreamingPredictor(distance_model, k=5)
    cells = walks[1].cells
    for i in range(len(cells)):
        fast = stream.update("t", tuple(int(x) for x in cells[i]))
        ref = distance_model.predict_next(cells[:i + 1], k=5)
        assert [n.cell for n in fast] == [n.cell for n in ref]
        assert np.allclose([n.p for n in fast], [n.p for n in ref], atol=1e-5)


def test_round_trip_keeps_the_decay_and_old_settings_load_as_shared(distance_model, tmp_path):
    distance_model.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["model"]["far"] == "distance"
    stay = STAY_FEATURES if distance_model.stay_term else 0  # the stay term's gates come after the decay
    assert saved["output_size"] == fusion_size(len(distance_model.vocab_), RADIUS) + 1 + stay
    loaded = Forecaster.load(tmp_path / "m")
    prefix = np.array([[5, 5], [6, 6]])
    assert [(n.cell, round(n.p, 6)) for n in loaded.predict_next(prefix, k=5)] == \
        [(n.cell, round(n.p, 6)) for n in distance_model.predict_next(prefix, k=5)]
    old = {k: v for k, v in saved["model"].items() if k != "far"}
    assert CellForecasterConfig.from_dict(old).far == "shared"


def test_fit_defaults_decay_far_moves_and_a_bad_setting_is_a_clear_error():
    assert Forecaster().config.far == "distance"                # what `gridcast fit` builds
    assert CellForecasterConfig(head="fusion").far == "shared"  # built by hand: the original head
    with pytest.raises(Exception, match="invalid far 'wide'"):
        CellForecasterConfig(far="wide")
