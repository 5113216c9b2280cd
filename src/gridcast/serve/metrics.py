"""Prometheus text exposition (format 0.0.4), written by hand: requests and latency by endpoint,
live tracks and evictions by model. No client library: the counters are a few dictionaries."""
from __future__ import annotations

from collections import defaultdict

#: Latency histogram bucket upper bounds, seconds.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Request counts by (endpoint, method, status) and latency histograms by endpoint."""

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: defaultdict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self.sums: defaultdict[str, float] = defaultdict(float)
        self.counts: defaultdict[str, int] = defaultdict(int)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests[(endpoint, method, status)] += 1
        counts = self.buckets[endpoint]
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                counts[i] += 1
                break
        self.sums[endpoint] += seconds
        self.counts[endpoint] += 1

    def render(self, sessions: dict) -> str:
        """The exposition text; `sessions`: model name -> its `Sessions`."""
        out = ["# HELP gridcast_requests_total HTTP requests by endpoint (route template), method and status.",
               "# TYPE gridcast_requests_total counter"]
        for (endpoint, method, status), n in sorted(self.requests.items()):
            out.append(f'gridcast_requests_total{{endpoint="{_esc(endpoint)}",method="{method}",status="{status}"}} {n}')
        out += ["# HELP gridcast_request_seconds Request latency by endpoint, seconds.",
                "# TYPE gridcast_request_seconds histogram"]
        for endpoint in sorted(self.buckets):
            label, running = _esc(endpoint), 0
            for bound, n in zip(BUCKETS, self.buckets[endpoint]):
                running += n
                out.append(f'gridcast_request_seconds_bucket{{endpoint="{label}",le="{bound:g}"}} {running}')
            out.append(f'gridcast_request_seconds_bucket{{endpoint="{label}",le="+Inf"}} {self.counts[endpoint]}')
            out.append(f'gridcast_request_seconds_sum{{endpoint="{label}"}} {self.sums[endpoint]:.6f}')
            out.append(f'gridcast_request_seconds_count{{endpoint="{label}"}} {self.counts[endpoint]}')
        out += ["# HELP gridcast_live_tracks Live tracks held in memory, by model.",
                "# TYPE gridcast_live_tracks gauge"]
        out += [f'gridcast_live_tracks{{model="{_esc(name)}"}} {len(s)}' for name, s in sessions.items()]
        out += ["# HELP gridcast_evictions_total Live tracks dropped to bound memory, by model and reason.",
                "# TYPE gridcast_evictions_total counter"]
        for name, s in sessions.items():
            out.append(f'gridcast_evictions_total{{model="{_esc(name)}",reason="lru"}} {s.evicted_lru}')
            out.append(f'gridcast_evictions_total{{model="{_esc(name)}",reason="idle"}} {s.evicted_idle}')
        return "\n".join(out) + "\n"


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
