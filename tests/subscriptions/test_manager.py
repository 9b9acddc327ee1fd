"""The subscription manager against the fake tenant, with a clock the test moves: what it
subscribes to, renewal before expiry, recreation when Graph no longer has a subscription,
deletion after the meeting, failures kept and retried, and two managers sharing a database."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from remote_guard.audit.models import AuditEntryRow
from remote_guard.fakegraph.harness import import_registers, settings_for
from remote_guard.fakegraph.live import LiveTenant, notification_settings, receiver_for
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.fakegraph.tls import write_tls_files
from remote_guard.poll.service import Poller, run_poll
from remote_guard.runtime import build_poller
from remote_guard.subscriptions.hub import Notifications, ReceiverServer
from remote_guard.subscriptions.manager import (
    LIFETIMES,
    SubscriptionManager,
    beta_base,
    channel_post_id,
    roster_resource,
)
from remote_guard.subscriptions.models import SubscriptionKind, SubscriptionRow
from tests.subscriptions.conftest import school

pytestmark = pytest.mark.e2e

START = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)


class ManualClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Managed:
    server: FakeTenantServer
    live: LiveTenant
    poller: Poller
    hub: Notifications
    receiver: ReceiverServer
    clock: ManualClock

    @property
    def manager(self) -> SubscriptionManager:
        return self.hub.manager

    def rows(self) -> dict[str, SubscriptionRow]:
        with self.poller.db() as db:
            return {row.kind: row for row in db.scalars(select(SubscriptionRow))}

    def by_kind(self) -> dict[str, list[SubscriptionRow]]:
        found: dict[str, list[SubscriptionRow]] = {}
        with self.poller.db() as db:
            for row in db.scalars(select(SubscriptionRow).order_by(SubscriptionRow.id)):
                found.setdefault(row.kind, []).append(row)
        return found

    def audit(self, action: str) -> list[AuditEntryRow]:
        with self.poller.db() as db:
            return list(db.scalars(select(AuditEntryRow).where(AuditEntryRow.action == action)))


@pytest.fixture
def managed(tmp_path: Path, database_url: str) -> Iterator[Managed]:
    scenario = school()
    clock = ManualClock()
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        live = LiveTenant(server)
        receiver = receiver_for(live)
        settings = settings_for(server, scenario, database_url=database_url, clock=clock)
        settings = settings.model_copy(update={"notifications": notification_settings(receiver)})
        poller = build_poller(settings, clock=clock)
        import_registers(poller, scenario, server, clock=clock)
        hub = Notifications(poller)
        receiver.start(hub.app())
        assert run_poll(poller).status == "ok"
        try:
            yield Managed(server, live, poller, hub, receiver, clock)
        finally:
            receiver.stop()
            live.close()


def test_sync_subscribes_to_call_records_live_chats_and_rosters(managed: Managed) -> None:
    """Call records for the tenant; the lesson's chat (the group's chat is off: no
    subscription); each meeting's call events on beta. Each asked for its lifetime, after
    Graph checked both endpoints."""
    result = managed.manager.sync()

    assert result.errors == []
    kinds = managed.by_kind()
    assert sorted(kinds) == ["call_records", "meeting_chat", "roster"]
    chat = kinds["meeting_chat"][0]
    assert chat.resource == f"/chats/{managed.server.state.meetings['lesson'].thread_id}/messages"
    rosters = {row.target for row in kinds["roster"]}
    assert rosters == {managed.server.join_url("lesson"), managed.server.join_url("group")}
    assert all(row.api == "beta" for row in kinds["roster"])
    for rows in kinds.values():
        for row in rows:
            assert row.status == "active"
            assert row.expires_at == START + LIFETIMES[SubscriptionKind(row.kind)]
    fake = {s.id: s for s in managed.live.subscriptions()}
    assert set(fake) == {row.graph_id for rows in kinds.values() for row in rows}
    assert all(s.lifecycle_url and s.lifecycle_url.endswith("/lifecycle") for s in fake.values())
    assert {v.ok for v in managed.live.notifier.validations} == {True}
    assert len(managed.live.notifier.validations) == 2 * len(fake)


def test_a_subscription_is_renewed_before_it_expires(managed: Managed) -> None:
    """45 minutes on, the chat subscription (55 minutes) is renewed; call records (70 hours)
    are not yet."""
    managed.manager.sync()
    before = managed.rows()
    managed.clock.advance(minutes=45)

    result = managed.manager.sync()

    after = managed.rows()
    assert result.counts["renewed"] == 1
    chat = after["meeting_chat"]
    assert chat.graph_id == before["meeting_chat"].graph_id
    assert chat.renewed_at == managed.clock.now
    assert chat.expires_at == managed.clock.now + LIFETIMES[SubscriptionKind.MEETING_CHAT]
    fake = {s.id: s for s in managed.live.subscriptions()}
    assert fake[chat.graph_id or ""].expires == chat.expires_at
    assert after["call_records"].renewed_at is None


def test_a_subscription_graph_no_longer_has_is_recreated(managed: Managed) -> None:
    """Graph dropped the chat subscription: the renewal answers 404 and a new one is made."""
    managed.manager.sync()
    gone = managed.rows()["meeting_chat"].graph_id
    with managed.server.state.lock:
        del managed.live.notifier.subscriptions[gone or ""]
    managed.clock.advance(minutes=45)

    managed.manager.sync()

    chat = managed.rows()["meeting_chat"]
    assert chat.status == "active"
    assert chat.graph_id not in (None, gone)
    assert [s.id for s in managed.live.subscriptions("/chats/")] == [chat.graph_id]
    replaced = [
        payload["before"]["graph_id"]
        for entry in managed.audit("subscription.created")
        if (payload := json.loads(entry.payload or "{}"))["before"]
    ]
    assert replaced == [gone]  # the recreation names the subscription it replaces


def test_meeting_subscriptions_are_deleted_after_the_meeting(managed: Managed) -> None:
    """Once both meetings are over (plus the linger), their chat and roster subscriptions are
    deleted at Graph (the chat's had expired there already: 404 is fine); call records stay."""
    managed.manager.sync()
    managed.clock.advance(minutes=40 + 30 + 1)

    managed.manager.sync()

    kinds = managed.by_kind()
    assert {row.status for row in kinds["meeting_chat"] + kinds["roster"]} == {"deleted"}
    assert kinds["call_records"][0].status == "active"
    assert [s.resource for s in managed.live.subscriptions()] == ["/communications/callRecords"]
    deletes = sorted(
        (r.path.split("/subscriptions")[0], r.status)
        for r in managed.server.requests
        if r.method == "DELETE" and r.status != 401  # 401: the token expired meanwhile
    )
    assert deletes == [("/beta", 204), ("/beta", 204), ("/v1.0", 404)]


def test_a_failed_creation_is_kept_retried_and_audited_once(
    managed: Managed, tmp_path: Path
) -> None:
    """While Graph cannot validate the endpoint (here: it does not trust its certificate),
    creation fails with the reason kept on the row and audited once; it succeeds once the
    endpoint validates."""
    stranger = write_tls_files(tmp_path / "other-ca")
    managed.live.notifier.trust(stranger.ca_path)

    first = managed.manager.sync()
    managed.clock.advance(seconds=30)
    managed.manager.sync()

    assert first.counts["create_failed"] == 4
    rows = [row for rows in managed.by_kind().values() for row in rows]
    assert {row.status for row in rows} == {"pending"}
    assert all("validation" in (row.last_error or "").lower() for row in rows)
    assert len(managed.audit("subscription.create_failed")) == 4
    assert managed.live.subscriptions() == []

    managed.live.notifier.trust(managed.server.ca_path)
    managed.clock.advance(seconds=30)
    managed.manager.sync()

    assert {row.status for rows in managed.by_kind().values() for row in rows} == {"active"}
    assert all(row.last_error is None for rows in managed.by_kind().values() for row in rows)


def test_reauthorization_renews(managed: Managed) -> None:
    """A reauthorizationRequired lifecycle event renews the subscription (which reauthorizes
    it), and Graph resumes delivering."""
    managed.manager.sync()
    chat = managed.rows()["meeting_chat"]
    fake = managed.live.notifier.subscriptions[chat.graph_id or ""]
    fake.needs_reauthorization = True
    managed.clock.advance(minutes=5)

    done = managed.manager.lifecycle(chat.graph_id or "", "reauthorizationRequired")

    assert done == "renewed"
    assert fake.needs_reauthorization is False
    assert (
        managed.rows()["meeting_chat"].expires_at
        == managed.clock.now + LIFETIMES[SubscriptionKind.MEETING_CHAT]
    )


def test_two_managers_sharing_a_database_make_each_subscription_once(managed: Managed) -> None:
    """A second process's manager syncing at the same moment claims rows first or leaves them:
    Graph gets one subscription per resource."""
    other = SubscriptionManager(
        settings=managed.poller.settings,
        graph=managed.poller.graph,
        db=managed.poller.db,
        clock=managed.clock,
        directory=managed.hub.directory,
    )
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda m=m: results.append(m.sync()))
        for m in (managed.manager, other)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    managed.manager.sync()  # whatever the race left pending

    resources = sorted(s.resource for s in managed.live.subscriptions())
    assert len(resources) == len(set(resources)) == 4
    assert {row.status for rows in managed.by_kind().values() for row in rows} == {"active"}


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://graph.microsoft.com/v1.0", "https://graph.microsoft.com/beta"),
        ("https://127.0.0.1:8443/v1.0", "https://127.0.0.1:8443/beta"),
        ("https://graph.microsoft.us/v2", None),
    ],
)
def test_beta_base_sits_beside_v1(base: str, expected: str | None) -> None:
    assert beta_base(base) == expected


def test_roster_resource_quotes_the_join_url() -> None:
    url = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_a%40thread.v2/0?context=x'y"
    assert roster_resource(url) == (
        "/communications/onlineMeetings/?$filter=JoinWebUrl eq "
        "'https://teams.microsoft.com/l/meetup-join/19%3ameeting_a%40thread.v2/0?context=x''y'"
    )


@pytest.mark.parametrize(
    ("url", "post"),
    [
        ("https://teams.microsoft.com/l/meetup-join/19%3aabc%40thread.tacv2/1700000000000?context=x", "1700000000000"),
        ("https://teams.microsoft.com/l/meetup-join/19%3ameeting_a%40thread.v2/0?context=x", None),
        (None, None),
    ],
)  # fmt: skip
def test_channel_post_id_is_read_from_the_join_url(url: str | None, post: str | None) -> None:
    assert channel_post_id(url) == post
