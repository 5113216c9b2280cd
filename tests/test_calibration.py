"""Calibration: `metrics.ece`, the temperature `fit` fits on its validation tracks, and that every
prediction path applies it (Forecaster, batch, streaming, Ensemble, checkpoints, CLI)."""
import json

import numpy as np
import pytest
import torch

from gridcast.cli import main
from gridcast.metrics import ece, ece_floor, reliability
from gridcast.nextcell import Ensemble, Forecaster, StreamingPredictor, beam_many, predict_many
from gridcast.nextcell.calibration import NO_CALIBRATION, Calibration, calibration_error, fit_temperature, top1_along
from gridcast.tracks import Track

ROUTE_A = np.array([[x, 0] for x in range(8)])   # from (0, 0) east ...
ROUTE_B = np.array([[0, y] for y in range(8)])   # ... or north


def _tracks(n: int, seed: int, p_a: float = 0.7) -> list[Track]:
    """Trips from one start that go A with probability `p_a`, else B: the first step's true
    probabilities are known; every later step is certain."""
    rng = np.random.default_rng(seed)
    return [Track(f"{seed}-{i}", ROUTE_A if rng.random() < p_a else ROUTE_B) for i in range(n)]


# ---------------------------------------------------------------------------------------- ece
def test_ece_is_zero_when_confidence_matches_accuracy_and_measures_the_gap_otherwise():
    assert ece([0.7] * 10, [1] * 7 + [0] * 3) == pytest.approx(0.0)
    assert ece([0.9] * 4, [1, 0, 0, 0]) == pytest.approx(0.65)
    # two bins, weighted by their steps: |1.0 - 0.95| * 2/3 + |0 - 0.5| * 1/3
    assert ece([0.95, 0.95, 0.5], [1, 1, 0]) == pytest.approx(0.05 * 2 / 3 + 0.5 / 3)
    assert np.isnan(ece([], []))


def test_reliability_bins_are_15_equal_width_bins_closed_on_the_right():
    mean_conf, accuracy, counts = reliability([1.0, 1 / 15, 1 / 15 + 1e-9, 0.0], [1, 0, 1, 0])
    assert len(counts) == 15 and counts.sum() == 4
    assert counts[0] == 2 and counts[1] == 1 and counts[14] == 1  # 1/15 is bin 0's right edge; 0 goes to bin 0
    assert accuracy[14] == 1.0 and np.isnan(mean_conf[5])
    with pytest.raises(ValueError, match="one value per step"):
        reliability([0.5, 0.5], [1])


# --------------------------------------------------------------------------- fit_temperature
def test_fit_temperature_undoes_a_known_overconfidence():
    """Targets drawn from softmax(z); the model reports 2.5 z: the NLL-optimal temperature is 2.5."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 6, generator=g) * 1.5
    targets = torch.multinomial(torch.softmax(z, dim=1), 1, generator=g)[:, 0]
    calibration = fit_temperature(lambda: [(2.5 * z[:2000], targets[:2000]), (2.5 * z[2000:], targets[2000:])])
    assert calibration.temperature == pytest.approx(2.5, rel=0.06)
    assert calibration.steps == 4000
    assert calibration.nll_after < calibration.nll_before
    assert fit_temperature(lambda: [(z, targets)]).temperature == pytest.approx(1.0, rel=0.06)


def test_a_few_steps_cannot_push_the_temperature_far_from_one():
    """Ten confident, always right steps: the likelihood alone says T -> 0; the prior keeps it
    moderate, and with many such steps the data wins."""
    logits = torch.tensor([[3.0, 0.0]])
    few = fit_temperature(lambda: [(logits.repeat(10, 1), torch.zeros(10, dtype=torch.long))])
    many = fit_temperature(lambda: [(logits.repeat(10000, 1), torch.zeros(10000, dtype=torch.long))])
    assert 0.5 < few.temperature < 1.0
    assert many.temperature < few.temperature and many.temperature < 0.4


def test_fit_temperature_leaves_out_impossible_targets_and_needs_some_rows():
    logits = torch.tensor([[2.0, -float("inf")], [2.0, 0.0]])
    assert fit_temperature(lambda: [(logits, torch.tensor([1, 0]))]).steps == 1
    assert fit_temperature(lambda: [(logits[:1], torch.tensor([1]))]) == NO_CALIBRATION


# --------------------------------------------------------------- a model on known probabilities
@pytest.fixture(scope="module")
def known():
    """A plain-head GRU on 100 trips, 70% of them A: the first step has p(A) = 0.7."""
    model = Forecaster(cell="gru", hidden=32, head="plain").fit(_tracks(100, 0), epochs=40)
    return model, _tracks(400, 1)


def test_calibrated_model_says_0_7_where_the_truth_is_0_7_and_its_ece_is_small(known):
    model, test = known
    assert model.calibration_.method == "temperature" and model.calibration_.steps > 0
    top = model.predict_next(ROUTE_A[:1], k=2)
    assert top[0].cell == (1, 0) and top[0].p == pytest.approx(0.7, abs=0.05)
    assert top[1].cell == (0, 1) and top[1].p == pytest.approx(0.3, abs=0.05)
    parts = [top1_along(model, t.cells) for t in test]
    confidence = np.concatenate([c for c, _ in parts])
    correct = np.concatenate([k for _, k in parts])
    first = slice(0, None, len(ROUTE_A) - 1)  # the one uncertain step of every trip
    assert ece(confidence[first], correct[first]) < 0.05
    assert ece(confidence, correct) < 0.02
    assert calibration_error(model, test) == pytest.approx(ece(confidence, correct))


def test_an_overconfident_network_gets_a_temperature_above_one(known):
    """Logits scaled up 3x (the head is linear) make the network 3x too sure: calibration on the
    same held-out trips finds a temperature 3x as large (above 1), and gives the same p back (up to
    the prior that keeps T near 1, which 400 trips outweigh)."""
    model, _ = known
    fitted, held_out = model.calibration_, _tracks(400, 2)
    try:
        plain = model.calibrate(held_out).temperature
        before = model.predict_next(ROUTE_A[:1], k=1)[0].p
        with torch.no_grad():
            model.net_.head.weight.mul_(3.0)
            model.net_.head.bias.mul_(3.0)
        model.calibration_ = NO_CALIBRATION
        assert model.predict_next(ROUTE_A[:1], k=1)[0].p > 0.85  # overconfident (0.7 with logits x3: 0.93)
        hot = model.calibrate(held_out).temperature
        assert hot > 1.0 and hot / plain == pytest.approx(3.0, rel=0.05)
        assert model.predict_next(ROUTE_A[:1], k=1)[0].p == pytest.approx(before, abs=0.02)
    finally:
        with torch.no_grad():
            model.net_.head.weight.div_(3.0)
            model.net_.head.bias.div_(3.0)
        model.calibration_ = fitted


# ------------------------------------------------------------------- every path applies it
@pytest.fixture(scope="module", params=["plain", "fusion", "move"])
def hot(request):
    """A small model of each softmax head, with a deliberately large temperature."""
    settings = {"target": "move"} if request.param == "move" else {"head": request.param}
    model = Forecaster(cell="lstm", hidden=12, embed=4, **settings).fit(_tracks(30, 3), epochs=3)
    model.calibration_ = Calibration(temperature=2.5)
    return model


def test_temperature_changes_probabilities_never_rankings(hot):
    prefix = ROUTE_A[:3]
    hot_next = hot.predict_next(prefix, k=4)
    saved, hot.calibration_ = hot.calibration_, NO_CALIBRATION
    try:
        raw_next = hot.predict_next(prefix, k=4)
        raw_ranks = hot.ranks_along(ROUTE_B)[0]
        raw_greedy = hot.rollout(prefix, 5)
    finally:
        hot.calibration_ = saved
    assert [n.cell for n in hot_next] == [n.cell for n in raw_next]
    assert hot_next[0].p < raw_next[0].p  # T > 1 flattens
    assert np.array_equal(hot.ranks_along(ROUTE_B)[0], raw_ranks)
    assert hot.rollout(prefix, 5) == raw_greedy


def test_batch_streaming_and_ensemble_use_the_temperature(hot):
    prefixes = [ROUTE_A[:3], ROUTE_B[:2], ROUTE_A[:1]]
    for prefix, routes in zip(prefixes, beam_many(hot, prefixes, horizon=4, width=3)):
        alone = hot.beam(prefix, horizon=4, width=3)
        assert [r.cells for r in routes] == [r.cells for r in alone]
        assert [r.p for r in routes] == pytest.approx([r.p for r in alone], rel=1e-5)
    for prefix, answer in zip(prefixes, predict_many(hot, prefixes, horizon=2, width=2, k=3)):
        assert [n.p for n in answer.next] == pytest.approx([n.p for n in hot.predict_next(prefix, k=3)], rel=1e-5)
    stream = StreamingPredictor(hot, k=3)
    for t, cell in enumerate(ROUTE_A[:4]):
        live = stream.update("a", tuple(cell))
        want = hot.predict_next(ROUTE_A[:t + 1], k=3)
        assert [n.cell for n in live] == [n.cell for n in want]
        assert [n.p for n in live] == pytest.approx([n.p for n in want], rel=1e-4)
    cands, logp, _ = Ensemble([hot]).step_distributions(ROUTE_A)
    assert np.allclose(logp, hot.step_distributions(ROUTE_A)[1], equal_nan=True)


def test_the_temperature_travels_with_the_checkpoint(hot, tmp_path):
    hot.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["calibration"]["method"] == "temperature" and config["calibration"]["temperature"] == 2.5
    again = Forecaster.load(tmp_path / "m")
    assert again.temperature == 2.5
    assert [n.p for n in again.predict_next(ROUTE_A[:3])] == [n.p for n in hot.predict_next(ROUTE_A[:3])]


def test_a_checkpoint_without_calibration_predicts_at_temperature_one(hot, tmp_path):
    """Checkpoints from before calibration have no "calibration" key: T = 1, predictions unchanged."""
    hot.save(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    del config["calibration"]
    path.write_text(json.dumps(config))
    old = Forecaster.load(tmp_path / "m")
    assert old.temperature == 1.0 and old.calibration_.method == "none"
    saved, hot.calibration_ = hot.calibration_, NO_CALIBRATION
    try:
        assert [n.p for n in old.predict_next(ROUTE_A[:3])] == [n.p for n in hot.predict_next(ROUTE_A[:3])]
    finally:
        hot.calibration_ = saved


def test_a_broken_temperature_is_a_checkpoint_error(hot, tmp_path):
    from gridcast.errors import CheckpointError

    hot.save(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    config["calibration"]["temperature"] = -1
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="temperature"):
        Forecaster.load(tmp_path / "m")


# ------------------------------------------------------------------------------------- CLI
def _write(path, tracks):
    rows = ["track,time,x,y"] + [f"{t.id},{i},{x},{y}" for t in tracks for i, (x, y) in enumerate(t.cells)]
    path.write_text("\n".join(rows) + "\n")


def test_fit_calibrates_by_default_and_no_calibrate_keeps_temperature_one(tmp_path, capsys):
    data = tmp_path / "trips.csv"
    _write(data, _tracks(30, 4))
    common = [str(data), "--x-col", "x", "--y-col", "y", "--cell-size", "1", "--epochs", "3", "--no-progress"]
    assert main(["fit", *common, "--out", str(tmp_path / "cal")]) == 0
    assert "calibrated on" in capsys.readouterr().out
    assert main(["fit", *common, "--out", str(tmp_path / "raw"), "--no-calibrate", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["calibration"]["method"] == "none"
    cal = json.loads((tmp_path / "cal" / "config.json").read_text())["calibration"]
    raw = json.loads((tmp_path / "raw" / "config.json").read_text())["calibration"]
    assert cal["method"] == "temperature" and cal["steps"] > 0 and cal["temperature"] != 1.0
    assert cal["nll_after"] <= cal["nll_before"]
    assert raw == {"method": "none", "temperature": 1.0, "steps": 0, "nll_before": None, "nll_after": None}


def test_evaluate_reports_ece_and_draws_the_reliability_diagram(tmp_path, capsys):
    data, test = tmp_path / "trips.csv", tmp_path / "test.csv"
    _write(data, _tracks(30, 5))
    _write(test, _tracks(20, 6))
    model = tmp_path / "m"
    assert main(["fit", str(data), "--x-col", "x", "--y-col", "y", "--cell-size", "1", "--epochs", "3",
                 "--no-progress", "--out", str(model)]) == 0
    capsys.readouterr()
    png = tmp_path / "reliability.png"
    assert main(["evaluate", str(model), str(test), "--x-col", "x", "--y-col", "y", "--json",
                 "--plot-calibration", str(png)]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    assert 0.0 <= result["model"]["ece"] <= 1.0
    assert all(0.0 <= m["ece"] <= 1.0 for m in result["baselines"].values())
    assert result["baselines"]["stay"]["ece"] == pytest.approx(1.0 - result["baselines"]["stay"]["acc@1"])
    assert 0.0 < result["model"]["ece_floor"] < 0.5          # what chance alone gives on these steps
    assert png.stat().st_size > 5000 and str(png) in out.err
    assert main(["evaluate", str(model), str(test), "--x-col", "x", "--y-col", "y"]) == 0
    assert f"would show {result['model']['ece_floor']:.3f} on these {result['n']} steps" in capsys.readouterr().out


def test_ece_floor_is_what_a_calibrated_predictor_shows_and_shrinks_with_the_steps():
    rng = np.random.default_rng(3)
    for n in (200, 5000):
        confidence = rng.uniform(0.2, 0.95, n)
        simulated = [ece(confidence, rng.random(n) < confidence) for _ in range(300)]
        assert ece_floor(confidence) == pytest.approx(np.mean(simulated), rel=0.1)   # calibrated by construction
    wide, narrow = ece_floor(rng.uniform(0.2, 0.95, 200)), ece_floor(rng.uniform(0.2, 0.95, 20_000))
    assert narrow < 0.2 * wide                                        # ~1/sqrt(n): 100x the steps, ~10x smaller
    assert ece_floor(np.full(500, 1.0)) == 0.0                        # certain and right: nothing to chance
    assert np.isnan(ece_floor(np.zeros(0)))
