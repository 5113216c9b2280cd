"""The HTTP service end to end through FastAPI's TestClient, on a model fitted on the bundled
Liverpool data: predict equals `gridcast predict --json`, sessions equal the streaming predictor,
token auth, limits naming the field, 404s, metrics, no 500s."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from gridcast.cli import main
from gridcast.nextcell.forecaster import Forecaster
from gridcast.nextcell.streaming import StreamingPredictor
from gridcast.serve.app import create_app
from gridcast.serve.limits import MAX_POINTS, Limits
from gridcast.serve.registry import load_models
from serve_model import fitted_model

TOKEN = "0123456789abcdef-token"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return fitted_model(tmp_path_factory)


@pytest.fixture(scope="module")
def client(model_dir):
    with TestClient(create_app(load_models([str(model_dir)]))) as c:
        yield c


@pytest.fixture(scope="module")
def example(client) -> list[list[int]]:
    examples = client.get("/v1/models/bus14/examples").json()["examples"]
    assert examples, "a model with its tracks offers examples"
    return [p["cell"] for p in examples[0]["points"]]


def _cli_json(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["predict", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_healthz_and_models_name_the_model(client):
    assert client.get("/healthz").json() == {"status": "ok", "models": ["bus14"]}
    (entry,) = client.get("/v1/models").json()["models"]
    assert entry["name"] == "bus14" and entry["cell"] == "gru" and entry["target"] == "cell"
    assert entry["grid"]["crs"] and entry["grid"]["step"] == 30.0 and entry["gridcast_version"]


def test_predict_track_is_exactly_cli_predict_json(client, model_dir, example, capsys):
    track = " ".join(f"{c},{r}" for c, r in example)
    for horizon, top_k in ((10, 5), (3, 2)):
        got = client.post("/v1/models/bus14/predict", json={"track": example, "horizon": horizon, "top_k": top_k})
        assert got.status_code == 200
        want = _cli_json(capsys, model_dir, "--track", track, "--horizon", horizon, "--top-k", top_k)
        assert got.json() == want
        assert len(want["next"]) == top_k and "point" in want and "lon" in want["next"][0]


def test_predict_points_with_times_is_exactly_cli_predict_points(client, model_dir, capsys):
    points = [{"lat": 53.4080 + 0.0004 * i, "lon": -2.9800 + 0.0006 * i, "time": 1_700_000_000 + 30 * i}
              for i in range(6)]
    text = " ".join(f"{p['lat']!r},{p['lon']!r},{p['time']}" for p in points)
    got = client.post("/v1/models/bus14/predict", json={"points": points, "horizon": 4})
    assert got.status_code == 200
    want = _cli_json(capsys, model_dir, "--points", text, "--horizon", 4)
    assert got.json() == want and "times" in want["routes"][0]
    # ISO-8601 times say the same instants
    iso = [{**p, "time": f"2023-11-14T22:{13 + (30 * i + 20) // 60:02d}:{(30 * i + 20) % 60:02d}Z"}
           for i, p in enumerate(points)]
    assert client.post("/v1/models/bus14/predict", json={"points": iso, "horizon": 4}).json() == want


def test_sessions_equal_the_streaming_predictor(client, model_dir, example):
    stream = StreamingPredictor(Forecaster.load(model_dir), k=3)
    client.delete("/v1/models/bus14/tracks/bus-1")
    for i, cell in enumerate(example):
        want = stream.update("bus-1", tuple(cell))
        got = client.post("/v1/models/bus14/tracks/bus-1/points", json={"points": [{"cell": cell}], "top_k": 3})
        assert got.status_code == 200
        body = got.json()
        assert body["track"] == "bus-1" and body["points_seen"] == i + 1
        assert [n["cell"] for n in body["next"]] == [list(n.cell) for n in want]
        assert [n["p"] for n in body["next"]] == pytest.approx([n.p for n in want], abs=1e-7)
        assert "lat" in body["next"][0]
    # many points in one request: the answer after the last of them, the count of all
    batch = client.post("/v1/models/bus14/tracks/bus-2/points",
                        json={"points": [{"cell": c} for c in example], "top_k": 3}).json()
    assert batch["points_seen"] == len(example) and batch["next"] == body["next"]
    assert client.delete("/v1/models/bus14/tracks/bus-2").status_code == 204
    fresh = client.post("/v1/models/bus14/tracks/bus-2/points", json={"points": [{"cell": example[0]}]}).json()
    assert fresh["points_seen"] == 1


def test_lru_and_idle_evictions_are_bounded_and_counted(model_dir):
    clock = [1000.0]
    app = create_app(load_models([str(model_dir)]), Limits(max_tracks=2, idle_seconds=60))
    with TestClient(app) as c:
        sessions = app.state.sessions["bus14"]
        sessions.clock = lambda: clock[0]
        for name in ("a", "b", "c"):
            c.post(f"/v1/models/bus14/tracks/{name}/points", json={"points": [{"cell": [10, 10]}]})
        assert len(sessions) == 2 and "a" not in sessions.seen and sessions.evicted_lru == 1
        clock[0] += 120
        c.post("/v1/models/bus14/tracks/d/points", json={"points": [{"cell": [10, 10]}]})
        assert list(sessions.seen) == ["d"] and sessions.evicted_idle == 2
        text = c.get("/metrics").text
    assert 'gridcast_evictions_total{model="bus14",reason="lru"} 1' in text
    assert 'gridcast_evictions_total{model="bus14",reason="idle"} 2' in text
    assert 'gridcast_live_tracks{model="bus14"} 1' in text
    assert 'gridcast_requests_total{endpoint="/v1/models/{name}/tracks/{track_id}/points",method="POST",status="200"} 4' in text
    assert 'gridcast_request_seconds_count{endpoint="/v1/models/{name}/tracks/{track_id}/points"} 4' in text


@pytest.mark.parametrize("body, field", [
    ({"points": [{"lat": 53.4, "lon": -2.9}, {"lat": 95.0, "lon": -2.9}]}, "points[1].lat: must be within [-90, 90]"),
    ({"points": [{"lat": 53.4, "lon": 200.0}]}, "points[0].lon: must be within [-180, 180]"),
    ({"points": [{"lat": 53.4}]}, "points[0]: "),
    ({"points": [{"x": 1.0, "y": 2.0}]}, "points[0]: this model's grid is geographic"),
    ({"points": [{"cell": [1, 2]}, {"lat": 53.4, "lon": -2.9}]}, "points[1]: mixes"),
    ({"points": [{"lat": 53.4, "lon": -2.9, "time": 10}, {"lat": 53.4, "lon": -2.9, "time": 5}]},
     "points[1].time: must be after points[0].time"),
    ({"points": [{"lat": 53.4, "lon": -2.9, "time": "yesterday"}]}, "points[0].time: must be seconds or ISO-8601"),
    ({"track": [[1, 2]], "horizon": 0}, "horizon: "),
    ({"track": [[1, 2]], "top_k": 1000}, "top_k: "),
    ({"track": [[1, 2, 3]]}, "track[0]: "),
    ({"track": [[1, 2]], "points": [{"cell": [1, 2]}]}, 'body: give exactly one of "track" or "points"'),
    ({"track": [[1, 2]], "colour": "red"}, "colour"),
    ({"track": [[1, 2]] * (MAX_POINTS + 1)}, "track: "),
])
def test_bad_predict_requests_are_422_naming_the_field(client, body, field):
    got = client.post("/v1/models/bus14/predict", json=body)
    assert got.status_code == 422, got.text
    assert field in got.json()["error"], got.json()
    assert "Traceback" not in got.text


def test_bad_session_requests_name_the_field(client):
    got = client.post("/v1/models/bus14/tracks/t/points", json={"points": [{"cell": [1, 2]}, {"cell": [1]}]})
    assert got.status_code == 422 and got.json()["error"].startswith("points[1].cell: ")
    got = client.post("/v1/models/bus14/tracks/t/points", json={"points": []})
    assert got.status_code == 422 and got.json()["error"].startswith("points: ")
    got = client.post("/v1/models/bus14/tracks/t/points", content=b"{not json", headers={"content-type": "application/json"})
    assert got.status_code == 422 and got.json()["error"] == "body: is not valid JSON"


def test_body_size_limit_is_413(client):
    big = b'{"track": [' + b"[1, 2], " * 400_000 + b"[1, 2]]}"
    got = client.post("/v1/models/bus14/predict", content=big, headers={"content-type": "application/json"})
    assert got.status_code == 413 and "body" in got.json()["detail"]


def test_unknown_model_and_paths_are_404(client):
    for method, path, body in (("post", "/v1/models/nope/predict", {"track": [[1, 2]]}),
                               ("post", "/v1/models/nope/tracks/a/points", {"points": [{"cell": [1, 2]}]}),
                               ("delete", "/v1/models/nope/tracks/a", None),
                               ("get", "/v1/models/nope/cells", None), ("get", "/nowhere", None)):
        got = client.request(method.upper(), path, json=body)
        assert got.status_code == 404, (path, got.text)
        assert "detail" in got.json()
    assert "bus14" in client.post("/v1/models/nope/predict", json={"track": [[1, 2]]}).json()["detail"]


def test_page_is_404_json_without_the_static_file_and_docs_are_off(client):
    from gridcast.serve.app import STATIC

    if not (STATIC / "index.html").is_file():
        got = client.get("/")
        assert got.status_code == 404 and "detail" in got.json()
    assert client.get("/docs").status_code == 404
    assert "/v1/models/{name}/predict" in client.get("/openapi.json").json()["paths"]


def test_cells_have_visits_and_centres(client, model_dir):
    body = client.get("/v1/models/bus14/cells").json()
    model = Forecaster.load(model_dir)
    assert body["coordinates"] == "lonlat" and body["cell_size"] == 100.0
    visits = sum(c["visits"] for c in body["cells"])
    assert visits == sum(len(t) for t in model.train_tracks_)
    first = body["cells"][0]
    assert -3.1 < first["lon"] < -2.8 and 53.3 < first["lat"] < 53.5
    assert {tuple(c["cell"]) for c in body["cells"]} == {tuple(c) for t in model.train_tracks_ for c in t.cells.tolist()}


def test_examples_are_prefixes_of_training_tracks(client, model_dir):
    model = Forecaster.load(model_dir)
    tracks = [t.cells.tolist() for t in model.train_tracks_]
    examples = client.get("/v1/models/bus14/examples").json()["examples"]
    assert 1 <= len(examples) <= 5
    for ex in examples:
        cells = [p["cell"] for p in ex["points"]]
        assert any(t[:len(cells)] == cells for t in tracks) and len(cells) < ex["length"]


def test_token_is_required_on_v1_and_compared_exactly(model_dir):
    with TestClient(create_app(load_models([f"bus={model_dir}"]), token=TOKEN)) as c:
        assert c.get("/healthz").json()["models"] == ["bus"]
        assert c.get("/v1/models").status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer " + TOKEN[:-1]}).status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Basic " + TOKEN}).status_code == 401
        assert c.post("/v1/models/bus/predict", json={"track": [[1, 2]]}).status_code == 401
        ok = c.get("/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json()["models"][0]["name"] == "bus"


def test_a_collapsing_model_skips_repeats_in_sessions(model_dir):
    app = create_app(load_models([str(model_dir)]))
    with TestClient(app) as c:
        app.state.sessions["bus14"].collapse = True
        one = c.post("/v1/models/bus14/tracks/t/points", json={"points": [{"cell": [10, 10]}]}).json()
        again = c.post("/v1/models/bus14/tracks/t/points", json={"points": [{"cell": [10, 10]}] * 3}).json()
    assert one["points_seen"] == again["points_seen"] == 1 and again["next"] == one["next"]


def test_latlon_session_points_land_on_the_model_grid(client, model_dir):
    model = Forecaster.load(model_dir)
    cell = model.vocab_.cells[3]
    from gridcast.nextcell.answers import Place

    lon, lat = Place(model.grid).coords([cell])[0]
    stream = StreamingPredictor(model, k=5)
    want = stream.update("x", tuple(int(v) for v in cell))
    got = client.post("/v1/models/bus14/tracks/geo-1/points", json={"points": [{"lat": lat, "lon": lon}]}).json()
    assert [n["cell"] for n in got["next"]] == [list(n.cell) for n in want]
    assert np.isclose(got["next"][0]["p"], want[0].p)


def test_session_answers_carry_the_same_centres_as_predict_answers(client, model_dir, example):
    from gridcast.nextcell.answers import Place, answer_json

    model = Forecaster.load(model_dir)
    stream = StreamingPredictor(model, k=5)
    for cell in example:
        want = stream.update("same", tuple(cell))
    got = client.post("/v1/models/bus14/tracks/same/points", json={"points": [{"cell": c} for c in example]}).json()
    expected = answer_json(want, 0.0, [], Place(model.grid))["next"]
    assert [{k: v for k, v in e.items() if k != "p"} for e in got["next"]] == \
        [{k: v for k, v in e.items() if k != "p"} for e in expected]
    again = client.post("/v1/models/bus14/tracks/same2/points", json={"points": [{"cell": c} for c in example]}).json()
    assert again["next"] == got["next"]  # from the cache of centres: the same


def test_periodic_state_writes_hold_the_live_tracks(model_dir, example, tmp_path):
    """The periodic writer (snapshot on the loop, encoding and fsync in a thread) leaves a file that
    a new app restores to the same next answer."""
    import time

    state = tmp_path / "state"
    limits = Limits(save_every=0.05)
    with TestClient(create_app(load_models([str(model_dir)]), limits, state_dir=state)) as c:
        c.post("/v1/models/bus14/tracks/p-1/points", json={"points": [{"cell": x} for x in example[:-1]]})
        deadline = time.monotonic() + 20
        while not (state / "bus14.sessions.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        saved = json.loads((state / "bus14.sessions.json").read_text())
        assert [t[0] for t in saved["tracks"]] == ["p-1"]
        want = c.post("/v1/models/bus14/tracks/p-1/points", json={"points": [{"cell": example[-1]}]}).json()
    (state / "bus14.sessions.json").write_text(json.dumps(saved))  # the periodic file, not the shutdown one
    with TestClient(create_app(load_models([str(model_dir)]), limits, state_dir=state)) as c:
        assert c.post("/v1/models/bus14/tracks/p-1/points", json={"points": [{"cell": example[-1]}]}).json() == want


def test_a_shutdown_that_cannot_save_says_so_and_is_flagged(model_dir, example, tmp_path, capfd):
    """`serve` exits 1 instead of 0 when the shutdown could not write the live tracks: the app
    flags it (a state dir that is a file cannot be written) and says so in one line."""
    blocked = tmp_path / "state"
    blocked.write_text("a file, not a directory")
    app = create_app(load_models([str(model_dir)]), state_dir=blocked)
    with TestClient(app) as c:
        assert c.post("/v1/models/bus14/tracks/s-1/points", json={"points": [{"cell": example[0]}]}).status_code == 200
        assert app.state.save_failed is False
    assert app.state.save_failed is True
    assert "live tracks not saved" in capfd.readouterr().err
