"""`gridcast demo` end to end on the bundled real data (a short run: one cell kind, few epochs)."""
import json

import pytest

from gridcast.cli import main


def test_demo_runs_on_bundled_data_and_reports_beside_baselines(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--cells", "gru", "--epochs", "8"]) == 0
    text = capsys.readouterr().out
    assert "GRU (ours)" in text and "markov2_spatial" in text and "constant_velocity" in text
    assert "strongest baseline" in text
    for metric in ("acc@1", "acc@5", "mrr", "ade", "fde"):  # one verdict line per metric
        assert sum(line.startswith(f"{metric}: best model ") for line in text.splitlines()) == 1, metric
    assert "markov1_dwell" in text and "markov2_dwell" in text
    for name in ("prediction.png", "training.png", "metrics.json", "test.parquet"):
        assert (out / name).stat().st_size > 1000, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_tracks"] == 11 and metrics["test_tracks"] == 5
    assert 0.0 <= metrics["models"]["gru"]["acc@1"] <= 1.0
    assert {"acc@1", "acc@5", "mrr", "ade", "fde", "ade_cells", "fde_cells"} <= set(metrics["models"]["gru"])
    # The written model and held-out file work with the other commands.
    assert main(["evaluate", str(out / "model"), str(out / "test.parquet"), "--collapse", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["n"] == metrics["n"]
    assert abs(evaluated["model"]["acc@1"] - metrics["models"]["gru"]["acc@1"]) < 1e-9
    assert set(evaluated["baselines"]) == set(metrics["baselines"])  # the same baselines, fitted on the same trips
    for name, row in evaluated["baselines"].items():
        assert row == pytest.approx({m: v for m, v in metrics["baselines"][name].items() if not m.endswith("_ci95")},
                                    rel=1e-12, nan_ok=True), name
    assert main(["predict", str(out / "model"), "--track", metrics["example_track"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["next"]
