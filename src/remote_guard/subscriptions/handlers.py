"""What each notification leads to, done promptly by the worker.

- A message in a meeting's chat (or a channel meeting's conversation): the one message is read
  (a GET of one resource, not polling). If a pupil wrote it, it is kept and the session it
  belongs to is evaluated again at once, so the pupil-chat finding is stored within seconds.
- A call record: the poller is asked for a cycle now (it collects the call and its session).
- A calendar change: the poller is asked for a cycle now.
- A meeting's call events (beta, opt-in): the live roster is kept (people resolved through the
  directory; guests, other tenants and anonymous joiners noted as such), the session is
  evaluated again with it, and a live one-to-one is alerted to SLT (``alerts``).
- Lifecycle: ``reauthorizationRequired`` renews, ``subscriptionRemoved`` recreates, ``missed``
  catches up on the resource once (the chat is read; a poll is asked for; a roster that missed
  events is no longer trusted).

Nothing a notification says is believed beyond what it is: the subscription must be ours, the
tenant ours, the message is read back from Graph, and a body of the wrong shape is logged and
ignored. Every notification is recorded in the audit trail with what came of it (never the
clientState).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select

from remote_guard import audit
from remote_guard.clock import Clock
from remote_guard.collect.collector import OCCURRENCE_SLACK
from remote_guard.collect.models import SessionRow
from remote_guard.collect.snapshot import Person, PersonKind
from remote_guard.graph.client import PREFER_UNKNOWN_ENUMS
from remote_guard.graph.errors import GraphError, GraphNotFoundError
from remote_guard.graph.models import ChatMessage, PayloadError, parse
from remote_guard.poll.service import Poller
from remote_guard.store.db import transaction
from remote_guard.subscriptions.alerts import LiveAlerts
from remote_guard.subscriptions.directory import LiveDirectory
from remote_guard.subscriptions.live import Exited, Joined, LiveState
from remote_guard.subscriptions.manager import (
    SubscriptionManager,
    channel_post_id,
    parse_graph_time,
)
from remote_guard.subscriptions.models import LiveMeetingRow, SubscriptionKind, SubscriptionRow
from remote_guard.subscriptions.receiver import Received
from remote_guard.subscriptions.wake import PollWaker

log = structlog.get_logger(__name__)

PREFER = {"Prefer": PREFER_UNKNOWN_ENUMS}
_CHAT_MESSAGE = re.compile(
    r"^/?chats\('([^'/]+)'\)/messages\('([^'/]+)'\)$|^/?chats/([^/]+)/messages/([^/]+)$",
    re.IGNORECASE,
)
_CHANNEL_REPLY = re.compile(
    r"^/?teams\('([^'/]+)'\)/channels\('([^'/]+)'\)/messages\('([^'/]+)'\)/replies\('([^'/]+)'\)$",
    re.IGNORECASE,
)
_SAFE_ID = re.compile(r"^[\w:@.\-=]{1,200}$")
# A roster event naming more people than this is not one Teams would send.
MAX_PARTICIPANTS = 1000
# At most this many audit entries an hour for notifications whose clientState did not match
# (a flood of forged posts must not flood the trail; the rest are only logged and counted).
UNTRUSTED_AUDITS_PER_HOUR = 100


@dataclass(frozen=True)
class Outcome:
    """What came of one notification, for the audit trail."""

    text: str
    session_id: str | None = None


class Handlers:
    """Turns received notifications into live data, re-evaluations, poll requests, alerts."""

    def __init__(
        self,
        *,
        poller: Poller,
        manager: SubscriptionManager,
        live: LiveState,
        alerts: LiveAlerts,
        waker: PollWaker,
        directory: LiveDirectory,
        clock: Clock,
    ) -> None:
        self._poller = poller
        self._manager = manager
        self._live = live
        self._alerts = alerts
        self._waker = waker
        self._directory = directory
        self._clock = clock
        self._untrusted_audits: list[float] = []

    # --- entry point ----------------------------------------------------------------------------

    def handle(self, received: Received) -> Outcome:
        """Act on one notification and record it. Never raises (a failure is the outcome)."""
        try:
            outcome = self._dispatch(received)
        except Exception as exc:
            log.exception("notifications.handler_failed", kind=received.kind)
            outcome = Outcome(f"failed: {type(exc).__name__}")
        try:
            self._record(received, outcome)
        except Exception:
            log.exception("notifications.audit_failed")
        return outcome

    def _record(self, received: Received, outcome: Outcome) -> None:
        item = received.item
        if not received.trusted:
            now = time.monotonic()
            self._untrusted_audits = [t for t in self._untrusted_audits if now - t < 3600]
            if len(self._untrusted_audits) >= UNTRUSTED_AUDITS_PER_HOUR:
                return
            self._untrusted_audits.append(now)
        graph_id = _clip(item.get("subscriptionId"), 64) or "?"
        with transaction(self._poller.db) as db:
            if received.trusted:
                row = db.scalars(
                    select(SubscriptionRow).where(SubscriptionRow.graph_id == graph_id)
                ).first()
                if row is not None:
                    row.last_notification_at = received.received_at
            audit.record(
                db,
                "notification.received",
                object_type="subscription",
                object_id=graph_id,
                detail={
                    "kind": received.kind,
                    "change_type": _clip(item.get("changeType"), 40),
                    "lifecycle_event": _clip(item.get("lifecycleEvent"), 40),
                    "resource": _clip(item.get("resource"), 300),
                    "client_state_matched": received.trusted,
                    "received_at": received.received_at,
                    "outcome": outcome.text[:300],
                    "session_id": outcome.session_id,
                },
                at=self._clock(),
            )

    def _dispatch(self, received: Received) -> Outcome:
        item = received.item
        if not received.trusted:
            return Outcome("ignored: the clientState does not match")
        tenant = item.get("tenantId")
        ours = self._poller.settings.tenant.tenant_id
        if isinstance(tenant, str) and tenant.lower() != ours.lower():
            return Outcome("ignored: another tenant")
        graph_id = item.get("subscriptionId")
        row = self._manager.find(graph_id) if isinstance(graph_id, str) else None
        if row is None:
            return Outcome("ignored: not a current subscription of ours")
        if received.kind == "lifecycle":
            return self._lifecycle(row, str(item.get("lifecycleEvent")))
        kind = SubscriptionKind(row.kind)
        change = item.get("changeType")
        resource = item.get("resource")
        if not isinstance(change, str) or not isinstance(resource, str):
            return Outcome("ignored: no changeType or resource")
        if kind in (SubscriptionKind.MEETING_CHAT, SubscriptionKind.CHANNEL_CHAT):
            return self._message(row, kind, change, resource)
        if kind is SubscriptionKind.CALL_RECORDS:
            self._waker.request(f"call record ({change})", shared=True)
            return Outcome("poll requested: a call record appeared")
        if kind is SubscriptionKind.CALENDAR:
            self._waker.request(f"calendar ({change})", shared=True)
            return Outcome("poll requested: a staff calendar changed")
        if kind is SubscriptionKind.ROSTER:
            data = item.get("resourceData")
            if not isinstance(data, dict):
                return Outcome("ignored: no resourceData")
            return self._roster(row, data)
        return Outcome("ignored: unknown subscription kind")

    # --- messages -------------------------------------------------------------------------------

    def _message(
        self, row: SubscriptionRow, kind: SubscriptionKind, change: str, resource: str
    ) -> Outcome:
        if change == "deleted":
            return Outcome("ignored: a message was deleted (the chat is read after the meeting)")
        post: str | None = None
        if kind is SubscriptionKind.MEETING_CHAT:
            match = _CHAT_MESSAGE.match(resource.strip())
            if match is None:
                return Outcome("ignored: the resource is not a chat message")
            thread = match.group(1) or match.group(3)
            message_id = match.group(2) or match.group(4)
            if thread != row.target:
                return Outcome("ignored: a message of another chat")
            path = f"/chats/{thread}/messages/{message_id}"
        else:
            match = _CHANNEL_REPLY.match(resource.strip())
            if match is None:
                return Outcome("ignored: not a reply to a post (a meeting's conversation)")
            team, channel, post, message_id = match.groups()
            if f"{team}/{channel}" != row.target:
                return Outcome("ignored: a message of another channel")
            path = f"/teams/{team}/channels/{channel}/messages/{post}/replies/{message_id}"
        if not all(_SAFE_ID.match(part) for part in path.strip("/").split("/")):
            return Outcome("ignored: the resource names an id of an unexpected shape")
        try:
            body = self._poller.graph.get(path, headers=PREFER)
            message = parse(ChatMessage, body, what="chat message")
        except GraphNotFoundError:
            return Outcome("ignored: the message is no longer there")
        except PayloadError:
            return Outcome("ignored: Graph's message could not be read")
        return self._take_message(row, message, post=post)

    def _take_message(
        self, row: SubscriptionRow, message: ChatMessage, *, post: str | None
    ) -> Outcome:
        if message.is_system or message.from_ is None or message.from_.primary() is None:
            return Outcome("not a person's message")
        now = self._clock()
        created = message.created_date_time or now
        session_id = self._session_for(row.session_ids, created, post=post)
        if session_id is None:
            return Outcome("ignored: no session of this chat at that time")
        sender = self._sender(session_id, message)
        if sender.kind is not PersonKind.PUPIL:
            return Outcome(f"not a pupil's message ({sender.kind.value})", session_id)
        new = self._live.record_chat_message(
            session_id=session_id,
            message_id=message.id,
            thread_id=row.target,
            sender=sender,
            created=created,
            now=now,
        )
        if not new:
            return Outcome("a pupil's message already known", session_id)
        self._live.refresh(session_id, now=now)
        return Outcome("a pupil's message: session evaluated again", session_id)

    def _sender(self, session_id: str, message: ChatMessage) -> Person:
        primary = message.from_.primary() if message.from_ is not None else None
        snapshot = self._live.snapshot(session_id)
        if snapshot is not None and primary is not None and primary.id in snapshot.people:
            known = snapshot.people[primary.id]
            if known.kind is not PersonKind.UNKNOWN:
                return known
        return self._directory.classify(
            message.from_, fallback_id=primary.id if primary and primary.id else "unknown"
        )

    def _session_for(
        self, session_ids: Iterable[str], at: datetime, *, post: str | None = None
    ) -> str | None:
        """Of the sessions a subscription serves, the one ``at`` falls in (or is nearest to,
        within the slack of a lesson that starts early or overruns)."""
        with self._poller.db() as db:
            rows = list(
                db.scalars(select(SessionRow).where(SessionRow.id.in_(sorted(session_ids))))
            )
        best: tuple[float, str] | None = None
        for row in rows:
            if post is not None and channel_post_id(row.join_url) != post:
                continue
            start, end = row.scheduled_start, row.scheduled_end or row.scheduled_start
            if start is None or end is None:
                continue
            if start <= at <= end:
                distance = 0.0
            else:
                distance = min(abs((at - start).total_seconds()), abs((at - end).total_seconds()))
            if distance > OCCURRENCE_SLACK.total_seconds():
                continue
            if best is None or (distance, row.id) < best:
                best = (distance, row.id)
        return best[1] if best is not None else None

    # --- meeting call events --------------------------------------------------------------------

    def _roster(self, row: SubscriptionRow, data: dict[str, Any]) -> Outcome:
        event = data.get("eventType")
        if not isinstance(event, str):
            return Outcome("ignored: no eventType")
        now = self._clock()
        at = parse_graph_time(data.get("eventDateTime")) or now
        session_id = self._session_for(row.session_ids, at)
        if session_id is None:
            return Outcome("ignored: no session of this meeting at that time")
        name = event.rsplit(".", 1)[-1]
        if name == "CallStarted":
            self._live.call_started(session_id=session_id, join_url=row.target, at=at, now=now)
            text = "call started: the roster is followed from here"
        elif name == "CallRosterUpdate":
            joined = self._participants(data.get("activeParticipants@joined"), at, joined=True)
            exited = self._participants(data.get("activeParticipants@exited"), at, joined=False)
            complete = self._live.roster_update(
                session_id=session_id,
                join_url=row.target,
                joined=[item for item in joined if isinstance(item, Joined)],
                exited=[item for item in exited if isinstance(item, Exited)],
                now=now,
            )
            text = f"roster: {len(joined)} joined, {len(exited)} left" + (
                "" if complete else " (partial roster: followed since after the call started)"
            )
        elif name == "CallEnded":
            self._live.call_ended(session_id=session_id, at=at, now=now)
            self._alerts.clear(session_id, "the call ended", now=now)
            text = "call ended"
        else:
            return Outcome(f"ignored: unknown event {name[:40]!r}", session_id)
        self._live.refresh(session_id, now=now)
        alert = self._alerts.check(session_id)
        if alert is not None:
            text += "; live alert to SLT: staff alone with a pupil"
        return Outcome(text, session_id)

    def _participants(self, raw: Any, at: datetime, *, joined: bool) -> list[Joined | Exited]:
        if not isinstance(raw, list):
            return []
        found: list[Joined | Exited] = []
        for entry in raw[:MAX_PARTICIPANTS]:
            if not isinstance(entry, dict):
                continue
            fields = {str(key).lower(): value for key, value in entry.items()}
            participant_id = fields.get("id")
            identity = fields.get("identity")
            if (
                not isinstance(participant_id, str)
                or not participant_id
                or len(participant_id) > 200
            ):
                continue
            person = self._directory.identity(
                identity if isinstance(identity, dict) else {}, fallback_id=participant_id
            )
            if joined:
                found.append(Joined(participant_id, person, at))
            else:
                found.append(Exited(participant_id, person.id, at))
        return found

    # --- lifecycle -----------------------------------------------------------------------------

    def _lifecycle(self, row: SubscriptionRow, event: str) -> Outcome:
        if event not in {"reauthorizationRequired", "subscriptionRemoved", "missed"}:
            return Outcome(f"ignored: unknown lifecycle event {event[:40]!r}")
        done = self._manager.lifecycle(row.graph_id or "", event)
        if event != "missed":
            return Outcome(f"{event}: {done}")
        return Outcome(f"missed: {self._catch_up(row)}")

    def _catch_up(self, row: SubscriptionRow) -> str:
        """Some notifications were lost: look at the resource once instead."""
        kind = SubscriptionKind(row.kind)
        if kind in (SubscriptionKind.CALL_RECORDS, SubscriptionKind.CALENDAR):
            self._waker.request(f"missed {kind.value} notifications", shared=True)
            return "poll requested"
        if kind is SubscriptionKind.ROSTER:
            with transaction(self._poller.db) as db:
                for session_id in row.session_ids:
                    meeting = db.get(LiveMeetingRow, session_id)
                    if meeting is not None:
                        meeting.roster_complete = False
            for session_id in row.session_ids:
                self._alerts.clear(session_id, "roster events were missed")
            return "the live roster is no longer complete (the poll after the meeting has it)"
        read = 0
        taken = 0
        cutoff = self._earliest(row.session_ids)
        for path, params, post in self._chat_reads(row):
            try:
                for raw in self._poller.graph.iter_items(path, params=params, headers=PREFER):
                    try:
                        message = parse(ChatMessage, raw, what="chat message")
                    except PayloadError:
                        continue
                    created = message.created_date_time
                    if cutoff is not None and created is not None and created < cutoff:
                        if params.get("$orderby"):
                            break  # newest first: the rest is older still
                        continue
                    read += 1
                    if self._take_message(row, message, post=post).text.startswith("a pupil"):
                        taken += 1
            except GraphError as exc:
                log.warning("notifications.catch_up_failed", reason=exc.reason)
                return f"the chat could not be read ({exc.reason[:200]})"
        return f"the chat read once: {read} messages, {taken} from pupils"

    def _earliest(self, session_ids: Iterable[str]) -> datetime | None:
        """The earliest a message of these sessions can be (the first's start, less slack)."""
        with self._poller.db() as db:
            starts = [
                start
                for start in db.scalars(
                    select(SessionRow.scheduled_start).where(SessionRow.id.in_(sorted(session_ids)))
                )
                if start is not None
            ]
        return min(starts) - OCCURRENCE_SLACK if starts else None

    def _chat_reads(self, row: SubscriptionRow) -> list[tuple[str, dict[str, str], str | None]]:
        """The reads that cover the subscription's chat: the meeting chat (newest first), or the
        replies to each of the channel's meeting posts."""
        if row.kind == SubscriptionKind.MEETING_CHAT.value:
            params = {"$top": "50", "$orderby": "createdDateTime desc"}
            return [(f"/chats/{row.target}/messages", params, None)]
        team, _, channel = row.target.partition("/")
        with self._poller.db() as db:
            urls = list(
                db.scalars(select(SessionRow.join_url).where(SessionRow.id.in_(row.session_ids)))
            )
        posts = sorted({post for url in urls if (post := channel_post_id(url))})
        return [
            (f"/teams/{team}/channels/{channel}/messages/{post}/replies", {"$top": "50"}, post)
            for post in posts
        ]


def _clip(value: Any, size: int) -> str | None:
    return value[:size] if isinstance(value, str) else None
