"""The CLI stays light and loud: `--help` and `gridcast grid` never import torch (nor `--help` pandas),
every registered command shows in `--help`, and a command module that fails to import is an error
that names it, never a command that silently vanishes."""
import json
import subprocess
import sys
import textwrap

import pytest

from gridcast.cli import main as cli_main
from gridcast.cli.app import COMMANDS, CommandImportError, build_parser
from gridcast.cli.commands import bench

HEAVY = ("torch", "pandas", "matplotlib", "pyarrow", "pyproj")


def _modules_after(code: str, cwd=None) -> set[str]:
    """The top-level modules loaded once `code` has run in a fresh interpreter (code may exit)."""
    script = textwrap.dedent("""
        import atexit, json, sys
        atexit.register(lambda: sys.__stdout__.write("\\nMODULES " + json.dumps(sorted({m.split('.')[0] for m in sys.modules})) + "\\n"))
    """) + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=cwd)
    line = [row for row in done.stdout.splitlines() if row.startswith("MODULES ")]
    assert line, done.stderr
    return set(json.loads(line[-1][len("MODULES "):]))


@pytest.mark.parametrize("argv", [["--help"], ["grid", "--help"], ["bench", "--help"], ["explain", "gates", "--help"]])
def test_help_imports_neither_torch_nor_pandas(argv):
    loaded = _modules_after(f"from gridcast.cli.app import main\nmain({argv!r})")
    assert not loaded & set(HEAVY), f"gridcast {' '.join(argv)} imported {sorted(loaded & set(HEAVY))}"


def test_gridcast_grid_never_imports_torch(tmp_path):
    rows = ["track,time,x,y"] + [f"a,{t},{t},{2 * t}" for t in range(10)]
    (tmp_path / "points.csv").write_text("\n".join(rows) + "\n")
    loaded = _modules_after("from gridcast.cli.app import main\n"
                            "assert main(['grid', 'points.csv', '--out', 'g.parquet', '--x-col', 'x', '--y-col', 'y', "
                            "'--cell-size', '1', '--step', '1', '--json']) == 0", cwd=tmp_path)
    assert (tmp_path / "g.parquet").exists()
    assert "torch" not in loaded


def test_every_registered_command_is_in_help(capsys):
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in COMMANDS)
    with pytest.raises(SystemExit):
        cli_main(["bench", "--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in bench.TARGETS)
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # argparse keeps the registered names here
    assert list(choices) == list(COMMANDS)


def test_a_broken_command_module_is_an_error_that_names_it(tmp_path, monkeypatch):
    (tmp_path / "broken_command_module.py").write_text("import no_such_module_anywhere\n")
    (tmp_path / "no_register_module.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, module, says in (("broken", "broken_command_module", "no_such_module_anywhere"),
                               ("vanished", "gridcast.cli.commands.vanished", "gridcast.cli.commands.vanished"),
                               ("plain", "no_register_module", "register()")):
        monkeypatch.setattr(sys.modules["gridcast.cli.app"], "COMMANDS", {**COMMANDS, name: module})
        monkeypatch.delitem(sys.modules, module, raising=False)
        with pytest.raises(CommandImportError, match=f"command '{name}'") as info:
            build_parser()
        assert says in str(info.value)


def test_a_broken_bench_target_is_an_error_too(monkeypatch):
    monkeypatch.setattr(bench, "TARGETS", {**bench.TARGETS, "warp": "gridcast.cli.commands.bench_warp"})
    with pytest.raises(CommandImportError, match="command 'bench warp'"):
        build_parser()


def test_explain_cells_use_the_one_kinds_parser(capsys):
    from gridcast.cli.commands import explain
    from gridcast.kinds import CELL_KINDS

    assert sorted(explain.DEFAULT_ORDER) == sorted(CELL_KINDS)
    assert cli_main(["explain", "gates", "--cells", "lstm,warp", "--out", "unused"]) == 2
    assert "--cells takes a comma-separated subset of lstm,gru,rnn; got 'lstm,warp'" in capsys.readouterr().err


def _contract_table() -> dict[str, tuple[list[str], list[str]]]:
    """docs/contracts.md's table of commands: "gridcast X Y" -> (positionals, flags)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "contracts.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `gridcast "):
            command, positional, flags = [c.strip() for c in line.strip("|").split("|")]
            rows[command.strip("`")] = (positional.split(), [f.strip("`") for f in flags.split()])
    return rows


def _leaf_parsers(parser, prefix=("gridcast",)):
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(prefix), parser
        return
    for name, sub in subs[0].choices.items():
        yield from _leaf_parsers(sub, prefix + (name,))


def test_every_command_and_flag_of_the_contract_exists():
    table = _contract_table()
    leaves = dict(_leaf_parsers(build_parser()))
    assert set(table) == set(leaves), "docs/contracts.md and the parser name different commands"
    for command, (positional, flags) in table.items():
        actions = leaves[command]._actions
        have = {s for a in actions for s in a.option_strings}
        missing = [f for f in flags if not set(f.split("/")) <= have]
        assert not missing, f"{command}: flags of the contract missing: {missing}"
        names = [a.metavar or a.dest for a in actions if not a.option_strings]
        assert names == positional, f"{command}: positionals {names}, contract {positional}"
