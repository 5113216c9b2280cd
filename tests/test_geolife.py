"""GeoLife next-cell protocol: split sizes, no leakage, pinned baseline numbers, the bench CLI contract."""
import json

import numpy as np
import pytest

from gridcast.cli import main
from gridcast.datasets import check_no_leakage, load_geolife, split_per_user, user_map
from gridcast.metrics import ranking_metrics
from gridcast.nextcell.baselines import Markov, MarkovNeighbours, default_baselines
from gridcast.nextcell.evaluation import baseline_ranks
from gridcast.tracks import Track


@pytest.fixture(scope="module")
def geolife(request):
    from conftest import SHARED_DATA

    path = SHARED_DATA / "geolife_skmob"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return load_geolife(path)


def test_split_sizes_are_the_documented_protocol(geolife):
    assert geolife.sizes() == {"train_tracks": 270, "train_transitions": 3939, "val_tracks": 34,
                               "val_transitions": 472, "test_tracks": 53, "test_transitions": 717}
    assert geolife.grid.cell_size == 250.0 and geolife.grid.step == 60.0
    assert set(geolife.user_of.values()) == {"001", "005"}


def test_no_test_period_track_reaches_training(geolife):
    check_no_leakage(geolife.train + geolife.val, geolife.test, geolife.user_of)
    for person in set(geolife.user_of.values()):
        train_days = {int(t.times[0] // 86400) for t in geolife.train + geolife.val if geolife.user_of[t.id] == person}
        test_days = {int(t.times[0] // 86400) for t in geolife.test if geolife.user_of[t.id] == person}
        last_train_end = max(t.times[-1] for t in geolife.train + geolife.val if geolife.user_of[t.id] == person)
        first_test = min(t.times[0] for t in geolife.test if geolife.user_of[t.id] == person)
        assert max(train_days) < min(test_days)
        assert last_train_end < first_test
    assert not {t.id for t in geolife.train} & {t.id for t in geolife.test}
    # cell-change sequences: no cell repeats its predecessor
    assert all(np.any(t.cells[1:] != t.cells[:-1], axis=1).all() for t in geolife.test)


def test_baseline_numbers_are_pinned(geolife):
    seen = geolife.train + geolife.val
    got = {}
    for b in (Markov(2), Markov(2, spatial=True), MarkovNeighbours(2)):
        b.fit(seen)
        got[b.name] = ranking_metrics(np.concatenate([baseline_ranks(b, t.cells) for t in geolife.test]))
    assert got["markov2"]["acc@1"] == pytest.approx(0.428, abs=5e-4)
    assert got["markov2_spatial"]["acc@5"] == pytest.approx(0.709, abs=5e-4)
    assert got["markov2_neighbours"]["mrr"] == pytest.approx(0.590, abs=5e-4)


def test_leakage_check_catches_a_copied_or_late_training_track():
    a = Track("a", np.array([[0, 0], [1, 0]]), np.array([0.0, 60.0]))
    b = Track("b", np.array([[0, 0], [0, 1]]), np.array([86400.0, 86460.0]))
    people = {"a": "p", "b": "p", "c": "p"}
    check_no_leakage([a], [b], people)
    with pytest.raises(AssertionError, match="reaches into"):
        check_no_leakage([b], [a], people)
    copy = Track("c", b.cells, b.times)
    with pytest.raises(AssertionError, match="exact copy"):
        check_no_leakage([copy], [b], people, whole_days=False)


def test_split_by_day_keeps_a_day_on_one_side():
    day = 86400.0
    tracks = [Track(f"t{i}", np.array([[i, 0], [i, 1]]), np.array([d * day + h, d * day + h + 60]))
              for i, (d, h) in enumerate([(0, 100), (0, 5000), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0), (7, 0), (8, 0)])]
    people = user_map([t.id for t in tracks], {t.id: "p" for t in tracks})
    train, val, test = split_per_user(tracks, people, (0.7, 0.1, 0.2), by="day")
    assert [t.id for t in train] == ["t0", "t1", "t2", "t3", "t4", "t5", "t6"]  # 9 days: round(6.3) = 6 days
    assert [t.id for t in val] == ["t7"] and [t.id for t in test] == ["t8", "t9"]


def test_bench_geolife_quick_json_contract(geolife, capsys, tmp_path):
    from conftest import SHARED_DATA

    code = main(["bench", "geolife", "--data", str(SHARED_DATA / "geolife_skmob"), "--quick", "--epochs", "1",
                 "--json", "--out", str(tmp_path / "r.json")])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert {"model", "baselines", "n"} <= set(result)
    assert result["n"] == 717
    for key in ("acc@1", "acc@5", "mrr", "ade", "fde", "ade_cells", "fde_cells", "nll"):
        assert key in result["model"]
    assert set(result["baselines"]) == {b.name for b in default_baselines()}
    assert result["baselines"]["markov2"]["acc@1"] == pytest.approx(0.428, abs=5e-4)
    for person, entry in result["users"].items():
        assert {"model", "baselines", "n"} <= set(entry)
    assert sum(e["n"] for e in result["users"].values()) == 717
    assert result["sizes"]["test_tracks"] == 53
    diff = result["paired"]["lstm"]["markov2"]["acc@1"]
    assert diff["lo"] <= diff["diff"] <= diff["hi"]
    assert json.loads((tmp_path / "r.json").read_text())["n"] == 717


def test_bench_geolife_missing_data_is_exit_2(tmp_path, capsys):
    assert main(["bench", "geolife", "--data", str(tmp_path)]) == 2
    assert "geolife_sample.txt.gz" in capsys.readouterr().err


def test_bench_geolife_fixed_mode_quick_end_to_end(capsys):
    """`--mode fixed`: one cell per 60 s step, no collapse; the same split and output shape."""
    from conftest import SHARED_DATA

    path = SHARED_DATA / "geolife_skmob"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    code = main(["bench", "geolife", "--data", str(path), "--mode", "fixed", "--quick", "--epochs", "1", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"]["mode"] == "fixed" and "no collapse" in result["protocol"]["sequences"]
    assert result["n"] > 717  # every 60 s step counts, the stays too
    # at a fixed step "stay" is right whenever the person stays: it beats the collapsed-mode Markov chain
    assert result["baselines"]["stay"]["acc@1"] > result["baselines"]["markov2"]["acc@1"]
    assert result["baselines"]["stay"]["acc@1"] == pytest.approx(0.666, abs=5e-4)  # docs/benchmarks-geolife.md
    assert result["baselines"]["markov2_dwell"]["acc@1"] == pytest.approx(0.689, abs=5e-4)
    assert result["strongest_baseline"]["acc@1"] == "markov2_dwell"
    for metric, base in result["strongest_baseline"].items():
        d = result["paired"]["lstm"][base][metric]
        assert d["lo"] <= d["diff"] <= d["hi"]
    assert sum(e["n"] for e in result["users"].values()) == result["n"]


def test_fixed_mode_split_is_the_collapsed_split_without_the_collapse(geolife):
    from conftest import SHARED_DATA

    fixed = load_geolife(SHARED_DATA / "geolife_skmob", mode="fixed")
    check_no_leakage(fixed.train + fixed.val, fixed.test, fixed.user_of)
    assert all(np.allclose(np.diff(t.times), 60.0) for t in fixed.test)
    assert fixed.sizes()["test_transitions"] > geolife.sizes()["test_transitions"]
    # the same rule by day: a day is on one side only; tracks that never leave their cell (dropped when
    # collapsed) add days, so the cut can move by a day
    def days(tracks):
        return {(fixed.user_of[t.id], int(t.times[0] // 86400)) for t in tracks}

    assert not days(fixed.train + fixed.val) & days(fixed.test)
    assert days(geolife.train + geolife.val + geolife.test) <= days(fixed.train + fixed.val + fixed.test)
