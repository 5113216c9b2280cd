"""ETH/UCY protocol: the sgan window rule on a hand-made file, the published test counts and the
constant-velocity numbers on the shared data, and the bench command's JSON contract."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gridcast.continuous as C
from gridcast.bench.ethucy import run_ethucy
from gridcast.cli import main
from gridcast.datasets.ethucy import SCENES, build_windows, load_split, read_file
from gridcast.errors import InputError
from gridcast.metrics import per_example_errors

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ethucy"
TINY = Path(__file__).resolve().parent / "data" / "ethucy_tiny"


def _rows(ped: int, first: int, last: int, x0: float = 0.0) -> list[tuple]:
    """One pedestrian present in frames first..last (frame ids step 10), walking along x."""
    return [(f * 10, ped, x0 + 0.1 * f, float(ped)) for f in range(first, last + 1)]


def _write(path: Path, rows: list[tuple]) -> Path:
    path.write_text("".join(f"{f}\t{p:.1f}\t{x:.2f}\t{y:.2f}\n" for f, p, x, y in sorted(rows)))
    return path


def test_window_rule_on_hand_made_file(tmp_path):
    # frames 0..29 (30 distinct frames -> window starts 0..10)
    rows = (_rows(1, 0, 29)          # present in all 30 frames: full in every window 0..10
            + _rows(2, 5, 24)        # exactly 20 frames: full only in the window starting at 5
            + _rows(3, 0, 18)        # 19 frames: never full
            + _rows(4, 8, 29))       # 22 frames: full in windows 8, 9, 10
    data = read_file(_write(tmp_path / "scene.txt", rows))
    w = build_windows(data)
    # windows with >= 2 full pedestrians: start 5 (1, 2), 8, 9, 10 (1, 4)
    assert w.n_windows == 4
    assert len(w) == 8
    assert sorted(w.ped.tolist()) == [1, 1, 1, 1, 2, 4, 4, 4]
    first = w.traj[(w.window == 0) & (w.ped == 2)][0]
    np.testing.assert_allclose(first[:, 0], 0.1 * np.arange(5, 25))
    assert w.observed.shape == (8, 8, 2) and w.future.shape == (8, 12, 2)


def test_hole_splits_a_track_and_single_pedestrian_windows_are_dropped(tmp_path):
    # ped 1 missing at frame 12: full windows only in 0..11 (no start) and 13..40 (starts 13..21)
    rows = [r for r in _rows(1, 0, 40) if r[0] != 120] + _rows(2, 0, 40)
    w = build_windows(read_file(_write(tmp_path / "a.txt", rows)))
    assert (w.n_windows, len(w)) == (9, 18)  # starts 13..21 hold both pedestrians in full
    np.testing.assert_allclose(w.traj[0, 0, 0], 1.3)  # the first kept window starts at frame 13
    alone = build_windows(read_file(_write(tmp_path / "b.txt", _rows(1, 0, 40))))
    assert len(alone) == 0


def test_bad_file_is_one_line_input_error(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("0\t1\t2.0\n")
    with pytest.raises(InputError, match="bad.txt"):
        read_file(bad)
    dup = _write(tmp_path / "dup.txt", _rows(1, 0, 25) + [(50, 1, 9.0, 9.0)])
    with pytest.raises(InputError, match="pedestrian 1"):
        build_windows(read_file(dup), name="dup.txt")


@pytest.mark.skipif(not DATA.is_dir(), reason="shared ETH/UCY data not present")
def test_real_test_counts_and_cvm_reproduce_source_md():
    expected = {"eth": (70, 181), "hotel": (301, 1053), "univ": (947, 24334),
                "zara1": (602, 2253), "zara2": (921, 5833)}
    cvm, lin = [], []
    for scene in SCENES:
        w = load_split(DATA, scene, "test")
        assert (w.n_windows, len(w)) == expected[scene]
        cvm.append([v.mean() for v in per_example_errors(C.constant_velocity(w.observed, 12), w.future).values()])
        lin.append([v.mean() for v in per_example_errors(C.linear_fit(w.observed, 12), w.future).values()])
    ade, fde = np.mean(cvm, axis=0)
    assert abs(ade - 0.520) <= 0.005 and abs(fde - 1.141) <= 0.005
    np.testing.assert_allclose(np.array(cvm)[0], [0.995, 2.234], atol=0.005)  # eth
    assert np.mean(lin, axis=0)[0] > ade  # a line through all 8 lags turns: worse than CVM here


def test_bench_quick_json_contract(capsys):
    rc = main(["bench", "ethucy", "--data", str(TINY), "--quick", "--json", "--cells", "gru",
               "--samples", "20", "--epochs", "1"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    scenes = ["alpha", "beta"]
    entry = out["models"]["gru"]
    assert set(entry["scenes"]) == set(scenes)
    for block in (entry, entry["best_of_20_per_pedestrian"], entry["best_of_20_per_window"],
                  out["baselines"]["cvm"], out["baselines"]["linear"]):
        assert set(block["avg"]) >= {"ade", "fde"}
        assert all(set(v) >= {"ade", "fde"} for v in block["scenes"].values())
    # best of 20 can only help; per pedestrian is at least as good as per window
    bp, bw = entry["best_of_20_per_pedestrian"]["avg"], entry["best_of_20_per_window"]["avg"]
    assert bp["ade"] <= bw["ade"] + 1e-9 <= entry["avg"]["ade"] + 1e-9
    cvm = out["baselines"]["cvm"]["scenes"]["alpha"]
    w = load_split(TINY, "alpha", "test")
    assert cvm["ade"] == pytest.approx(per_example_errors(C.constant_velocity(w.observed, 12), w.future)["ade"].mean())


def test_bench_mirror_view_changes_only_the_deterministic_prediction(capsys):
    """Same seed, same trained model: ``--no-mirror`` gives the prediction from the inputs as seen,
    the default averages it with the mirror view; baselines and sampling do not change."""
    args = ["bench", "ethucy", "--data", str(TINY), "--quick", "--json", "--cells", "lstm", "--epochs", "1",
            "--scenes", "alpha", "--samples", "20"]
    runs = []
    for extra in ([], ["--no-mirror"]):
        assert main(args + extra) == 0
        runs.append(json.loads(capsys.readouterr().out))
    mirrored, plain = runs
    assert mirrored["protocol"]["mirror"] is True and plain["protocol"]["mirror"] is False
    assert mirrored["baselines"] == plain["baselines"]
    sampled = "best_of_20_per_pedestrian"
    assert mirrored["models"]["lstm"][sampled] == plain["models"]["lstm"][sampled]
    assert mirrored["models"]["lstm"]["avg"]["ade"] != plain["models"]["lstm"]["avg"]["ade"]


def test_bench_keeps_each_finished_run_on_disk(tmp_path, capsys):
    """runs.jsonl gets a line the moment each (scene, kind, seed) finishes: a crash keeps them."""
    out = tmp_path / "out"
    assert main(["bench", "ethucy", "--data", str(TINY), "--quick", "--cells", "rnn", "--seeds", "2",
                 "--epochs", "1", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [(r["scene"], r["seed"]) for r in runs] == [("alpha", 0), ("alpha", 1), ("beta", 0), ("beta", 1)]
    alpha = result["models"]["rnn"]["scenes"]["alpha"]["ade"]
    assert np.mean([r["det"]["ade"] for r in runs if r["scene"] == "alpha"]) == pytest.approx(alpha)


def test_bench_errors_exit_2(tmp_path, capsys):
    assert main(["bench", "ethucy", "--data", str(tmp_path)]) == 2
    assert "no <scene>" in capsys.readouterr().err
    assert main(["bench", "ethucy", "--data", str(TINY), "--cells", "lstm,tcn"]) == 2
    assert main(["bench", "ethucy", "--data", str(TINY), "--scenes", "eth"]) == 2


def test_runner_checks_kinds_seeds_and_scenes_from_python():
    """`run_ethucy` is the library call behind the command: its checks hold without the CLI."""
    with pytest.raises(InputError, match="lstm,gru,rnn"):
        run_ethucy(TINY, ("lstm", "tcn"))
    with pytest.raises(InputError, match="seeds"):
        run_ethucy(TINY, "gru", seeds=0)
    with pytest.raises(InputError, match="no scene eth"):
        run_ethucy(TINY, ["gru"], scenes=["eth"])
