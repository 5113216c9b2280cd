"""Red-team variants of every hostile class: the attacks the first corpus lacked, across every command
that reads a model directory or a data file (predict, evaluate, explain, export, fit --resume,
grid --like, serve), each with its exact expected outcome."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Callable

from cases_model import LIKE, PREDICT, RESUME, _config, _write, edit, raw_config, weights_path
from corpus import GPS_FLAGS, Base, Case, Outcome, copy_model

EVALUATE = ["evaluate", "model", "{gridded}", "--json"]
EXPORT = ["export", "model", "--out", "copy", "--json"]
EXPLAIN = ["explain", "gates", "--model", "model", "--out", "figs", "--json"]
GRID = ["--cell-size", "100", "--step", "30"]
OUT = ["--out", "{case}/out.parquet"]


def _set(path: str, value) -> Callable[[Path, Base], None]:
    """Set config[a][b]... (dotted `path`) to `value`."""
    def change(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value
    return edit(change)


def _resume(change: Callable[[Path, Path], None]) -> Callable[[Path, Base], None]:
    """Copy the base model, then `change(model_dir, case_dir)` its resume/ folder."""
    def build(case_dir: Path, base: Base) -> None:
        change(copy_model(base, case_dir), case_dir)
    return build


def _resume_symlink_out(model: Path, case_dir: Path) -> None:
    shutil.move(model / "resume", case_dir / "elsewhere")
    os.symlink(case_dir / "elsewhere", model / "resume")


def _resume_weights_fifo(model: Path, case_dir: Path) -> None:
    w = weights_path(model / "resume")
    w.unlink()
    os.mkfifo(w)


def _resume_header(length: int) -> Callable[[Path, Path], None]:
    def change(model: Path, case_dir: Path) -> None:
        w = weights_path(model / "resume")
        data = bytearray(w.read_bytes())
        data[:8] = struct.pack("<Q", length)
        w.write_bytes(bytes(data))
    return change


def _resume_config_dir(model: Path, case_dir: Path) -> None:
    (model / "resume" / "config.json").unlink()
    (model / "resume" / "config.json").mkdir()


def _resume_is_file(model: Path, case_dir: Path) -> None:
    shutil.rmtree(model / "resume")
    (model / "resume").write_text("not a folder")


def _config_is_dir(case_dir: Path, base: Base) -> None:
    model = copy_model(base, case_dir)
    (model / "config.json").unlink()
    (model / "config.json").mkdir()


def _config_bytes(make: Callable[[bytes], bytes]) -> Callable[[Path, Base], None]:
    def build(case_dir: Path, base: Base) -> None:
        model = copy_model(base, case_dir)
        (model / "config.json").write_bytes(make((model / "config.json").read_bytes()))
    return build


def _model_via_symlinked_parent(case_dir: Path, base: Base) -> None:
    copy_model(base, case_dir / "real")
    os.symlink(case_dir / "real", case_dir / "link")


def _weights_hard_link(case_dir: Path, base: Base) -> None:
    model = copy_model(base, case_dir)
    w = weights_path(model)
    shutil.move(w, case_dir / "outside.safetensors")
    os.link(case_dir / "outside.safetensors", w)


def _rewrite_weights(change: Callable[[bytes, dict], bytes]) -> Callable[[Path, Base], None]:
    """Raw weights bytes rewritten by `change(blob, header)`, the config's checksum updated to match."""
    def build(case_dir: Path, base: Base) -> None:
        model = copy_model(base, case_dir)
        config = _config(model)
        w = weights_path(model)
        blob = w.read_bytes()
        (length,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8:8 + length])
        new = change(blob, header)
        config["weights_sha256"] = hashlib.sha256(new).hexdigest()
        w.write_bytes(new)
        _write(model, config)
    return build


def _with_header(header: dict, data: bytes) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


def _offsets_overlap(blob: bytes, header: dict) -> bytes:
    (length,) = struct.unpack("<Q", blob[:8])
    names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    first, second = header[names[0]], header[names[1]]
    second["data_offsets"] = [first["data_offsets"][0], first["data_offsets"][0] +
                              second["data_offsets"][1] - second["data_offsets"][0]]
    return _with_header(header, blob[8 + length:])


def _offsets_beyond_end(blob: bytes, header: dict) -> bytes:
    (length,) = struct.unpack("<Q", blob[:8])
    for entry in header.values():
        if isinstance(entry, dict) and "data_offsets" in entry:
            entry["data_offsets"] = [o + 10**12 for o in entry["data_offsets"]]
    return _with_header(header, blob[8 + length:])


def _dtype_swap(dtype: str, name: str = "head.bias") -> Callable[[bytes, dict], bytes]:
    """Change one tensor's dtype, keeping the byte length consistent (shape adjusted)."""
    def change(blob: bytes, header: dict) -> bytes:
        import torch
        from safetensors.torch import load, save

        tensors = load(blob)
        t = tensors[name]
        tensors[name] = {"F16": t.half(), "I8": t.to(torch.int8), "BOOL": t > 0, "I64": t.long()}[dtype]
        return save(tensors)
    return change


def _tensor_extra(blob: bytes, header: dict) -> bytes:
    import torch
    from safetensors.torch import load, save

    tensors = load(blob)
    tensors["evil.extra"] = torch.zeros(3)
    return save(tensors)


def _tensor_missing(blob: bytes, header: dict) -> bytes:
    from safetensors.torch import load, save

    tensors = load(blob)
    del tensors["head.weight"]
    return save(tensors)


def _header_metadata_bad(blob: bytes, header: dict) -> bytes:
    (length,) = struct.unpack("<Q", blob[:8])
    header["__metadata__"] = {"a": [1, 2, {"b": None}]}
    return _with_header(header, blob[8 + length:])


PRECIOUS = "keep me: a user's file"


def _output_is(name: str, kind: str) -> Callable[[Path, Base], None]:
    """The model's `name` (a file a fit rewrites) replaced by a symlink to the user's file, a FIFO,
    or a symlink to /dev/zero."""
    def build(case_dir: Path, base: Base) -> None:
        model = copy_model(base, case_dir)
        (case_dir / "precious.txt").write_text(PRECIOUS)
        target = model / name
        if target.exists() or target.is_symlink():
            target.unlink()
        if kind == "symlink":
            os.symlink(case_dir / "precious.txt", target)
        elif kind == "fifo":
            os.mkfifo(target)
        else:
            os.symlink("/dev/zero", target)
    return build


def _precious_intact(case_dir: Path, outcome: Outcome) -> None:
    assert (case_dir / "precious.txt").read_text() == PRECIOUS, "a file outside the model directory was rewritten"


def _state(change: Callable[[dict], None]) -> Callable[[Path, Base], None]:
    """The model's trainer state (resume/config.json) changed by `change(document)`; ``epoch`` 0 in
    `change` makes the resumed run train an epoch with what was changed."""
    def build(case_dir: Path, base: Base) -> None:
        resume = copy_model(base, case_dir) / "resume"
        document = _config(resume)
        change(document)
        (resume / "config.json").write_text(json.dumps(document))
    return build


def _at_epoch_0(change: Callable[[dict], None]) -> Callable[[dict], None]:
    def both(document: dict) -> None:
        document["epoch"] = 0
        document["result"].update(history=[], best_epoch=0)
        change(document)
    return both


def _token(kind: str) -> Callable[[Path, Base], None]:
    def build(case_dir: Path, base: Base) -> None:
        copy_model(base, case_dir)
        token = case_dir / "token"
        if kind == "fifo":
            os.mkfifo(token)
        elif kind == "zero":
            os.symlink("/dev/zero", token)
        elif kind == "dir":
            token.mkdir()
        else:
            with open(token, "wb") as f:
                f.truncate(2 << 30)
    return build


SERVE_TOKEN = ["serve", "model", "--port", "0", "--token-file", "token"]


def _copy(case_dir: Path, base: Base) -> None:
    copy_model(base, case_dir)


def _other_kind_resume(case_dir: Path, base: Base) -> None:
    """The model's resume/ replaced by a GRU's trainer state of the same data."""
    import subprocess
    import sys

    copy_model(base, case_dir)
    subprocess.run([sys.executable, "-m", "gridcast", "fit", str(base.gridded), "--out", str(case_dir / "gru"),
                    "--cell", "gru", "--epochs", "1", "--seed", "0", "--hidden", "16", "--no-progress"],
                   check=True, capture_output=True)
    shutil.rmtree(case_dir / "model" / "resume")
    shutil.copytree(case_dir / "gru" / "resume", case_dir / "model" / "resume")


# ---- gridded Parquet files whose cells or layout lie ---------------------------------------------

def _gridded_cells(value: int) -> Callable[[Path, Base], None]:
    def build(case_dir: Path, base: Base) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        copy_model(base, case_dir)
        table = pq.read_table(base.gridded)
        names = table.column_names
        col = names.index("col")
        cells = table.column("col").to_pylist()
        cells[0] = value
        table = table.set_column(col, pa.field("col", pa.int64()), pa.array(cells, pa.int64()))
        pq.write_table(table, case_dir / "bad.parquet")
    return build


def _gridded_truncated(case_dir: Path, base: Base) -> None:
    copy_model(base, case_dir)
    data = base.gridded.read_bytes()
    (case_dir / "bad.parquet").write_bytes(data[: len(data) // 2] + data[-8:])


def _gridded_not_parquet(case_dir: Path, base: Base) -> None:
    copy_model(base, case_dir)
    (case_dir / "bad.parquet").write_bytes(b"PAR1" + b"\x00" * 100 + b"PAR1")


def _csv(name: str, text: str) -> Callable[[Path, Base], None]:
    def build(case_dir: Path, base: Base) -> None:
        (case_dir / name).write_text(text)
    return build


def _sparse(name: str, size: int) -> Callable[[Path, Base], None]:
    def build(case_dir: Path, base: Base) -> None:
        with open(case_dir / name, "wb") as f:
            f.truncate(size)
    return build


HEAD = "track,time,lat,lon\n"
ROWS = "".join(f"A,{10 * i},53.40{i:02d},-2.98{i:02d}\n" for i in range(12))
ONE_POINT_TRACKS = HEAD + "".join(f"T{i},{i},53.4,-2.98\n" for i in range(100_000))
FAR_FUTURE = HEAD + "".join(f"A,9999-12-31T23:{i:02d}:00,53.40{i:02d},-2.98{i:02d}\n" for i in range(12))
NEGATIVE_EPOCH = HEAD + "".join(f"A,{-10**12 + 10 * i},53.40{i:02d},-2.98{i:02d}\n" for i in range(12))
EPOCH_HUGE = HEAD + "A,0,53.4,-2.98\nA,1e300,53.41,-2.99\n"
DUP_TIMES = HEAD + "".join(f"A,100,53.40{i:02d},-2.98{i:02d}\n" for i in range(12))
BACKWARDS = HEAD + "".join(f"A,{1000 - 10 * i},53.40{i:02d},-2.98{i:02d}\n" for i in range(12))
LAT_HUGE = HEAD + "A,0,1e308,-2.98\nA,10,53.4,-2.98\n" + ROWS
NAN_STRINGS = HEAD + "".join("NaN,NaN,NaN,NaN\n" for _ in range(12))
INF_STRINGS = HEAD + "".join(f"A,{10 * i},inf,-inf\n" for i in range(12))
MIXED = HEAD + "".join(f"A,{10 * i},{'x' if i % 3 == 0 else 53.4 + i * 1e-3},-2.98\n" for i in range(12))
FLAG_CSV = _csv("v.csv", HEAD + ROWS)


def _flag(name: str, flags: list[str], needle: str) -> Case:
    return Case(name, "flags", ["grid", "{case}/v.csv", *OUT, *flags], 2, needle, build=FLAG_CSV)


CASES: list[Case] = [
    # ---------------------------------------------------------------- outside the model directory
    Case("rt_resume_symlink_leaves", "outside", RESUME, 2, "outside the model directory",
         build=_resume(_resume_symlink_out)),
    Case("rt_model_via_symlinked_parent_loads", "outside", ["predict", "link/model", "--track", "60,61 61,61", "--json"],
         0, build=_model_via_symlinked_parent, time_limit_s=60),
    Case("rt_weights_hard_link_loads", "outside", PREDICT, 0, build=_weights_hard_link, time_limit_s=60),
    Case("rt_export_weights_symlink_leaves", "outside", EXPORT, 2, "outside the model directory",
         build=__import__("cases_model")._weights_outside_symlink),
    Case("rt_resume_lock_symlink_to_user_file", "destroy", RESUME, 2, "is a symlink",
         build=_output_is(".gridcast.lock", "symlink"), check=_precious_intact),
    Case("rt_resume_log_symlink_to_user_file", "destroy", RESUME, 2, "train_log.jsonl is a symlink",
         build=_output_is("train_log.jsonl", "symlink"), check=_precious_intact),
    Case("rt_resume_plot_symlink_to_user_file", "destroy", RESUME, 2, "training.png is a symlink",
         build=_output_is("training.png", "symlink"), check=_precious_intact),
    Case("rt_fit_out_log_symlink_to_user_file", "destroy", ["fit", "{gridded}", "--out", "model", "--epochs", "1",
         "--no-progress"], 2, "train_log.jsonl is a symlink", build=_output_is("train_log.jsonl", "symlink"),
         check=_precious_intact),
    Case("rt_resume_log_fifo", "special", RESUME, 2, "train_log.jsonl is not a regular file",
         build=_output_is("train_log.jsonl", "fifo")),
    Case("rt_resume_log_dev_zero", "special", RESUME, 2, "train_log.jsonl is a symlink",
         build=_output_is("train_log.jsonl", "zero")),
    # the trainer state's own fields (resume/config.json), each checked before training continues
    Case("rt_state_epoch_string", "training", RESUME, 2, "epoch", build=_state(lambda d: d.update(epoch="abc"))),
    Case("rt_state_epoch_negative", "training", RESUME, 2, "epoch", build=_state(lambda d: d.update(epoch=-5))),
    Case("rt_state_epoch_huge", "training", RESUME, 2, "epoch", build=_state(lambda d: d.update(epoch=10**18))),
    Case("rt_state_waited_string", "training", RESUME, 2, "waited", build=_state(lambda d: d.update(waited="x"))),
    Case("rt_state_best_loss_string", "training", RESUME, 2, "best_val_loss",
         build=_state(lambda d: d["result"].update(best_val_loss="x"))),
    Case("rt_state_history_bogus", "training", RESUME, 2, "training state",
         build=_state(lambda d: d["result"].update(history=[{"bogus": 1}]))),
    Case("rt_state_lr_string", "training", RESUME, 2, "lr",
         build=_state(_at_epoch_0(lambda d: d["optimizer"]["param_groups"][0].update(lr="abc")))),
    Case("rt_state_lr_huge", "training", RESUME, 2, "lr",
         build=_state(_at_epoch_0(lambda d: d["optimizer"]["param_groups"][0].update(lr=1e300)))),
    Case("rt_state_betas_short", "training", RESUME, 2, "betas",
         build=_state(_at_epoch_0(lambda d: d["optimizer"]["param_groups"][0].update(betas=[0.9])))),
    Case("rt_state_scheduler_patience_string", "training", RESUME, 2, "scheduler",
         build=_state(_at_epoch_0(lambda d: d["scheduler"].update(patience="x")))),
    Case("rt_state_scheduler_mode_bogus", "training", RESUME, 2, "scheduler.mode",
         build=_state(_at_epoch_0(lambda d: d["scheduler"].update(mode="bogus")))),
    Case("rt_state_scheduler_unknown_key", "training", RESUME, 2, "scheduler",
         build=_state(_at_epoch_0(lambda d: d["scheduler"].update(optimizer=1)))),
    Case("rt_state_params_short", "training", RESUME, 2, "training state",
         build=_state(_at_epoch_0(lambda d: d["optimizer"]["param_groups"][0].update(params=[0])))),
    # serve's own inputs at start
    Case("rt_serve_token_fifo", "special", SERVE_TOKEN, 2, "FIFO", build=_token("fifo")),
    Case("rt_serve_token_dev_zero", "special", SERVE_TOKEN, 2, "token", build=_token("zero")),
    Case("rt_serve_token_directory", "special", SERVE_TOKEN, 2, "directory", build=_token("dir")),
    Case("rt_serve_token_sparse_2gb", "allocation", SERVE_TOKEN, 2, "over the cap", build=_token("sparse")),
    # outputs that are the model's own files
    Case("rt_like_out_is_the_model_config", "destroy", ["grid", "{csv}", "--out", "model/config.json", "--like", "model",
         *GPS_FLAGS], 2, "", build=_copy, check=lambda d, o: json.loads((d / "model" / "config.json").read_text())),
    Case("rt_export_out_is_the_model", "destroy", ["export", "model", "--out", "model"], 2, "",
         build=_copy, check=lambda d, o: json.loads((d / "model" / "config.json").read_text())),
    Case("rt_predict_geojson_is_the_model_config", "destroy", [*PREDICT, "--geojson", "model/config.json"], 2, "",
         build=_copy, check=lambda d, o: json.loads((d / "model" / "config.json").read_text())["format"]),
    Case("rt_explain_weights_dotdot", "outside", EXPLAIN, 2, "outside the model directory",
         build=edit(lambda c: c.update(weights="../x.safetensors"))),
    Case("rt_evaluate_weights_absolute", "outside", EVALUATE, 2, "outside the model directory",
         build=edit(lambda c: c.update(weights="/etc/passwd"))),
    Case("rt_serve_weights_dotdot", "outside", ["serve", "model", "--port", "0"], 2, "outside the model directory",
         build=edit(lambda c: c.update(weights="../x.safetensors"))),
    # ---------------------------------------------------------------- special files
    Case("rt_resume_weights_fifo", "special", RESUME, 2, "FIFO, not a regular file", build=_resume(_resume_weights_fifo)),
    Case("rt_resume_config_is_dir", "special", RESUME, 2, "directory", build=_resume(_resume_config_dir)),
    Case("rt_resume_is_a_file", "special", RESUME, 2, "resume", build=_resume(_resume_is_file)),
    Case("rt_config_is_dir", "special", PREDICT, 2, "directory, not a regular file", build=_config_is_dir),
    Case("rt_like_config_is_dir", "special", LIKE, 2, "directory, not a regular file", build=_config_is_dir),
    Case("rt_export_config_is_dir", "special", EXPORT, 2, "directory, not a regular file", build=_config_is_dir),
    Case("rt_export_weights_fifo", "special", EXPORT, 2, "FIFO", build=__import__("cases_model")._weights_fifo),
    Case("rt_evaluate_data_dev_zero", "special", ["evaluate", "model", "/dev/zero"], 2, "/dev/zero", build=_copy),
    Case("rt_serve_config_fifo", "special", ["serve", "model", "--port", "0"], 2, "FIFO",
         build=__import__("cases_model")._config_fifo),
    # ---------------------------------------------------------------- allocation before validation
    Case("rt_resume_header_2_63", "allocation", RESUME, 2, "header length", build=_resume(_resume_header(1 << 63))),
    Case("rt_weights_header_2_63", "allocation", PREDICT, 2, "header length",
         build=__import__("cases_model")._header_length(1 << 63)),
    Case("rt_weights_header_2_64_minus_1", "allocation", EXPORT, 2, "header length",
         build=__import__("cases_model")._header_length((1 << 64) - 1)),
    Case("rt_config_50mb_whitespace", "allocation", PREDICT, 2, "over the cap",
         build=_config_bytes(lambda b: b + b" " * (50 << 20))),
    Case("rt_config_30mb_whitespace", "allocation", PREDICT, 0,
         build=_config_bytes(lambda b: b" " * (30 << 20) + b), time_limit_s=60),
    Case("rt_offsets_overlap", "allocation", PREDICT, 2, "weights", build=_rewrite_weights(_offsets_overlap)),
    Case("rt_offsets_beyond_end", "allocation", PREDICT, 2, "weights", build=_rewrite_weights(_offsets_beyond_end)),
    # ---------------------------------------------------------------- config values (types at every level)
    Case("rt_config_bom", "config", PREDICT, 2, "config.json", build=_config_bytes(lambda b: b"\xef\xbb\xbf" + b)),
    Case("rt_config_utf16", "config", PREDICT, 2, "config.json",
         build=_config_bytes(lambda b: b.decode().encode("utf-16"))),
    Case("rt_config_top_level_list", "config", PREDICT, 2, "config.json", build=_config_bytes(lambda b: b"[1, 2]")),
    Case("rt_config_duplicate_key", "parser", PREDICT, 2, "appears twice", build=raw_config(
        lambda t: t.replace('"model": {', '"model": {"hidden": 128, "hidden": 99999, ', 1))),
    Case("rt_vocab_dict", "config", PREDICT, 2, "vocab", build=_set("vocab", {"a": [1, 2]})),
    Case("rt_vocab_cells_strings", "config", PREDICT, 2, "vocab[0]", build=edit(lambda c: c["vocab"].__setitem__(0, ["1", "2"]))),
    Case("rt_vocab_cells_bool", "config", PREDICT, 2, "vocab[0]", build=edit(lambda c: c["vocab"].__setitem__(0, [True, 0]))),
    Case("rt_vocab_empty", "config", PREDICT, 2, "vocab", build=_set("vocab", [])),
    Case("rt_hidden_bool", "config", PREDICT, 2, "model.hidden", build=_set("model.hidden", True)),
    Case("rt_hidden_float", "config", PREDICT, 2, "model.hidden", build=_set("model.hidden", 128.0)),
    Case("rt_min_tracks_negative", "config", PREDICT, 2, "model.min_tracks", build=_set("model.min_tracks", -5)),
    Case("rt_model_kind_unknown", "config", PREDICT, 2, "model", build=_set("model.kind", "transformer")),
    Case("rt_model_kind_int", "config", PREDICT, 2, "model", build=_set("model.kind", 5)),
    Case("rt_model_is_list", "config", PREDICT, 2, "model", build=_set("model", [1])),
    Case("rt_grid_is_list", "config", PREDICT, 2, "grid", build=_set("grid", [1, 2])),
    Case("rt_grid_is_string", "config", LIKE, 2, "grid", build=_set("grid", "EPSG:32630")),
    Case("rt_grid_step_negative", "config", PREDICT, 2, "step", build=_set("grid.step", -30)),
    Case("rt_grid_step_zero_like", "config", LIKE, 2, "step", build=_set("grid.step", 0)),
    Case("rt_grid_cell_size_negative", "config", PREDICT, 2, "cell", build=_set("grid.cell_size", -100)),
    Case("rt_normalisation_list", "config", PREDICT, 2, "normalisation", build=_set("normalisation", [1, 2])),
    Case("rt_normalisation_centre_strings", "config", PREDICT, 2, "normalisation.centre",
         build=_set("normalisation.centre", ["a", "b"])),
    Case("rt_preprocessing_list", "config", PREDICT, 2, "preprocessing", build=_set("preprocessing", [1])),
    Case("rt_like_preprocessing_list", "config", LIKE, 2, "preprocessing", build=_set("preprocessing", [1])),
    Case("rt_max_gap_negative", "config", LIKE, 2, "max_gap", build=_set("preprocessing.max_gap", -1)),
    Case("rt_max_gap_bool", "config", PREDICT, 2, "max_gap", build=_set("preprocessing.max_gap", True)),
    Case("rt_calibration_list", "config", PREDICT, 2, "calibration", build=_set("calibration", [1])),
    Case("rt_calibration_temperature_bool", "config", PREDICT, 2, "calibration.temperature",
         build=_set("calibration.temperature", True)),
    Case("rt_train_list", "config", PREDICT, 2, "train", build=_set("train", [1])),
    Case("rt_train_epochs_negative", "config", PREDICT, 2, "train.epochs", build=_set("train.epochs", -1)),
    Case("rt_output_size_bool", "config", PREDICT, 2, "output_size", build=edit(lambda c: c.update(output_size=True))),
    Case("rt_schema_version_bool", "config", PREDICT, 2, "schema version", build=edit(lambda c: c.update(schema_version=True))),
    Case("rt_format_missing", "config", PREDICT, 2, "config", build=edit(lambda c: c.pop("format"))),
    Case("rt_weights_f16", "config", PREDICT, 2, "weights", build=_rewrite_weights(_dtype_swap("F16"))),
    Case("rt_weights_i8", "config", PREDICT, 2, "weights", build=_rewrite_weights(_dtype_swap("I8"))),
    Case("rt_weights_bool", "config", PREDICT, 2, "weights", build=_rewrite_weights(_dtype_swap("BOOL"))),
    Case("rt_train_cells_float", "config", PREDICT, 2, "train_cells",
         build=_rewrite_weights(_dtype_swap("F16", "data.train_cells"))),
    Case("rt_tensor_extra", "config", PREDICT, 2, "evil.extra", build=_rewrite_weights(_tensor_extra)),
    Case("rt_tensor_missing", "config", PREDICT, 2, "head.weight", build=_rewrite_weights(_tensor_missing)),
    Case("rt_header_metadata_not_strings", "config", PREDICT, 2, "weights", build=_rewrite_weights(_header_metadata_bad)),
    Case("rt_resume_other_kind", "training", RESUME, 2, "", build=_other_kind_resume, time_limit_s=60),
    Case("rt_explain_hidden_bool", "config", EXPLAIN, 2, "model.hidden", build=_set("model.hidden", True)),
    Case("rt_evaluate_vocab_dict", "config", EVALUATE, 2, "vocab", build=_set("vocab", {"a": 1})),
    Case("rt_export_vocab_dict", "config", EXPORT, 2, "vocab", build=_set("vocab", {"a": 1})),
    Case("rt_serve_hidden_20000", "config", ["serve", "model", "--port", "0"], 2, "model.hidden",
         build=_set("model.hidden", 20000)),
    # ---------------------------------------------------------------- gridded Parquet files that lie
    Case("rt_gridded_cell_over_int32", "data", ["predict", "model", "bad.parquet", "--json"], 2, "bad.parquet",
         build=_gridded_cells(2**40)),
    Case("rt_gridded_cell_negative_huge", "data", ["evaluate", "model", "bad.parquet"], 2, "bad.parquet",
         build=_gridded_cells(-2**62)),
    Case("rt_fit_gridded_cell_over_int32", "data", ["fit", "bad.parquet", "--out", "m", "--epochs", "1"], 2,
         "bad.parquet", build=_gridded_cells(2**40)),
    Case("rt_gridded_truncated", "data", ["predict", "model", "bad.parquet"], 2, "bad.parquet", build=_gridded_truncated),
    Case("rt_gridded_not_parquet", "data", ["evaluate", "model", "bad.parquet"], 2, "bad.parquet",
         build=_gridded_not_parquet),
    Case("rt_like_file_truncated", "data", ["grid", "{csv}", *OUT, "--like", "bad.parquet", *GPS_FLAGS], 2,
         "bad.parquet", build=_gridded_truncated),
    # ---------------------------------------------------------------- data files
    Case("rt_csv_100k_one_point_tracks", "data", ["grid", "{case}/v.csv", *OUT, *GRID], 2, "",
         build=_csv("v.csv", ONE_POINT_TRACKS)),
    Case("rt_csv_year_9999", "data", ["grid", "{case}/v.csv", *OUT, *GRID], 0, build=_csv("v.csv", FAR_FUTURE)),
    Case("rt_csv_negative_epoch", "data", ["grid", "{case}/v.csv", *OUT, *GRID], 0, build=_csv("v.csv", NEGATIVE_EPOCH)),
    Case("rt_csv_time_1e300", "data", ["grid", "{case}/v.csv", *OUT, *GRID], 2, "", build=_csv("v.csv", EPOCH_HUGE)),
    Case("rt_csv_duplicate_times", "data", ["grid", "{case}/v.csv", *OUT, *GRID], 2, "", build=_csv("v.csv", DUP_TIMES)),
    Case("rt_csv_time_backwards", "data", ["grid", "{case}/v.csv", *OUT, *GRID], 0, build=_csv("v.csv", BACKWARDS)),
    Case("rt_csv_lat_1e308", "data", ["grid", "{case}/v.csv", *OUT, *GRID], 0, build=_csv("v.csv", LAT_HUGE)),
    Case("rt_csv_nan_everywhere", "data", ["grid", "{case}/v.csv", *OUT, *GRID], 2, "", build=_csv("v.csv", NAN_STRINGS)),
    Case("rt_csv_inf_coordinates", "data", ["grid", "{case}/v.csv", *OUT, *GRID], 2, "", build=_csv("v.csv", INF_STRINGS)),
    Case("rt_csv_mixed_types", "data", ["grid", "{case}/v.csv", *OUT, *GRID], 0, build=_csv("v.csv", MIXED)),
    Case("rt_csv_2gb_sparse_nuls", "data", ["grid", "{case}/v.csv", *OUT, *GRID], 2, "v.csv",
         build=_sparse("v.csv", 2 << 30)),
    Case("rt_predict_csv_nan_everywhere", "data", ["predict", "model", "{case}/v.csv", "--json"], 2, "",
         build=lambda d, b: (copy_model(b, d), _csv("v.csv", NAN_STRINGS)(d, b))),
    Case("rt_evaluate_csv_2gb_sparse", "data", ["evaluate", "model", "{case}/v.csv"], 2, "v.csv",
         build=lambda d, b: (copy_model(b, d), _sparse("v.csv", 2 << 30)(d, b))),
    # ---------------------------------------------------------------- numeric flags at their edges
    _flag("rt_cell_size_1e-300", ["--cell-size", "1e-300", "--step", "30"], "--cell-size must be a finite number in [1e-09, 1e+09]"),
    _flag("rt_step_1e-9", ["--cell-size", "100", "--step", "1e-9"], "--step"),
    _flag("rt_flag_max_gap_negative", [*GRID, "--max-gap", "-1"], "--max-gap"),
    _flag("rt_min_points_1e9", [*GRID, "--min-points", "1000000000"], "no usable tracks"),
    _flag("rt_cell_size_nan", ["--cell-size", "nan", "--step", "30"], "--cell-size must be a finite number in [1e-09, 1e+09]"),
    _flag("rt_step_inf", ["--cell-size", "100", "--step", "inf"], "--step"),
    _flag("rt_cell_size_1e300", ["--cell-size", "1e300", "--step", "30"], "--cell-size must be a finite number in [1e-09, 1e+09]"),
    _flag("rt_step_1e300", ["--cell-size", "100", "--step", "1e300"], "--step: expected a positive number of seconds (at most 1e+09)"),
]
