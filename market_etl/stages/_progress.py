"""Progress lines in a stage's Pipes log while a long stream is written to the lake.

The download and unzip stages write their output through `Lake.writer(key, expected_size=...)`, and the
expected size is what they were told up front (Content-Length, the zip member's declared size). Wrapping
the lake there reports progress without the core streaming code knowing: every write counts its bytes
and a `ProgressReporter` emits a line every MARKET_ETL_PROGRESS_SECONDS (default 5).
"""
from __future__ import annotations

import os
from typing import Callable

from market_etl.core.progress import DEFAULT_EVERY_SECONDS, ProgressReporter
from market_etl.lake.base import Lake

PROGRESS_SECONDS_ENV = "MARKET_ETL_PROGRESS_SECONDS"


def progress_seconds(environ=os.environ) -> float:
    text = environ.get(PROGRESS_SECONDS_ENV, "")
    try:
        return float(text) if text else DEFAULT_EVERY_SECONDS
    except ValueError:
        raise SystemExit(f"{PROGRESS_SECONDS_ENV}={text!r}: expected seconds between progress lines, e.g. 5")


class _ReportingWriter:
    def __init__(self, inner, reporter: ProgressReporter):
        self._inner = inner
        self._reporter = reporter

    def write(self, data) -> None:
        self._inner.write(data)
        self._reporter.advance(len(data))

    def __enter__(self):
        self._inner.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        return self._inner.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class ReportingLake:
    """`lake`, whose writers report their progress as `<what>: x of y MB (p%), r MB/s, ETA t`."""

    def __init__(self, lake: Lake, what: str, emit: Callable[[str], object], every_seconds: float):
        self._lake = lake
        self._what = what
        self._emit = emit
        self._every_seconds = every_seconds

    def writer(self, key: str, expected_size: int | None = None):
        reporter = ProgressReporter(self._what, expected_size, self._emit, every_seconds=self._every_seconds)
        return _ReportingWriter(self._lake.writer(key, expected_size=expected_size), reporter)

    def __getattr__(self, name):
        return getattr(self._lake, name)
