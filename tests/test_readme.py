"""The README's examples run as written, and say what they really print.

Each example is taken from README.md itself (not a copy), so the documentation cannot drift from
the code: the `gridcast grid` block, the repeated-route fit/predict/evaluate block and the Python
API blocks run in a scratch folder laid out like the repository (``src/`` and ``../shared``).
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gridcast.ingest import load_grid

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def code_blocks(heading: str, lang: str = "") -> list[str]:
    """The fenced blocks (``` + ``lang``) between ``heading`` and the next heading of its level."""
    level = heading.split(" ")[0]
    start = README.index(heading + "\n") if heading + "\n" in README else README.index(heading)
    rest = README[start + len(heading):]
    end = re.search(rf"^{level} ", rest, flags=re.M)
    section = rest[: end.start()] if end else rest
    return re.findall(rf"^```{lang}\n(.*?)^```", section, flags=re.M | re.S)


@pytest.fixture
def checkout(tmp_path, shared_data) -> Path:
    """A folder that looks like the repository root: ``src/`` here, ``../shared`` beside it."""
    work = tmp_path / "repo"
    work.mkdir()
    (work / "src").symlink_to(REPO / "src")
    (tmp_path / "shared").symlink_to(shared_data.parent)
    return work


def run_bash(script: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env["OMP_NUM_THREADS"] = "1"
    env["DATA"] = str(cwd.parent / "shared" / "data")  # the README's name for the benchmark data folder
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_grid_examples_run_and_like_reuses_the_grid(checkout):
    (block,) = code_blocks("### `gridcast grid`: raw GPS to cells at time step *t*")
    done = run_bash(block, checkout)
    assert done.returncode == 0, done.stderr
    bus, bundled = load_grid(checkout / "bus.parquet"), load_grid(checkout / "bundled.parquet")
    assert bus == bundled
    report = json.loads(done.stdout.strip().splitlines()[-1])  # the cursor example's --json line
    assert report["read"] == report["kept"] + sum(report["dropped"].values()) and report["tracks"] > 0


def test_repeated_route_example_does_what_the_readme_says(checkout):
    (block,) = code_blocks("### `gridcast fit`, `predict`, `evaluate`: the repeated-route case end to end")
    done = run_bash(block, checkout)
    assert done.returncode == 0, done.stderr
    # "The first prediction continues exactly (9,3), (8,3), ..., (1,3)"
    first = re.search(r'^gridcast predict routes-model --track "([^"]+)" --horizon (\d+) --json$', block, re.M)
    again = run_bash(f'gridcast predict routes-model --track "{first[1]}" --horizon {first[2]} --json', checkout)
    routes = json.loads(again.stdout)["routes"]
    assert routes[0]["cells"] == [[x, 3] for x in range(9, 0, -1)]
    # "from the shared start alone, the two most probable routes are Home->A and Home->B"
    shared = run_bash('gridcast predict routes-model --track "14,3" --horizon 20 --top-k 2 --json', checkout)
    two = json.loads(shared.stdout)["routes"]
    ends = {tuple(r["cells"][-1]) for r in two}
    assert ends == {(1, 3), (10, 11)}, two
    assert all(abs(r["p"] - 0.5) < 0.15 for r in two), two


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4])
def test_python_api_examples_run(checkout, monkeypatch, index):
    blocks = code_blocks("## Python API", "python")
    assert len(blocks) == 5
    monkeypatch.chdir(checkout)
    monkeypatch.setenv("DATA", str(checkout.parent / "shared" / "data"))
    namespace: dict = {}
    exec(compile(blocks[index], f"README.md python block {index}", "exec"), namespace)
    if index == 0:  # the comment promises (11, 3) first
        assert namespace["model"].predict_next(namespace["route"][:3], k=3)[0].cell == (11, 3)
        assert (checkout / "my-model" / "config.json").exists()
    if index == 2:
        assert (checkout / "trips.parquet").exists() and namespace["gt"].report.to_json()["kept"] > 0
    if index == 3:  # prepared like the model: collapsed, on its grid; one answer per track
        ready, answers = namespace["ready"], namespace["answers"]
        assert ready.grid == namespace["gt"].grid and ready.preprocessing["collapse"] is True
        assert len(answers) == len(ready.tracks) == 16 and len(answers[0].next) == 3
        assert all(len(r.cells) <= 5 for a in answers for r in a.routes)
    if index == 4:  # one epoch on ZARA1: near constant velocity (0.431 m); best of 20 far below
        ade = namespace["per_example_errors"](namespace["paths"], namespace["fold"].test.future)["ade"].mean()
        assert 0.3 < ade < 0.5 and namespace["twenty"].shape[0] == 20
        assert namespace["best_of_k"](namespace["twenty"], namespace["fold"].test.future)["ade"] < 0.7 * ade
