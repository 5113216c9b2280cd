"""Balabit protocol: sentinel rows, cuts at gaps and clicks, 50 ms resampling, windows, user split."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gridcast.continuous as C
import gridcast.datasets.mouse as M
from gridcast.cli import main
from gridcast.metrics import per_example_errors

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "balabit_mouse"
HEADER = "record timestamp,client timestamp,button,state,x,y\n"


def _session(path: Path, rows: list[tuple[float, str, str, float, float]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(f"{t},{t},{b},{s},{x},{y}\n" for t, b, s, x, y in rows))
    return path


def _walk(t0: float, n: int, dt: float = 0.1, x0: float = 0.0, vx: float = 10.0) -> list[tuple]:
    return [(round(t0 + i * dt, 3), "NoButton", "Move", x0 + vx * i, 100.0) for i in range(n)]


def test_sentinel_gap_and_click_cuts(tmp_path):
    rows = (_walk(0.0, 15)                                             # 0.0 .. 1.4 s
            + [(1.5, "NoButton", "Move", 65535, 65535)]                # sentinel: dropped
            + [(1.5, "Left", "Pressed", 150.0, 100.0)]                 # click ends movement 1
            + _walk(1.6, 10, x0=200.0)                                 # 1.6 .. 2.5 s
            + _walk(3.2, 5, x0=500.0))                                 # after a 0.7 s gap
    frame = M.read_session(_session(tmp_path / "s", rows))
    assert (frame.x != M.SENTINEL).all() and len(frame) == 31
    moves = M.movements(frame)
    assert [len(m) for m in moves] == [16, 10, 5]  # the click row is the last point of the first
    assert moves[0][-1, 1] == 150.0


def test_resample_windows_and_vectorised_path_agree(tmp_path):
    rows = _walk(0.0, 30) + [(2.9, "NoButton", "Move", 290.0, 100.0)] + _walk(4.0, 25, dt=0.07, x0=7.0)
    frame = M.read_session(_session(tmp_path / "s", rows))
    first = M.movements(frame)[0]
    points = M.resample(first)
    assert len(points) == 59  # 0 .. 2.9 s at 50 ms
    np.testing.assert_allclose(points[:3, 0], [0.0, 5.0, 10.0])  # linear between 0.1 s samples
    windows = M.windows_of(points)
    assert windows.shape == (1 + (59 - 20) // 4, 20, 2)
    np.testing.assert_allclose(windows[1, 0], points[4])
    reference = np.concatenate([M.windows_of(M.resample(m)) for m in M.movements(frame)])
    fast, moves = M.session_windows(frame)
    np.testing.assert_allclose(fast, reference, atol=1e-9)
    assert sorted(set(moves.tolist())) == [0, 1]


def test_split_by_user_keeps_users_apart(tmp_path):
    for user in ("7", "9", "35"):
        _session(tmp_path / f"user{user}" / "session_1", _walk(0.0, 40, vx=3.0))
    data = M.load(tmp_path)
    train, val, test = M.split_by_user(data)
    assert set(train.user) == {"7"} and set(val.user) == {"35"} and set(test.user) == {"9"}
    assert len(train) + len(val) + len(test) == len(data)


@pytest.mark.skipif(not DATA.is_dir(), reason="shared Balabit data not present")
def test_real_protocol_matches_baselines_md():
    _, _, test = M.split_by_user(M.load(DATA))
    assert len(test) == 24054
    for name, (ade, fde) in {"constant_position": (81.9, 130.6), "cvm": (104.0, 207.9),
                             "linear": (136.6, 241.1)}.items():
        e = per_example_errors(C.BASELINES[name](test.observed, 12), test.future)
        assert (round(float(e["ade"].mean()), 1), round(float(e["fde"].mean()), 1)) == (ade, fde)


def test_bench_mouse_quick_on_synthetic_users(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for user in ("7", "9", "23", "29", "35"):
        t, rows = 0.0, []
        for _ in range(6):  # six strokes per user, 1 s apart
            n = 30
            v = rng.normal(0, 15, size=2)
            xy = 400 + np.cumsum(np.tile(v, (n, 1)) * np.linspace(1, 0.2, n)[:, None], axis=0)
            rows += [(round(t + 0.1 * i, 2), "NoButton", "Move", round(x), round(y)) for i, (x, y) in enumerate(xy)]
            t += 0.1 * n + 1.0
        _session(tmp_path / "data" / f"user{user}" / "session_1", rows)
    out = tmp_path / "out"
    rc = main(["bench", "mouse", "--data", str(tmp_path / "data"), "--quick", "--json", "--cells", "rnn",
               "--epochs", "1", "--out", str(out)])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["baselines"]) == {"constant_position", "cvm", "linear"}
    assert set(result["models"]["rnn"]["avg"]) >= {"ade", "fde"}
    assert (out / "mouse_paths.png").stat().st_size > 1000
    (run,) = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert run["kind"] == "rnn" and run["det"]["ade"] == pytest.approx(result["models"]["rnn"]["avg"]["ade"])
    assert main(["bench", "mouse", "--data", str(tmp_path / "nope")]) == 2
