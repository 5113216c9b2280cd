"""Both modes on the bundled Liverpool data: `gridcast bench liverpool --mode` (the demo protocol through
the benchmark runner) and `gridcast demo --mode fixed` end to end (short runs: a protocol check)."""
import json

import numpy as np
import pytest

from gridcast.cli import main
from gridcast.datasets.liverpool import load_liverpool_commute


def test_liverpool_modes_share_the_split_and_differ_in_steps():
    collapsed, fixed = load_liverpool_commute("collapsed"), load_liverpool_commute("fixed")
    assert collapsed.sizes()["train_tracks"] == fixed.sizes()["train_tracks"] == 11
    assert collapsed.sizes()["test_tracks"] == fixed.sizes()["test_tracks"] == 5
    assert fixed.sizes()["test_transitions"] > collapsed.sizes()["test_transitions"]
    assert all(np.any(t.cells[1:] != t.cells[:-1], axis=1).all() for t in collapsed.test)
    assert any(not np.any(t.cells[1:] != t.cells[:-1], axis=1).all() for t in fixed.test)
    assert all(np.allclose(np.diff(t.times), 30.0) for t in fixed.test)
    with pytest.raises(Exception, match="--mode must be one of"):
        load_liverpool_commute("stays")


@pytest.mark.parametrize("mode", ["collapsed", "fixed"])
def test_bench_liverpool_quick_json(mode, capsys):
    assert main(["bench", "liverpool", "--mode", mode, "--quick", "--epochs", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"]["mode"] == mode and result["protocol"]["dataset"] == "liverpool"
    assert result["sizes"]["test_tracks"] == 5 and result["n"] == result["sizes"]["test_transitions"]
    for metric, base in result["strongest_baseline"].items():
        d = result["paired"]["lstm"][base][metric]
        assert d["lo"] <= d["diff"] <= d["hi"]
    model = result["models"]["lstm"]
    assert 0.0 <= model["ece"] <= 1.0 and 0.0 < model["ece_floor"] < 0.5 and model["ece_std"] >= 0.0
    stay = result["baselines"]["stay"]                # certain of one cell: its ECE is its miss rate
    assert stay["ece"] == pytest.approx(1.0 - stay["acc@1"])


def test_demo_fixed_mode_writes_a_model_that_evaluate_reads_without_collapse(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--cells", "rnn", "--epochs", "1", "--mode", "fixed", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["protocol"] == {"mode": "fixed"}
    saved = json.loads((out / "model" / "config.json").read_text())
    assert saved["preprocessing"]["collapse"] is False
    assert main(["evaluate", str(out / "model"), str(out / "test.parquet"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["n"] == table["n"]  # every 30 s step of the 5 test trips, stays included
    assert evaluated["model"]["acc@1"] == pytest.approx(table["models"]["rnn"]["acc@1"], abs=1e-9)


def test_fit_defaults_spec_trains_the_model_gridcast_fit_trains():
    """`--fit-defaults`: the benchmark's models are `Forecaster(cell=kind)` fitted with `TrainConfig()`,
    i.e. what `gridcast fit` trains; the benchmark's own settings (hidden 64, min_tracks 2, ...) are unused."""
    from gridcast.bench.commute import ModelSpec
    from gridcast.nextcell.forecaster import Forecaster
    from gridcast.nextcell.training import TrainConfig

    spec = ModelSpec(fit_defaults=True)
    assert Forecaster(**spec.config("gru")).config == Forecaster(cell="gru").config
    assert Forecaster(**ModelSpec().config("gru")).config != Forecaster(cell="gru").config
    assert spec.train(3) == {"seed": 3}
    assert TrainConfig(**spec.train(3)) == TrainConfig(seed=3)


def test_fit_defaults_refuses_overrides(capsys):
    assert main(["bench", "liverpool", "--fit-defaults", "--hidden", "8"]) == 2
    assert "--fit-defaults trains at fit's defaults: drop --hidden" in capsys.readouterr().err
