"""The fast path of plain track-points requests (`serve.fastpath`) answers byte for byte what the
full FastAPI route answers, for plain and for bad requests alike (a bad one falls through to the
route, so its 422 names the same field), and it is the path plain requests really take."""
from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from gridcast.serve import fastpath
from gridcast.serve.app import create_app
from gridcast.serve.registry import load_models
from serve_model import fitted_model

TOKEN = "0123456789abcdef-token"
URL = "/v1/models/bus14/tracks/{}/points"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return fitted_model(tmp_path_factory)


@pytest.fixture(scope="module")
def cells(model_dir) -> list[list[int]]:
    with TestClient(create_app(load_models([str(model_dir)]))) as c:
        return [p["cell"] for p in c.get("/v1/models/bus14/examples").json()["examples"][-1]["points"]]


def _pair(model_dir, **kw):
    fast = TestClient(create_app(load_models([str(model_dir)]), **kw))
    full = TestClient(create_app(load_models([str(model_dir)]), fast_path=False, **kw))
    return fast, full


def _same(fast, full, track, body=None, **kw):
    got = fast.post(URL.format(track), json=body, **kw) if body is not None else fast.post(URL.format(track), **kw)
    want = full.post(URL.format(track), json=body, **kw) if body is not None else full.post(URL.format(track), **kw)
    assert (got.status_code, got.json()) == (want.status_code, want.json()), body
    return got


def test_plain_bodies_answer_exactly_as_the_full_route(model_dir, cells, monkeypatch):
    answered = []
    real = fastpath.answer

    def spy(*args):
        out = real(*args)
        answered.append(out is not None)
        return out
    monkeypatch.setattr(fastpath, "answer", spy)
    fast, full = _pair(model_dir)
    with fast, full:
        lon_lat = full.get("/v1/models/bus14/cells").json()["cells"][:6]
        bodies = [
            {"points": [{"cell": c} for c in cells[:3]]},
            {"points": [{"cell": cells[3]}], "top_k": 2},
            {"points": [{"cell": c, "time": 1_700_000_000 + 30 * i} for i, c in enumerate(cells[4:6])], "top_k": 20},
            {"points": [{"lat": e["lat"], "lon": e["lon"]} for e in lon_lat]},
            {"points": [{"lat": e["lat"], "lon": e["lon"], "time": 1_700_000_000.5 + i} for i, e in enumerate(lon_lat)]},
        ]
        for body in bodies:
            got = _same(fast, full, "plain-1", body)
            assert got.status_code == 200 and got.json()["next"], body
        assert answered == [True] * len(bodies)  # every one of them took the fast path
        text = fast.get("/metrics").text
        assert f'gridcast_requests_total{{endpoint="{fastpath.ROUTE}",method="POST",status="200"}} {len(bodies)}' in text


BAD = [  # not plain: the fast path declines them all
    {"points": [{"cell": [1.0, 2]}]},                       # a float cell: pydantic's own rule decides
    {"points": [{"cell": [True, 2]}]},
    {"points": [{"cell": [1, 2]}], "top_k": "3"},
    {"points": [{"cell": [1, 2], "time": "2026-01-26T15:57:02Z"}]},
    {"points": [{"cell": [1, 2, 3]}]},
    {"points": [{"cell": [10**12, 2]}]},
    {"points": [{"cell": [2**70, 2]}]},
    {"points": [{"cell": [1, 2], "time": "yesterday"}]},
    {"points": [{"cell": [1, 2], "speed": 3}]},
    {"points": [{"cell": [1, 2]}, {"lat": 53.4, "lon": -2.9}]},
    {"points": [{"lat": 53.4, "lon": -2.9}, {"lat": 95.0, "lon": -2.9}]},
    {"points": [{"lat": 53.4, "lon": 200.0}]},
    {"points": [{"lat": 53.4}]},
    {"points": [{"x": 1.0, "y": 2.0}]},
    {"points": [{"lat": 53.4, "lon": -2.9, "time": 10}, {"lat": 53.4, "lon": -2.9, "time": 5}]},
    {"points": [{"lat": 53.4, "lon": -2.9, "time": 10}, {"lat": 53.4, "lon": -2.9}]},
    {"points": []},
    {"points": [{"cell": [1, 2]}], "top_k": 0},
    {"points": [{"cell": [1, 2]}], "top_k": 21},
    {"points": [{"cell": [1, 2]}], "horizon": 3},
    {"points": "nope"},
    {"points": [[1, 2]]},
    [1, 2],
]


LAX = BAD[:4]


@pytest.mark.parametrize("body", BAD)
def test_bad_bodies_fall_through_to_the_same_error(model_dir, body):
    fast, full = _pair(model_dir)
    with fast, full:
        got = _same(fast, full, "bad-1", body)
        # a float or bool cell, a numeric string (lax ints) or an ISO time is pydantic's to accept; the rest are 422s naming a field
        assert got.status_code == 200 if body in LAX else got.status_code == 422 and got.json()["error"]


def test_non_json_nan_tokens_and_paths_fall_through(model_dir):
    fast, full = _pair(model_dir, token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with fast, full:
        plain = {"points": [{"cell": [1, 2]}]}
        assert _same(fast, full, "t", plain).status_code == 401                       # no token
        assert _same(fast, full, "t", plain, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert _same(fast, full, "t", plain, headers=auth).status_code == 200
        for raw in (b'{"points": [{"cell": [1, 2], "time": NaN}]}', b"not json", b"", b"\xff\xfe"):
            got = _same(fast, full, "t", content=raw, headers={**auth, "Content-Type": "application/json"})
            assert got.status_code == 422, raw
        got = _same(fast, full, "t", content=b'{"points": [{"cell": [1, 2]}]}', headers={**auth, "Content-Type": "text/plain"})
        assert got.status_code != 500
        assert _same(fast, full, "x" * 201, plain, headers=auth).status_code == 422   # the track id's limit
        for path in ("/v1/models/nope/tracks/t/points", "/v1/models/bus14/tracks/t/points/"):
            got, want = fast.post(path, json=plain, headers=auth), full.post(path, json=plain, headers=auth)
            assert (got.status_code, got.json()) == (want.status_code, want.json())
        assert fast.post("/v1/models/nope/tracks/t/points", json=plain, headers=auth).status_code == 404


def test_parse_checks_whole_arrays(model_dir):
    grid = load_models([str(model_dir)])["bus14"].model.grid
    cells, times, top_k = fastpath.parse(b'{"points": [{"cell": [3, 4], "time": 7}, {"cell": [-5, 6]}], "top_k": 3}', grid)
    assert cells.tolist() == [[3, 4], [-5, 6]] and times == [7.0, None] and top_k == 3
    assert isinstance(times[0], float)
    assert fastpath.parse(b'{"points": [{"cell": [3, 4], "time": Infinity}]}', grid) is None
    assert fastpath.parse(b'{"points": [{"lat": 53.4, "lon": -2.9}, {"lat": -90.5, "lon": 0}]}', grid) is None
    assert not math.isnan(fastpath.parse(b'{"points": [{"lat": 53.4, "lon": -2.9}]}', grid)[0][0, 0])
