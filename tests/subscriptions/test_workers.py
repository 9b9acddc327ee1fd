"""Change notifications with several poll workers (``poll --worker``): the web app receives,
the workers keep the subscriptions (one at a time, under a lease) and poll at once when the
receiver asks through the database."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from remote_guard.leases import work
from remote_guard.leases.work import run_worker
from remote_guard.poll.service import Poller, PollResult
from remote_guard.runtime import build_poller
from remote_guard.subscriptions.hub import Notifications
from remote_guard.subscriptions.models import SubscriptionRow, SubscriptionStatus
from tests.subscriptions.conftest import LiveRun, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.database]


def _worker_poller(run: LiveRun) -> Poller:
    """A worker's poller beside the receiving process: same tenant and database, the receiver
    in the web app, and an interval so long that only a wake-up brings a second cycle."""
    settings = run.poller.settings
    settings = settings.model_copy(
        update={
            "notifications": settings.notifications.model_copy(update={"receiver": "web"}),
            "poll": settings.poll.model_copy(
                update={"interval_seconds": 3600, "lease_seconds": 30}
            ),
        }
    )
    return build_poller(settings, clock=run.clock)


def _active(poller: Poller) -> int:
    with poller.db() as db:
        return int(
            db.scalar(
                select(func.count())
                .select_from(SubscriptionRow)
                .where(SubscriptionRow.status == SubscriptionStatus.ACTIVE.value)
            )
            or 0
        )


def test_a_worker_keeps_the_subscriptions_and_polls_when_the_receiver_asks(
    running: LiveRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's first cycle stores the sessions and subscribes to them at Graph; a poll-now
    request made by the receiving process (as for a new call record) brings its next cycle at
    once, an hour before its interval would."""
    monkeypatch.setattr(work, "WAKE_MIN_GAP", timedelta(0))
    poller = _worker_poller(running)
    hub = Notifications(poller)
    hub.attach()
    results: list[PollResult] = []
    stop = threading.Event()
    worker = threading.Thread(
        target=run_worker,
        kwargs={
            "poller": poller,
            "stop": stop,
            "install_signal_handlers": False,
            "wake": hub.waker.due,
            "jobs": hub.jobs(),
            "on_result": lambda _unit, result: results.append(result),
        },
    )
    worker.start()
    try:
        wait_for(lambda: results, what="the worker's first cycle")
        assert results[0].status == "ok", results[0].errors
        wait_for(lambda: _active(poller), what="subscriptions made by the worker")
        cycles = len(results)

        running.hub.waker.request("a call record arrived", shared=True)

        wait_for(lambda: len(results) > cycles, what="a cycle the receiver asked for")
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not worker.is_alive()
    assert {result.status for result in results} == {"ok"}


def test_a_job_runs_in_one_worker_at_a_time_when_due(running: LiveRun) -> None:
    """Two workers in turn: a job due hourly runs once between them; due at every pass, it runs
    in each."""
    poller = _worker_poller(running)
    calls: list[str] = []
    hourly = work.IntervalJob(
        id="hourly", name="hourly", func=lambda: calls.append("hourly"), seconds=3600
    )
    always = work.IntervalJob(
        id="always", name="always", func=lambda: calls.append("always"), seconds=0
    )
    failing = work.IntervalJob(id="failing", name="failing", func=lambda: 1 / 0, seconds=0)
    for holder in ("worker-a", "worker-b"):
        run_worker(
            poller,
            once=True,
            holder=holder,
            install_signal_handlers=False,
            jobs=[failing, hourly, always],
        )
    assert calls.count("hourly") == 1
    assert calls.count("always") >= 2


def test_a_worker_refuses_to_be_the_receiver(running: LiveRun) -> None:
    """``poll --worker`` with ``receiver = "poller"`` is a usage error that says what to set."""
    from remote_guard.cli import UsageError, _poll_as_worker

    with pytest.raises(UsageError, match='Set receiver = "web"'):
        _poll_as_worker(running.poller, once=True)
