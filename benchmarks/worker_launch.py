"""Run one benchmark worker (a script and its arguments) in 1 process or under torchrun, for the
benchmark scripts beside this file; the worker prints its result as the last line of JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_worker(script: list[str], processes: int, env: dict, timeout: float, torchrun: bool = False) -> dict:
    """The worker's last stdout line as JSON: a plain interpreter for 1 process (unless `torchrun`),
    else torchrun with `processes` ranks on a free local port; a failed run stops with its stderr."""
    if processes == 1 and not torchrun:
        cmd = [sys.executable, *script]
    else:
        from gridcast.nextcell.distributed import free_port

        launcher = str(Path(sys.executable).with_name("torchrun"))
        cmd = [launcher, "--nnodes", "1", "--nproc-per-node", str(processes), "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--max-restarts", "0", *script]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
