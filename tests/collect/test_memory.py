"""What a poller keeps between cycles: the directory and the lookups that go with it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from remote_guard.collect.lookups import InvitedGroup, Lookups
from remote_guard.collect.snapshot import ChannelRef, Person, PersonKind
from remote_guard.directory.service import Directory, DirectoryCache
from remote_guard.graph.client import GraphClient
from remote_guard.graph.errors import GraphError
from remote_guard.settings import Settings

TENANT = "7d9f3e2a-1b4c-4e8d-9a6f-5c2b1e0d4a37"
AT = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)


class CountingUsers:
    """A Graph that knows one user and fails for another; counts what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get(self, path: str, **_: Any) -> dict[str, Any]:
        self.asked.append(path)
        if path.endswith("/guest"):
            return {"id": "guest", "displayName": "A Parent", "userType": "Guest"}
        raise GraphError("unavailable", status=503, endpoint="/users/{id}", retryable=True)


def test_a_later_cycle_keeps_the_users_found_and_asks_again_for_those_that_failed() -> None:
    directory = Directory(tenant_id=TENANT)
    graph = CountingUsers()
    for person_id in ("guest", "flaky"):
        directory.resolve(cast(GraphClient, graph), Person(id=person_id, kind=PersonKind.UNKNOWN))
    assert set(directory.lookup_failures) == {"flaky"}

    later = directory.for_cycle()
    graph.asked.clear()
    guest = later.resolve(cast(GraphClient, graph), Person(id="guest", kind=PersonKind.UNKNOWN))
    later.resolve(cast(GraphClient, graph), Person(id="flaky", kind=PersonKind.UNKNOWN))
    assert guest.kind is PersonKind.GUEST
    assert graph.asked == ["/users/flaky"]
    assert later.people is directory.people


def test_the_directory_is_read_once_per_refresh_interval(monkeypatch: Any) -> None:
    loads: list[int] = []

    def load(graph: Any, settings: Any) -> Directory:
        loads.append(1)
        return Directory(tenant_id=TENANT)

    monkeypatch.setattr("remote_guard.directory.service.load_directory", load)
    cache = DirectoryCache(timedelta(minutes=60))
    graph, settings = cast(GraphClient, None), cast(Settings, None)
    first = cache.current(graph, settings, AT)
    second = cache.current(graph, settings, AT + timedelta(minutes=59))
    cache.current(graph, settings, AT + timedelta(minutes=60))
    cache.current(graph, settings, AT)  # the clock went back: read again
    assert len(loads) == 3
    assert second is not first
    assert second.people is first.people


def test_lookups_are_kept_until_the_directory_is_read_again() -> None:
    """Invited groups go with the directory they were classified by; the channel list is kept
    on its own terms (a day, see Collector._channel)."""
    lookups = Lookups()
    lookups.start(AT)
    lookups.channels = {"19:x@thread.tacv2": ChannelRef(thread_id="19:x@thread.tacv2")}
    lookups.groups = {"oak@school.example": InvitedGroup(id="g1", members=())}
    lookups.start(AT)
    assert lookups.groups
    lookups.start(AT + timedelta(hours=1))
    assert (lookups.groups, lookups.team_members) == ({}, {})
    assert lookups.channels is not None
