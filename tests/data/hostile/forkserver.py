"""A fork server for the hostile corpus: gridcast, torch and pandas imported once, one forked child per case.

Each case still runs in its own process (its own memory, exit status, stdout and stderr files, killed at
its time limit; peak RSS from wait4 counts the pages it shares with this server too, so it is an upper
bound), but starts in milliseconds instead of the ~1.5 s of importing torch, which keeps a corpus of
150+ cases inside the suite's time budget. The server itself runs no torch op before forking, so no
thread pool exists that a child could inherit half-started. ``GRIDCAST_HOSTILE_SPAWN=1`` (or
make_corpus.py) runs every case as a fresh ``python -m gridcast`` instead.

Protocol: one JSON request per line on stdin, one JSON result per line on stdout.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback


def _child(request: dict) -> None:
    os.chdir(request["cwd"])
    for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_TRUNC),
                           (2, request["stderr"], os.O_WRONLY | os.O_TRUNC)):
        target = os.open(path, mode | os.O_CREAT, 0o644)
        os.dup2(target, fd)
        os.close(target)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.environ.update(request["env"])
    sys.argv = ["gridcast", *request["argv"]]
    code = 1
    try:
        from gridcast.cli.app import main

        code = int(main(request["argv"]) or 0)
    except SystemExit as exc:  # argparse's exit 2, or a command's own
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # a traceback is what the corpus looks for: print it as the CLI would
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _serve_one(request: dict) -> dict:
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(request)
    deadline = start + request["time_limit_s"]
    killed = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            killed = True
            break
        time.sleep(0.005)
    code = -9 if killed else os.waitstatus_to_exitcode(status)
    return {"returncode": code, "seconds": time.monotonic() - start, "peak_rss_bytes": usage.ru_maxrss * 1024}


def main() -> None:
    import pandas  # noqa: F401
    import pyarrow.csv  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import torch  # noqa: F401

    import gridcast.cli.app  # noqa: F401  everything a command imports, once, before any fork
    import gridcast.nextcell.forecaster  # noqa: F401
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        if line.strip():
            out.write(json.dumps(_serve_one(json.loads(line))) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
