"""`gridcast bench speed`: the JSON line contract, graceful skips, and the contract names produced
by the real benchmark modules (at toy sizes: these tests check wiring and shape, never speed)."""
import importlib.util
import json
import math
import sys

import pytest

from gridcast.cli import main
from gridcast.cli.commands import bench_speed

KEYS = {"name", "value", "unit", "baseline", "ratio"}
CONTRACT = ({f"train_fused_{k}_h{h}" for k in ("lstm", "gru", "rnn") for h in (64, 256)}
            | {"train_explicit_lstm_h64", "train_explicit_lstm_h256", "stream_p50_us", "stream_p99_us",
               "rollout_beam5"})


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_have_exactly_the_contract_keys(tmp_path, monkeypatch, capsys):
    (tmp_path / "bench_train.py").write_text(
        "def run(repeats=1):\n"
        "    return [{'name': 'train_fused_lstm_h64', 'value': 1, 'unit': 'ms/step', 'baseline': 'torch.nn.LSTM',"
        " 'ratio': 1.0, 'extra': 'dropped'}]\n")
    (tmp_path / "bench_grid.py").write_text(  # the grid benchmark returns one dict
        "def run(n_points=1, repeats=1):\n"
        "    return {'name': 'grid_points_per_s', 'value': 5e5, 'unit': 'points/s', 'baseline': 'pandas', 'ratio': 3}\n")
    (tmp_path / "bench_stream.py").write_text("def run(**kw):\n    raise RuntimeError('broken')\n")
    monkeypatch.setattr(bench_speed, "BENCHMARKS", tmp_path)  # rollout and memory: no module -> skipped
    assert main(["bench", "speed", "--json", "--quick"]) == 0
    captured = capsys.readouterr()
    lines = _json_lines(captured.out)
    assert [e["name"] for e in lines] == ["train_fused_lstm_h64", "grid_points_per_s"]
    for entry in lines:
        assert set(entry) == KEYS
        assert isinstance(entry["value"], float) and isinstance(entry["ratio"], float)
    assert "stream: failed" in captured.err and "rollout: skipped" in captured.err


def test_table_output_and_bad_group(tmp_path, monkeypatch, capsys):
    (tmp_path / "bench_grid.py").write_text(
        "def run(n_points=1, repeats=1):\n"
        "    return {'name': 'grid_points_per_s', 'value': 5e5, 'unit': 'points/s', 'baseline': 'pandas', 'ratio': 3}\n")
    monkeypatch.setattr(bench_speed, "BENCHMARKS", tmp_path)
    assert main(["bench", "speed", "--only", "grid", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "grid_points_per_s" in out and "500,000" in out
    assert main(["bench", "speed", "--only", "warp"]) == 2


def _module(group: str):
    path = bench_speed.BENCHMARKS / f"bench_{group}.py"
    spec = importlib.util.spec_from_file_location(f"test_bench_{group}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_real_benchmarks_emit_the_contract_names(capsys):
    if not bench_speed.BENCHMARKS.is_dir():
        pytest.skip("no benchmarks/ folder (not a source checkout)")
    lines = _module("train").run(repeats=1)
    lines += _module("stream").run(points=200, tracks=10)
    lines += _module("rollout").run(tracks=20, horizon=3, repeats=1)
    names = {e["name"] for e in lines}
    assert names == CONTRACT
    for entry in lines:
        assert KEYS <= set(entry) and math.isfinite(entry["value"]) and entry["ratio"] > 0
