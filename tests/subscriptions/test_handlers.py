"""The handlers on their own: notifications that must change nothing (forged, another tenant's,
an old subscription's, hostile resources and payloads), each recorded in the audit trail with
what came of it and never its secret; a failing handler does not stop the worker."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from remote_guard.audit.models import AuditEntryRow
from remote_guard.findings.models import FindingRow
from remote_guard.subscriptions.models import (
    LiveChatMessageRow,
    LiveParticipantRow,
    SubscriptionKind,
    SubscriptionRow,
)
from remote_guard.subscriptions.receiver import Received
from remote_guard.subscriptions.worker import NotificationWorker
from tests.subscriptions.conftest import LiveRun, wait_for

pytestmark = pytest.mark.e2e


def _row(run: LiveRun, kind: SubscriptionKind, target_contains: str = "") -> SubscriptionRow:
    with run.poller.db() as db:
        rows = db.scalars(select(SubscriptionRow).where(SubscriptionRow.kind == kind.value)).all()
    return next(row for row in rows if target_contains in row.target)


def _item(run: LiveRun, row: SubscriptionRow, **changes: Any) -> dict[str, Any]:
    secret = run.poller.settings.notifications.client_state
    assert secret is not None
    item = {
        "subscriptionId": row.graph_id,
        "subscriptionExpirationDateTime": "2026-11-18T11:00:00.0000000Z",
        "changeType": "created",
        "resource": "",
        "resourceData": {},
        "clientState": secret.get_secret_value(),
        "tenantId": run.poller.settings.tenant.tenant_id,
    }
    item.update(changes)
    return item


def _received(item: dict[str, Any], *, trusted: bool = True) -> Received:
    kind = "lifecycle" if "lifecycleEvent" in item else "change"
    return Received(kind=kind, item=item, received_at=datetime.now(UTC), trusted=trusted)


def _graph_reads(run: LiveRun) -> int:
    return len([r for r in run.server.requests if r.method == "GET" and "/messages" in r.path])


def _counts(run: LiveRun) -> tuple[int, int, int]:
    with run.poller.db() as db:
        return (
            int(db.scalar(select(func.count()).select_from(LiveChatMessageRow)) or 0),
            int(db.scalar(select(func.count()).select_from(LiveParticipantRow)) or 0),
            int(
                db.scalar(
                    select(func.count())
                    .select_from(FindingRow)
                    .where(FindingRow.rule_id == "pupil_meeting_chat", FindingRow.status == "warn")
                )
                or 0
            ),
        )


def test_forged_notification_is_recorded_without_its_secret_and_changes_nothing(
    running: LiveRun,
) -> None:
    running.setup()
    chat = _row(running, SubscriptionKind.MEETING_CHAT)
    thread = chat.target
    item = _item(
        running,
        chat,
        clientState="a forged guess",
        resource=f"chats('{thread}')/messages('1763460000000')",
    )

    outcome = running.hub.handlers.handle(_received(item, trusted=False))

    assert outcome.text == "ignored: the clientState does not match"
    assert _counts(running) == (0, 0, 0)
    with running.poller.db() as db:
        entry = db.scalars(
            select(AuditEntryRow).where(AuditEntryRow.action == "notification.received")
        ).one()
    detail = json.loads(entry.payload or "{}")["detail"]
    assert detail["client_state_matched"] is False
    assert "a forged guess" not in (entry.payload or "")
    secret = running.poller.settings.notifications.client_state
    assert secret is not None
    assert secret.get_secret_value() not in (entry.payload or "")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"tenantId": "11111111-2222-3333-4444-555555555555"}, "ignored: another tenant"),
        ({"subscriptionId": "no-such-subscription"}, "ignored: not a current subscription of ours"),
        ({"changeType": "deleted"}, "ignored: a message was deleted"),
        ({"resource": None}, "ignored: no changeType or resource"),
        ({"resource": "chats('19:other@thread.v2')/messages('1')"}, "ignored: a message of another chat"),
        ({"resource": "users('x')/messages('1')"}, "ignored: the resource is not a chat message"),
        ({"resource": "chats('{thread}')/messages('1 or 1=1')"}, "ignored: the resource names an id"),
        ({"resource": "chats('{thread}')/messages('..%2f..%2fusers')"}, "ignored: the resource names an id"),
        ({"resource": "chats('{thread}')/messages('999')"}, "ignored: the message is no longer there"),
    ],
)  # fmt: skip
def test_chat_notifications_that_must_change_nothing(
    running: LiveRun, changes: dict[str, Any], expected: str
) -> None:
    running.setup()
    chat = _row(running, SubscriptionKind.MEETING_CHAT)
    if isinstance(changes.get("resource"), str):
        changes["resource"] = changes["resource"].replace("{thread}", chat.target)
    item = _item(running, chat, resource=f"chats('{chat.target}')/messages('1')", **{})
    item.update(changes)
    reads = _graph_reads(running)

    outcome = running.hub.handlers.handle(_received(item))

    assert outcome.text.startswith(expected)
    assert _counts(running) == (0, 0, 0)
    if "no longer there" not in expected:
        assert _graph_reads(running) == reads  # nothing was asked of Graph


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"eventType": 5},
        {"eventType": "Microsoft.Communication.Unheard"},
        {"eventType": "Microsoft.Communication.CallRosterUpdate", "activeParticipants@joined": "x"},
        {
            "eventType": "Microsoft.Communication.CallRosterUpdate",
            "activeParticipants@joined": [None, 3, {"id": 7}, {"id": "x" * 500}, {"identity": {}}],
            "activeParticipants@exited": [{"id": "never-joined"}],
        },
        {"eventType": "Microsoft.Communication.CallStarted", "eventDateTime": "2126-01-01T00:00Z"},
    ],
)
def test_hostile_roster_payloads_are_ignored(running: LiveRun, data: dict[str, Any]) -> None:
    """Junk types, unknown events, participants without ids, and an event far from the
    meeting: logged and ignored; no one enters the live roster."""
    running.setup()
    roster = _row(running, SubscriptionKind.ROSTER, "meeting_")
    item = _item(running, roster, changeType="updated", resource="x", resourceData=data)

    outcome = running.hub.handlers.handle(_received(item))

    assert outcome.text.startswith(("ignored", "roster: 0 joined")), outcome.text
    with running.poller.db() as db:
        joined = db.scalars(
            select(LiveParticipantRow).where(LiveParticipantRow.left_at.is_(None))
        ).all()
    assert joined == []


def test_roster_identities_in_pascal_case_are_resolved_as_the_collector_names_people(
    running: LiveRun,
) -> None:
    """The documented payload writes ``User``/``DisplayName``; a pupil is found in the
    directory, a guest identity becomes an anonymous joiner."""
    running.setup()
    roster = _row(running, SubscriptionKind.ROSTER, running.server.join_url("lesson") or "")
    pupil = running.server.state.identities["p1"]
    data = {
        "eventType": "Microsoft.Communication.CallRosterUpdate",
        "eventDateTime": running.clock().isoformat(),
        "activeParticipants@joined": [
            {"Id": "part-1", "Identity": {"User": {"Id": pupil.id, "DisplayName": "x", "TenantId": pupil.tenant_id}}},
            {"id": "part-2", "identity": {"Guest": {"Id": "g-1", "DisplayName": "Someone"}}},
        ],
    }  # fmt: skip
    item = _item(running, roster, changeType="updated", resource="x", resourceData=data)

    outcome = running.hub.handlers.handle(_received(item))

    assert outcome.text.startswith("roster: 2 joined")
    with running.poller.db() as db:
        stays = {s.participant_id: s for s in db.scalars(select(LiveParticipantRow))}
    assert (stays["part-1"].person_id, stays["part-1"].kind) == (pupil.id, "pupil")
    assert stays["part-1"].display_name == "Pupil 1"  # the directory's name, not the payload's
    assert (stays["part-2"].person_id, stays["part-2"].kind) == ("anon:g-1", "anonymous")
    # Not followed since its CallStarted: the roster is partial and never used as presence.
    assert {s.complete_call for s in stays.values()} == {False}


def test_a_failing_handler_is_recorded_and_the_worker_goes_on(running: LiveRun) -> None:
    """A handler that raises is recorded as failed; the worker takes the next item."""
    running.setup()
    chat = _row(running, SubscriptionKind.MEETING_CHAT)
    seen: list[str] = []

    def handle(received: Received) -> None:
        if received.item.get("resource") == "boom":
            raise RuntimeError("boom")
        seen.append(str(received.item.get("resource")))

    worker = NotificationWorker(handle, idle_seconds=0.05)
    worker.start()
    try:
        worker.offer(_received(_item(running, chat, resource="boom")))
        worker.offer(_received(_item(running, chat, resource="after")))
        wait_for(lambda: seen, what="the item after the failing one")
    finally:
        worker.stop()
    assert seen == ["after"]
    assert worker.handled == 2

    outcome = running.hub.handlers.handle(
        _received(_item(running, chat, resource=f"chats('{chat.target}')/messages('12')"))
    )
    assert not outcome.text.startswith("failed")
