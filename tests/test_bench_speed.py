"""`gridcast bench speed`: the JSON line contract, graceful failures, and the contract names produced
by the real benchmark modules (at toy sizes: these tests check wiring and shape, never speed)."""
import importlib
import io
import json
import math
import subprocess
import sys
from pathlib import Path

from gridcast.bench.speed import runner
from gridcast.cli import main
from gridcast.cli.commands import bench_speed

KEYS = {"name", "value", "unit", "baseline", "ratio"}
CONTRACT = ({f"train_{p}_{k}_h{h}" for p in ("fused", "explicit") for k in ("lstm", "gru", "rnn") for h in (64, 256)}
            | {"stream_p50_us", "stream_p99_us", "rollout_beam5"})
REPO = Path(__file__).resolve().parents[1]


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _fake_groups(tmp_path, monkeypatch, sources: dict[str, str]) -> None:
    """Point the runner's groups at modules written in `tmp_path` (a group without a source: a missing module)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    groups = {}
    for group in runner.GROUPS:
        name = f"fake_speed_{tmp_path.name}_{group}"
        if group in sources:
            (tmp_path / f"{name}.py").write_text(sources[group])
        groups[group] = name
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(runner, "GROUPS", groups)


GRID = ("def run(n_points=1, repeats=1):\n"
        "    return {'name': 'grid_points_per_s', 'value': 5e5, 'unit': 'points/s', 'baseline': 'pandas', 'ratio': 3}\n")


def test_json_lines_have_exactly_the_contract_keys(tmp_path, monkeypatch, capsys):
    _fake_groups(tmp_path, monkeypatch, {
        "train": "def run(repeats=1):\n"
                 "    return [{'name': 'train_fused_lstm_h64', 'value': 1, 'unit': 'ms/step', "
                 "'baseline': 'torch.nn.LSTM', 'ratio': 1.0, 'extra': 'dropped'}]\n",
        "grid": GRID,  # the grid benchmark returns one dict
        "stream": "def run(**kw):\n    raise RuntimeError('broken')\n"})  # rollout: no module; memory: --quick
    assert main(["bench", "speed", "--json", "--quick"]) == 0
    captured = capsys.readouterr()
    lines = _json_lines(captured.out)
    assert [e["name"] for e in lines] == ["train_fused_lstm_h64", "grid_points_per_s"]
    for entry in lines:
        assert set(entry) == KEYS
        assert isinstance(entry["value"], float) and isinstance(entry["ratio"], float)
    assert "stream: failed (RuntimeError: broken)" in captured.err
    assert "rollout: failed (ModuleNotFoundError" in captured.err  # a missing module is said, never skipped silently
    assert "memory: skipped under --quick" in captured.err


def test_table_output_and_bad_group(tmp_path, monkeypatch, capsys):
    _fake_groups(tmp_path, monkeypatch, {"grid": GRID})
    assert main(["bench", "speed", "--only", "grid", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "grid_points_per_s" in out and "500,000" in out
    assert main(["bench", "speed", "--only", "warp"]) == 2


def test_memory_group_without_data_is_skipped_with_a_note():
    from gridcast.bench.speed import memory

    log = io.StringIO()
    assert memory.run(data=None, log=log) == []
    assert "--data DIR" in log.getvalue()


def test_cli_names_the_runners_groups_in_order():
    assert bench_speed.GROUPS == tuple(runner.GROUPS) == tuple(runner.SIZES)


def test_real_benchmarks_emit_the_contract_names(capsys):
    def group(name: str):
        return importlib.import_module(runner.GROUPS[name])

    lines = group("train").run(repeats=1)
    lines += group("stream").run(points=200, tracks=10)
    lines += group("rollout").run(tracks=20, horizon=3, repeats=1)
    names = {e["name"] for e in lines}
    assert names == CONTRACT
    for entry in lines:
        assert KEYS <= set(entry) and math.isfinite(entry["value"]) and entry["ratio"] > 0


def test_benchmark_scripts_are_thin_wrappers_that_still_run():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_grid.py"), "--points", "2000",
                           "--repeats", "1", "--no-baseline"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (entry,) = _json_lines(done.stdout)
    assert set(entry) == KEYS and entry["name"] == "grid_points_per_s"
