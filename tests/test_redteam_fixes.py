"""The library defects the red-team corpus (tests/data/hostile/cases_redteam.py) found, pinned at the
unit level: duplicate JSON keys, a resume/ symlink leaving the model directory, files a run rewrites
that are symlinks or FIFOs, gridded cells beyond +-2^31, a trainer state with wrong types, and
bounded reads of the service's token and sessions files."""
from __future__ import annotations

import json
import os
import types
from pathlib import Path

import pandas as pd
import pytest

from gridcast.errors import CheckpointError, InputError
from gridcast.grid import MAX_CELL
from gridcast.safe_files import parse_json


def test_duplicate_keys_are_refused_at_any_depth():
    with pytest.raises(InputError, match="the key 'hidden' appears twice"):
        parse_json(b'{"model": {"hidden": 128, "hidden": 99999}}', "config.json")
    assert parse_json(b'{"a": {"b": 1}, "b": {"a": 2}}', "x") == {"a": {"b": 1}, "b": {"a": 2}}


def test_trainer_state_dir_stays_inside(tmp_path: Path):
    from gridcast.nextcell.checkpoint import trainer_state_dir

    model, elsewhere = tmp_path / "model", tmp_path / "elsewhere"
    model.mkdir()
    elsewhere.mkdir()
    assert trainer_state_dir(model) == model / "resume"  # not there yet: fine, it will be created inside
    (model / "resume").symlink_to(elsewhere)
    with pytest.raises(CheckpointError, match="outside the model directory"):
        trainer_state_dir(model)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_files_a_run_rewrites_must_be_plain(tmp_path: Path, kind: str):
    from gridcast.nextcell.checkpoint import directory_lock, refuse_special_outputs

    precious = tmp_path / "precious.txt"
    precious.write_text("keep")
    model = tmp_path / "model"
    model.mkdir()
    target = model / ".gridcast.lock"
    {"symlink": lambda: target.symlink_to(precious), "fifo": lambda: os.mkfifo(target),
     "directory": target.mkdir}[kind]()
    with pytest.raises(CheckpointError, match=r"\.gridcast\.lock"):
        refuse_special_outputs(model, (".gridcast.lock",))
    with pytest.raises(CheckpointError, match=r"\.gridcast\.lock"):
        with directory_lock(model):
            pass
    assert precious.read_text() == "keep"
    refuse_special_outputs(model, ("absent.txt",))  # a file not there yet is fine


def _gridded(tmp_path: Path, col: int) -> Path:
    from gridcast.grid import Grid
    from gridcast.ingest.gridded import GriddedTracks
    from gridcast.ingest.gridded_file import write_gridded
    from gridcast.ingest.report import IngestReport

    frame = pd.DataFrame({"track": ["a", "a"], "step": [0, 1], "time": [0.0, 30.0], "col": [0, col],
                          "row": [0, 0], "x": [50.0, 150.0], "y": [50.0, 50.0]})
    grid = Grid(cell_size=100.0, crs="EPSG:32630", origin_x=0.0, origin_y=0.0, step=30.0)
    path = tmp_path / "g.parquet"
    write_gridded(GriddedTracks(frame=frame, grid=grid, report=IngestReport(), meta={}), path)
    return path


@pytest.mark.parametrize("col", [MAX_CELL + 1, -MAX_CELL - 1, -2**63, 2**62])
def test_gridded_cells_beyond_the_grid_are_refused(tmp_path: Path, col: int):
    from gridcast.ingest.gridded_file import read_gridded

    with pytest.raises(InputError, match=r"g\.parquet: column 'col' holds the cell"):
        read_gridded(_gridded(tmp_path, col))


def test_gridded_cells_at_the_edge_still_load(tmp_path: Path):
    from gridcast.ingest.gridded_file import read_gridded

    assert read_gridded(_gridded(tmp_path, -MAX_CELL)).frame["col"].min() == -MAX_CELL


def test_like_model_with_preprocessing_not_an_object(tmp_path: Path):
    from gridcast.ingest.gridded_file import load_like

    (tmp_path / "config.json").write_text('{"grid": {"cell_size": 100, "crs": "EPSG:32630", "origin_x": 0, '
                                          '"origin_y": 0, "step": 30}, "preprocessing": [1]}')
    with pytest.raises(InputError, match="preprocessing must be an object"):
        load_like(tmp_path)


def _fresh():
    import torch

    net = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    return optimizer.state_dict(), scheduler.state_dict()


def _document(optimizer: dict, scheduler: dict) -> dict:
    """What save_trainer_state writes, as the JSON reader gives it back (tuples become lists)."""
    return json.loads(json.dumps({"epoch": 1, "waited": 0, "has_best": True,
            "result": {"history": [{"epoch": 1, "train_loss": 1.0, "val_loss": None}], "best_epoch": 1,
                       "best_val_loss": 0.5, "stopped_early": False},
            "optimizer": {"param_groups": optimizer["param_groups"], "state": {}}, "scheduler": dict(scheduler)}))


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(epoch="abc"), "epoch"),
    (lambda d: d.update(epoch=-1), "epoch"),
    (lambda d: d.update(epoch=6), "epoch"),            # past this run's 5 epochs: it would train nothing
    (lambda d: d.update(has_best="yes"), "has_best"),
    (lambda d: d["result"].update(best_val_loss=float("nan")), "best_val_loss"),
    (lambda d: d["result"].update(history=[{"epoch": "one"}]), r"history\[0\]"),
    (lambda d: d["optimizer"]["param_groups"][0].update(lr=1e300), r"param_groups\[0\]\.lr"),
    (lambda d: d["optimizer"]["param_groups"][0].update(lr=0.0), r"param_groups\[0\]\.lr"),
    (lambda d: d["optimizer"]["param_groups"][0].update(betas=[0.9]), "betas"),
    (lambda d: d["optimizer"]["param_groups"][0].update(weight_decay="x"), "weight_decay"),
    (lambda d: d["scheduler"].update(patience="x"), "scheduler.patience"),
    (lambda d: d["scheduler"].update(factor=0.9), "scheduler.factor"),
    (lambda d: d["scheduler"].update(optimizer=1), "scheduler must have the entries"),
    (lambda d: d["scheduler"].update(num_bad_epochs=-3), "scheduler.num_bad_epochs"),
])
def test_trainer_document_refusals(change, field: str):
    from gridcast.nextcell.resume_check import check_trainer_document

    optimizer, scheduler = _fresh()
    check_trainer_document(_document(optimizer, scheduler), optimizer, scheduler, 5, "resume")  # valid
    document = _document(optimizer, scheduler)
    change(document)
    with pytest.raises(CheckpointError, match=field):
        check_trainer_document(document, optimizer, scheduler, 5, "resume")


@pytest.mark.parametrize("kind", ["fifo", "zero", "sparse"])
def test_token_file_is_read_bounded(tmp_path: Path, kind: str):
    from gridcast.serve.server import read_token

    token = tmp_path / "token"
    if kind == "fifo":
        os.mkfifo(token)
    elif kind == "zero":
        token.symlink_to("/dev/zero")
    else:
        with open(token, "wb") as f:
            f.truncate(2 << 30)
    with pytest.raises(InputError, match="--token-file .*: cannot be read"):
        read_token(token)


def test_token_file_through_a_symlink_is_read(tmp_path: Path):
    from gridcast.serve.server import read_token

    (tmp_path / "real").write_text("0123456789abcdef0123\n")
    (tmp_path / "token").symlink_to(tmp_path / "real")
    assert read_token(tmp_path / "token") == "0123456789abcdef0123"


@pytest.mark.parametrize("content", [b"[" * 5000 + b"]" * 5000, None])
def test_a_hostile_sessions_file_is_set_aside(tmp_path: Path, content: bytes | None, capsys):
    from gridcast.serve.state import load_state, state_file

    served = types.SimpleNamespace(name="m", weights_sha256="0" * 64)
    path = state_file(tmp_path, "m")
    if content is None:
        with open(path, "wb") as f:
            f.truncate(2 << 30)  # sparse: read whole it would take 2 GB
    else:
        path.write_bytes(content)
    assert load_state(tmp_path, served, sessions=None) == 0
    assert not path.exists() and path.with_suffix(".unreadable").exists()
    assert "starting without its tracks" in capsys.readouterr().err
