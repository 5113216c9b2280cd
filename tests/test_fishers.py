"""Movebank fishers protocol: rows without a location dropped and counted, a per-animal time split
with no leakage, both modes, and `gridcast bench fishers --quick` end to end."""
import gzip
import json

import numpy as np
import pytest

from gridcast.cli import main
from gridcast.datasets.fishers import FISHERS_FILE, animal_of, load_fishers, split_per_animal_span
from gridcast.datasets.geolife import check_no_leakage
from gridcast.nextcell.baselines import default_baselines
from gridcast.tracks import Track

ANIMALS = ("F1", "M1")  # the two smallest animals: a slice that loads in well under a second


@pytest.fixture(scope="module")
def fishers_slice(tmp_path_factory):
    """The real file cut to two animals; returns (path, rows kept per animal, rows without a location)."""
    from conftest import SHARED_DATA

    source = SHARED_DATA / "movebank_fishers" / FISHERS_FILE
    if not source.exists():
        pytest.skip(f"shared data not found at {source}")
    import pandas as pd

    frame = pd.read_csv(source, low_memory=False)
    part = frame[frame["individual-local-identifier"].isin(ANIMALS)]
    path = tmp_path_factory.mktemp("fishers") / FISHERS_FILE
    with gzip.open(path, "wt") as f:
        part.to_csv(f, index=False)
    missing = int((part["location-lat"].isna() | part["location-long"].isna()).sum())
    return path, len(part), missing


def test_rows_without_a_location_are_dropped_and_counted(fishers_slice):
    path, rows, missing = fishers_slice
    data = load_fishers(path.parent)
    assert missing > 0 and data.report["read"] == rows
    assert data.report["dropped"]["missing"] == missing
    assert data.report["kept"] == rows - sum(data.report["dropped"].values())
    assert set(data.user_of.values()) == set(ANIMALS)


def test_per_animal_time_split_has_no_leakage(fishers_slice):
    data = load_fishers(fishers_slice[0])  # the file itself works too
    assert data.train and data.val and data.test
    check_no_leakage(data.train + data.val, data.test, data.user_of)
    for animal in ANIMALS:
        def own(tracks):
            return [t for t in tracks if data.user_of[t.id] == animal]

        everything = own(data.train) + own(data.val) + own(data.test)
        lo = min(t.times[0] for t in everything)
        hi = max(t.times[-1] for t in everything)
        train_end = max(t.times[-1] for t in own(data.train))
        val_start, val_end = min(t.times[0] for t in own(data.val)), max(t.times[-1] for t in own(data.val))
        test_start = min(t.times[0] for t in own(data.test))
        assert train_end <= lo + 0.6 * (hi - lo) < val_start  # the first 60% trains,
        assert val_end <= lo + 0.7 * (hi - lo) < test_start  # the next 10% validates, the rest tests
    assert not {t.id for t in data.train + data.val} & {t.id for t in data.test}


def test_fixed_mode_keeps_stays_and_collapsed_mode_removes_them(fishers_slice):
    fixed = load_fishers(fishers_slice[0], mode="fixed")
    collapsed = load_fishers(fishers_slice[0], mode="collapsed")
    assert fixed.protocol["mode"] == "fixed" and collapsed.protocol["mode"] == "collapsed"
    stays = sum(int((np.diff(t.cells, axis=0) == 0).all(axis=1).sum()) for t in fixed.test)
    assert stays > 0.3 * fixed.sizes()["test_transitions"]  # animals rest: many steps are stays
    assert all(np.any(t.cells[1:] != t.cells[:-1], axis=1).all() for t in collapsed.test)
    assert all(np.allclose(np.diff(t.times), 600.0) for t in fixed.test)
    assert fixed.sizes()["test_transitions"] > collapsed.sizes()["test_transitions"]


def test_split_cuts_a_track_that_straddles_the_boundary():
    times = np.arange(0.0, 1000.0, 100.0)
    long = Track("A#1", np.stack([np.arange(10), np.zeros(10)], axis=1), times)
    other = Track("B#1", np.zeros((4, 2), dtype=int), np.array([0.0, 10.0, 20.0, 30.0]))  # its own span: 0-30 s
    train, val, test = split_per_animal_span([long, other], (0.6, 0.1, 0.3))
    assert {t.id: len(t) for t in train} == {"A#1@0": 6, "B#1@0": 2}  # A: 0..500 s <= 540 s; B: 0, 10 <= 18 s
    assert {t.id: len(t) for t in val} == {}  # A has one point in (540, 630] s, B one in (18, 21]: too short
    assert {t.id: len(t) for t in test} == {"A#1@2": 3}  # B's one point after 21 s: too short
    assert animal_of("A#1@2") == "A" and animal_of("B#1@0") == "B"
    with pytest.raises(Exception, match="sum to 1"):
        split_per_animal_span([long], (0.5, 0.1))


def test_bench_fishers_quick_end_to_end(fishers_slice, capsys, tmp_path):
    path, _, missing = fishers_slice
    code = main(["bench", "fishers", "--data", str(path.parent), "--quick", "--epochs", "1", "--json",
                 "--out", str(tmp_path / "r.json")])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert {"model", "baselines", "n"} <= set(result)
    assert result["protocol"]["mode"] == "fixed" and result["protocol"]["step"] == 600.0
    assert result["protocol"]["cell_size"] == 100.0 and result["protocol"]["max_gap"] == 3600.0
    assert result["ingest"]["dropped"]["missing"] == missing
    assert set(result["baselines"]) == {b.name for b in default_baselines()}
    assert set(result["users"]) == set(ANIMALS)
    strongest = result["strongest_baseline"]
    assert strongest["acc@1"] == max(result["baselines"], key=lambda b: result["baselines"][b]["acc@1"])
    assert strongest["ade"] == min(result["baselines"], key=lambda b: result["baselines"][b]["ade"])
    for metric, base in strongest.items():  # a paired interval against the strongest baseline per metric
        d = result["paired"]["lstm"][base][metric]
        assert d["lo"] <= d["diff"] <= d["hi"]
    ade = result["paired"]["lstm"][strongest["ade"]]["ade"]["diff"]
    assert ade == pytest.approx(result["models"]["lstm"]["ade"] - result["baselines"][strongest["ade"]]["ade"], abs=1e-6)
    assert json.loads((tmp_path / "r.json").read_text())["n"] == result["n"]


def test_bench_fishers_missing_file_and_bad_mode_are_exit_2(tmp_path, capsys):
    assert main(["bench", "fishers", "--data", str(tmp_path)]) == 2
    assert FISHERS_FILE in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["bench", "fishers", "--data", str(tmp_path), "--mode", "stays"])
    assert stop.value.code == 2
    with pytest.raises(Exception, match="--mode must be one of"):
        load_fishers(tmp_path, mode="stays")
