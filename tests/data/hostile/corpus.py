"""The hostile-input corpus: crafted model directories and data files, each with its exact expected outcome.

A case is built into its own folder at test time (special files such as FIFOs, device symlinks and
sparse multi-GB files cannot live in git), then one gridcast command runs on it in a subprocess under a
time limit while its peak memory is measured. Case modules (``cases_*.py`` beside this file) each
export ``CASES``; ``make_corpus.py`` writes the whole corpus to a folder for inspection.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
BUNDLED_CSV = REPO / "src" / "gridcast" / "datasets" / "data" / "liverpool_route14_outbound.csv"
GPS_FLAGS = ["--track-col", "trip_id", "--time-col", "timestamp", "--lat-col", "latitude", "--lon-col", "longitude"]
CASE_MODULES = ("cases_model", "cases_data", "cases_training", "cases_formats", "cases_redteam")
TIME_LIMIT_S = 20.0
RSS_LIMIT_BYTES = 1 << 30


@dataclass(frozen=True)
class Base:
    """Valid artifacts every case starts from (built once per run, never modified by a case)."""
    csv: Path        # the bundled Liverpool CSV (GPS points)
    gridded: Path    # that CSV gridded at 100 m / 30 s
    model: Path      # an LSTM fitted on it for one epoch


@dataclass(frozen=True)
class Case:
    """One crafted input and what gridcast must do with it.

    ``argv`` is the gridcast command line; ``{case}`` is this case's folder and ``{csv}``, ``{gridded}``,
    ``{model}`` the base artifacts (copy the model into ``{case}`` before altering it). ``exit`` is the
    exact exit status; ``stderr`` a substring the one-line message must contain (for exit 2).
    ``check`` runs after the command for outcomes beyond the exit (e.g. the input file is intact)."""
    name: str
    klass: str
    argv: list[str]
    exit: int
    stderr: str = ""
    build: Callable[[Path, Base], None] | None = None
    check: Callable[[Path, "Outcome"], None] | None = None
    time_limit_s: float = TIME_LIMIT_S
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_bytes: int


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for name in CASE_MODULES:
        try:
            module = importlib.import_module(f"{__package__}.{name}" if __package__ else name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.endswith(name):
                continue
            raise
        cases.extend(module.CASES)
    names = [c.name for c in cases]
    duplicated = {n for n in names if names.count(n) > 1}
    assert not duplicated, f"case names must be unique: {sorted(duplicated)}"
    return cases


def gridcast_argv() -> list[str]:
    return [sys.executable, "-m", "gridcast"]


def build_base(root: Path) -> Base:
    """Grid the bundled CSV and fit a one-epoch model on it (about 10 s)."""
    root.mkdir(parents=True, exist_ok=True)
    gridded, model = root / "base.parquet", root / "base-model"
    common = ["--cell-size", "100", "--step", "30", "--max-gap", "600"]
    subprocess.run(gridcast_argv() + ["grid", str(BUNDLED_CSV), "--out", str(gridded), *GPS_FLAGS, *common],
                   check=True, capture_output=True)
    subprocess.run(gridcast_argv() + ["fit", str(gridded), "--out", str(model), "--epochs", "1", "--seed", "0"],
                   check=True, capture_output=True)
    return Base(csv=BUNDLED_CSV, gridded=gridded, model=model)


def copy_model(base: Base, case_dir: Path, name: str = "model") -> Path:
    """A private, writable copy of the base model inside the case folder (cases alter the copy)."""
    target = case_dir / name
    shutil.copytree(base.model, target, symlinks=True)
    return target


def prepare(case: Case, root: Path, base: Base) -> Path:
    case_dir = root / case.name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    if case.build is not None:
        case.build(case_dir, base)
    return case_dir


def run(case: Case, case_dir: Path, base: Base, server: "ForkServer | None" = None) -> Outcome:
    """Run the case's command in its own process; peak RSS is the child's own (os.wait4).

    With a `server` the process is forked from a warm interpreter (see forkserver.py); without one it is
    a fresh ``python -m gridcast``."""
    fields = {"case": str(case_dir), "csv": str(base.csv), "gridded": str(base.gridded), "model": str(base.model)}
    args = [a.format(**fields) for a in case.argv]
    if server is not None:
        return server.run(args, case_dir, case.env, case.time_limit_s)
    argv = gridcast_argv() + args
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **case.env}
    start = time.monotonic()
    with open(case_dir / ".stdout", "w+b") as out, open(case_dir / ".stderr", "w+b") as err:
        proc = subprocess.Popen(argv, cwd=case_dir, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = start + case.time_limit_s
        status = usage = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                status = -9
                break
            time.sleep(0.02)
        proc.returncode = 0  # reaped by wait4 above; stops Popen's destructor from waiting again
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    code = -9 if status == -9 else os.waitstatus_to_exitcode(status)
    return Outcome(code, stdout, stderr, seconds, usage.ru_maxrss * 1024)


class ForkServer:
    """One warm interpreter (forkserver.py) that forks a child per case."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen([sys.executable, str(HERE / "forkserver.py")], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env=env, cwd=HERE)
        ready = self._proc.stdout.readline()
        if not ready.strip():
            raise RuntimeError("the hostile-corpus fork server did not start")

    def run(self, args: list[str], case_dir: Path, env: dict[str, str], time_limit_s: float) -> Outcome:
        request = {"argv": args, "cwd": str(case_dir), "env": env, "time_limit_s": time_limit_s,
                   "stdout": str(case_dir / ".stdout"), "stderr": str(case_dir / ".stderr")}
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        result = json.loads(self._proc.stdout.readline())
        read = lambda name: (case_dir / name).read_bytes().decode(errors="replace")  # noqa: E731
        return Outcome(result["returncode"], read(".stdout"), read(".stderr"), result["seconds"],
                       result["peak_rss_bytes"])

    def close(self) -> None:
        self._proc.stdin.close()
        self._proc.wait(timeout=30)


def problems(case: Case, outcome: Outcome) -> list[str]:
    """Every promise the outcome breaks (empty when the case passed)."""
    found = []
    if outcome.returncode == -9:
        found.append(f"did not finish within {case.time_limit_s:.0f} s (killed)")
    elif outcome.returncode != case.exit:
        found.append(f"exit {outcome.returncode}, expected {case.exit}")
    if "Traceback" in outcome.stderr or "Traceback" in outcome.stdout:
        found.append("printed a traceback")
    if outcome.peak_rss_bytes > RSS_LIMIT_BYTES:
        found.append(f"peak RSS {outcome.peak_rss_bytes / 2**20:.0f} MiB > {RSS_LIMIT_BYTES / 2**20:.0f} MiB")
    if case.stderr and case.stderr not in outcome.stderr:
        found.append(f"stderr lacks {case.stderr!r}")
    if case.exit == 2 and len([line for line in outcome.stderr.splitlines() if line.strip()]) < 1:
        found.append("exit 2 without a message")
    return found
