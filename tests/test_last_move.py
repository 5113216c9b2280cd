"""The fusion head's last move after a pause (`last_move="move"`, `features.came_from`).

Why it exists: at a fixed step the last *step's* move is none after any stay, so the head's geometry
(each candidate's distance from where the last move points) forgot which way a track was going as
soon as it paused, and sampled routes lost their direction (docs/benchmarks-fixed-step.md, "The
last move after a pause"). With ``last_move="move"`` the geometry aims along the move that
*entered* the current cell. These tests pin what the head reads, that the Markov prior is
untouched, and that every prediction path (predict, step distributions, beam, batched beam,
samples, streaming) reads the same.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from gridcast.nextcell import Forecaster
from gridcast.nextcell.batch import beam_many
from gridcast.nextcell.config import CellForecasterConfig
from gridcast.nextcell.features import NO_CELL, advance_came, came_from
from gridcast.nextcell.forecaster import spent_steps
from gridcast.nextcell.sampling import sample_routes
from gridcast.nextcell.streaming import StreamingPredictor
from gridcast.tracks import Track

N = NO_CELL
PAUSED = np.array([[0, 0], [1, 0], [1, 0], [1, 0], [2, 1], [2, 1]])


def corridor(east: bool, hold: int = 2, row: int = 0) -> np.ndarray:
    """Ten cells along a row, each held `hold` steps, eastwards or westwards."""
    xs = range(10) if east else range(9, -1, -1)
    return np.repeat(np.array([(x, row) for x in xs], np.int64), hold, axis=0)


def tracks(n: int = 12) -> list[Track]:
    return [Track(f"t{i}", corridor(east=i % 2 == 0, row=i % 3)) for i in range(n)]


@pytest.fixture(scope="module")
def model() -> Forecaster:
    torch.manual_seed(0)
    return Forecaster(hidden=16, embed=8).fit(tracks(), epochs=15, seed=0)


def test_came_from_is_the_previous_step_or_the_cell_before_the_pause():
    assert came_from(PAUSED).tolist() == [[N, N], [0, 0], [1, 0], [1, 0], [1, 0], [2, 1]]
    assert came_from(PAUSED, True).tolist() == [[N, N], [0, 0], [0, 0], [0, 0], [1, 0], [1, 0]]
    assert came_from(np.array([[3, 3], [3, 3]]), True).tolist() == [[N, N], [N, N]]  # never moved yet
    for moves_only in (False, True):  # one step on, per row, is the same as over the whole track
        came = came_from(PAUSED[:1], moves_only)
        for t in range(1, len(PAUSED)):
            came = advance_came(came, PAUSED[t - 1:t], PAUSED[t:t + 1], moves_only)
            assert came.tolist() == came_from(PAUSED[:t + 1], moves_only)[-1:].tolist()


def test_fit_reads_the_entering_move_only_where_tracks_stay(model):
    assert model.config.last_move == "move" and model.move_context
    collapsed = [Track(f"c{i}", np.array([(x, i % 3) for x in range(10)])) for i in range(6)]
    assert Forecaster(hidden=8).fit(collapsed, epochs=1).config.last_move == "step"
    old = CellForecasterConfig(head="fusion").to_dict()
    del old["last_move"]
    assert CellForecasterConfig.from_dict(old).last_move == "step"   # old checkpoints: as before
    with pytest.raises(Exception, match="last_move"):
        CellForecasterConfig(head="fusion", last_move="sideways")


def test_through_a_pause_the_geometry_keeps_the_entering_move_and_the_prior_is_unchanged(model):
    cells = corridor(east=True)
    moved = model._context(cells, model.came_from(cells), spent=spent_steps(cells))
    step_model = Forecaster.__new__(Forecaster)
    step_model.__dict__.update(model.__dict__)
    step_model.config = replace(model.config, last_move="step")
    stepped = step_model._context(cells, step_model.came_from(cells), spent=spent_steps(cells))
    for key in ("rows", "slots", "features", "evidence", "window", "stay"):  # the prior reads the previous step
        assert np.array_equal(moved[key], stepped[key]), key
    stays = np.flatnonzero((spent_steps(cells) > 1) & (model.came_from(cells)[:, 0] != NO_CELL))  # after a move
    assert len(stays) and np.array_equal(moved["geometry"][stays], moved["geometry"][stays - 1])
    east = int(np.flatnonzero((model.moves_.moves == (1, 0)).all(1))[0])
    assert (moved["geometry"][stays, :, 0].argmax(1) == east).all()     # after a pause: still the way it came
    assert (stepped["geometry"][stays, :, 0].argmax(1) != east).all()   # the last step's aim there: stay


def test_the_model_keeps_going_the_way_it_came_after_a_pause(model):
    """Both ways along the same cells: after a pause only the entering move tells them apart. The
    head reading the last step's move (none) splits its mass between the two ways (measured, seeds
    0-2: 0.21-0.42 on the way back, and the top is the way back twice); reading the entering move,
    the way back gets under 0.01."""
    torch.manual_seed(0)
    step_model = Forecaster(hidden=16, embed=8, last_move="step").fit(tracks(), epochs=15, seed=0)
    for east in (True, False):
        prefix = corridor(east)[:12]                 # the second step in the 6th cell: a pause
        assert np.array_equal(prefix[-1], prefix[-2])
        ahead = (int(prefix[-1, 0]) + (1 if east else -1), int(prefix[-1, 1]))
        nexts = dict((c.cell, c.p) for c in model.predict_next(prefix, k=5))
        plain = dict((c.cell, c.p) for c in step_model.predict_next(prefix, k=5))
        back = (2 * int(prefix[-1, 0]) - ahead[0], ahead[1])
        assert max(nexts, key=nexts.get) == ahead and nexts[ahead] > 0.9 and nexts.get(back, 0.0) < 0.05
        assert plain.get(back, 0.0) > 0.15                        # the last step's move: far less sure


def test_every_prediction_path_reads_the_same_last_move(model):
    prefixes = [corridor(True)[:12], corridor(False, row=1)[:7], corridor(True, row=2)[:4]]  # paused, moved, paused
    for prefix in prefixes:
        ref = model.predict_next(prefix, k=4)
        cands, logp, _ = model.step_distributions(prefix)
        best = np.argsort(-logp[-1])[:4]
        assert [tuple(cands[-1, j]) for j in best] == [r.cell for r in ref]
        stream = StreamingPredictor(model, k=4)
        for cell in prefix:
            got = stream.update("a", cell)
        assert [g.cell for g in got] == [r.cell for r in ref]
        assert np.allclose([g.p for g in got], [r.p for r in ref], atol=2e-5)
    many = beam_many(model, prefixes, horizon=4, width=3)
    for prefix, routes in zip(prefixes, many):
        alone = model.beam(prefix, horizon=4, width=3)
        assert [r.cells for r in routes] == [r.cells for r in alone]
        assert np.allclose([r.p for r in routes], [r.p for r in alone], atol=1e-6)
    drawn = sample_routes(model, prefixes, horizon=3, n=400, seed=0, continuing=True)
    for prefix, s in zip(prefixes, drawn):          # the first sampled step follows the next-step distribution
        nexts, p_end = model.predict_next_with_end(prefix, k=1)
        share = float(np.mean(np.all(s.cells[:, 0] == np.asarray(nexts[0].cell), axis=1)))
        assert abs(share - nexts[0].p / (1.0 - p_end)) < 0.08  # given that the route goes on


def test_streaming_in_bulk_keeps_where_the_track_came_from():
    torch.manual_seed(0)
    plain = Forecaster(hidden=16, embed=8, dwell_features=False, last_move="move").fit(tracks(), epochs=4, seed=0)
    prefix = corridor(True)[:12]
    stream = StreamingPredictor(plain, k=4)
    stream.feed_many("a", prefix[:-1])              # the fast loop: no dwell or time inputs
    got = stream.update("a", prefix[-1])
    ref = plain.predict_next(prefix, k=4)
    assert [g.cell for g in got] == [r.cell for r in ref]
    assert np.allclose([g.p for g in got], [r.p for r in ref], atol=2e-5)
