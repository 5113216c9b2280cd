"""`gridcast serve` as users run it: a live uvicorn on 127.0.0.1 (a free port), SIGTERM with
--state-dir and a restart that answers the next point of every live track exactly as an
uninterrupted server does; unsafe bindings refused with exit 2."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from gridcast.serve.app import create_app
from gridcast.serve.registry import load_models
from serve_model import fitted_model

GRIDCAST = str(Path(sys.executable).with_name("gridcast"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return fitted_model(tmp_path_factory)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(*args) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([GRIDCAST, "serve", *map(str, args), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {proc.stderr.read()}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not come up in 90 s")


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, proc.stderr.read()


def _post(base: str, track: str, cells: list, **kw) -> httpx.Response:
    return httpx.post(f"{base}/v1/models/bus14/tracks/{track}/points",
                      json={"points": [{"cell": c} for c in cells]}, timeout=10, **kw)


def test_restart_with_state_dir_answers_exactly_as_an_uninterrupted_server(model_dir, tmp_path):
    with TestClient(create_app(load_models([str(model_dir)]))) as reference:
        example = [p["cell"] for p in reference.get("/v1/models/bus14/examples").json()["examples"][-1]["points"]]
        assert len(example) >= 4
        half = len(example) // 2
        tracks = {f"bus-{i}": example[i % 2:] for i in range(5)}  # five live tracks
        for name, cells in tracks.items():
            reference.post(f"/v1/models/bus14/tracks/{name}/points", json={"points": [{"cell": c} for c in cells[:half]]})
        want = {name: reference.post(f"/v1/models/bus14/tracks/{name}/points",
                                     json={"points": [{"cell": cells[half]}]}).json() for name, cells in tracks.items()}
    state = tmp_path / "state"
    proc, base = _start(model_dir, "--state-dir", state)
    try:
        for name, cells in tracks.items():
            assert _post(base, name, cells[:half]).status_code == 200
        metrics = httpx.get(base + "/metrics", timeout=5).text
        assert 'gridcast_live_tracks{model="bus14"} 5' in metrics
    finally:
        code, err = _stop(proc)
    assert code == 0, err  # a clean shutdown with its live tracks saved exits 0 (not -15)
    assert (state / "bus14.sessions.json").is_file()
    proc, base = _start(model_dir, "--state-dir", state)
    try:
        assert "5 live tracks restored" in _read_ready_stderr(proc)
        for name, cells in tracks.items():
            assert _post(base, name, [cells[half]]).json() == want[name], name
    finally:
        _stop(proc)


def _read_ready_stderr(proc: subprocess.Popen) -> str:
    """What the server said on stderr so far (it is up, so the restore note is written)."""
    os.set_blocking(proc.stderr.fileno(), False)
    try:
        return proc.stderr.read() or ""
    finally:
        os.set_blocking(proc.stderr.fileno(), True)


def test_live_server_with_token_file(model_dir, tmp_path):
    token = tmp_path / "token"
    token.write_text("a-long-enough-secret-token\n")
    proc, base = _start(f"bus14={model_dir}", "--token-file", token)
    try:
        assert httpx.get(base + "/v1/models", timeout=5).status_code == 401
        ok = httpx.get(base + "/v1/models", headers={"Authorization": "Bearer a-long-enough-secret-token"}, timeout=5)
        assert ok.status_code == 200 and ok.json()["models"][0]["name"] == "bus14"
        bad = httpx.post(base + "/v1/models/bus14/predict", json={"track": [[1, 2]], "horizon": 999},
                         headers={"Authorization": "Bearer a-long-enough-secret-token"}, timeout=5)
        assert bad.status_code == 422 and bad.json()["error"].startswith("horizon: ")
    finally:
        _stop(proc)


@pytest.mark.parametrize("extra, message", [
    (["--host", "0.0.0.0"], "--host 0.0.0.0: listening beyond this machine needs --token-file"),
    (["--token-file", "/nonexistent/token"], "--token-file /nonexistent/token: cannot be read"),
    (["--max-tracks", "0"], "--max-tracks must be >= 1"),
])
def test_unsafe_or_bad_settings_exit_2_with_one_line(model_dir, extra, message):
    done = subprocess.run([GRIDCAST, "serve", str(model_dir), *extra, "--port", str(_free_port())],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr


def test_missing_model_dir_is_exit_2(tmp_path):
    done = subprocess.run([GRIDCAST, "serve", str(tmp_path / "nope"), "--port", str(_free_port())],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "nope" in done.stderr


def test_readme_serve_example_runs_as_written(tmp_path):
    """The README's serve block (fit, export, serve, one curl per endpoint, SIGTERM), on a free port."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### `gridcast serve`"):]
    section = section[:section.index("\n### ", 1)]
    (block,) = re.findall(r"^```bash\n(.*?)^```", section, flags=re.M | re.S)
    (tmp_path / "src").symlink_to(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", "-e", "-c", block.replace("8765", str(_free_port()))], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert '{"status":"ok","models":["bus14-public"]}' in out and '"gridcast_version"' in out
    assert '"routes"' in out and '"points_seen":2' in out and "}204\n" in out
    assert '{"examples":[]}' in out and 'gridcast_live_tracks{model="bus14-public"} 0' in out
    assert (tmp_path / "serve-state" / "bus14-public.sessions.json").is_file()
