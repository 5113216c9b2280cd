"""`gridcast explain`: every topic writes non-empty figures, --json keys are stable (the contract
shapes for gradients and memory), bad usage exits 2 with one line. Tiny settings throughout."""
import json

import pytest
import torch

from gridcast.cli import main

TINY_FIT = ["--epochs", "1", "--hidden", "6"]
TINY_MEMORY = ["--max-delay", "2", "--steps", "20", "--mem-hidden", "6", "--side", "2", "--refine", "0"]


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()  # explain pins torch to one thread
    yield
    torch.set_num_threads(before)


def _explain(capsys, tmp_path, topic, *args):
    code = main(["explain", topic, "--out", str(tmp_path), "--json", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert result["files"], "every topic writes at least one figure"
    for name in result["files"]:
        with open(name, "rb") as f:
            assert len(f.read()) > 2000, name
    assert json.loads((tmp_path / f"{topic}.json").read_text())["files"] == result["files"]
    return result


def test_gradients_json_contract(capsys, tmp_path):
    result = _explain(capsys, tmp_path, "gradients", *TINY_FIT, "--seeds", "1", "--length", "51", "--cells", "lstm")
    assert set(result["kinds"]) == {"lstm"}
    for row in result["kinds"].values():
        assert {"norm_by_k", "decay_1_50"} <= set(row)
        assert len(row["norm_by_k"]) == 51 and all(isinstance(v, float) for v in row["norm_by_k"])
        assert isinstance(row["decay_1_50"], float) and row["decay_1_50"] > 0
        assert row["decay_1_50"] == pytest.approx(row["norm_by_k"][1] / row["norm_by_k"][50])
    assert (tmp_path / "gradients.png").exists() and (tmp_path / "clipping.png").exists()


def test_memory_json_contract(capsys, tmp_path):
    result = _explain(capsys, tmp_path, "memory", *TINY_MEMORY, "--cells", "rnn,gru")
    assert set(result["kinds"]) == {"rnn", "gru"}
    for row in result["kinds"].values():
        assert isinstance(row["max_delay"], int) and 0 <= row["max_delay"] <= 2


def test_gates_writes_one_heatmap_per_kind(capsys, tmp_path):
    result = _explain(capsys, tmp_path, "gates", *TINY_FIT)
    assert set(result["kinds"]) == {"rnn", "lstm", "gru"}
    assert {p.name for p in tmp_path.glob("gates_*.png")} == {"gates_rnn.png", "gates_lstm.png", "gates_gru.png"}
    assert "forget_mean" in result["kinds"]["lstm"]["summary"]
    assert "update_mean" in result["kinds"]["gru"]["summary"]


def test_gates_on_a_saved_model_and_given_track(capsys, tmp_path):
    from gridcast.insight import FitSettings, fit_forecaster, liverpool

    data = liverpool()
    fit_forecaster(data.train, "gru", 0, FitSettings(epochs=1, hidden=4, embed=2)).save(tmp_path / "model")
    track = " ".join(f"{c},{r}" for c, r in data.test[0].cells[:12])
    result = _explain(capsys, tmp_path / "out", "gates", "--model", str(tmp_path / "model"), "--track", track)
    assert list(result["kinds"]) == ["gru"] and result["track"]["steps"] == 12


def test_compare_reports_accuracy_time_and_size(capsys, tmp_path):
    result = _explain(capsys, tmp_path, "compare", *TINY_FIT, "--seeds", "1")
    rows = result["kinds"]
    assert set(rows) == {"rnn", "lstm", "gru"}
    for row in rows.values():
        assert {"acc@1", "acc@5", "mrr", "seconds_per_epoch", "params_recurrent", "fwd_bwd_ms_fused"} <= set(row)
    # parameter counts follow the gate count: 1, 4 and 3 chunks of the same matrices
    assert rows["lstm"]["params_recurrent"] == 4 * rows["rnn"]["params_recurrent"]
    assert rows["gru"]["params_recurrent"] == 3 * rows["rnn"]["params_recurrent"]
    assert "markov" in " ".join(result["baselines"]).lower()


def test_ablations(capsys, tmp_path):
    result = _explain(capsys, tmp_path, "ablations", *TINY_FIT, *TINY_MEMORY)
    variants = result["gates"]["variants"]
    assert set(variants) == {"lstm", "lstm_no_forget", "lstm_coupled", "lstm_forget_bias_1", "gru"}
    assert all({"max_delay", "acc@1", "nll"} <= set(v) for v in variants.values())
    runs = result["activation"]["runs"]
    assert any(name.startswith("rnn_relu") for name in runs) and any(name.startswith("rnn_tanh") for name in runs)
    assert all("diverged_at_epoch" in row for row in runs.values())
    assert set(result["activation"]["decay_1_50"]) == {"rnn_tanh init", "rnn_tanh trained", "rnn_relu init",
                                                       "rnn_relu trained"}


def test_diagram(capsys, tmp_path):
    result = _explain(capsys, tmp_path, "diagram", "--cells", "lstm", "--variants", "--format", "png")
    assert result["cells"]["cell_lstm"]["gates"]["forget"] == "sigmoid"
    assert result["cells"]["cell_lstm_coupled"]["gates"]["forget"] == "one_minus_input"
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["cell_lstm.png", "cell_lstm_coupled.png",
                                                              "cell_lstm_no_forget.png", "cell_rnn_relu.png"]


@pytest.mark.parametrize("argv,needle", [
    (["gradients", "--length", "20"], "--length"),
    (["gradients", "--cells", "lstm,transformer"], "--cells"),
    (["memory", "--steps", "0"], "--steps"),
    (["compare", "--seeds", "0"], "--seeds"),
    (["diagram", "--format", "gif"], "--format"),
    (["gates", "--track", "1,2 x"], "--track"),
    (["gates", "--model", "/nonexistent/model"], "nonexistent"),
])
def test_bad_usage_is_one_line_and_exit_2(capsys, tmp_path, argv, needle):
    code = main(["explain", argv[0], "--out", str(tmp_path / "o"), *argv[1:]])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing is written before the input is checked
