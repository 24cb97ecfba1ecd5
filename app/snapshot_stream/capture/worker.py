"""A source's blocking calls (open, read, close), run one at a time in a daemon thread.

The capture loop hands each call to the worker and waits for it with a timeout, so a source
that hangs is detected, abandoned (and closed in the background if it ever wakes up) and can
never wedge the capture loop.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..sources import Source

log = logging.getLogger(__name__)


class Job:
    """One call handed to a worker; ``done`` is set once ``result`` or ``error`` is known."""

    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class SourceWorker:
    """Runs one source's blocking calls in a daemon thread, one at a time."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="source-worker", daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], Any]) -> Job:
        job = Job(fn)
        self._jobs.put(job)
        return job

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job.result = job.fn()
            except BaseException as exc:
                job.error = exc
            job.done.set()

    def retire(self, wait: float = 0.0) -> bool:
        """Close the source after the current call returns, then end the thread.

        A wedged call is abandoned: the close happens (in the background) if it ever returns.
        Returns True if the source was closed within ``wait`` seconds.
        """
        job = self.call(self._close)
        self._jobs.put(None)
        return job.done.wait(wait) if wait > 0 else False

    def _close(self) -> None:
        try:
            self.source.close()
        except Exception as exc:
            log.debug("closing %s: %s", describe(self.source), exc)


def describe(source: Source) -> str:
    """The source's own description; its class name if describe() fails."""
    try:
        return source.describe()
    except Exception:
        return type(source).__name__
