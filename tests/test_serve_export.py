"""`gridcast export --strip-tracks`: the copy keeps exactly the transition counts prediction needs,
answers as the original does, hands out no training track, and the service offers no examples."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gridcast.cli import main
from gridcast.nextcell.export import aggregated_tracks
from gridcast.nextcell.forecaster import Forecaster
from gridcast.nextcell.prior import MarkovPrior, count_transitions
from gridcast.serve.app import create_app
from gridcast.serve.registry import load_models
from gridcast.tracks import Track
from serve_model import fitted_model


def _counts(tracks):
    prior = MarkovPrior([t.cells for t in tracks])
    starts = sorted(tuple(map(tuple, t.cells[:2].tolist())) for t in tracks if len(t) >= 2)
    first = {k: dict(v) for k, v in count_transitions([t.cells for t in tracks], 2)[0].items()}
    return ({k: dict(v) for k, v in prior.n1.items()}, {k: dict(v) for k, v in prior.n2.items()}, starts, first)


def test_pseudo_tracks_keep_every_count_on_random_walks():
    rng = np.random.default_rng(0)
    for trial in range(30):
        tracks = []
        for i in range(int(rng.integers(1, 12))):
            steps = rng.integers(-1, 2, size=(int(rng.integers(1, 25)), 2))
            tracks.append(Track(f"t{i}", np.cumsum(steps, axis=0) % 4))  # a small world: many repeats and cycles
        pseudo = aggregated_tracks(tracks)
        assert _counts(pseudo) == _counts(tracks), trial
        assert len(pseudo) == sum(len(t) >= 2 for t in tracks)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    source = fitted_model(tmp_path_factory)
    out = tmp_path_factory.mktemp("export") / "bus14-public"
    assert main(["export", str(source), "--out", str(out), "--strip-tracks"]) == 0
    return source, out


def test_stripped_model_predicts_as_the_original(exported, capsys):
    source, out = exported
    a, b = Forecaster.load(source), Forecaster.load(out)
    assert _counts(b.train_tracks_) == _counts(a.train_tracks_)
    originals = {tuple(map(tuple, t.cells.tolist())) for t in a.train_tracks_}
    # on these trips no pseudo-track of more than three cells is one of the real trips
    assert not originals & {tuple(map(tuple, t.cells.tolist())) for t in b.train_tracks_ if len(t) > 3}
    prefix = a.train_tracks_[0].cells[:8]
    track = " ".join(f"{c},{r}" for c, r in prefix.tolist())
    outputs = []
    for model_dir in (source, out):
        capsys.readouterr()
        assert main(["predict", str(model_dir), "--track", track, "--json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert [n["cell"] for n in outputs[0]["next"]] == [n["cell"] for n in outputs[1]["next"]]
    assert [n["p"] for n in outputs[0]["next"]] == pytest.approx([n["p"] for n in outputs[1]["next"]], rel=1e-5)
    config = json.loads((out / "config.json").read_text())
    assert config["export"]["strip_tracks"] is True and config["export"]["tracks"] == len(a.train_tracks_)


def test_served_stripped_model_offers_no_examples(exported):
    _, out = exported
    with TestClient(create_app(load_models([str(out)]))) as c:
        assert c.get("/v1/models/bus14-public/examples").json() == {"examples": []}
        assert c.get("/v1/models/bus14-public/cells").json()["cells"]


def test_export_refuses_its_own_directory_and_a_full_one(exported, capsys):
    source, out = exported
    assert main(["export", str(source), "--out", str(source), "--strip-tracks"]) == 2
    assert main(["export", str(source), "--out", str(out)]) == 2
    assert "not an empty directory" in capsys.readouterr().err
