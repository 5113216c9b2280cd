"""`gridcast serve MODEL_DIR [NAME=MODEL_DIR ...] [--host 127.0.0.1] [--port 8000] [--token-file FILE]
[--state-dir DIR] [--max-tracks N]`: the models behind an HTTP API (FastAPI + uvicorn, the `serve`
extra). Binds loopback unless told otherwise; any other address needs a token."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve models over HTTP: whole-prefix predictions and live per-track sessions",
                       description="Serve fitted next-cell models over HTTP (docs/contracts.md lists the endpoints). "
                                   "Needs the 'serve' extra: pip install 'gridcast[serve]'.")
    p.add_argument("models", nargs="+", metavar="MODEL_DIR",
                   help="model directories, each MODEL_DIR (named by its basename) or NAME=MODEL_DIR")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any non-loopback address needs --token-file)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--token-file", help="file whose first line is the Bearer token every /v1 request must send")
    p.add_argument("--state-dir", help="keep live tracks here (written atomically every few seconds and on "
                                       "SIGTERM, read back at start); without it a restart forgets live tracks")
    p.add_argument("--max-tracks", type=int, default=10_000,
                   help="live tracks kept per model; the least recently updated is evicted (default 10000)")
    p.add_argument("--idle-seconds", type=float, default=3600.0,
                   help="forget a live track not updated for this long (default 3600)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gridcast.errors import InputError

    if args.max_tracks < 1:
        raise InputError(f"--max-tracks must be >= 1, got {args.max_tracks}")
    if not args.idle_seconds > 0:
        raise InputError(f"--idle-seconds must be > 0, got {args.idle_seconds}")
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise InputError(f"serving needs the 'serve' extra (FastAPI and uvicorn): pip install 'gridcast[serve]' "
                         f"({exc.name} is missing)") from None
    from gridcast.serve.limits import Limits
    from gridcast.serve.server import serve

    serve(args.models, host=args.host, port=args.port, token_file=args.token_file, state_dir=args.state_dir,
          limits=Limits(max_tracks=args.max_tracks, idle_seconds=args.idle_seconds))
    return 0
