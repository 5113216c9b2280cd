"""Live track states on disk, so a restarted server answers a track's next point exactly as an
uninterrupted one would.

One JSON file per model in the state directory (``<name>.sessions.json``), replaced atomically
(temp file, fsync, rename: a crash leaves the old file or the new one, never half of one), written
periodically and at shutdown (uvicorn turns SIGTERM into a clean shutdown). A file written for other
weights (another ``weights_sha256``) or that does not parse is set aside with a note, never loaded.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from gridcast.errors import GridcastError
from gridcast.nextcell.checkpoint import atomic_write_bytes
from gridcast.safe_files import parse_json, read_regular
from gridcast.serve.registry import ServedModel
from gridcast.serve.sessions import Sessions

FORMAT = "gridcast-sessions"
VERSION = 1
MAX_STATE_BYTES = 256 << 20  # a sessions file larger than this is set aside unread


def state_file(directory: Path, name: str) -> Path:
    return Path(directory) / f"{name}.sessions.json"


def save_state(directory: Path, served: ServedModel, sessions: Sessions) -> Path:
    """Write one model's live tracks atomically; returns the file."""
    return write_state(directory, served, snapshot(served, sessions))


def snapshot(served: ServedModel, sessions: Sessions) -> dict:
    """One model's live tracks as plain values: taken on the event loop (the sessions are not
    thread-safe), so that `write_state` may run in a thread without holding requests up."""
    return {"format": FORMAT, "version": VERSION, "model": served.name, "weights_sha256": served.weights_sha256,
            "tracks": sessions.states()}


def write_state(directory: Path, served: ServedModel, doc: dict) -> Path:
    """Encode and write a `snapshot` atomically; returns the file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = state_file(directory, served.name)
    atomic_write_bytes(path, json.dumps(doc, separators=(",", ":")).encode())
    return path


def load_state(directory: Path, served: ServedModel, sessions: Sessions) -> int:
    """Read one model's live tracks back (0 when there is no file); returns how many."""
    path = state_file(directory, served.name)
    if not path.is_file():
        return 0
    try:
        # bounded: a crafted state file (sparse 2 GB, nested 5,000 deep) is set aside, never read whole
        doc = parse_json(read_regular(path, MAX_STATE_BYTES, what="sessions file"), path, max_bytes=MAX_STATE_BYTES)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise ValueError("not a gridcast sessions file")
        if doc.get("weights_sha256") != served.weights_sha256:
            raise ValueError("written for other weights")
        return sessions.restore(doc["tracks"])
    except (OSError, ValueError, KeyError, TypeError, IndexError, GridcastError) as exc:
        aside = path.with_suffix(".unreadable")
        path.replace(aside)
        print(f"note: {path}: {str(exc).splitlines()[0]}; moved to {aside.name}, starting without its tracks",
              file=sys.stderr)
        return 0
