"""`gridcast fit DATASET/ --stream` (`Forecaster.fit_stream`): training read one part at a time.

What is tested: no more than one part's tracks (and batches) alive when the next part is read; a
streamed fit learns as well as the in-memory fit on the same data; DDP with half batches matches one
process; `--resume` ends with the weights of an uninterrupted run; the CLI end to end; a file instead
of a dataset is a one-line error.
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import torch

from conftest import assert_same_training, model_weights, train_log, write_random_walks
from gridcast.cli.app import main
from gridcast.ingest import ColumnMap, grid_to_dataset
from gridcast.ingest.dataset import DatasetStream
from gridcast.nextcell.distributed import free_port
from gridcast.nextcell.forecaster import Forecaster
from gridcast.nextcell.stream_fit import Split, is_validation
from gridcast.tracks import Track

WALK = ColumnMap(track="track", time="time", x="x", y="y")
PLANAR = ["--x-col", "x", "--y-col", "y", "--cell-size", "1", "--step", "1"]
SMALL = ["--hidden", "16", "--no-progress", "--json"]


def _dataset(tmp_path: Path, n_tracks: int = 40, length: int = 20, buckets: int = 8, seed: int = 0,
             name: str = "ds") -> Path:
    csv = tmp_path / f"{name}.csv"
    write_random_walks(csv, n_tracks, length, seed)
    grid_to_dataset(csv, tmp_path / name, columns=WALK, cell_size=1, step=1, buckets=buckets)
    return tmp_path / name


def test_validation_split_is_a_stable_hash_of_the_track_id():
    ids = [f"t{i}" for i in range(2000)]
    held = [is_validation(i, 0.15, 0) for i in ids]
    assert 0.12 < np.mean(held) < 0.18  # about val_fraction of the tracks
    assert held == [is_validation(i, 0.15, 0) for i in ids]  # the same on every call, rank and run
    assert held != [is_validation(i, 0.15, 1) for i in ids]  # the seed picks another split
    assert not any(is_validation(i, 0.0, 0) for i in ids)
    forced = Split(0.0, 0, frozenset({"t7"}))
    assert forced.held(Track("t7", np.zeros((2, 2)))) and not forced.held(Track("t8", np.zeros((2, 2))))


def test_no_more_than_one_part_is_alive_when_the_next_is_read(tmp_path, monkeypatch):
    """A spy on the part reader: when a part is read, every Track of the parts read before it is
    gone, and of their batches at most one (the fit loop's `batch` variable) is still alive."""
    ds = _dataset(tmp_path, n_tracks=60, buckets=12)
    reads, tracks_alive, batches_alive = [], [], []
    read_part = DatasetStream.part
    make_batch = Forecaster._batch

    def spy_part(self, index):
        gc.collect()
        tracks_alive.append(sum(ref() is not None for ref in reads))
        batches_alive.append(sum(ref() is not None for ref in made))
        part = read_part(self, index)
        reads.extend(weakref.ref(t) for t in part)
        made.clear()
        return part

    made: list = []

    def spy_batch(self, encoded):
        batch = make_batch(self, encoded)
        made.append(weakref.ref(batch))
        return batch

    monkeypatch.setattr(DatasetStream, "part", spy_part)
    monkeypatch.setattr(Forecaster, "_batch", spy_batch)
    model = Forecaster(hidden=8).fit_stream(ds, epochs=2, batch_size=4, calibrate=True)
    n_parts = len(DatasetStream(ds))
    assert n_parts >= 10
    assert len(tracks_alive) >= n_parts * 5  # the survey, 2 epochs of training and validation, calibration
    assert max(tracks_alive) == 0, tracks_alive
    assert max(batches_alive) <= 1, batches_alive
    assert model.result_.best_val_loss is not None and len(model.train_tracks_) == 60


def test_streamed_fit_learns_as_well_as_the_in_memory_fit(tmp_path):
    """Same data, same settings: the two fits differ only in which 15% validates and in batch
    order, so on fresh test walks their loss must agree within what one more seed changes.
    Tolerance 0.05 nats: the walks have 4 equally likely moves, so a model that learned them sits
    near log 4 = 1.386 and an untrained one (one epoch) is over 0.3 nats above it."""
    ds = _dataset(tmp_path, n_tracks=80, length=24, buckets=6)
    test = _dataset(tmp_path, n_tracks=30, length=24, buckets=1, seed=9, name="test")
    settings = dict(epochs=6, batch_size=8, calibrate=False)
    memory = Forecaster(hidden=16).fit([t for p in DatasetStream(ds).parts() for t in p], **settings)
    streamed = Forecaster(hidden=16).fit_stream(ds, **settings)
    untrained = Forecaster(hidden=16).fit_stream(ds, **{**settings, "epochs": 1, "lr": 1e-5})
    test_tracks = [t for p in DatasetStream(test).parts() for t in p]

    def test_loss(model: Forecaster) -> float:
        total = weight = 0.0
        with torch.no_grad():
            for track in test_tracks:
                batch = model._batch(model._chunks([track], 256))
                total += float(model._loss(model.net_, batch)) * batch.weight
                weight += batch.weight
        return total / weight

    a, b, u = test_loss(memory), test_loss(streamed), test_loss(untrained)
    assert abs(a - b) <= 0.05, (a, b)
    assert u > max(a, b) + 0.3, (u, a, b)  # the comparison can fail: training matters this much


def test_cli_grid_fit_stream_evaluate_end_to_end_and_resume(tmp_path, capsys, monkeypatch):
    csv = tmp_path / "walks.csv"
    write_random_walks(csv, 30, 16, seed=3)
    ds = tmp_path / "ds"
    assert main(["grid", str(csv), "--out", f"{ds}/", *PLANAR, "--json"]) == 0
    capsys.readouterr()
    full = tmp_path / "full"
    args = ["fit", str(ds), "--stream", *SMALL, "--epochs", "4", "--patience", "100"]
    assert main([*args, "--out", str(full)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tracks"] == 30 and summary["epochs"] == 4 and summary["calibration"]["steps"] > 0
    assert main(["evaluate", str(full), str(ds), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["n"] > 0
    # a run stopped in epoch 3 and resumed ends with the same weights, bit for bit
    stopped = tmp_path / "stopped"
    real_loss = Forecaster._loss

    def crash(self, net, batch):
        log = stopped / "train_log.jsonl"
        if net.training and log.exists() and len(log.read_text().splitlines()) >= 2:
            raise KeyboardInterrupt("killed")
        return real_loss(self, net, batch)

    monkeypatch.setattr(Forecaster, "_loss", crash)
    assert main([*args, "--out", str(stopped)]) != 0  # the CLI reports the interruption
    assert len(train_log(stopped)) == 2
    monkeypatch.setattr(Forecaster, "_loss", real_loss)
    capsys.readouterr()
    assert main([*args, "--out", str(stopped), "--resume"]) == 0
    a, b = model_weights(full), model_weights(stopped)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stream_on_a_file_is_a_one_line_error(tmp_path, capsys):
    csv = tmp_path / "walks.csv"
    write_random_walks(csv, 6, 8)
    gridded = tmp_path / "g.parquet"
    assert main(["grid", str(csv), "--out", str(gridded), *PLANAR]) == 0
    capsys.readouterr()
    for data in (csv, gridded, tmp_path):
        assert main(["fit", str(data), "--stream", "--out", str(tmp_path / "m"), *SMALL]) == 2
        err = capsys.readouterr().err
        assert "streaming needs a dataset directory" in err and str(data) in err and len(err.strip().splitlines()) == 1
        assert "Traceback" not in err
    ds = _dataset(tmp_path, n_tracks=6, length=8, buckets=2)
    assert main(["fit", str(ds), "--stream", "--cell-size", "2", "--out", str(tmp_path / "m"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "--cell-size 2 differs from its cell size 1.0" in err and len(err.strip().splitlines()) == 1


def test_two_processes_with_half_batches_match_one_process_streamed(tmp_path):
    ds = _dataset(tmp_path, n_tracks=26, length=24, buckets=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "GRIDCAST_DDP_TIMEOUT_S": "30"}
    common = ["fit", str(ds), "--stream", *SMALL, "--epochs", "2", "--dropout", "0", "--no-calibrate"]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    runs = {"one": [sys.executable, "-m", "gridcast", *common, "--batch-size", "6", "--out", str(tmp_path / "one")],
            "two": [torchrun, "--nnodes", "1", "--nproc-per-node", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                    f"127.0.0.1:{free_port()}", "--max-restarts", "0", "-m", "gridcast", *common, "--batch-size", "3",
                    "--out", str(tmp_path / "two")]}
    for name, cmd in runs.items():
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout)["processes"] == (2 if name == "two" else 1)
    assert_same_training(tmp_path / "one", tmp_path / "two")


def test_memory_limit_is_checked_on_the_surveyed_cells_before_training(tmp_path, capsys):
    ds = _dataset(tmp_path, n_tracks=10, length=12, buckets=2)
    out = tmp_path / "m"
    assert main(["fit", str(ds), "--stream", "--out", str(out), *SMALL, "--hidden", "1024", "--memory-limit", "1MiB"]) == 2
    err = capsys.readouterr().err
    assert "over --memory-limit" in err and len(err.strip().splitlines()) == 1
    assert not (out / "train_log.jsonl").exists()  # refused before the first epoch


def test_readme_stream_example_runs_and_writes_loadable_models(tmp_path):
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    heading = "### Training streamed from a dataset directory: `fit --stream`"
    section = readme[readme.index(heading) + len(heading):]
    section = section[:re.search(r"^##+ ", section, flags=re.M).start()]
    (block,) = re.findall(r"^```\n(.*?)^```", section, flags=re.M | re.S)
    (tmp_path / "src").symlink_to(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRIDCAST_DDP_TIMEOUT_S": "60",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for out in re.findall(r"--out (bus-stream\S*)", block):
        assert len(Forecaster.load(tmp_path / out).vocab_.cells) > 10
    # evaluate printed its verdicts (in-sample, after 2 epochs, whether the model wins is not the point)
    assert "by 2 processes" in done.stdout
    assert re.search(r"^acc@1: best model .* the strongest baseline ", done.stdout, flags=re.M)
