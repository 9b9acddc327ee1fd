"""The poller as a named, scheduled job that stops cleanly on SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from remote_guard.poll.service import Poller, PollResult, run_poll

log = structlog.get_logger(__name__)


def job_id(tenant_id: str) -> str:
    return f"poll:{tenant_id}"


def purge_job_id(tenant_id: str) -> str:
    return f"purge:{tenant_id}"


@dataclass(frozen=True)
class IntervalJob:
    """Another named job run beside the poll (e.g. keeping change-notification subscriptions);
    it must not raise (an exception is logged by the scheduler and the job runs again)."""

    id: str
    name: str
    func: Callable[[], object]
    seconds: float


# The daily retention purge runs in the quiet of the night, school local time.
PURGE_HOUR, PURGE_MINUTE = 2, 30


def daily_purge(poller: Poller) -> None:
    """Remove what retention says is due (the purge logs and audits what it removed); an error
    is logged and never stops the poller."""
    from remote_guard.privacy.retention import purge

    try:
        purge(poller.db, poller.settings.retention, now=poller.clock())
    except Exception:
        log.exception("purge.failed")


def run_scheduled(
    poller: Poller,
    *,
    interval_seconds: float,
    stop: threading.Event | None = None,
    max_cycles: int | None = None,
    on_result: Callable[[PollResult], None] | None = None,
    install_signal_handlers: bool = True,
    wake: Callable[[], bool] | None = None,
    jobs: Sequence[IntervalJob] = (),
) -> int:
    """Poll every ``interval_seconds`` until stopped; return the number of cycles run.

    The job has an explicit id, ``max_instances=1`` (a slow cycle is never overlapped by the next)
    and ``coalesce=True`` (missed runs collapse into one). SIGTERM and SIGINT let the running
    cycle finish its current session, then stop. ``wake`` is asked twice a second, between
    cycles, whether to poll now (a change notification said something happened); requests
    made during a cycle bring one more cycle after it. ``jobs`` run beside the poll, each with
    its own id, one instance at a time.
    """
    stop = stop or threading.Event()
    cycles = 0
    lock = threading.Lock()
    running = threading.Event()

    def cycle() -> None:
        nonlocal cycles
        if stop.is_set():
            return
        running.set()
        result: PollResult | None = None
        try:
            result = run_poll(poller)
            if on_result is not None:
                on_result(result)
        except Exception:
            log.exception("poller.cycle_failed")
        finally:
            running.clear()
            with lock:
                cycles += 1
                reached = max_cycles is not None and cycles >= max_cycles
            if reached:
                stop.set()

    previous: dict[signal.Signals, Any] = {}
    if install_signal_handlers and threading.current_thread() is threading.main_thread():

        def handle(signum: int, _frame: FrameType | None) -> None:
            log.info("poller.stopping", signal=signal.Signals(signum).name)
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handle)

    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        cycle,
        "interval",
        seconds=interval_seconds,
        id=job_id(poller.settings.tenant.tenant_id),
        name=f"poll tenant {poller.settings.tenant.tenant_id}",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
        misfire_grace_time=None,
    )
    scheduler.add_job(
        daily_purge,
        "cron",
        args=(poller,),
        hour=PURGE_HOUR,
        minute=PURGE_MINUTE,
        timezone=poller.settings.school_day.timezone,
        id=purge_job_id(poller.settings.tenant.tenant_id),
        name="retention purge",
        max_instances=1,
        coalesce=True,
    )
    for job in jobs:
        scheduler.add_job(
            job.func,
            "interval",
            seconds=job.seconds,
            id=job.id,
            name=job.name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
    scheduler.start()
    log.info("poller.started", interval_seconds=interval_seconds)
    try:
        while not stop.wait(0.5):
            if wake is not None and not running.is_set() and wake():
                scheduler.modify_job(
                    job_id(poller.settings.tenant.tenant_id), next_run_time=datetime.now(UTC)
                )
    finally:
        scheduler.shutdown(wait=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        log.info("poller.stopped", cycles=cycles)
    return cycles
