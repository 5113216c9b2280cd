"""Crash-proof training: a run killed with SIGKILL and resumed ends with the same weights, bit for bit."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import write_random_walks
from gridcast.cli import main
from gridcast.errors import GridcastError
from gridcast.nextcell.forecaster import Forecaster
from gridcast.nextcell.training import TrainingError
from gridcast.tracks import Track


def _write_data(path, n_tracks=24, length=30, seed=0):
    write_random_walks(path, n_tracks, length, seed)


FIT = ["fit", "--x-col", "x", "--y-col", "y", "--cell-size", "1", "--cell", "lstm", "--hidden", "32",
       "--epochs", "14", "--patience", "100", "--dropout", "0.2", "--batch-size", "4", "--no-progress"]


def _fit_cmd(data, out, *extra):
    return [sys.executable, "-m", "gridcast", FIT[0], str(data), *FIT[1:], "--out", str(out), *extra]


def _weights(directory):
    config = json.loads((directory / "config.json").read_text())
    return load_file(directory / config["weights"])


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    data = tmp_path / "data.csv"
    _write_data(data)
    full = tmp_path / "full"
    subprocess.run(_fit_cmd(data, full), check=True, env=_env(), capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_fit_cmd(data, killed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = killed / "train_log.jsonl"
    kill_after = int(np.random.default_rng().integers(2, 9))  # a random epoch, as a crash would pick
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= kill_after:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(log.read_text().splitlines())
    assert done < 14

    subprocess.run(_fit_cmd(data, killed, "--resume"), check=True, env=_env(), capture_output=True)
    a, b = _weights(full), _weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    full_log = [json.loads(x) for x in (full / "train_log.jsonl").read_text().splitlines()]
    resumed_log = [json.loads(x) for x in log.read_text().splitlines()]
    assert [e["val_loss"] for e in full_log] == [e["val_loss"] for e in resumed_log]


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    data = tmp_path / "data.csv"
    _write_data(data, n_tracks=6, length=8)
    out = tmp_path / "m"
    assert main([FIT[0], str(data), *FIT[1:], "--out", str(out), "--epochs", "2"]) == 0
    assert main([FIT[0], str(data), *FIT[1:], "--out", str(out), "--epochs", "2", "--hidden", "16", "--resume"]) == 2
    assert "different settings" in capsys.readouterr().err


def test_resume_without_saved_state_is_a_clear_error(tmp_path, capsys):
    data = tmp_path / "data.csv"
    _write_data(data, n_tracks=6, length=8)
    assert main([FIT[0], str(data), *FIT[1:], "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def _tracks():
    rng = np.random.default_rng(1)
    return [Track(str(i), np.cumsum(rng.integers(0, 2, size=(12, 2)), axis=0)) for i in range(10)]


def test_same_seed_same_data_identical_metrics():
    results = []
    for _ in range(2):
        model = Forecaster(cell="gru", hidden=16).fit(_tracks(), epochs=4, seed=3)
        results.append(([h.val_loss for h in model.result_.history], model.ranks_along(_tracks()[0].cells)[0].tolist()))
    assert results[0] == results[1]




def test_nan_loss_stops_naming_epoch_and_batch_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    model = Forecaster(cell="rnn", hidden=8)
    calls = {"n": 0}
    original = Forecaster._loss

    def poisoned(self, net, batch):
        calls["n"] += 1
        loss = original(self, net, batch)
        return loss * float("nan") if calls["n"] > 6 else loss

    monkeypatch.setattr(Forecaster, "_loss", poisoned)
    with pytest.raises(TrainingError, match=r"epoch \d+, batch \d+") as info:
        model.fit(_tracks(), epochs=10, batch_size=4, out_dir=tmp_path / "m")
    assert isinstance(info.value, GridcastError)
    loaded = Forecaster.load(tmp_path / "m")  # the last good checkpoint is intact
    assert loaded.predict_next(_tracks()[0].cells[:3], 1)


def test_skip_nonfinite_goes_on_and_counts(monkeypatch):
    calls = {"n": 0}
    original = Forecaster._loss

    def sometimes_nan(self, net, batch):
        calls["n"] += 1
        loss = original(self, net, batch)
        return loss * float("nan") if net.training and calls["n"] % 3 == 0 else loss

    monkeypatch.setattr(Forecaster, "_loss", sometimes_nan)
    model = Forecaster(cell="gru", hidden=8).fit(_tracks(), epochs=3, batch_size=2, skip_nonfinite=True)
    assert sum(h.skipped_batches for h in model.result_.history) > 0
    assert all(np.isfinite(h.train_loss) for h in model.result_.history)
