"""The FastAPI application: one route per endpoint of docs/contracts.md, served through the
library's public seam (`nextcell.prefix_answer` for whole prefixes, exactly what ``gridcast
predict --json`` prints; `sessions` over the streaming predictor for live tracks).

Safety lives here too: a pure ASGI wrapper bounds the body (413), counts every request for
/metrics and turns anything unexpected into a bare 500 (never a traceback); validation errors are
422 with the field's path. The interactive docs are off: their assets come from a CDN, and the
service must work offline; `/openapi.json` describes the API.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridcast import __version__
from gridcast.errors import GridcastError
from gridcast.jsonsafe import json_safe
from gridcast.nextcell.prefix_answer import cells_prefix, points_prefix, prefix_answer
from gridcast.serve import fastpath
from gridcast.serve.auth import token_ok
from gridcast.serve.limits import Limits
from gridcast.serve.metrics import Metrics
from gridcast.serve.points import FieldError, cells_of, raw_points, session_cells
from gridcast.serve.registry import ServedModel
from gridcast.serve.schemas import PredictRequest, TrackPointsRequest, TrackPointsResponse
from gridcast.serve.sessions import Sessions
from gridcast.serve.state import load_state, save_state, snapshot, write_state
from gridcast.tracks import Track

STATIC = Path(__file__).resolve().parent / "static"
#: Fields a validation error's location may name (the rest of pydantic's location is type names).
FIELDS = {"track", "points", "horizon", "top_k", "cell", "lat", "lon", "x", "y", "time"}
#: The error answers every /v1 operation may give besides 422 (documented in /openapi.json).
_ERROR = {"content": {"application/json": {"schema": {"type": "object", "properties": {"detail": {"type": "string"}},
                                                       "required": ["detail"]}}}}
V1_ERRORS = {401: {"description": "missing or wrong Bearer token", **_ERROR},
             404: {"description": "no such model", **_ERROR},
             413: {"description": "body larger than the limit", **_ERROR}}
#: How many example prefixes `/examples` offers.
EXAMPLES = 5


def create_app(models: dict[str, ServedModel], limits: Limits = Limits(), token: str | None = None,
               state_dir: str | Path | None = None, fast_path: bool = True) -> FastAPI:
    """The service for `models` (name -> `ServedModel`). With `state_dir`, live tracks are read back
    at start and written every `limits.save_every` seconds and at shutdown. `fast_path`: answer plain
    track-points requests without pydantic (`fastpath`; off only to compare the two in tests)."""
    sessions = {name: Sessions(m.model, limits.max_tracks, limits.idle_seconds, collapse=m.collapses)
                for name, m in models.items()}
    metrics = Metrics()
    state = Path(state_dir) if state_dir is not None else None

    def save_all() -> None:
        for name, served in models.items():
            save_state(state, served, sessions[name])

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        task = None
        if state is not None:
            for name, served in models.items():
                restored = load_state(state, served, sessions[name])
                if restored:
                    print(f"note: {name}: {restored} live tracks restored from {state}", file=sys.stderr)

            async def periodic() -> None:
                while True:
                    await asyncio.sleep(limits.save_every)
                    # the snapshot on the loop, the JSON encoding and the fsync in a thread: a large
                    # state file no longer stalls every request for the time it takes to write
                    docs = [(served, snapshot(served, sessions[name])) for name, served in models.items()]
                    try:
                        await asyncio.to_thread(lambda: [write_state(state, served, doc) for served, doc in docs])
                    except OSError as exc:  # a full disk now need not stop the next try, nor the service
                        print(f"gridcast serve: live tracks not saved to {state}: {exc}", file=sys.stderr)
            task = asyncio.create_task(periodic())
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                try:
                    save_all()
                except (OSError, GridcastError) as exc:  # the disk is full or gone: say so, exit 1
                    app.state.save_failed = True
                    print(f"gridcast serve: live tracks not saved to {state}: {exc}", file=sys.stderr)

    app = FastAPI(title="gridcast", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Next-cell forecasts of gridcast models: whole prefixes and live tracks.")
    app.state.sessions, app.state.metrics, app.state.models = sessions, metrics, models
    app.state.save_failed = False

    def authorised(authorization: str | None = Header(None)) -> None:
        if not token_ok(token, authorization):
            raise HTTPException(401, "missing or wrong token: send Authorization: Bearer <token>",
                                headers={"WWW-Authenticate": "Bearer"})

    def served(name: str) -> ServedModel:
        model = models.get(name)
        if model is None:
            raise HTTPException(404, f"no model named {name!r}; served: {', '.join(models)}")
        return model

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_field_error(e) for e in exc.errors()]
        return JSONResponse({"detail": errors, "error": errors[0]["msg"] if errors else "invalid request"}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:  # FastAPI could not even decode the body (not UTF-8, not JSON)
            message = "body: cannot be parsed as JSON"
            return JSONResponse({"detail": [{"loc": ["body"], "msg": message, "type": "json_invalid"}],
                                 "error": message}, 422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(GridcastError)
    async def user_error(_request: Request, exc: GridcastError) -> JSONResponse:
        return JSONResponse(_user_error(exc), 422)

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness and the served models' names (for load balancers)."""
        return {"status": "ok", "models": list(models)}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus text: requests and latency by endpoint, live tracks, evictions."""
        return PlainTextResponse(metrics.render(sessions), media_type="text/plain; version=0.0.4")

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        index = STATIC / "index.html"
        if index.is_file():
            return FileResponse(index, media_type="text/html")
        return JSONResponse({"detail": "no page in this installation: the API is under /v1 (see /openapi.json)"}, 404)

    v1 = [Depends(authorised)]
    ModelName = PathParam(..., max_length=200)

    @app.get("/v1/models", dependencies=v1, responses=V1_ERRORS)
    async def list_models() -> dict:
        """Every served model: name, cell kind, target, grid and the gridcast version that wrote it."""
        return {"models": [m.summary() for m in models.values()]}

    @app.post("/v1/models/{name}/predict", dependencies=v1, responses=V1_ERRORS)
    def predict(body: PredictRequest, name: str = ModelName) -> JSONResponse:
        """Exactly the object ``gridcast predict MODEL_DIR --track/--points ... --json`` prints."""
        m = served(name)
        with m.lock:
            track, collapsed = _prefix(m, body)
            doc = prefix_answer(m.model, track, body.horizon, body.top_k, collapsed=collapsed)
        return JSONResponse(json_safe(doc))

    @app.post("/v1/models/{name}/tracks/{track_id}/points", dependencies=v1, response_model=TrackPointsResponse,
              responses=V1_ERRORS)
    async def track_points(body: TrackPointsRequest, name: str = ModelName,
                           track_id: str = PathParam(..., max_length=200)) -> JSONResponse:
        """A live track's new points (in order) -> its next cells: one streaming step per point."""
        m = served(name)
        cells, times = session_cells(body.points, m.model.grid)
        seen, nexts = sessions[name].update(track_id, cells, times, body.top_k)
        return JSONResponse({"track": track_id, "points_seen": seen, "next": m.next_json(nexts)})

    @app.delete("/v1/models/{name}/tracks/{track_id}", dependencies=v1, status_code=204, responses=V1_ERRORS)
    async def forget(name: str = ModelName, track_id: str = PathParam(..., max_length=200)) -> Response:
        """Forget a live track (204 whether or not it was live)."""
        served(name)
        sessions[name].delete(track_id)
        return Response(status_code=204)

    @app.get("/v1/models/{name}/cells", dependencies=v1, responses=V1_ERRORS)
    async def cells(name: str = ModelName) -> dict:
        """The training cells with their visit counts and centres in the model's coordinates."""
        m = served(name)
        return _cells(m)

    @app.get("/v1/models/{name}/examples", dependencies=v1, responses=V1_ERRORS)
    async def examples(name: str = ModelName) -> dict:
        """A few training-track prefixes to replay, as point lists (none for a stripped model)."""
        return _examples(served(name))

    return _Guard(app, metrics, limits.max_body_bytes, (models, sessions, token) if fast_path else None)


def _prefix(m: ServedModel, body: PredictRequest) -> tuple[Track, bool]:
    """The request's prefix, prepared as ``gridcast predict --track/--points`` prepares it."""
    if body.track is not None:
        return cells_prefix(m.model, np.asarray(body.track, dtype=np.int64))[0], False
    if all(p.kind == "cell" for p in body.points):
        times = [p.time for p in body.points]
        track = Track("track", cells_of(body.points), times if all(t is not None for t in times) else None)
        return track, False
    raw = raw_points(body.points, m.model.grid)
    return points_prefix(m.model, raw, name=m.name)[0], m.collapses


def _cells(m: ServedModel) -> dict:
    counts: dict[tuple[int, int], int] = {}
    for track in m.model.train_tracks_:
        for c, r in track.cells.tolist():
            counts[(c, r)] = counts.get((c, r), 0) + 1
    if not counts:  # a model without its tracks: its vocabulary, unvisited
        counts = {(int(c), int(r)): 0 for c, r in m.model.vocab_.cells.tolist()}
    cells = sorted(counts)
    out = [{"cell": list(c), "visits": counts[c]} for c in cells]
    place = m.place(False)
    if place is not None and cells:
        for entry, centre in zip(out, place.coords(cells)):
            entry.update(zip(place.keys, centre))
    grid = m.model.grid
    return {"coordinates": None if place is None else ("lonlat" if place.geographic else "xy"),
            "cell_size": None if grid is None else grid.cell_size, "cells": out}


def _examples(m: ServedModel) -> dict:
    if m.stripped:
        return {"examples": []}
    tracks = [t for t in m.model.train_tracks_ if len(t) >= 4]
    if not tracks:
        return {"examples": []}
    picks = sorted({round(i * (len(tracks) - 1) / max(EXAMPLES - 1, 1)) for i in range(EXAMPLES)})
    place = m.place(False)
    out = []
    for i in picks:
        cells = tracks[i].cells[:max(2, len(tracks[i]) // 2)]
        points = [{"cell": [int(c), int(r)]} for c, r in cells.tolist()]
        if place is not None:
            for point, centre in zip(points, place.coords(cells)):
                point.update(zip(place.keys, centre))
        out.append({"id": f"example-{i}", "points": points, "length": len(tracks[i])})
    return {"examples": out}


def _user_error(exc: GridcastError) -> dict:
    """The 422 body of a request the library refused (`FieldError` names its field)."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    field = exc.field if isinstance(exc, FieldError) else "body"
    return {"detail": [{"loc": ["body", field], "msg": message, "type": "value_error"}], "error": message}


def _field_error(error: dict) -> dict:
    """A pydantic error -> ``{"loc", "msg": "points[3].lat: must be within [-90, 90]", "type"}``."""
    loc = [part for part in error.get("loc", ()) if part != "body"]
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in FIELDS:
            path += f".{part}" if path else part
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden" and loc:  # the unknown field itself
        name = str(loc[-1])
        path, message = (f"{path}.{name}" if path else name), "is not a field of this request"
    elif error.get("type") == "json_invalid":
        path, message = "body", "is not valid JSON"
    elif error.get("type") == "missing" and not path:
        path, message = "body", "is missing (send a JSON object)"
    return {"loc": list(error.get("loc", ())), "msg": f"{path or 'body'}: {message}", "type": error.get("type", "")}


class _BodyTooLarge(Exception):
    pass


class _Guard:
    """Pure ASGI wrapper: body size limit (413), request metrics by route template, a bare 500
    for anything unexpected (logged to stderr as one line, never sent), and the fast path of plain
    track-points requests (`fastpath`: what is not plain is replayed to the app unchanged)."""

    def __init__(self, app: FastAPI, metrics: Metrics, max_body: int, live: tuple | None = None) -> None:
        self.app, self.metrics, self.max_body, self.live = app, metrics, max_body, live
        self.state, self.router = app.state, app.router  # TestClient and uvicorn need only __call__

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500, "started": False}
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._reply(send, status, 413, {"detail": f"body: larger than {self.max_body} bytes"})
            self._count(scope, status["code"], start)
            return
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge
            return message

        async def sending(message):
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        try:
            route = fastpath.route_of(scope) if self.live is not None else None
            if route is not None and fastpath.json_content(headers := dict(scope.get("headers") or ())):
                receive = await self._fast(send, limited, receive, headers, route, status, start)
                if receive is None:
                    return
                limited = receive
            await self.app(scope, limited, sending)
        except _BodyTooLarge:
            if not status["started"]:
                await self._reply(send, status, 413, {"detail": f"body: larger than {self.max_body} bytes"})
        except Exception as exc:  # a bug, never the client's fault: one line in the log, a bare 500
            print(f"gridcast serve: internal error on {scope.get('path')}: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            if not status["started"]:
                await self._reply(send, status, 500, {"detail": "internal error"})
        self._count(scope, status["code"], start)

    async def _fast(self, send, limited, receive, headers: dict, route: tuple[str, str], status: dict, start: float):
        """Read the whole body; answer a plain request here (-> None) or return a receive that
        replays the body to the app."""
        chunks = []
        while True:
            message = await limited()
            if message["type"] != "http.request":
                return None  # the client left before sending its body: nobody to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        models, sessions, token = self.live
        try:
            data = fastpath.answer(models, sessions, token, *route, headers, body)
        except GridcastError as exc:
            await self._reply(send, status, 422, _user_error(exc))
            self.metrics.observe(fastpath.ROUTE, "POST", 422, time.perf_counter() - start)
            return None
        if data is None:
            replayed = False

            async def replay():
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return replay
        await send({"type": "http.response.start", "status": 200,
                          "headers": [(b"content-length", str(len(data)).encode()), (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})
        status["code"], status["started"] = 200, True
        self.metrics.observe(fastpath.ROUTE, "POST", 200, time.perf_counter() - start)
        return None

    async def _reply(self, send, status: dict, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        status["code"], status["started"] = code, True
        await send({"type": "http.response.start", "status": code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    def _count(self, scope, code: int, start: float) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        self.metrics.observe(endpoint, scope.get("method", ""), code, time.perf_counter() - start)
