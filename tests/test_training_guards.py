"""Training guards: a NaN validation loss is never the best epoch, a run with no finite epoch writes no
model, the log is JSON, numeric flags are checked, and --resume refuses other data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import write_random_walks
from gridcast.cli import main
from gridcast.nextcell.training import TrainConfig, TrainingError, data_fingerprint, fit, training_memory_bytes
from gridcast.tracks import Track


def _loop(val_losses: list[float], tmp_path):
    """fit() on a 1-weight model whose validation loss per epoch is given."""
    model = nn.Linear(1, 1)
    epoch = {"n": 0}

    def batches(rng):
        epoch["n"] += 1
        yield "train"

    def loss_fn(m, batch):
        out = m(torch.ones(1, 1)).sum() ** 2
        if batch == "val":
            value = val_losses[min(epoch["n"], len(val_losses)) - 1]
            return out * 0 + value
        return out

    config = TrainConfig(epochs=len(val_losses), patience=100)
    return fit(model, batches, ["val"], loss_fn, config, log_path=tmp_path / "log.jsonl")


def test_a_nan_validation_loss_is_never_best(tmp_path):
    result = _loop([float("nan"), 2.0, float("nan"), float("inf")], tmp_path)
    assert result.best_epoch == 2 and result.best_val_loss == 2.0
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]  # strict JSON
    assert [e["val_loss"] for e in lines] == [None, 2.0, None, None]


def test_no_finite_epoch_is_a_training_error(tmp_path):
    with pytest.raises(TrainingError, match="no epoch of 3 reached a finite validation loss"):
        _loop([float("nan")] * 3, tmp_path)


def _data(path, seed=0, n_tracks=6, length=8):
    write_random_walks(path, n_tracks, length, seed)


FIT = ["fit", "--x-col", "x", "--y-col", "y", "--cell-size", "1", "--hidden", "8", "--no-progress"]


def test_diverging_offset_run_exits_2_and_writes_no_model(tmp_path, capsys):
    data, out = tmp_path / "d.csv", tmp_path / "m"
    _data(data)
    code = main([FIT[0], str(data), *FIT[1:], "--target", "offset", "--lr", "1", "--clip", "0", "--epochs", "3",
                 "--out", str(out)])
    err = capsys.readouterr().err
    if code == 0:  # lr 1 did not diverge here: the guard has nothing to catch, but the model must be finite
        from gridcast.nextcell.checkpoint import load_checkpoint
        tensors, _ = load_checkpoint(out)
        assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
        return
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert not (out / "config.json").exists()


@pytest.mark.parametrize("flags,needle", [
    (["--lr", "nan"], "--lr must be a finite number in (0, 1]"),
    (["--lr", "-1"], "--lr must be"),
    (["--lr", "1e20"], "--lr must be"),
    (["--lr", "1e38"], "--lr must be"),
    (["--batch-size", "0"], "--batch-size must be an integer in [1, 65536]"),
    (["--seed", "-1"], "--seed must be an integer in [0, 4294967295]"),
    (["--epochs", "0"], "--epochs must be an integer in [1, 100000]"),
    (["--hidden", "20000"], "--hidden must be"),
    (["--dropout", "1"], "--dropout must be"),
    (["--cell-size", "nan"], "--cell-size must be"),
    (["--val-fraction", "-0.1"], "--val-fraction must be"),
])
def test_fit_flags_out_of_range_are_one_line(tmp_path, capsys, flags, needle):
    data = tmp_path / "d.csv"
    _data(data)
    code = main([FIT[0], str(data), *FIT[1:], "--out", str(tmp_path / "m"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1
    assert not (tmp_path / "m").exists()  # refused before anything was written


def test_fit_out_that_is_a_file_is_refused(tmp_path, capsys):
    data, target = tmp_path / "d.csv", tmp_path / "model.txt"
    _data(data)
    target.write_text("keep me")
    assert main([FIT[0], str(data), *FIT[1:], "--out", str(target)]) == 2
    assert "is a file, not a model directory" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_memory_estimate_refuses_with_the_numbers_and_the_fix(tmp_path, capsys):
    data = tmp_path / "d.csv"
    _data(data, n_tracks=40, length=30)
    code = main([FIT[0], str(data), *FIT[1:], "--out", str(tmp_path / "m"), "--memory-limit", "1MiB"])
    err = capsys.readouterr().err
    assert code == 2 and "over --memory-limit" in err and "--cell-size" in err and "--batch-size" in err
    assert not (tmp_path / "m" / "config.json").exists()
    assert training_memory_bytes(40_000, 40_026, 32, 256, 32, 128, 1) > 4 * 2**30  # the runaway job


def test_data_fingerprint_sees_cells_and_preprocessing():
    a = [Track("a", np.array([[0, 0], [1, 0]]))]
    b = [Track("a", np.array([[0, 0], [0, 1]]))]
    assert data_fingerprint(a, [], {"collapse": True}) == data_fingerprint(a, [], {"collapse": True})
    assert data_fingerprint(a, [], {}) != data_fingerprint(b, [], {})
    assert data_fingerprint(a, [], {"collapse": True}) != data_fingerprint(a, [], {"collapse": False})
    assert data_fingerprint(a, b, {}) != data_fingerprint(b, a, {})


def test_resume_over_other_data_of_the_same_size_is_refused(tmp_path, capsys):
    a, b, out = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "m"
    _data(a, seed=0)
    _data(b, seed=1)  # same tracks, same lengths, other cells
    assert main([FIT[0], str(a), *FIT[1:], "--out", str(out), "--epochs", "2"]) == 0
    capsys.readouterr()
    assert main([FIT[0], str(b), *FIT[1:], "--out", str(out), "--epochs", "2", "--resume"]) == 2
    assert "DATA is not the data the interrupted run trained on" in capsys.readouterr().err
    state = out / "resume" / "config.json"
    document = json.loads(state.read_text())
    del document["settings"]["data"]  # a state saved before fingerprints existed
    state.write_text(json.dumps(document))
    assert main([FIT[0], str(a), *FIT[1:], "--out", str(out), "--epochs", "2", "--resume"]) == 2
    assert "no data fingerprint" in capsys.readouterr().err


@pytest.mark.parametrize("argv,needle", [
    (["predict", "M", "--track", "1e20,3"], "out of range"),
    (["predict", "M", "--track", "0,0", "--horizon", "1001"], "--horizon must be an integer in [1, 1000]"),
    (["predict", "M", "--track", "0,0", "--top-k", "0"], "--top-k must be"),
    (["evaluate", "M", "D", "--plot", "x.txt"], "must end in .png, .pdf, .svg"),
    (["evaluate", "M", "D", "--cut", "1.5"], "--cut must be"),
    (["demo", "--epochs", "0"], "--epochs must be"),
    (["demo", "--seed", "-1"], "--seed must be"),
    (["explain", "gradients", "--hidden", "100000"], "--hidden must be"),
])
def test_other_commands_check_their_numbers(tmp_path, capsys, argv, needle):
    if argv[0] in ("predict", "evaluate"):
        data, model = tmp_path / "d.csv", tmp_path / "m"
        _data(data)
        assert main([FIT[0], str(data), *FIT[1:], "--out", str(model), "--epochs", "1"]) == 0
        capsys.readouterr()
        argv = [str(model) if a == "M" else str(data) if a == "D" else a for a in argv]
    if argv[0] == "explain":
        argv = [*argv, "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_horizon_cap_is_overridable(tmp_path, capsys):
    data, model = tmp_path / "d.csv", tmp_path / "m"
    _data(data)
    assert main([FIT[0], str(data), *FIT[1:], "--out", str(model), "--epochs", "1"]) == 0
    assert main(["predict", str(model), "--track", "0,0 1,0", "--horizon", "1200", "--max-horizon", "2000",
                 "--top-k", "1", "--json"]) == 0


def test_continuous_fit_with_no_finite_epoch_keeps_no_weights():
    import gridcast.continuous as C
    from gridcast.errors import GridcastError

    rng = np.random.default_rng(0)
    traj = np.cumsum(rng.normal(size=(40, 20, 2)), axis=1)
    cfg = C.ContinuousConfig(kind="gru", hidden=8, modes=1, epochs=2, patience=2, batch=32)
    tr = C.prepare(traj[:30, :8], traj[:30, 8:], cfg)
    future = traj[30:, 8:].copy()
    future[0, 0, 0] = np.nan  # one NaN in the validation truth: every epoch's ADE is NaN
    va = C.prepare(traj[30:, :8], future, cfg)
    with pytest.raises(GridcastError, match="no epoch of 2 reached a finite validation ADE"):
        C.fit(tr, va, cfg)
