"""The fusion head's stay term: each cell's dwell hazard (`dwell.Dwell`) on the move (0, 0).

Why it exists: at a fixed step the Markov counts' stay candidate is the same after one step or fifty
in a cell, and the fishers' P(stay) was flat in dwell (docs/benchmarks-fixed-step.md). These tests
pin what the term reads, that every path (training, predict, beam, samples, streaming, save, strip)
reads the same, and that a crafted histogram in a model directory is refused.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from gridcast.errors import CheckpointError
from gridcast.nextcell import Forecaster
from gridcast.nextcell.config import CellForecasterConfig
from gridcast.nextcell.dwell import LOG_ODDS_CLIP, Dwell, run_lengths
from gridcast.nextcell.export import export_model
from gridcast.nextcell.forecaster import spent_steps
from gridcast.nextcell.streaming import StreamingPredictor
from gridcast.tracks import Track

HOLD = 4  # every cell of the synthetic track is held exactly this many steps


def held(n_cells: int, row: int = 0, hold: int = HOLD) -> np.ndarray:
    return np.repeat(np.array([(x, row) for x in range(n_cells)], np.int64), hold, axis=0)


def weights_of(directory: Path) -> Path:
    return directory / json.loads((directory / "config.json").read_text())["weights"]


def tracks(n: int = 12) -> list[Track]:
    return [Track(f"t{i}", held(10, row=i % 3)) for i in range(n)]


@pytest.fixture(scope="module")
def model() -> Forecaster:
    torch.manual_seed(0)
    return Forecaster(hidden=16, embed=8).fit(tracks(), epochs=12, seed=0)


def test_hazard_features_follow_the_time_spent_in_a_cell():
    dwell = Dwell([t.cells for t in tracks()])
    cell = (3, 0)
    early, due = dwell.stay_features(cell, 2), dwell.stay_features(cell, HOLD)
    assert early[0] > 1.0 and due[0] < -1.0        # stays on after 2 steps, leaves after HOLD
    assert early[1] > 0 > due[1]                    # the same shape over all cells
    unseen = dwell.stay_features((99, 99), 2)
    assert unseen[0] == pytest.approx(unseen[1])    # an unseen cell gets all cells' hazard
    assert all(abs(v) <= LOG_ODDS_CLIP for v in early + due)


def test_leaving_a_tracks_own_runs_out_falls_back_to_all_cells():
    only = Track("only", held(3, row=7, hold=2))     # the one track through row 7, 2 steps a cell
    dwell = Dwell([t.cells for t in tracks()] + [only.cells])
    own = run_lengths(only.cells)
    cell = (1, 7)
    assert dwell.stay_features(cell, 2, own)[0] == pytest.approx(dwell.stay_features((99, 99), 2)[0])
    assert dwell.stay_features(cell, 2)[0] < dwell.stay_features(cell, 2, own)[0]  # its own: leaves after 2


def test_histogram_round_trips_the_hazards():
    dwell = Dwell([t.cells for t in tracks()])
    again = Dwell.from_histogram(dwell.histogram_)
    for cell in [(0, 0), (5, 1), (9, 2), (50, 50)]:
        for n in range(1, 8):
            assert again.hazard(cell, n) == pytest.approx(dwell.hazard(cell, n))
    assert again.remaining((2, 0), 1, 20) == dwell.remaining((2, 0), 1, 20)


def test_fit_turns_the_term_on_only_where_tracks_stay(model):
    assert model.config.stay_prior is True and model.stay_term
    collapsed = [Track(f"c{i}", np.array([(x, i % 3) for x in range(10)])) for i in range(6)]
    assert Forecaster(hidden=8).fit(collapsed, epochs=1).config.stay_prior is False
    old = CellForecasterConfig(head="fusion").to_dict()
    del old["stay_prior"]
    assert CellForecasterConfig.from_dict(old).stay_prior is False   # old checkpoints: no term


def test_the_learned_model_leaves_when_the_hold_is_spent(model):
    route = held(10)
    for spent in (1, 2):
        prefix = route[:HOLD * 3 + spent]
        assert model.predict_next(prefix, k=1)[0].cell == tuple(prefix[-1])
    leave = route[:HOLD * 4]                        # the 4th step in cell (3, 0)
    assert model.predict_next(leave, k=1)[0].cell == (4, 0)


def test_every_prediction_path_reads_the_same_term(model):
    prefix = held(10, row=1)[:HOLD * 2 + 3]
    ref = model.predict_next(prefix, k=4)
    stream = StreamingPredictor(model, k=4)
    got = None
    for cell in prefix:
        got = stream.update("a", cell)
    assert [g.cell for g in got] == [r.cell for r in ref]
    assert np.allclose([g.p for g in got], [r.p for r in ref], atol=2e-5)
    cands, logp, _ = model.step_distributions(prefix)
    last = logp[-1]
    best = np.argsort(-last)[:4]
    assert [tuple(cands[-1, j]) for j in best] == [r.cell for r in ref]
    assert spent_steps(prefix)[-1] == 3                # the third step in (2, 1)


def test_save_and_stripped_export_keep_every_prediction(model, tmp_path):
    model.save(tmp_path / "m")
    assert "data.dwell_histogram" in load(weights_of(tmp_path / "m").read_bytes())
    export_model(tmp_path / "m", tmp_path / "x", strip_tracks=True)
    for directory in ("m", "x"):
        loaded = Forecaster.load(tmp_path / directory)
        for prefix in (held(10)[:7], held(10, row=2)[:HOLD * 5]):
            assert [(c.cell, round(c.p, 6)) for c in loaded.predict_next(prefix)] == \
                [(c.cell, round(c.p, 6)) for c in model.predict_next(prefix)]


@pytest.mark.parametrize("rows,message", [
    (np.array([[0, 0, 0, 1, 1]], np.int64), "run lengths and counts >= 1"),
    (np.array([[0, 0, 2, 3, 1]], np.int64), "ended 0 or 1"),
    (np.array([[0, 0, 10**7, 1, 10**7]], np.int64), "steps in all"),
    (np.array([[2**40, 0, 2, 1, 1]], np.int64), "cells beyond"),
    (np.zeros((3, 4), np.int64), "must be int64 (R, 5)"),
])
def test_a_crafted_histogram_is_refused_naming_the_tensor(model, tmp_path, rows, message):
    """Written with a correct checksum, so only the load-time checks can catch it (the CLI cases
    are in the hostile corpus, tests/data/hostile/cases_model.py)."""
    model.save(tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    config = json.loads(config_path.read_text())
    tensors = load(weights_of(tmp_path / "m").read_bytes())
    tensors["data.dwell_histogram"] = torch.from_numpy(rows)
    blob = save(tensors)
    digest = hashlib.sha256(blob).hexdigest()
    weights_of(tmp_path / "m").unlink()
    (tmp_path / "m" / f"weights-{digest[:16]}.safetensors").write_bytes(blob)
    config.update(weights=f"weights-{digest[:16]}.safetensors", weights_sha256=digest)
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="dwell_histogram") as caught:
        Forecaster.load(tmp_path / "m")
    assert message in str(caught.value)


def test_prediction_tables_are_exact_and_bounded_by_the_training_cells():
    """Predictions read per-cell tables (a live track asks once per point); they equal the scalar
    hazard everywhere and never grow with cells outside the training data."""
    from gridcast.nextcell.dwell import _log_odds_stay

    dwell = Dwell([t.cells for t in tracks()])
    for cell in [(0, 0), (9, 2), (4, 1)] + [(1000 + i, -i) for i in range(500)]:
        for spent in (1, 2, HOLD, HOLD + 1, 10**6):
            assert dwell.stay_features(cell, spent) == pytest.approx(
                (_log_odds_stay(dwell.hazard(cell, spent)), _log_odds_stay(dwell.hazard((-1, -1), spent))), abs=0)
    assert len(dwell._stay_tables) == 3


def test_a_histogram_at_the_bounds_loads_fast_and_keeps_its_tables_short():
    """One run of 19,999,999 steps (the most a stored histogram may count) and 200,000 cells: one
    sort to index them, tables only for cells asked about, none longer than MAX_RUN + 1."""
    import time

    from gridcast.nextcell.dwell import MAX_RUN

    started = time.perf_counter()
    long = Dwell.from_histogram(np.array([[0, 0, 19_999_999, 1, 1]], np.int64))
    many = np.zeros((200_000, 5), np.int64)
    many[:, 0], many[:, 2], many[:, 3], many[:, 4] = np.arange(200_000), 3, 1, 1
    wide = Dwell.from_histogram(many)
    assert time.perf_counter() - started < 5.0
    assert long.stay_features((0, 0), 5)[0] == LOG_ODDS_CLIP          # it stayed on, as far as told
    assert len(long._table_of((0, 0))[1]) == MAX_RUN + 1
    assert wide.stay_features((7, 0), 3)[0] < 0 < wide.stay_features((7, 0), 2)[0]
    assert len(wide._tables) == 1
