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
