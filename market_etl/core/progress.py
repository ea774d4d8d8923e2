"""Progress of a long byte stream (a download, an inflate) as a line every few seconds: bytes, MB/s, ETA.

Pure: the caller passes the total it was told (Content-Length, a zip member's declared size), a function
that emits a line (the stage's Pipes log) and, in tests, its own clock.
"""
from __future__ import annotations

import time
from typing import Callable

DEFAULT_EVERY_SECONDS = 5.0
MB = 1e6


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressReporter:
    """Counts bytes as they go by; emits at most one line per `every_seconds` (none for a stream that ends sooner)."""

    def __init__(self, what: str, total: int | None, emit: Callable[[str], object], *,
                 every_seconds: float = DEFAULT_EVERY_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.what = what
        self.total = total
        self.emit = emit
        self.every_seconds = every_seconds
        self.clock = clock
        self.done = 0
        self.started = self._last_emit = clock()

    def advance(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self._last_emit >= self.every_seconds:
            self._last_emit = now
            self.emit(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = (self.clock() if now is None else now) - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.what}: {self.done / MB:,.1f}"
        if self.total:
            text += f" of {self.total / MB:,.1f} MB ({100 * self.done / self.total:.0f}%)"
        else:
            text += " MB"
        text += f", {rate / MB:.1f} MB/s"
        if self.total and rate > 0:
            text += f", ETA {_duration(max(self.total - self.done, 0) / rate)}"
        return text
