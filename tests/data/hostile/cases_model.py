"""Crafted model directories: files outside the folder, special files, allocation before validation, bad values."""
from __future__ import annotations

import json
from pathlib import Path

from corpus import Base, Case, copy_model


def _edit_config(case_dir: Path, base: Base, **changes) -> None:
    model = copy_model(base, case_dir)
    config = json.loads((model / "config.json").read_text())
    config.update(changes)
    (model / "config.json").write_text(json.dumps(config))


CASES: list[Case] = [
    Case("weights_parent_path", "outside", ["predict", "model", "--track", "0,0", "--json"], 2, "outside the model directory",
         build=lambda d, b: _edit_config(d, b, weights="../../secret.safetensors")),
]
