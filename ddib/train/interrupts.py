"""Stopping a long job at a clean point: the first Ctrl-C (SIGINT) or SIGTERM asks, a second one insists.

A training loop polls `StopRequest.requested` once per optimiser step, saves its checkpoint at that step
boundary and raises `Interrupted`, so an interrupted run loses no work and resumes bit-identically. A second
signal raises `Interrupted` at once (the checkpoint on disk is still whole: every write is atomic).
"""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A job stopped by a signal; `exit_code` is the shell's 128 + signal number (130 for Ctrl-C)."""

    def __init__(self, signum: int = signal.SIGINT, detail: str = ""):
        super().__init__(detail)
        self.signum = signum
        self.detail = detail

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)


class StopRequest:
    """Context manager turning the first stop signal into a flag (main thread only; elsewhere a no-op)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum

    def __enter__(self) -> StopRequest:
        if self.enabled:
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
