"""The sandbox readers: files inside their directory only, no special files, bounded JSON, grids
checked on read, and a model's config and weights header checked before anything is allocated."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from gridcast.errors import CheckpointError, InputError
from gridcast.grid import Grid
from gridcast.ingest.gridded_file import checked_preprocessing, load_like
from gridcast.safe_files import inside, parse_json, read_json_inside, read_regular


def test_inside_accepts_names_in_the_directory_and_symlinks_that_stay(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    os.symlink("a.json", tmp_path / "b.json")
    assert inside(tmp_path, "b.json", "x") == (tmp_path / "a.json").resolve()


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "sub/../../x", ""])
def test_inside_refuses_paths_that_leave(tmp_path, name):
    with pytest.raises(InputError, match="outside the model directory|must name a file"):
        inside(tmp_path, name, "weights")


def test_symlink_out_of_the_directory_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    os.symlink("/dev/zero", tmp_path / "d" / "config.json")
    with pytest.raises(CheckpointError, match="symlink to /dev/zero, outside the model directory"):
        read_json_inside(tmp_path / "d", "config.json", CheckpointError)


def test_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "config.json")
    with pytest.raises(InputError, match="FIFO, not a regular file"):
        read_json_inside(tmp_path, "config.json")


def test_size_cap_is_checked_before_reading(tmp_path):
    path = tmp_path / "big"
    with open(path, "wb") as f:
        f.truncate(10 << 30)  # sparse: no disk, and never read
    with pytest.raises(InputError, match="over the cap of 1024 bytes"):
        read_regular(path, 1024)


def test_json_limits():
    assert parse_json(b'{"a": [1, 2.5, null]}', "f") == {"a": [1, 2.5, None]}
    with pytest.raises(InputError, match="nested deeper than 64"):
        parse_json("[" * 5000 + "]" * 5000, "f")
    with pytest.raises(InputError, match="a number of 5000 digits"):
        parse_json("9" * 5000, "f")
    with pytest.raises(InputError, match="overflows"):
        parse_json("1e999", "f")
    with pytest.raises(InputError, match="NaN where a finite number is required"):
        parse_json("[NaN]", "f")
    assert parse_json("[NaN]", "f", allow_nonfinite=True)[0] != parse_json("[NaN]", "f", allow_nonfinite=True)[0]
    with pytest.raises(InputError, match="is corrupted"):
        parse_json(b"\xff{", "f")


@pytest.mark.parametrize("changes, message", [
    ({"cell_size": True}, "cell_size True"),
    ({"cell_size": "100"}, "cell_size '100'"),
    ({"cell_size": 1e300}, "cell size must be"),
    ({"cell_size": 0}, "cell size must be"),
    ({"origin_x": float("nan")}, "origin_x"),
    ({"crs": "EPSG:999999"}, "invalid grid crs"),
    ({"crs": "EPSG:4326"}, "not projected"),
    ({"crs": {"a": 1}}, "grid crs must be"),
    ({"step": -1}, "time step"),
])
def test_grid_from_dict_checks_every_value(changes, message):
    d = {"cell_size": 100.0, "origin_x": 0.0, "origin_y": 0.0, "crs": "EPSG:32630", "step": 30.0}
    assert Grid.from_dict(d) == Grid(100.0, 0.0, 0.0, "EPSG:32630", 30.0)
    with pytest.raises(InputError, match=message):
        Grid.from_dict({**d, **changes})


def test_cells_beyond_the_int32_range_are_refused():
    with pytest.raises(InputError, match="larger --cell-size"):
        Grid(cell_size=1e-6).to_cells([1e6], [0.0])


def test_preprocessing_values_are_checked():
    assert checked_preprocessing({"max_gap": 600.0, "collapse": False}, "m") == {"max_gap": 600.0, "collapse": False}
    with pytest.raises(InputError, match="max_gap"):
        checked_preprocessing({"max_gap": "abc"}, "m")
    with pytest.raises(InputError, match="collapse"):
        checked_preprocessing({"collapse": 1}, "m")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import numpy as np

    from gridcast.nextcell.forecaster import Forecaster
    from gridcast.tracks import Track

    rng = np.random.default_rng(0)
    tracks = [Track(str(i), np.cumsum(rng.integers(-1, 2, size=(12, 2)), axis=0)) for i in range(20)]
    model = Forecaster(hidden=8, embed=4).fit(tracks, epochs=1, progress=False)
    model.grid = Grid(cell_size=100.0, crs="EPSG:32630")
    return model.save(tmp_path_factory.mktemp("m") / "model")


def _copy(saved: Path, tmp_path: Path) -> tuple[Path, dict]:
    target = tmp_path / "copy"
    shutil.copytree(saved, target)
    return target, json.loads((target / "config.json").read_text())


def test_saved_model_loads_and_its_grid_is_read_by_load_like(saved):
    from gridcast.nextcell.forecaster import Forecaster

    assert Forecaster.load(saved).grid == Grid(cell_size=100.0, crs="EPSG:32630")
    assert load_like(saved)[0] == Grid(cell_size=100.0, crs="EPSG:32630")


@pytest.mark.parametrize("section, key, value, message", [
    ("model", "hidden", 20000, "model.hidden must be an integer from 1 to 8192"),
    ("model", "layers", 100000, "model.layers"),
    ("model", "hidden", 7, "do not fit together"),
    ("normalisation", "scale", 0, "normalisation.scale"),
    ("calibration", "temperature", -1, "calibration.temperature"),
    ("train", "batch_size", True, "train.batch_size"),
])
def test_config_values_are_checked_before_the_weights_are_read(saved, tmp_path, section, key, value, message,
                                                                monkeypatch):
    from gridcast.nextcell import weights_file
    from gridcast.nextcell.forecaster import Forecaster

    target, config = _copy(saved, tmp_path)
    config[section][key] = value
    (target / "config.json").write_text(json.dumps(config))
    reads = []
    real = weights_file.read_exactly
    monkeypatch.setattr(weights_file, "read_exactly", lambda fd, n, *a: reads.append(n) or real(fd, n, *a))
    with pytest.raises(CheckpointError, match=message):
        Forecaster.load(target)
    assert len(reads) == 2  # the 8-byte length and the JSON header; never the tensor data


def test_weights_whose_header_lies_about_the_size_are_refused(saved, tmp_path):
    from gridcast.nextcell.forecaster import Forecaster

    target, config = _copy(saved, tmp_path)
    weights = target / config["weights"]
    with open(weights, "r+b") as f:
        f.truncate(2_000_000_000)  # sparse
    with pytest.raises(CheckpointError, match="its header describes"):
        Forecaster.load(target)


def test_nan_weights_are_refused_on_load(saved, tmp_path):
    import hashlib

    from safetensors.torch import load, save

    from gridcast.nextcell.forecaster import Forecaster

    target, config = _copy(saved, tmp_path)
    tensors = load((target / config["weights"]).read_bytes())
    tensors["head.bias"][0] = float("nan")
    blob = save(tensors)
    (target / "w.safetensors").write_bytes(blob)
    config.update(weights="w.safetensors", weights_sha256=hashlib.sha256(blob).hexdigest())
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="'head.bias' holds NaN or infinite values"):
        Forecaster.load(target)


def test_a_training_state_must_fit_the_model_before_its_data_is_read():
    import torch

    from gridcast.nextcell.model_check import check_trainer_tensors
    from gridcast.nextcell.weights_file import TensorSpec

    model = {"w": torch.zeros(4, 3), "b": torch.zeros(4)}
    fine = {"model.w": TensorSpec("F32", (4, 3)), "best.b": TensorSpec("F32", (4,)),
            "optim.0.exp_avg": TensorSpec("F32", (4, 3)), "rng.torch": TensorSpec("U8", (5056,))}
    check_trainer_tensors(fine, model, "resume")
    with pytest.raises(CheckpointError, match="does not fit the model"):
        check_trainer_tensors({"model.w": TensorSpec("F32", (400_000_000,))}, model, "resume")
    with pytest.raises(CheckpointError, match="larger than any tensor of the model"):
        check_trainer_tensors({"optim.0.exp_avg": TensorSpec("F32", (400_000_000,))}, model, "resume")
    with pytest.raises(CheckpointError, match="unexpected tensor"):
        check_trainer_tensors({"junk": TensorSpec("U8", (1,))}, model, "resume")


def test_a_step_or_cell_size_beside_a_fixed_grid_must_be_that_grids():
    from gridcast.ingest.prepare import check_given_grid

    grid = Grid(cell_size=100.0, step=30.0)
    check_given_grid("f", grid, None, None)
    check_given_grid("f", grid, 100.0, 30.0)
    with pytest.raises(InputError, match="--step 60 differs from its step 30"):
        check_given_grid("f", grid, None, 60.0)
    with pytest.raises(InputError, match="--cell-size 50 differs from the model's cell size 100"):
        check_given_grid("f", grid, 50.0, None, "the model's")
