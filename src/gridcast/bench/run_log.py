"""`RunLog`: every finished training run of a benchmark on disk the moment it finishes."""
from __future__ import annotations

import json
from pathlib import Path


class RunLog:
    """Each finished training run as one JSON line in ``OUT/runs.jsonl``, written and flushed at
    once: a crash or Ctrl-C an hour into a benchmark keeps every run that had finished."""

    def __init__(self, out: str | Path | None) -> None:
        self.path = None
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            self.path = Path(out) / "runs.jsonl"
            self.path.write_text("")

    def add(self, **fields) -> None:
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(fields) + "\n")
