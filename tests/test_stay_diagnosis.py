"""benchmarks/stay_diagnosis.py: the numbers behind "why the model loses Acc@1 to stay at a fixed
step" are computed right. A predictor with known probabilities on a track with known dwell (every
cell held exactly 3 steps): P(stay), the stay rate, Acc@1 and the lost steps per dwell count must be
exactly the ones constructed."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gridcast.nextcell.features import dwell_counts
from gridcast.tracks import Track

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "stay_diagnosis.py"
HOLD = 3
P_STAY = {0: 0.4, 1: 0.9, 2: 0.9}  # by dwell count: just moved in -> the known predictor bets on a move


def _load():
    spec = importlib.util.spec_from_file_location("stay_diagnosis", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class KnownPredictor:
    """Candidates: stay, one step east (the route), five steps east (far); P(stay) set by dwell."""

    def __init__(self, vocab_cells):
        self.config = SimpleNamespace(max_move=2)
        self.vocab_ = SimpleNamespace(index={tuple(c): i for i, c in enumerate(vocab_cells)})

    def step_distributions(self, cells, times=None):
        cells = np.asarray(cells)
        run, _ = dwell_counts(cells)
        stay = np.array([P_STAY[int(r)] for r in run])
        p = np.stack([stay, 0.95 - stay, np.full(len(cells), 0.05)], axis=1)
        cands = np.stack([cells, cells + [1, 0], cells + [5, 0]], axis=1)
        return cands, np.log(p), np.full(len(cells), -np.inf)


def _track(track_id="F1#1"):
    return Track(track_id, np.repeat(np.array([[x, 0] for x in range(4)]), HOLD, axis=0))  # 12 points, 11 steps


@pytest.fixture(scope="module")
def diag():
    return _load()


def test_stay_probability_and_rate_by_dwell_are_the_constructed_ones(diag):
    records = diag.step_records(KnownPredictor([[0, 0], [1, 0]]), [_track()])
    table = {row["dwell"]: row for row in diag.stay_by_dwell(records)}
    assert set(table) == {"0", "1", "2"}
    assert [table[d]["steps"] for d in ("0", "1", "2")] == [4, 4, 3]
    assert table["0"]["p_stay"] == pytest.approx(0.4) and table["1"]["p_stay"] == pytest.approx(0.9)
    # held 3 steps: after 0 or 1 steps in a cell it stays, after 2 it moves on
    assert [table[d]["stay_rate"] for d in ("0", "1", "2")] == [1.0, 1.0, 0.0]
    assert [table[d]["top_is_stay"] for d in ("0", "1", "2")] == [0.0, 1.0, 1.0]
    assert [table[d]["acc1"] for d in ("0", "1", "2")] == [0.0, 1.0, 0.0]
    assert table["0"]["p_window"] == pytest.approx(0.55) and table["0"]["p_far"] == pytest.approx(0.05)


def test_summary_counts_the_steps_lost_and_won_against_stay(diag):
    records = diag.step_records(KnownPredictor([[0, 0], [1, 0]]), [_track()])
    s = diag.summary(records)
    assert s["steps"] == 11
    assert s["acc1"] == round(4 / 11, 3) and s["stay_acc1"] == round(8 / 11, 3)
    assert s["lost_share"] == round(4 / 11, 3) and s["won_share"] == 0.0  # every move bet was on a stay
    assert s["lost"]["dwell0_share"] == 1.0 and s["lost"]["p_top"] == pytest.approx(0.55)
    assert s["by_vocab"]["in"]["steps"] == 6 and s["by_vocab"]["out"]["steps"] == 5


def test_groups_are_the_ids_before_gap_and_period_marks(diag):
    groups = diag.by_group(KnownPredictor([]), [_track("F1#1"), _track("F1#2@p"), _track("M2")])
    assert set(groups) == {"F1", "M2"}
    assert groups["F1"]["steps"] == 22 and groups["F1"]["stay_acc1"] == round(16 / 22, 3)
