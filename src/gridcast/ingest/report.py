"""What ingestion did to the rows: every row read is kept or counted under one reason."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IngestReport:
    """What happened to the rows: read = kept + sum(dropped); messages say what else was done."""

    read: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    tracks: int = 0
    seconds: float = 0.0
    points_per_s: float = 0.0
    messages: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The `--json` shape (contract): exactly read, kept, dropped, tracks, seconds, points_per_s."""
        return {
            "read": int(self.read),
            "kept": int(self.kept),
            "dropped": {k: int(v) for k, v in self.dropped.items()},
            "tracks": int(self.tracks),
            "seconds": float(self.seconds),
            "points_per_s": float(self.points_per_s),
        }

    def to_dict(self) -> dict:
        return {**self.to_json(), "messages": list(self.messages)}

    @classmethod
    def from_dict(cls, d: dict) -> "IngestReport":
        return cls(
            read=int(d.get("read", 0)),
            kept=int(d.get("kept", 0)),
            dropped={str(k): int(v) for k, v in (d.get("dropped") or {}).items()},
            tracks=int(d.get("tracks", 0)),
            seconds=float(d.get("seconds", 0.0)),
            points_per_s=float(d.get("points_per_s", 0.0)),
            messages=[str(m) for m in d.get("messages") or []],
        )

    def timed(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.points_per_s = float(self.read / seconds) if seconds > 0 else 0.0
