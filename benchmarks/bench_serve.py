"""Load test of `gridcast serve` on loopback: one server process, a light asyncio HTTP/1.1 client
(one keep-alive connection per client) in this process, bounded in requests and seconds.

Measured in the same run:

* the anchor: a bare FastAPI endpoint returning a constant (uvicorn, same client), closed loop with
  16 clients and paced at 500 requests/s;
* `POST /v1/models/{name}/tracks/{id}/points` with one point per request, 1 / 16 / 128 concurrent
  tracks, closed loop (no pacing: throughput; a closed loop of N clients measures N / throughput,
  not latency) and open loop (each client paced; latency from the request's *scheduled* time, so
  a server that falls behind shows it);
* batches: 1,000-point requests over many tracks (points/s);
* the baseline: the same updates through `StreamingPredictor.update` called directly (Python only).

Usage: ``python benchmarks/bench_serve.py [--model DIR] [--seconds 3] [--json]``. Without --model it
trains the demo's model (Liverpool route 14, LSTM, `gridcast.bench.demo.run_demo`) first.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ANCHOR_APP = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/c")
async def constant():
    return {"ok": True}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, ready_path: str) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(f"GET {ready_path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                if b" 200 " in s.recv(1024):
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start in 120 s")


class Conn:
    """One keep-alive HTTP/1.1 connection: request -> (status, body)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "Conn":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = 0
        for line in header.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, await self.reader.readexactly(length) if length else b""

    def close(self) -> None:
        self.writer.close()


async def run_load(port: int, clients: int, make, rate: float | None, seconds: float, max_requests: int) -> dict:
    """`clients` connections; each sends `make(client, i)` -> (method, path, body) in turn, closed loop
    (rate None) or paced at rate/clients each. Latency: from the scheduled time when paced."""
    conns = [await Conn.open(port) for _ in range(clients)]
    per_client = max(1, max_requests // clients)
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.05
    stop = start + seconds

    async def client(k: int) -> None:
        nonlocal errors
        interval = clients / rate if rate else 0.0
        offset = k * interval / clients if rate else 0.0
        for i in range(per_client):
            scheduled = start + offset + i * interval if rate else time.perf_counter()
            if scheduled > stop:
                return
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif not rate and time.perf_counter() > stop:
                return
            method, path, body = make(k, i)
            status, _ = await conns[k].request(method, path, body)
            latencies.append(time.perf_counter() - scheduled)
            if status >= 400:
                errors += 1

    began = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - max(began, start)
    for c in conns:
        c.close()
    lat = np.asarray(latencies) * 1e3
    return {"requests": len(lat), "errors": errors, "rps": len(lat) / elapsed,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def demo_model(workdir: Path) -> Path:
    from gridcast.bench.demo import run_demo

    run_demo(workdir / "demo", cells=("lstm",), progress=False, log=lambda *_: None)
    return workdir / "demo" / "model"


def track_cells(model_dir: Path) -> list[list[list[int]]]:
    from gridcast.nextcell.forecaster import Forecaster

    return [t.cells.tolist() for t in Forecaster.load(model_dir).train_tracks_ if len(t) >= 2]


def python_baseline(model_dir: Path, routes, n: int) -> dict:
    """The same one-point updates through `StreamingPredictor.update` directly (top 5)."""
    from gridcast.nextcell.forecaster import Forecaster
    from gridcast.nextcell.streaming import StreamingPredictor

    stream = StreamingPredictor(Forecaster.load(model_dir), k=5)
    times = np.empty(n)
    for i in range(n):
        route = routes[i % len(routes)]
        cell = route[(i // len(routes)) % len(route)]
        t0 = time.perf_counter()
        stream.update(f"t{i % 16}", cell)
        times[i] = time.perf_counter() - t0
    return {"requests": n, "errors": 0, "rps": n / times.sum(), "p50_ms": float(np.percentile(times, 50) * 1e3),
            "p99_ms": float(np.percentile(times, 99) * 1e3)}


def python_batches(model_dir: Path, cells, n: int) -> dict:
    """What a batch request does inside the server, called directly: `feed_many` every point but the
    last, `update` (top 5) the last."""
    from gridcast.nextcell.forecaster import Forecaster
    from gridcast.nextcell.streaming import StreamingPredictor

    stream = StreamingPredictor(Forecaster.load(model_dir), k=5)
    head = np.asarray(cells[:-1], np.int64)
    times = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        stream.feed_many(f"b{i}", head)
        stream.update(f"b{i}", cells[-1])
        times[i] = time.perf_counter() - t0
    return {"requests": n, "errors": 0, "rps": n / times.sum(), "p50_ms": float(np.percentile(times, 50) * 1e3),
            "p99_ms": float(np.percentile(times, 99) * 1e3), "points_per_s": n * len(cells) / times.sum()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model directory (default: train the demo's LSTM first)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per scenario (default 3)")
    parser.add_argument("--max-requests", type=int, default=20_000, help="requests per scenario at most")
    parser.add_argument("--rate", type=float, default=500.0, help="paced total rate, requests/s (default 500)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model) if args.model else demo_model(Path(tmp))
        routes = track_cells(model_dir)
        name = "bench"
        rows: list[tuple[str, dict]] = []
        port = free_port()
        anchor = start([sys.executable, "-c", ANCHOR_APP, str(port)], port, "/c")
        try:
            const = lambda k, i: ("GET", "/c", None)  # noqa: E731
            rows.append(("anchor: bare FastAPI constant, 16 clients, closed loop",
                         asyncio.run(run_load(port, 16, const, None, args.seconds, args.max_requests))))
            rows.append((f"anchor: bare FastAPI constant, 16 clients, paced {args.rate:g}/s",
                         asyncio.run(run_load(port, 16, const, args.rate, args.seconds, args.max_requests))))
        finally:
            anchor.terminate()
            anchor.wait(10)
        port = free_port()
        gridcast = str(Path(sys.executable).with_name("gridcast"))
        server = start([gridcast, "serve", f"{name}={model_dir}", "--port", str(port), "--max-tracks", "100000"],
                       port, "/healthz")
        try:
            def one_point(tracks: int, tag: str):
                def make(k, i):
                    route = routes[k % len(routes)]
                    body = json.dumps({"points": [{"cell": route[i % len(route)]}]}).encode()
                    return "POST", f"/v1/models/{name}/tracks/{tag}-{k}/points", body
                return make
            for clients in (1, 16, 128):
                rows.append((f"1 point/request, {clients} tracks, closed loop",
                             asyncio.run(run_load(port, clients, one_point(clients, f"c{clients}"), None, args.seconds,
                                                  args.max_requests))))
                rows.append((f"1 point/request, {clients} tracks, paced {args.rate:g}/s",
                             asyncio.run(run_load(port, clients, one_point(clients, f"p{clients}"), args.rate,
                                                  args.seconds, args.max_requests))))
            batch_cells = [routes[j % len(routes)][m % len(routes[j % len(routes)])] for j in range(4)
                           for m in range(250)]
            batch = json.dumps({"points": [{"cell": c} for c in batch_cells]}).encode()

            def batches(k, i):
                return "POST", f"/v1/models/{name}/tracks/b{k}-{i % 64}/points", batch
            result = asyncio.run(run_load(port, 4, batches, None, args.seconds, args.max_requests // 10))
            result["points_per_s"] = result["rps"] * len(batch_cells)
            rows.append((f"batches of {len(batch_cells)} points, 4 clients, 256 tracks, closed loop", result))
        finally:
            server.terminate()
            server.wait(10)
        base = python_baseline(model_dir, routes, 20_000)
        base["points_per_s"] = base["rps"]
        rows.append(("baseline: StreamingPredictor.update per point (Python only)", base))
        rows.append(("baseline: the batches' feed_many(999) + update (Python only)",
                     python_batches(model_dir, batch_cells, 20)))
    if args.json:
        print(json.dumps({label: r for label, r in rows}, indent=2))
        return 0
    print(f"{'scenario':<66} {'requests':>8} {'errors':>6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for label, r in rows:
        extra = f"  ({r['points_per_s']:,.0f} points/s)" if "points_per_s" in r else ""
        print(f"{label:<66} {r['requests']:>8} {r['errors']:>6} {r['rps']:>9,.0f} {r['p50_ms']:>8.2f} "
              f"{r['p99_ms']:>8.2f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
