"""One behaviour for CLI and Python: `Forecaster(...)` has `gridcast fit`'s defaults, both train the
same model from the same data and seed, and a model saved from Python says how its input was prepared."""
import inspect
import json
from dataclasses import fields

import numpy as np
import pytest

from gridcast.cli import main
from gridcast.cli.app import build_parser
from gridcast.ingest import ColumnMap, prepare
from gridcast.nextcell import CellForecasterConfig, Forecaster, TrainConfig, default_config
from gridcast.tracks import Track, collapse_repeats

ROUTE_A = [(x, 3) for x in range(14, 0, -1)]
ROUTE_B = [(14, 3)] + [(14, 3 + k) for k in range(1, 9)] + [(14 - k, 11) for k in range(1, 5)]
COLUMNS = ColumnMap(track="track", time="time", x="x", y="y")


def _write_routes(path, repeats=6, hold=1):
    """Both routes `repeats` times; `hold`: each cell held for that many time steps."""
    lines = ["track,time,x,y"]
    for r in range(repeats):
        for name, route in (("a", ROUTE_A), ("b", ROUTE_B)):
            t = 0
            for x, y in route:
                for _ in range(hold):
                    lines.append(f"{name}{r},{t},{x},{y}")
                    t += 1
    path.write_text("\n".join(lines) + "\n")


def _fit_parser_defaults() -> dict:
    parser = build_parser()
    args = parser.parse_args(["fit", "DATA", "--out", "OUT"])
    return vars(args)


def test_forecaster_defaults_are_gridcast_fits_defaults():
    args = _fit_parser_defaults()
    model = Forecaster()
    assert model.config == default_config() == default_config(target="cell")
    assert model.config.head == "fusion"  # the benchmark winner, as `fit` trains it
    for name in ("cell", "target", "hidden", "layers", "embed", "dropout", "init_state", "max_move", "offset_loss"):
        assert getattr(model.config, name) == args[name], name
    train = TrainConfig()
    assert (train.epochs, train.batch_size, train.lr, train.clip_norm, train.patience, train.seed) == \
        (args["epochs"], args["batch_size"], args["lr"], args["clip"], args["patience"], args["seed"])
    fit = inspect.signature(Forecaster.fit).parameters
    assert fit["val_fraction"].default == args["val_fraction"]
    assert fit["calibrate"].default is (not args["no_calibrate"])
    assert Forecaster(target="move").config.head == "plain"  # the fusion head is for cell targets only
    assert Forecaster(head="plain").config.head == "plain"


def test_an_old_config_without_newer_fields_rebuilds_the_old_plain_network():
    old = {"cell": "gru", "target": "cell", "hidden": 16, "layers": 1, "embed": 8, "dropout": 0.1,
           "init_state": "zeros", "max_move": 2, "offset_loss": "gaussian"}  # written before head existed
    config = CellForecasterConfig.from_dict(old)
    assert (config.head, config.time_features, config.min_tracks) == ("plain", False, 1)
    assert {f.name for f in fields(CellForecasterConfig)} >= set(old)


def test_fit_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("hidden state size (default: 128)", "(default: lstm)", "(default: 40)", "(default: 0.003)",
                  "(default: 0.15)", "(default: 6)", "--no-calibrate"):
        assert shown in text, shown


def test_cli_fit_and_the_python_api_train_the_same_model(tmp_path, capsys):
    data = tmp_path / "routes.csv"
    _write_routes(data)
    out = tmp_path / "cli"
    assert main(["fit", str(data), "--x-col", "x", "--y-col", "y", "--cell-size", "1", "--epochs", "4",
                 "--seed", "3", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    cli = Forecaster.load(out)
    ours = Forecaster().fit(prepare(data, columns=COLUMNS, cell_size=1), epochs=4, seed=3)
    assert ours.config == cli.config
    assert ours.grid.to_dict() == cli.grid.to_dict()
    assert ours.preprocessing == cli.preprocessing
    assert ours.temperature == pytest.approx(cli.temperature, rel=1e-12)
    for prefix in (np.array([[14, 3]]), np.array(ROUTE_B[:4]), np.array(ROUTE_A[:6])):
        a, b = ours.predict_next(prefix, k=5), cli.predict_next(prefix, k=5)
        assert [n.cell for n in a] == [n.cell for n in b]
        assert [n.p for n in a] == pytest.approx([n.p for n in b], rel=1e-6)
        assert [r.cells for r in ours.beam(prefix, 6, width=3)] == [r.cells for r in cli.beam(prefix, 6, width=3)]


def test_a_python_model_records_how_its_tracks_were_prepared_and_evaluate_follows(tmp_path, capsys):
    data = tmp_path / "slow.csv"
    _write_routes(data, repeats=3, hold=2)  # every cell held for two steps
    ready = prepare(data, columns=COLUMNS, cell_size=1, step=1, max_gap=100, collapse=True)
    model = Forecaster(cell="gru", hidden=8, embed=4).fit(ready, epochs=2)
    assert model.grid is ready.grid
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["preprocessing"] == {"max_gap": 100.0, "collapse": True}
    assert main(["evaluate", str(tmp_path / "m"), str(data), "--x-col", "x", "--y-col", "y", "--json"]) == 0
    out = capsys.readouterr()
    assert "collapsing consecutive repeats" in out.err
    assert json.loads(out.out)["n"] == 3 * (len(ROUTE_A) - 1 + len(ROUTE_B) - 1)


def test_plain_tracks_without_a_word_on_preparation_are_read_off_the_tracks():
    held = Track("held", np.repeat(np.array(ROUTE_A), 2, axis=0))
    collapsed = Forecaster(hidden=8, embed=4).fit([collapse_repeats(held)] * 4, epochs=1)
    assert collapsed.preprocessing == {"max_gap": None, "collapse": True}
    raw = Forecaster(hidden=8, embed=4).fit([held] * 4, epochs=1)
    assert raw.preprocessing == {"max_gap": None, "collapse": False}
    told = Forecaster(hidden=8, embed=4).fit([held] * 4, epochs=1, preprocessing={"max_gap": 60.0, "collapse": False})
    assert told.preprocessing == {"max_gap": 60.0, "collapse": False}
