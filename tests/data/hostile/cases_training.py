"""Crafted training runs and flags: out-of-range numbers, outputs that are files, memory beyond the
limit, --resume over other data, and what a good run leaves on disk (JSON log, the user's umask)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from corpus import GPS_FLAGS, Base, Case, Outcome, copy_model

FIT = ["fit", "{gridded}", "--out", "m", "--no-progress"]


def _flag(name: str, flags: list[str], needle: str, command: list[str] = FIT) -> Case:
    return Case(name, "flags", [*command, *flags], 2, needle)


def _file(case_dir: Path, base: Base) -> None:
    (case_dir / "model.txt").write_text("keep me")


def _file_intact(case_dir: Path, outcome: Outcome) -> None:
    assert (case_dir / "model.txt").read_text() == "keep me", "fit --out replaced a file"


def _no_model(case_dir: Path, outcome: Outcome) -> None:
    assert not (case_dir / "m" / "config.json").exists(), "a refused run wrote a model"


def _state_without_fingerprint(case_dir: Path, base: Base) -> None:
    model = copy_model(base, case_dir)
    state = model / "resume" / "config.json"
    document = json.loads(state.read_text())
    document["settings"].pop("data", None)
    state.write_text(json.dumps(document))


def _log_and_modes(case_dir: Path, outcome: Outcome) -> None:
    def no_nan(token: str):
        raise AssertionError(f"train_log.jsonl holds {token}: not JSON")
    for line in (case_dir / "m" / "train_log.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=no_nan)
    mask = os.umask(0o022)
    os.umask(mask)
    for path in (case_dir / "m").iterdir():
        if path.is_file() and path.name != ".gridcast.lock":
            assert path.stat().st_mode & 0o777 == 0o666 & ~mask, f"{path.name} has mode {path.stat().st_mode & 0o777:o}"


PREDICT = ["predict", "{model}", "--track", "0,0 1,0"]
EVALUATE = ["evaluate", "{model}", "{gridded}"]

CASES: list[Case] = [
    _flag("fit_lr_nan", ["--lr", "nan"], "--lr must be a finite number in (0, 1]"),
    _flag("fit_lr_negative", ["--lr", "-1"], "--lr must be a finite number"),
    _flag("fit_lr_1e20_offset", ["--lr", "1e20", "--target", "offset"], "--lr must be a finite number"),
    _flag("fit_lr_1e38", ["--lr", "1e38"], "--lr must be a finite number"),
    _flag("fit_lr_inf", ["--lr", "inf"], "--lr must be a finite number"),
    _flag("fit_batch_size_0", ["--batch-size", "0"], "--batch-size must be an integer in [1, 65536]"),
    _flag("fit_seed_negative", ["--seed", "-1"], "--seed must be an integer in [0, 4294967295]"),
    _flag("fit_epochs_0", ["--epochs", "0"], "--epochs must be an integer in [1, 100000]"),
    _flag("fit_hidden_20000", ["--hidden", "20000"], "--hidden must be an integer in [1, 4096]"),
    _flag("fit_layers_100000", ["--layers", "100000"], "--layers must be an integer in [1, 16]"),
    _flag("fit_dropout_1", ["--dropout", "1"], "--dropout must be a finite number in [0, 1)"),
    _flag("fit_val_fraction_1", ["--val-fraction", "1"], "--val-fraction must be"),
    _flag("fit_clip_nan", ["--clip", "nan"], "--clip must be"),
    _flag("fit_max_move_1e5", ["--max-move", "100000"], "--max-move must be an integer in [1, 50]"),
    _flag("fit_cell_size_zero", ["--cell-size", "0"], "--cell-size must be a finite number in [1e-09, 1e+09]"),
    _flag("fit_step_1e300", ["--step", "1e300"], "--step must be a finite number in (0, 1e+09]"),
    _flag("fit_memory_limit_garbage", ["--memory-limit", "lots"], "--memory-limit: must be a size"),
    Case("fit_out_existing_file", "flags", ["fit", "{gridded}", "--out", "model.txt"], 2,
         "is a file, not a model directory", build=_file, check=_file_intact),
    Case("fit_memory_estimate_tiny_cells", "memory", ["fit", "{csv}", *GPS_FLAGS, "--cell-size", "1e-3", "--step", "1",
                                                      "--out", "m", "--no-progress"], 2,
         "over --memory-limit 4.0 GiB; use a larger --cell-size or a smaller --batch-size", check=_no_model),
    Case("fit_memory_limit_small", "memory", [*FIT, "--memory-limit", "1MiB"], 2, "over --memory-limit",
         check=_no_model),
    Case("fit_resume_other_data", "training", ["fit", "{csv}", *GPS_FLAGS, "--cell-size", "50", "--step", "30",
                                               "--out", "model", "--epochs", "1", "--resume", "--no-progress"], 2,
         "DATA is not the data the interrupted run trained on", build=lambda d, b: copy_model(b, d)),
    Case("fit_resume_without_fingerprint", "training", ["fit", "{gridded}", "--out", "model", "--epochs", "1",
                                                        "--resume", "--no-progress"], 2,
         "no data fingerprint", build=_state_without_fingerprint),
    Case("fit_log_is_json_and_files_follow_umask", "training", [*FIT, "--epochs", "1", "--hidden", "16", "--batch-size", "128",
                                                                 "--no-calibrate"], 0, check=_log_and_modes),
    _flag("predict_track_1e20", [], "is out of range", ["predict", "{model}", "--track", "1e20,3"]),
    _flag("predict_horizon_1e6", ["--horizon", "1000000"], "--horizon must be an integer in [1, 1000]", PREDICT),
    _flag("predict_max_horizon_0", ["--max-horizon", "0"], "--max-horizon must be", PREDICT),
    _flag("predict_top_k_0", ["--top-k", "0"], "--top-k must be an integer in [1, 1000]", PREDICT),
    _flag("predict_samples_negative", ["--samples", "-1"], "--samples must be", PREDICT),
    _flag("evaluate_plot_txt", ["--plot", "x.txt"], "must end in .png, .pdf, .svg", EVALUATE),
    _flag("evaluate_plot_calibration_gif", ["--plot-calibration", "r.gif"], "must end in .png", EVALUATE),
    _flag("evaluate_cut_nan", ["--cut", "nan"], "--cut must be a finite number in (0, 1)", EVALUATE),
    _flag("demo_epochs_0", ["--epochs", "0"], "--epochs must be", ["demo", "--out", "d"]),
    _flag("demo_seed_negative", ["--seed", "-1"], "--seed must be", ["demo", "--out", "d"]),
    _flag("explain_seeds_1e6", ["--seeds", "1000000"], "--seeds must be >= 1 and <= 100000",
          ["explain", "compare", "--out", "e"]),
]

