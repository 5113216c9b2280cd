"""Crafted model directories: files outside the folder, special files, allocation before validation, bad values."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from corpus import Base, Case, copy_model

PREDICT = ["predict", "model", "--track", "60,61 61,61", "--json"]
LIKE = ["grid", "{csv}", "--out", "out.parquet", "--like", "model", "--track-col", "trip_id", "--time-col", "timestamp",
        "--lat-col", "latitude", "--lon-col", "longitude"]
LIKE_FILE = LIKE[:5] + ["bad.parquet"] + LIKE[6:]
GB = 1 << 30


def _config(model: Path) -> dict:
    return json.loads((model / "config.json").read_text())


def _write(model: Path, config: dict) -> None:
    (model / "config.json").write_text(json.dumps(config))


def _edit_config(case_dir: Path, base: Base, **changes) -> None:
    model = copy_model(base, case_dir)
    config = _config(model)
    config.update(changes)
    _write(model, config)


def edit(change: Callable[[dict], None]) -> Callable[[Path, Base], None]:
    """A build that copies the base model and changes its config in place (`change(config)`)."""
    def build(case_dir: Path, base: Base) -> None:
        model = copy_model(base, case_dir)
        config = _config(model)
        change(config)
        _write(model, config)
    return build


def raw_config(text: Callable[[str], str]) -> Callable[[Path, Base], None]:
    """A build that rewrites config.json as text (for JSON no `json.dumps` would write)."""
    def build(case_dir: Path, base: Base) -> None:
        model = copy_model(base, case_dir)
        (model / "config.json").write_text(text((model / "config.json").read_text()))
    return build


def set_in(section: str, key: str, value) -> Callable[[Path, Base], None]:
    def change(config: dict) -> None:
        config[section][key] = value
    return edit(change)


def weights_path(model: Path) -> Path:
    return model / _config(model)["weights"]


def tensors_edit(change: Callable[[dict], None]) -> Callable[[Path, Base], None]:
    """Rewrite the weights with `change(tensors)` applied and a config naming them with the right
    checksum: only the load-time checks can catch the change."""
    def build(case_dir: Path, base: Base) -> None:
        import hashlib

        from safetensors.torch import load, save

        model = copy_model(base, case_dir)
        config = _config(model)
        tensors = load(weights_path(model).read_bytes())
        change(tensors)
        blob = save(tensors)
        digest = hashlib.sha256(blob).hexdigest()
        weights_path(model).unlink()
        (model / f"weights-{digest[:16]}.safetensors").write_bytes(blob)
        config.update(weights=f"weights-{digest[:16]}.safetensors", weights_sha256=digest)
        _write(model, config)
    return build


def _nan(tensors: dict) -> None:
    tensors["head.bias"][0] = float("nan")


def _inf(tensors: dict) -> None:
    tensors["embedding.weight"][3, 0] = float("inf")


def _offsets_decreasing(tensors: dict) -> None:
    offsets = tensors["data.train_offsets"]
    offsets[1], offsets[2] = offsets[2].clone(), offsets[1].clone()


def _offsets_past_end(tensors: dict) -> None:
    tensors["data.train_offsets"][-1] += 1000


def _cells_huge(tensors: dict) -> None:
    tensors["data.train_cells"][0, 0] = 2 ** 62


def _dwell_histogram(rows: list[list[int]]) -> Callable[[dict], None]:
    """A crafted `dwell.Dwell` histogram (col, row, run length, ended, count rows) in the weights."""
    def change(tensors: dict) -> None:
        import torch

        tensors["data.dwell_histogram"] = torch.tensor(rows, dtype=torch.int64).reshape(-1, 5)
    return change


def _weights_dtype(tensors: dict) -> None:
    tensors["head.bias"] = tensors["head.bias"].double()


def _drop_offsets(tensors: dict) -> None:
    del tensors["data.train_offsets"]


def _weights_outside_symlink(case_dir: Path, base: Base) -> None:
    model = copy_model(base, case_dir)
    w = weights_path(model)
    shutil.move(w, case_dir / "elsewhere.safetensors")
    os.symlink(case_dir / "elsewhere.safetensors", w)


def _weights_inside_symlink(case_dir: Path, base: Base) -> None:  # allowed: it stays inside
    model = copy_model(base, case_dir)
    w = weights_path(model)
    w.rename(model / "real.safetensors")
    os.symlink("real.safetensors", w)


def _config_outside_symlink(case_dir: Path, base: Base) -> None:
    model = copy_model(base, case_dir)
    shutil.move(model / "config.json", case_dir / "config-elsewhere.json")
    os.symlink(case_dir / "config-elsewhere.json", model / "config.json")


def _config_to(target: str) -> Callable[[Path, Base], None]:
    def build(case_dir: Path, base: Base) -> None:
        model = copy_model(base, case_dir)
        (model / "config.json").unlink()
        os.symlink(target, model / "config.json")
    return build


def _config_fifo(case_dir: Path, base: Base) -> None:
    model = copy_model(base, case_dir)
    (model / "config.json").unlink()
    os.mkfifo(model / "config.json")


def _weights_fifo(case_dir: Path, base: Base) -> None:
    model = copy_model(base, case_dir)
    w = weights_path(model)
    w.unlink()
    os.mkfifo(w)


def _weights_sparse(size: int, keep_header: bool) -> Callable[[Path, Base], None]:
    """The weights file grown to `size` bytes without using disk (sparse); with its real header or zeros."""
    def build(case_dir: Path, base: Base) -> None:
        model = copy_model(base, case_dir)
        w = weights_path(model)
        if not keep_header:
            w.write_bytes(b"")
        with open(w, "r+b") as f:
            f.truncate(size)
    return build


def _header_length(length: int) -> Callable[[Path, Base], None]:
    def build(case_dir: Path, base: Base) -> None:
        model = copy_model(base, case_dir)
        w = weights_path(model)
        data = bytearray(w.read_bytes())
        data[:8] = length.to_bytes(8, "little")
        w.write_bytes(bytes(data))
    return build


def _config_sparse(case_dir: Path, base: Base) -> None:
    model = copy_model(base, case_dir)
    with open(model / "config.json", "r+b") as f:
        f.truncate(200 << 20)


def _nested(depth: int) -> Callable[[str], str]:
    return lambda text: text.replace('"model": {', '"junk": ' + "[" * depth + "]" * depth + ', "model": {', 1)


def _gridded_meta(grid_text: bytes) -> Callable[[Path, Base], None]:
    """A gridded Parquet file whose grid metadata is `grid_text`."""
    def build(case_dir: Path, base: Base) -> None:
        import pyarrow.parquet as pq

        table = pq.read_table(base.gridded)
        meta = dict(table.schema.metadata)
        meta[b"gridcast.grid"] = grid_text
        pq.write_table(table.replace_schema_metadata(meta), case_dir / "bad.parquet")
    return build


def _grid(**changes) -> bytes:
    grid = {"cell_size": 100.0, "crs": "EPSG:32630", "origin_x": 501000.0, "origin_y": 5917500.0, "step": 30.0}
    grid.update(changes)
    return json.dumps(grid).encode()


def _fifo_data(case_dir: Path, base: Base) -> None:
    copy_model(base, case_dir)
    os.mkfifo(case_dir / "data.parquet")


def _model_and_fifo_like(case_dir: Path, base: Base) -> None:
    _config_fifo(case_dir, base)


RESUME = ["fit", "{gridded}", "--out", "model", "--epochs", "1", "--seed", "0", "--no-progress", "--resume"]


def resume_edit(change: Callable[[Path, dict], None]) -> Callable[[Path, Base], None]:
    """A build that changes the copied model's trainer state (``resume/``): `change(resume_dir, config)`."""
    def build(case_dir: Path, base: Base) -> None:
        resume = copy_model(base, case_dir) / "resume"
        config = _config(resume)
        change(resume, config)
        _write(resume, config)
    return build


CASES: list[Case] = [
    # ---------------------------------------------------------------- sanity: a valid copy still loads
    # (a valid load imports torch and predicts: on a loaded 2-core machine it can near 20 s, so these
    # two, which attack nothing, get more time; every refusal below keeps the 20 s limit)
    Case("model_copy_loads", "outside", PREDICT, 0, build=lambda d, b: copy_model(b, d), time_limit_s=60),
    Case("weights_symlink_inside_loads", "outside", PREDICT, 0, build=_weights_inside_symlink, time_limit_s=60),
    # ---------------------------------------------------------------- files outside the model directory
    Case("weights_parent_path", "outside", ["predict", "model", "--track", "0,0", "--json"], 2, "outside the model directory",
         build=lambda d, b: _edit_config(d, b, weights="../../secret.safetensors")),
    Case("weights_absolute_path", "outside", PREDICT, 2, "outside the model directory",
         build=lambda d, b: _edit_config(d, b, weights=str(Path(d) / "model" / "x.safetensors"))),
    Case("weights_dotdot_inside_name", "outside", PREDICT, 2, "outside the model directory",
         build=lambda d, b: _edit_config(d, b, weights="resume/../../model/x.safetensors")),
    Case("weights_symlink_leaves", "outside", PREDICT, 2, "outside the model directory", build=_weights_outside_symlink),
    Case("config_symlink_leaves", "outside", PREDICT, 2, "outside the model directory", build=_config_outside_symlink),
    Case("like_config_symlink_leaves", "outside", LIKE, 2, "outside the model directory", build=_config_outside_symlink),
    Case("weights_not_a_string", "outside", PREDICT, 2, "lacks the 'weights' entry",
         build=lambda d, b: _edit_config(d, b, weights=["x"])),
    # ---------------------------------------------------------------- special files
    Case("weights_dev_zero", "special", PREDICT, 2, "outside the model directory",
         build=lambda d, b: _edit_config(d, b, weights="/dev/zero")),
    Case("config_symlink_dev_zero", "special", PREDICT, 2, "outside the model directory", build=_config_to("/dev/zero")),
    Case("like_config_symlink_dev_zero", "special", LIKE, 2, "outside the model directory", build=_config_to("/dev/zero")),
    Case("config_fifo", "special", PREDICT, 2, "FIFO, not a regular file", build=_config_fifo),
    Case("like_config_fifo", "special", LIKE, 2, "FIFO, not a regular file", build=_model_and_fifo_like),
    Case("weights_fifo", "special", PREDICT, 2, "FIFO, not a regular file", build=_weights_fifo),
    Case("weights_is_directory", "special", PREDICT, 2, "a directory, not a regular file",
         build=lambda d, b: _edit_config(d, b, weights="resume")),
    Case("gridded_data_fifo", "special", ["predict", "model", "data.parquet", "--json"], 2, "data.parquet",
         build=_fifo_data),
    # ---------------------------------------------------------------- allocation before validation
    Case("hidden_20000", "allocation", PREDICT, 2, "model.hidden must be an integer from 1 to 8192",
         build=set_in("model", "hidden", 20000)),
    Case("layers_100000", "allocation", PREDICT, 2, "model.layers must be an integer from 1 to 16",
         build=set_in("model", "layers", 100000)),
    Case("parameters_over_cap", "allocation", PREDICT, 2, "over the cap of 50,000,000",
         build=set_in("model", "hidden", 8000)),
    Case("weights_sparse_2gb_real_header", "allocation", PREDICT, 2, "its header describes",
         build=_weights_sparse(2_000_000_000, keep_header=True)),
    Case("weights_sparse_2gb_zeros", "allocation", PREDICT, 2, "corrupted", build=_weights_sparse(2_000_000_000, False)),
    Case("weights_sparse_3gb", "allocation", PREDICT, 2, "over the cap", build=_weights_sparse(3 * GB, True)),
    Case("weights_header_length_huge", "allocation", PREDICT, 2, "header length", build=_header_length(1 << 60)),
    Case("vocab_over_cap", "allocation", PREDICT, 2, "vocab must be a list of at most 500000",
         build=edit(lambda c: c.update(vocab=[[i, 0] for i in range(500_001)]))),
    Case("config_sparse_200mb", "allocation", PREDICT, 2, "over the cap", build=_config_sparse),
    Case("like_config_sparse_200mb", "allocation", LIKE, 2, "over the cap", build=_config_sparse),
    # ---------------------------------------------------------------- config values not validated at load
    Case("cell_size_1e300", "config", PREDICT, 2, "grid cell size", build=set_in("grid", "cell_size", 1e300)),
    Case("cell_size_true", "config", PREDICT, 2, "grid cell_size", build=set_in("grid", "cell_size", True)),
    Case("like_cell_size_true", "config", LIKE, 2, "grid cell_size", build=set_in("grid", "cell_size", True)),
    Case("cell_size_string", "config", PREDICT, 2, "grid cell_size", build=set_in("grid", "cell_size", "100")),
    Case("origin_nan", "config", PREDICT, 2, "grid origin_x", build=raw_config(
        lambda t: t.replace('"origin_x": 501000.0', '"origin_x": NaN'))),
    Case("crs_unknown", "config", PREDICT, 2, "invalid grid crs 'EPSG:999999'", build=set_in("grid", "crs", "EPSG:999999")),
    Case("crs_dict", "config", PREDICT, 2, "grid crs must be", build=set_in("grid", "crs", {"a": 1})),
    Case("normalisation_scale_zero", "config", PREDICT, 2, "normalisation.scale", build=set_in("normalisation", "scale", 0)),
    Case("normalisation_scale_nan", "config", PREDICT, 2, "normalisation.scale", build=raw_config(
        lambda t: t.replace('"scale": ', '"scale": NaN, "x_": ', 1))),
    Case("normalisation_centre_one", "config", PREDICT, 2, "normalisation.centre",
         build=set_in("normalisation", "centre", [1.0])),
    Case("max_gap_string", "config", PREDICT, 2, "max_gap", build=set_in("preprocessing", "max_gap", "abc")),
    Case("like_max_gap_string", "config", LIKE, 2, "max_gap", build=set_in("preprocessing", "max_gap", "abc")),
    Case("collapse_string", "config", PREDICT, 2, "collapse", build=set_in("preprocessing", "collapse", "yes")),
    Case("temperature_zero", "config", PREDICT, 2, "calibration.temperature", build=set_in("calibration", "temperature", 0)),
    Case("output_size_wrong", "config", PREDICT, 2, "output_size", build=lambda d, b: _edit_config(d, b, output_size=7)),
    Case("vocab_duplicate", "config", PREDICT, 2, "vocab lists a cell twice",
         build=edit(lambda c: c["vocab"].__setitem__(1, c["vocab"][0]))),
    Case("train_lr_string", "config", PREDICT, 2, "train.lr", build=set_in("train", "lr", "fast")),
    Case("weights_nan", "config", PREDICT, 2, "NaN or infinite", build=tensors_edit(_nan)),
    Case("weights_inf", "config", PREDICT, 2, "NaN or infinite", build=tensors_edit(_inf)),
    Case("train_offsets_decreasing", "config", PREDICT, 2, "train_offsets", build=tensors_edit(_offsets_decreasing)),
    Case("train_offsets_past_end", "config", PREDICT, 2, "train_offsets", build=tensors_edit(_offsets_past_end)),
    Case("train_cells_2_62", "config", PREDICT, 2, "train_cells", build=tensors_edit(_cells_huge)),
    Case("dwell_histogram_run_of_2_62_steps", "config", PREDICT, 2, "dwell_histogram",
         build=tensors_edit(_dwell_histogram([[0, 0, 2 ** 62, 1, 1]]))),
    Case("dwell_histogram_steps_beyond_bound", "config", PREDICT, 2, "dwell_histogram",
         build=tensors_edit(_dwell_histogram([[0, 0, 10 ** 6, 1, 10 ** 6]]))),
    Case("dwell_histogram_zero_length", "config", PREDICT, 2, "dwell_histogram",
         build=tensors_edit(_dwell_histogram([[0, 0, 0, 1, 1]]))),
    Case("dwell_histogram_wrong_width", "config", PREDICT, 2, "dwell_histogram",
         build=tensors_edit(lambda t: t.update({"data.dwell_histogram": t["data.train_offsets"][:, None].clone()}))),
    Case("last_move_sideways", "config", PREDICT, 2, "invalid last_move", build=set_in("model", "last_move", "sideways")),
    Case("new_cell_targets_string", "config", PREDICT, 2, "invalid new_cell_targets",
         build=set_in("model", "new_cell_targets", "sometimes")),
    Case("train_offsets_missing", "config", PREDICT, 2, "train_offsets", build=tensors_edit(_drop_offsets)),
    Case("weights_wrong_dtype", "config", PREDICT, 2, "do not fit together", build=tensors_edit(_weights_dtype)),
    Case("gridded_cell_size_true", "config", LIKE_FILE, 2, "metadata 'gridcast.grid'",
         build=_gridded_meta(_grid(cell_size=True))),
    Case("gridded_crs_unknown", "config", LIKE_FILE, 2, "invalid grid crs", build=_gridded_meta(_grid(crs="EPSG:999999"))),
    Case("gridded_grid_not_object", "config", LIKE_FILE, 2, "expected an object", build=_gridded_meta(b"[1, 2]")),
    # ---------------------------------------------------------------- parser limits
    Case("config_nested_5000", "parser", PREDICT, 2, "nested deeper than", build=raw_config(_nested(5000))),
    Case("like_config_nested_5000", "parser", LIKE, 2, "nested deeper than", build=raw_config(_nested(5000))),
    Case("config_nested_100", "parser", PREDICT, 2, "nested deeper than 64", build=raw_config(_nested(100))),
    Case("hidden_5000_digits", "parser", PREDICT, 2, "a number of 5000 digits", build=raw_config(
        lambda t: t.replace('"hidden": 128', '"hidden": ' + "9" * 5000))),
    Case("float_overflow", "parser", PREDICT, 2, "overflows", build=raw_config(
        lambda t: t.replace('"dropout": 0.1', '"dropout": 1e999'))),
    Case("vocab_1e20", "parser", PREDICT, 2, "vocab[0]", build=edit(lambda c: c["vocab"].__setitem__(0, [1e20, 0]))),
    Case("vocab_2_62", "parser", PREDICT, 2, "vocab[0]", build=edit(lambda c: c["vocab"].__setitem__(0, [2 ** 62, 0]))),
    Case("max_move_1e5", "parser", PREDICT, 2, "model.max_move", build=set_in("model", "max_move", 100000)),
    Case("config_not_utf8", "parser", PREDICT, 2, "not UTF-8", build=lambda d, b: (
        copy_model(b, d), (d / "model" / "config.json").write_bytes(b"\xff\xfe{}"))),
    Case("weights_header_nested", "parser", PREDICT, 2, "corrupted", build=_header_length(8)),
    Case("gridded_grid_nested", "parser", LIKE_FILE, 2, "nested deeper than", build=_gridded_meta(b"[" * 5000 + b"]" * 5000)),
    # ---------------------------------------------------------------- the trainer state (resume/)
    Case("resume_weights_outside", "outside", RESUME, 2, "outside the model directory",
         build=resume_edit(lambda r, c: c.update(weights="../../x.safetensors"))),
    Case("resume_weights_dev_zero", "special", RESUME, 2, "outside the model directory",
         build=resume_edit(lambda r, c: c.update(weights="/dev/zero"))),
    Case("resume_config_nested", "parser", RESUME, 2, "nested deeper than",
         build=resume_edit(lambda r, c: c.update(junk=json.loads("[" * 100 + "]" * 100)))),
    # ---------------------------------------------------------------- small
    Case("like_model_other_step", "small", LIKE + ["--step", "60"], 2, "differs from the reused grid's step",
         build=lambda d, b: copy_model(b, d)),
    Case("fit_gridded_other_step", "small", ["fit", "{gridded}", "--out", "m", "--step", "60", "--epochs", "1"], 2,
         "--step 60 differs from its step 30"),
    Case("fit_gridded_other_cell_size", "small", ["fit", "{gridded}", "--out", "m", "--cell-size", "50", "--epochs", "1"],
         2, "--cell-size 50 differs from its cell size 100"),
    Case("crs_epsg4326", "small", PREDICT, 2, "not projected", build=set_in("grid", "crs", "EPSG:4326")),
    Case("like_crs_epsg4326", "small", LIKE, 2, "not projected", build=set_in("grid", "crs", "EPSG:4326")),
    Case("gridded_crs_epsg4326", "small", LIKE_FILE, 2, "not projected", build=_gridded_meta(_grid(crs="EPSG:4326"))),
]
