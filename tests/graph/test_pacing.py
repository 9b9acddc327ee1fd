"""Pacing: the client waits rather than go over one of Graph's published rate limits."""

from __future__ import annotations

import threading

import pytest

from remote_guard.graph.pacing import (
    CALL_RECORD_FIRST_PAGE,
    CALL_RECORD_LATER_PAGES,
    CALL_RECORDS,
    GLOBAL,
    MARGIN,
    TEAMS_CHANNELS,
    TEAMS_MESSAGES,
    TEAMS_ONE_TEAM,
    TEAMS_OTHER,
    Pacer,
    capacity,
    limits_for,
)


class FakeTime:
    """A clock that moves only when the pacer sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/users/u1/calendarView/delta", [(GLOBAL, "app")]),
        ("/chats/19:x@thread.v2/messages?$top=50", [(GLOBAL, "app"), (TEAMS_MESSAGES, "tenant")]),
        ("/chats/19:x@thread.v2/members", [(GLOBAL, "app"), (TEAMS_OTHER, "tenant")]),
        ("/users/u1/chats", [(GLOBAL, "app"), (TEAMS_OTHER, "tenant")]),
        (
            "/teams/T1/channels",
            [(GLOBAL, "app"), (TEAMS_ONE_TEAM, "t1"), (TEAMS_CHANNELS, "tenant")],
        ),
        (
            "/teams/T1/channels/C1/messages/9/replies",
            [(GLOBAL, "app"), (TEAMS_ONE_TEAM, "t1"), (TEAMS_MESSAGES, "tenant")],
        ),
        ("/communications/callRecords?$filter=x", [(GLOBAL, "app"), (CALL_RECORDS, "tenant")]),
        (
            "https://graph.microsoft.com/v1.0/communications/callRecords/R1/participants_v2",
            [(GLOBAL, "app"), (CALL_RECORDS, "tenant"), (CALL_RECORD_FIRST_PAGE, "r1")],
        ),
        (
            "/communications/callRecords/R1/participants_v2?$skiptoken=abc",
            [(GLOBAL, "app"), (CALL_RECORDS, "tenant"), (CALL_RECORD_LATER_PAGES, "r1")],
        ),
    ],
)
def test_each_request_counts_against_the_limits_microsoft_publishes_for_it(
    url: str, expected: list[object]
) -> None:
    assert limits_for("GET", url) == expected


def test_a_burst_up_to_a_limit_goes_at_once_and_the_next_waits_for_the_window() -> None:
    """Twenty chat reads go at once; the twenty-first waits until the first have left the
    (widened) one-second window."""
    time = FakeTime()
    pacer = Pacer(clock=time.clock, sleep=time.sleep)
    waited = pacer.wait([("GET", f"/chats/c{i}/messages") for i in range(20)])
    assert waited == 0.0
    assert pacer.wait([("GET", "/chats/c20/messages")]) == pytest.approx(1.0 * MARGIN)
    assert time.sleeps == [pytest.approx(1.0 * MARGIN)]


def test_requests_under_different_limits_do_not_wait_for_each_other() -> None:
    time = FakeTime()
    pacer = Pacer(clock=time.clock, sleep=time.sleep)
    pacer.wait([("GET", f"/chats/c{i}/messages") for i in range(20)])
    assert pacer.wait([("GET", f"/users/u{i}/calendarView/delta") for i in range(20)]) == 0.0
    assert time.sleeps == []


def test_one_team_is_read_at_most_four_times_a_window() -> None:
    """Five reads of one team's posts: four go, the fifth waits; another team's do not."""
    time = FakeTime()
    pacer = Pacer(clock=time.clock, sleep=time.sleep)
    team = [("GET", f"/teams/T1/channels/C1/messages/{i}/replies") for i in range(4)]
    assert pacer.wait(team) == 0.0
    assert pacer.wait([("GET", "/teams/T2/channels/C9/messages/1/replies")]) == 0.0
    assert pacer.wait([("GET", "/teams/T1/channels/C1/messages/5/replies")]) > 0.0


def test_capacity_is_the_tightest_limit_of_a_request() -> None:
    assert capacity("GET", "/teams/T1/channels/C1/messages/1/replies") == 4
    assert capacity("GET", "/users/u1/calendarView/delta") == 2000


def test_a_window_starts_when_the_answer_came_back() -> None:
    """Twenty chat reads that took a second and a half to answer (queued on the way): the next
    read waits a whole window from the answer, not from the sending, so it can never reach the
    service in the same second as them."""
    time = FakeTime()
    pacer = Pacer(clock=time.clock, sleep=time.sleep)
    slot = pacer.acquire([("GET", f"/chats/c{i}/messages") for i in range(20)])
    time.now += 1.5
    pacer.release(slot)
    assert pacer.wait([("GET", "/chats/c20/messages")]) == pytest.approx(1.0 * MARGIN)
    assert time.now == pytest.approx(100 + 1.5 + 1.0 * MARGIN)


def test_a_request_on_its_way_holds_its_place() -> None:
    """While twenty chat reads are unanswered, the limit is full: another thread's read waits
    for them, and goes once they are answered and their window has passed."""
    pacer = Pacer()
    slot = pacer.acquire([("GET", f"/chats/c{i}/messages") for i in range(20)])
    done = threading.Event()

    def other() -> None:
        pacer.wait([("GET", "/chats/c20/messages")])
        done.set()

    worker = threading.Thread(target=other)
    worker.start()
    assert not done.wait(0.2)
    pacer.release(slot)
    worker.join(timeout=5)
    assert done.is_set()
