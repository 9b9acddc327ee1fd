"""Asking the poller for a cycle now: requests are coalesced, reach a poller in another process
through the database, and the scheduler runs one cycle for them beside its subscription job."""

from __future__ import annotations

import threading

import pytest

from remote_guard.poll.scheduler import IntervalJob, run_scheduled
from remote_guard.poll.service import PollResult
from remote_guard.subscriptions import wake
from remote_guard.subscriptions.wake import PollWaker
from tests.subscriptions.conftest import LiveRun, wait_for

pytestmark = pytest.mark.e2e


def test_requests_are_coalesced(running: LiveRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wake, "MIN_GAP_SECONDS", 0.0)
    waker = PollWaker(running.poller.db, "tenant", running.clock)
    waker.due()  # the first look at the database only notes where things stand

    for reason in ("call record", "call record", "calendar"):
        waker.request(reason)

    assert [waker.due(), waker.due()] == [True, False]
    assert waker.requested == 3


def test_a_request_within_the_gap_waits_and_is_not_lost(
    running: LiveRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of call records makes one poll; one asked for just after it waits for the gap
    to pass, then brings the next."""
    monkeypatch.setattr(wake, "MIN_GAP_SECONDS", 0.3)
    waker = PollWaker(running.poller.db, "tenant", running.clock)
    waker.request("call record")
    assert waker.due() is True

    waker.request("another call record")
    assert waker.due() is False

    wait_for(waker.due, what="the waiting request to be granted after the gap", timeout=5)


def test_a_request_reaches_a_poller_in_another_process(
    running: LiveRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The web app's receiver asks (shared); the poller's waker hears it from the database,
    once."""
    monkeypatch.setattr(wake, "SHARED_CHECK_SECONDS", 0.0)
    poller_side = PollWaker(running.poller.db, "tenant", running.clock)
    web_side = PollWaker(running.poller.db, "tenant", running.clock)
    assert poller_side.due() is False

    running.clock.shift(seconds=1)
    web_side.request("call record", shared=True)

    assert [poller_side.due(), poller_side.due()] == [True, False]
    assert web_side.due() is True  # its own request, heard once, in process
    assert web_side.due() is False


def test_the_scheduler_polls_again_when_woken_and_runs_the_extra_job(running: LiveRun) -> None:
    """With an hour between polls, a wake-up asked for during the first cycle brings a second
    one straight after it; the subscription job runs meanwhile."""
    running.setup()
    waker = PollWaker(running.poller.db, "tenant", running.clock)
    synced = threading.Event()
    results: list[PollResult] = []

    def on_result(result: PollResult) -> None:
        results.append(result)
        if len(results) == 1:
            waker.request("a call record appeared")

    cycles = run_scheduled(
        running.poller,
        interval_seconds=3600,
        max_cycles=2,
        on_result=on_result,
        install_signal_handlers=False,
        wake=waker.due,
        jobs=[IntervalJob(id="test-sync", name="test sync", func=synced.set, seconds=0.2)],
    )

    assert cycles == 2
    assert len(results) == 2
    assert synced.is_set()
