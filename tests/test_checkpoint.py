"""Save -> reload -> predict gives the same answers; broken checkpoints give clear errors."""
import json

import numpy as np
import pytest
import torch

from gridcast.errors import CheckpointError
from gridcast.grid import Grid
from gridcast.nextcell.checkpoint import load_checkpoint, save_checkpoint
from gridcast.nextcell.forecaster import Forecaster
from gridcast.tracks import Track


def _tracks():
    rng = np.random.default_rng(0)
    out = []
    for i in range(12):
        start = rng.integers(0, 5, size=2)
        steps = rng.choice([[1, 0], [0, 1], [1, 1]], size=15)
        out.append(Track(f"t{i}", np.cumsum(np.vstack([start, steps]), axis=0)))
    return out


@pytest.fixture(scope="module", params=["cell", "move", "offset"])
def fitted(request, tmp_path_factory):
    model = Forecaster(cell="gru", target=request.param, hidden=16, embed=8,
                       grid=Grid(cell_size=50.0, origin_x=1000.0, origin_y=2000.0, crs="EPSG:32630", step=30.0))
    model.fit(_tracks(), epochs=3)
    directory = tmp_path_factory.mktemp(request.param) / "model"
    model.save(directory)
    return model, directory


def test_round_trip_predicts_identically(fitted):
    model, directory = fitted
    loaded = Forecaster.load(directory)
    prefix = _tracks()[3].cells[:6]
    assert loaded.grid == model.grid
    assert [(n.cell, round(n.p, 6)) for n in loaded.predict_next(prefix, 5)] == \
           [(n.cell, round(n.p, 6)) for n in model.predict_next(prefix, 5)]
    assert [(r.cells, round(r.p, 6)) for r in loaded.beam(prefix, 6, 3)] == \
           [(r.cells, round(r.p, 6)) for r in model.beam(prefix, 6, 3)]
    assert np.array_equal(loaded.ranks_along(prefix)[0], model.ranks_along(prefix)[0])
    assert [t.cells.tolist() for t in loaded.train_tracks_] == [t.cells.tolist() for t in model.train_tracks_]


def test_checkpoint_holds_no_pickle_and_a_schema_version(fitted):
    _, directory = fitted
    config = json.loads((directory / "config.json").read_text())
    assert config["schema_version"] == 1 and config["format"] == "gridcast-model"
    files = sorted(p.name for p in directory.iterdir())
    assert files == [".gridcast.lock", "config.json", config["weights"]]  # the writer lock holds only a pid
    assert config["weights"].endswith(".safetensors")


def _copy(directory, tmp_path):
    target = tmp_path / "copy"
    target.mkdir()
    for p in directory.iterdir():
        (target / p.name).write_bytes(p.read_bytes())
    return target, json.loads((target / "config.json").read_text())


def test_truncated_weights_are_named(fitted, tmp_path):
    target, config = _copy(fitted[1], tmp_path)
    weights = target / config["weights"]
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        Forecaster.load(target)


def test_corrupted_config_is_named(fitted, tmp_path):
    target, _ = _copy(fitted[1], tmp_path)
    (target / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config.json is corrupted"):
        Forecaster.load(target)


def test_wrong_version_is_named(fitted, tmp_path):
    target, config = _copy(fitted[1], tmp_path)
    config["schema_version"] = 99
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="schema version 99"):
        Forecaster.load(target)


def test_config_that_does_not_fit_the_weights(fitted, tmp_path):
    target, config = _copy(fitted[1], tmp_path)
    config["model"]["hidden"] = 7
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit together"):
        Forecaster.load(target)


def test_save_replaces_weights_and_leaves_one_file(tmp_path):
    save_checkpoint(tmp_path, {"a": torch.zeros(3)}, {"x": 1})
    save_checkpoint(tmp_path, {"a": torch.ones(3)}, {"x": 2})
    tensors, config = load_checkpoint(tmp_path)
    assert torch.equal(tensors["a"], torch.ones(3)) and config["x"] == 2
    assert len(list(tmp_path.glob("weights-*.safetensors"))) == 1
    assert not list(tmp_path.glob(".*tmp"))


SAVER = """
import sys, torch
from gridcast.nextcell.checkpoint import save_checkpoint
i = 0
while True:
    i += 1
    save_checkpoint(sys.argv[1], {"w": torch.full((200_000,), float(i))}, {"i": i})
    print(i, flush=True)
"""


def test_sigkill_during_saves_never_leaves_an_unloadable_checkpoint(tmp_path):
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    target = tmp_path / "ckpt"
    for attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(target)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one save has completed
        time.sleep(random.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        tensors, config = load_checkpoint(target)
        assert torch.all(tensors["w"] == float(config["i"]))  # weights and config belong together
