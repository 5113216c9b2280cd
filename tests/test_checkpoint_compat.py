"""Checkpoints written before the subpackage refactor still load, and predict exactly what the old
code predicted (tests/data/old_models/README.md says how they were made)."""
import json
from pathlib import Path

import pytest

from gridcast.cli import main
from gridcast.nextcell import Forecaster

OLD = Path(__file__).resolve().parent / "data" / "old_models"
MODELS = sorted(p.name for p in OLD.iterdir() if (p / "config.json").is_file())


def test_every_kind_and_target_is_covered():
    assert len(MODELS) == 6
    configs = [json.loads((OLD / m / "config.json").read_text())["model"] for m in MODELS]
    assert {c["cell"] for c in configs} == {"lstm", "gru", "rnn"}
    assert {c["target"] for c in configs} == {"cell", "move", "offset"}
    assert {c["head"] for c in configs if c["target"] == "cell"} == {"fusion", "plain"}


@pytest.mark.parametrize("name", MODELS)
def test_old_checkpoint_loads_with_its_config(name):
    model = Forecaster.load(OLD / name)
    config = json.loads((OLD / name / "config.json").read_text())
    assert model.config.cell == config["model"]["cell"] and model.config.target == config["model"]["target"]


@pytest.mark.parametrize("name", MODELS)
def test_old_checkpoint_predicts_a_track_as_before(name, capsys):
    assert main(["predict", str(OLD / name), "--track", "14,3 13,3 12,3", "--horizon", "5", "--top-k", "3",
                 "--json"]) == 0
    assert _contract(json.loads(capsys.readouterr().out)) == json.loads((OLD / name / "predict_track.json").read_text())


@pytest.mark.parametrize("name", MODELS)
def test_old_checkpoint_predicts_every_track_of_a_file_as_before(name, capsys):
    assert main(["predict", str(OLD / name), str(OLD / "routes.parquet"), "--horizon", "3", "--top-k", "2",
                 "--json"]) == 0
    got = [_contract(json.loads(line)) for line in capsys.readouterr().out.splitlines() if line.strip()]
    want = [json.loads(line) for line in (OLD / name / "predict_file.jsonl").read_text().splitlines() if line.strip()]
    # A file's prefixes now run through the network once, batched (the old code ran each twice: batched
    # for the routes, alone for the next cells), so next-cell probabilities may move by float rounding.
    assert [_cells_only(g) for g in got] == [_cells_only(w) for w in want]
    assert _probabilities(got) == pytest.approx(_probabilities(want), abs=1e-6)


#: Keys `predict --json` gained later (answers in the user's coordinates): contract additions, so an
#: old checkpoint's answer must equal the old one on every other key.
ADDED_NEXT, ADDED_ROUTE = {"lon", "lat", "x", "y"}, {"coords", "times"}
ADDED_TOP = {"point", "samples"}  # the point forecast, and --samples


def _contract(prediction: dict) -> dict:
    """`prediction` without the added keys (checked to be the only new ones)."""
    assert set(prediction) - ADDED_TOP <= {"track", "next", "routes", "p_end"}
    assert all(set(n) - {"cell", "p"} <= ADDED_NEXT for n in prediction["next"])
    assert all(set(r) - {"cells", "p", "ended"} <= ADDED_ROUTE for r in prediction["routes"])
    prediction = {k: v for k, v in prediction.items() if k not in ADDED_TOP}
    return {**prediction, "next": [{k: v for k, v in n.items() if k not in ADDED_NEXT} for n in prediction["next"]],
            "routes": [{k: v for k, v in r.items() if k not in ADDED_ROUTE} for r in prediction["routes"]]}


def _cells_only(prediction: dict) -> dict:
    return {"track": prediction["track"], "next": [n["cell"] for n in prediction["next"]],
            "routes": prediction["routes"]}


def _probabilities(predictions: list[dict]) -> list[float]:
    return [n["p"] for p in predictions for n in p["next"]] + [p["p_end"] for p in predictions]
