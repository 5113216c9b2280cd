"""uvicorn's server, minus re-raising SIGTERM/SIGINT after a graceful shutdown.

uvicorn re-raises a captured signal once it has shut down, so the process dies "of" the signal
(exit -15); a server that drained its requests and saved its live tracks has finished cleanly, and
supervisors (systemd, Kubernetes) read -15 as a crash. Imported only by `server.serve`, so that
importing the package stays uvicorn-free where it need not load it.
"""
from __future__ import annotations

import contextlib

import uvicorn


class CleanExitServer(uvicorn.Server):
    """Exit 0 after a signal-initiated shutdown that completed; any failure still propagates."""

    @contextlib.contextmanager
    def capture_signals(self):
        with super().capture_signals():
            yield
            # reached only when serving returned normally: then nothing is re-raised
            self._captured_signals.clear()
