"""The background worker: what the receiver accepted is handled here, one item at a time.

The receiver only queues (it must answer Graph at once); this thread does the reading, storing
and judging, in arrival order. A handler that fails is logged and the next item is taken: a
bad or hostile notification can never stop the worker. When there is nothing to do it runs
``idle`` every few seconds (live alerts: mail the ones due, re-judge open ones).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable

import structlog

from remote_guard.subscriptions.receiver import Received

log = structlog.get_logger(__name__)

MAX_QUEUE = 10_000
IDLE_SECONDS = 5.0


class NotificationWorker:
    """One daemon thread draining a bounded queue of received notifications."""

    def __init__(
        self,
        handle: Callable[[Received], object],
        *,
        idle: Callable[[], None] | None = None,
        idle_seconds: float = IDLE_SECONDS,
        max_queue: int = MAX_QUEUE,
    ) -> None:
        self._handle = handle
        self._idle = idle
        self._idle_seconds = idle_seconds
        self._queue: queue.Queue[Received | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._busy = threading.Event()
        self.handled = 0

    def offer(self, received: Received) -> bool:
        """Queue one item; False when the queue is full (the receiver answers 503)."""
        try:
            self._queue.put_nowait(received)
        except queue.Full:
            return False
        return True

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="notifications", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the item in hand, then stop (what is still queued is dropped: Graph's
        notifications that were not handled are caught by the next poll)."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout=timeout)
        self._thread = None

    def idle(self) -> bool:
        """Whether nothing is queued or being handled (for tests that wait)."""
        return self._queue.empty() and not self._busy.is_set()

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._idle_seconds)
            except queue.Empty:
                self._run_idle()
                continue
            if item is None:
                return
            self._busy.set()
            try:
                self._handle(item)
            except Exception:
                log.exception("notifications.worker_item_failed")
            finally:
                self.handled += 1
                self._busy.clear()
            if self._queue.empty():
                self._run_idle()

    def _run_idle(self) -> None:
        if self._idle is None:
            return
        try:
            self._idle()
        except Exception:
            log.exception("notifications.worker_idle_failed")
