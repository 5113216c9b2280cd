from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # small models: a second thread only spin-waits when the cores are busy

# tests/data holds fixtures and corpus generators, not tests (two make_corpus.py would also clash by name)
collect_ignore_glob = ["data/*"]

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def write_random_walks(path: Path, n_tracks: int, length: int, seed: int = 0) -> None:
    """A small planar CSV (track,time,x,y) of random walks on a grid: steps right, up, diagonal or stay."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = ["track,time,x,y"]
    for i in range(n_tracks):
        pos = rng.integers(0, 6, size=2)
        for t in range(length):
            lines.append(f"t{i},{t},{pos[0]},{pos[1]}")
            pos = pos + rng.choice([[1, 0], [0, 1], [1, 1], [0, 0]])
    path.write_text("\n".join(lines) + "\n")


def model_weights(directory: Path) -> dict:
    """The tensors of a saved model directory, read through the file its config names."""
    import json

    from safetensors.torch import load_file

    config = json.loads((directory / "config.json").read_text())
    return load_file(directory / config["weights"])


def train_log(directory: Path) -> list[dict]:
    """A model directory's train_log.jsonl, one dict per epoch."""
    import json

    return [json.loads(line) for line in (directory / "train_log.jsonl").read_text().splitlines()]


def assert_same_training(one: Path, two: Path, tol: float = 1e-5) -> None:
    """Two model directories trained alike: every epoch's train and validation loss, and every
    floating-point weight, within `tol` (how a DDP run is checked against one process)."""
    for a, b in zip(train_log(one), train_log(two), strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=tol, abs=tol)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=tol, abs=tol)
    wa, wb = model_weights(one), model_weights(two)
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa if wa[k].is_floating_point())
    assert worst <= tol, worst
