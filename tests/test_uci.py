"""The GeoLife pipeline on the UCI GPS trajectories, only column names changed: split, no leakage, CLI."""
import json

import numpy as np
import pytest

from gridcast.cli import main
from gridcast.datasets import check_no_leakage, load_uci


@pytest.fixture(scope="module")
def uci():
    from conftest import SHARED_DATA

    path = SHARED_DATA / "uci_gps_trajectories"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return load_uci(path)


def test_split_sizes_and_people(uci):
    assert uci.sizes() == {"train_tracks": 83, "train_transitions": 1094, "val_tracks": 0, "val_transitions": 0,
                           "test_tracks": 27, "test_transitions": 437}
    assert len(set(uci.user_of.values())) == 20  # of 28 people, 8 have no trip with two cells


def test_no_leakage_and_same_start_trips_stay_together(uci):
    check_no_leakage(uci.train, uci.test, uci.user_of, whole_days=False)
    side = {t.id: "train" for t in uci.train} | {t.id: "test" for t in uci.test}
    by_start: dict = {}
    for t in uci.train + uci.test:
        by_start.setdefault((uci.user_of[t.id], int(round(t.times[0]))), set()).add(side[t.id])
    assert all(len(sides) == 1 for sides in by_start.values())
    for person in {uci.user_of[t.id] for t in uci.test}:
        train_starts = [t.times[0] for t in uci.train if uci.user_of[t.id] == person]
        test_starts = [t.times[0] for t in uci.test if uci.user_of[t.id] == person]
        assert not train_starts or max(train_starts) < min(test_starts)


def test_bench_uci_quick_json(uci, capsys):
    from conftest import SHARED_DATA

    code = main(["bench", "uci", "--data", str(SHARED_DATA / "uci_gps_trajectories"), "--quick", "--epochs", "1", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 437 and result["sizes"]["test_tracks"] == 27
    assert result["baselines"]["markov2"]["acc@1"] == pytest.approx(0.215, abs=5e-4)
    assert result["baselines"]["markov2_spatial"]["acc@5"] == pytest.approx(0.492, abs=5e-4)
    assert np.isfinite(result["model"]["mrr"])


def test_wrong_column_flag_is_one_line_exit_2(capsys):
    from conftest import SHARED_DATA

    path = SHARED_DATA / "uci_gps_trajectories"
    if not path.exists():
        pytest.skip("no shared data")
    assert main(["bench", "uci", "--data", str(path), "--track-col", "trip"]) == 2
    err = capsys.readouterr().err
    assert "trip" in err and err.count("\n") == 1
