"""Keeping Graph subscriptions: created, renewed before they expire, recreated, deleted.

What is wanted follows the settings and the store: one subscription to call records for the
tenant; for every Teams meeting that is live or starts within ``subscribe_ahead_minutes``, its
chat (``/chats/{thread}/messages``; a channel meeting's conversation through its channel,
``/teams/{team}/channels/{channel}/messages``) unless the meeting's chat is off, and with
roster events on, its call events (beta ``/communications/onlineMeetings/?$filter=JoinWebUrl eq
'...'``); optionally every staff calendar (``/users/{id}/events``). Per-meeting ones are deleted
``linger_minutes`` after the meeting was due to end.

:meth:`SubscriptionManager.sync` runs as a scheduled job beside the poll and after each poll
cycle (new meetings); lifecycle notifications call :meth:`SubscriptionManager.lifecycle`. Graph
failures never raise out of either: the row keeps the error and the next sync tries again. A
row is claimed with a conditional update before Graph is asked, so two processes sharing a
database do not both create the same subscription.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from remote_guard import audit
from remote_guard.clock import Clock
from remote_guard.collect.collector import TEAMS_JOIN
from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.collect.snapshot import PersonKind, SessionKind, SessionSnapshot
from remote_guard.graph.client import GraphClient
from remote_guard.graph.errors import GraphError, GraphNotFoundError
from remote_guard.settings import Settings
from remote_guard.store.db import transaction
from remote_guard.subscriptions.directory import LiveDirectory
from remote_guard.subscriptions.models import SubscriptionKind, SubscriptionRow, SubscriptionStatus

log = structlog.get_logger(__name__)

# How long each subscription is asked for: within Graph's maximum (facts.md section 2). Chat
# messages get under an hour, the limit that holds with or without a lifecycle URL.
LIFETIMES: dict[SubscriptionKind, timedelta] = {
    SubscriptionKind.CALL_RECORDS: timedelta(minutes=4200),
    SubscriptionKind.CALENDAR: timedelta(minutes=4200),
    SubscriptionKind.MEETING_CHAT: timedelta(minutes=55),
    SubscriptionKind.CHANNEL_CHAT: timedelta(minutes=55),
    SubscriptionKind.ROSTER: timedelta(minutes=4300),
}
CHANGE_TYPES: dict[SubscriptionKind, str] = {
    SubscriptionKind.CALL_RECORDS: "created,updated",
    SubscriptionKind.CALENDAR: "created,updated,deleted",
    SubscriptionKind.MEETING_CHAT: "created,updated",
    SubscriptionKind.CHANNEL_CHAT: "created,updated",
    SubscriptionKind.ROSTER: "updated",
}
_PER_MEETING = frozenset(
    {SubscriptionKind.MEETING_CHAT, SubscriptionKind.CHANNEL_CHAT, SubscriptionKind.ROSTER}
)
# A row another process (or thread) attempted this recently is left to it.
CLAIM_SECONDS = 10
_MEETINGS = (SessionKind.MEETING.value, SessionKind.CHANNEL_MEETING.value)


def renew_margin(kind: SubscriptionKind) -> timedelta:
    """Renew when less than a quarter of the lifetime is left (at most twelve hours before)."""
    return min(LIFETIMES[kind] / 4, timedelta(hours=12))


def beta_base(graph_base_url: str) -> str | None:
    """The beta endpoint beside the configured v1.0 one, or None if it cannot be told."""
    if graph_base_url.endswith("/v1.0"):
        return graph_base_url[: -len("/v1.0")] + "/beta"
    return None


def roster_resource(join_url: str) -> str:
    """The beta resource for a meeting's call events (CallStarted, roster, CallEnded)."""
    literal = join_url.replace("'", "''")
    return f"/communications/onlineMeetings/?$filter=JoinWebUrl eq '{literal}'"


def channel_post_id(join_url: str | None) -> str | None:
    """The id of a channel meeting's post: the join URL's segment after the channel thread."""
    if not join_url:
        return None
    parts = join_url.split("?", 1)[0].rstrip("/").split("/")
    return parts[-1] if len(parts) >= 2 and parts[-1] not in ("", "0") else None


@dataclass
class Wanted:
    """A subscription the settings and the store call for now."""

    kind: SubscriptionKind
    target: str
    resource: str
    api: str = "v1.0"
    session_ids: set[str] = field(default_factory=set)
    until: datetime | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind.value, self.target)


@dataclass
class SyncResult:
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


class SubscriptionManager:
    """Creates, renews, recreates and deletes the tenant's subscriptions."""

    def __init__(
        self,
        *,
        settings: Settings,
        graph: GraphClient,
        db: sessionmaker[Session],
        clock: Clock,
        directory: LiveDirectory,
    ) -> None:
        self._settings = settings
        self._config = settings.notifications
        self._graph = graph
        self._db = db
        self._clock = clock
        self._directory = directory
        # One thread at a time changes subscriptions (the scheduled sync, a lifecycle event).
        self._lock = threading.Lock()

    # --- what is wanted -------------------------------------------------------------------------

    def wanted(self, now: datetime) -> dict[tuple[str, str], Wanted]:
        config = self._config
        found: dict[tuple[str, str], Wanted] = {}

        def want(
            item: Wanted, session_id: str | None = None, until: datetime | None = None
        ) -> None:
            current = found.setdefault(item.key, item)
            if session_id is not None:
                current.session_ids.add(session_id)
            if until is not None:
                current.until = max(current.until or until, until)

        if "call_records" in config.resources:
            want(Wanted(SubscriptionKind.CALL_RECORDS, "tenant", "/communications/callRecords"))
        if "calendars" in config.resources:
            try:
                staff = sorted(
                    person.id
                    for person in self._directory.get().people.values()
                    if person.kind is PersonKind.STAFF
                )
            except GraphError as exc:
                log.warning("notifications.calendars_not_listed", reason=exc.reason)
                staff = []
            for user_id in staff:
                want(Wanted(SubscriptionKind.CALENDAR, user_id, f"/users/{user_id}/events"))
        chats = "meeting_chats" in config.resources
        linger = timedelta(minutes=config.linger_minutes)
        for session_id, snapshot in self._meetings(now):
            end = snapshot.scheduled_end or snapshot.actual_end
            start = snapshot.scheduled_start or snapshot.actual_start
            until = (end or (start or now) + timedelta(hours=1)) + linger
            chat_off = snapshot.settings is not None and (
                snapshot.settings.allow_meeting_chat == "disabled"
            )
            if chats and not chat_off:
                if snapshot.kind is SessionKind.MEETING and snapshot.chat_thread_id:
                    thread = snapshot.chat_thread_id
                    want(
                        Wanted(SubscriptionKind.MEETING_CHAT, thread, f"/chats/{thread}/messages"),
                        session_id,
                        until,
                    )
                channel = snapshot.channel
                if (
                    snapshot.kind is SessionKind.CHANNEL_MEETING
                    and channel is not None
                    and channel.team_id
                    and channel.channel_id
                ):
                    target = f"{channel.team_id}/{channel.channel_id}"
                    want(
                        Wanted(
                            SubscriptionKind.CHANNEL_CHAT,
                            target,
                            f"/teams/{channel.team_id}/channels/{channel.channel_id}/messages",
                        ),
                        session_id,
                        until,
                    )
            ours = (snapshot.organizer_tenant_id or "").lower() == (
                self._settings.tenant.tenant_id.lower()
            )
            if (
                config.roster_events
                and ours
                and snapshot.join_url
                and TEAMS_JOIN.match(snapshot.join_url)
            ):
                want(
                    Wanted(
                        SubscriptionKind.ROSTER,
                        snapshot.join_url,
                        roster_resource(snapshot.join_url),
                        api="beta",
                    ),
                    session_id,
                    until,
                )
        return found

    def _meetings(self, now: datetime) -> list[tuple[str, SessionSnapshot]]:
        """Teams meetings that are live, or start within ``subscribe_ahead_minutes``."""
        ahead = now + timedelta(minutes=self._config.subscribe_ahead_minutes)
        since = now - timedelta(minutes=self._config.linger_minutes)
        with self._db() as db:
            rows = db.execute(
                select(SessionRow.id, SnapshotRow.data)
                .join(SnapshotRow, SnapshotRow.id == SessionRow.latest_snapshot_id)
                .where(
                    SessionRow.kind.in_(_MEETINGS),
                    SessionRow.scheduled_start.is_not(None),
                    SessionRow.scheduled_start <= ahead,
                    or_(SessionRow.scheduled_end.is_(None), SessionRow.scheduled_end >= since),
                )
                .order_by(SessionRow.scheduled_start, SessionRow.id)
            ).all()
        meetings = []
        for session_id, data in rows:
            try:
                snapshot = SessionSnapshot.model_validate(data)
            except ValueError:
                log.warning("notifications.snapshot_unreadable", session_id=session_id)
                continue
            if not snapshot.is_cancelled:
                meetings.append((session_id, snapshot))
        return meetings

    # --- keeping them -------------------------------------------------------------------------

    def sync(self) -> SyncResult:
        """Bring the subscriptions in line with what is wanted now. Never raises for Graph or
        database trouble (logged; the next sync tries again)."""
        result = SyncResult()
        try:
            with self._lock:
                self._sync(result)
        except Exception as exc:
            log.exception("notifications.sync_failed")
            result.errors.append(type(exc).__name__)
        if result.counts or result.errors:
            log.info("notifications.synced", errors=len(result.errors), **dict(result.counts))
        return result

    def _sync(self, result: SyncResult) -> None:
        now = self._clock()
        wanted = self.wanted(now)
        with transaction(self._db) as db:
            rows = {(row.kind, row.target): row for row in db.scalars(select(SubscriptionRow))}
            for key, item in wanted.items():
                row = rows.get(key)
                if row is None:
                    row = SubscriptionRow(
                        kind=item.kind.value,
                        target=item.target,
                        status=SubscriptionStatus.PENDING.value,
                        resource=item.resource,
                        api=item.api,
                        change_type=CHANGE_TYPES[item.kind],
                        session_ids=sorted(item.session_ids),
                        wanted_until=item.until,
                        updated_at=now,
                    )
                    db.add(row)
                    rows[key] = row
                    continue
                row.session_ids = sorted(item.session_ids)
                row.wanted_until = item.until
                if row.status == SubscriptionStatus.DELETED.value:
                    row.status = SubscriptionStatus.PENDING.value
                    row.graph_id = None
                    row.updated_at = now
        ids = {key: row.id for key, row in rows.items()}
        for key, row_id in sorted(ids.items()):
            row = self._row(row_id)
            if row is None:
                continue
            if key not in wanted:
                if row.status != SubscriptionStatus.DELETED.value:
                    self._delete(row, now, result)
                continue
            if row.status == SubscriptionStatus.PENDING.value or row.graph_id is None:
                self._create(row, now, result)
            elif row.expires_at is None or row.expires_at <= now:
                # Graph has dropped it by now: make a new one.
                self._mark_pending(row.id, now)
                self._create(row, now, result)
            elif row.expires_at - now < renew_margin(SubscriptionKind(row.kind)):
                self._renew(row, now, result)

    def _row(self, row_id: int) -> SubscriptionRow | None:
        with self._db() as db:
            return db.get(SubscriptionRow, row_id)

    def find(self, graph_id: str) -> SubscriptionRow | None:
        """The row whose current Graph subscription has this id."""
        with self._db() as db:
            return db.scalars(
                select(SubscriptionRow).where(SubscriptionRow.graph_id == graph_id)
            ).first()

    def _claim(self, row_id: int, now: datetime, *, force: bool = False) -> bool:
        """Take the row for one attempt (a conditional update), unless another took it within
        the last few seconds."""
        with transaction(self._db) as db:
            condition = SubscriptionRow.id == row_id
            if not force:
                condition = condition & or_(
                    SubscriptionRow.last_attempt_at.is_(None),
                    SubscriptionRow.last_attempt_at < now - timedelta(seconds=CLAIM_SECONDS),
                )
            taken = db.execute(update(SubscriptionRow).where(condition).values(last_attempt_at=now))
            return bool(getattr(taken, "rowcount", 0) == 1)

    def _url(self, api: str, path: str) -> str:
        if api == "beta":
            base = beta_base(self._settings.tenant.graph_base_url)
            if base is None:
                raise GraphError(
                    "roster events need Graph beta, and the configured graph_base_url does not "
                    "end in /v1.0",
                    endpoint="/beta/subscriptions",
                )
            return base + path
        return path

    def _create(
        self, row: SubscriptionRow, now: datetime, result: SyncResult, *, force: bool = False
    ) -> bool:
        if not self._claim(row.id, now, force=force):
            return False
        kind = SubscriptionKind(row.kind)
        asked = now + LIFETIMES[kind]
        body: dict[str, Any] = {
            "changeType": row.change_type,
            "notificationUrl": self._config.notification_url,
            "lifecycleNotificationUrl": self._config.lifecycle_url,
            "resource": row.resource,
            "expirationDateTime": _iso(asked),
            "clientState": self._client_state(),
        }
        try:
            answer = self._graph.request(
                "POST", self._url(row.api, "/subscriptions"), json_body=body
            )
            graph_id, expires = _created(answer, asked)
        except GraphError as exc:
            self._failed(row, "create", exc, now, result)
            return False
        with transaction(self._db) as db:
            stored = db.get(SubscriptionRow, row.id)
            if stored is None:
                return False
            previous = stored.graph_id
            stored.graph_id = graph_id
            stored.status = SubscriptionStatus.ACTIVE.value
            stored.expires_at = expires
            stored.created_at = now
            stored.renewed_at = None
            stored.last_error = None
            stored.updated_at = now
            audit.record(
                db,
                "subscription.created",
                object_type="subscription",
                object_id=str(row.id),
                before={"graph_id": previous} if previous else None,
                after={
                    "graph_id": graph_id,
                    "kind": row.kind,
                    "resource": row.resource,
                    "expires_at": expires,
                },
                at=now,
            )
        result.counts["created"] += 1
        return True

    def _renew(
        self, row: SubscriptionRow, now: datetime, result: SyncResult, *, force: bool = False
    ) -> bool:
        if row.graph_id is None or not self._claim(row.id, now, force=force):
            return False
        kind = SubscriptionKind(row.kind)
        asked = now + LIFETIMES[kind]
        try:
            answer = self._graph.request(
                "PATCH",
                self._url(row.api, f"/subscriptions/{row.graph_id}"),
                json_body={"expirationDateTime": _iso(asked)},
            )
        except GraphNotFoundError:
            # Graph no longer has it (expired, removed): make a new one.
            self._mark_pending(row.id, now)
            fresh = self._row(row.id)
            return fresh is not None and self._create(fresh, now, result, force=True)
        except GraphError as exc:
            self._failed(row, "renew", exc, now, result)
            return False
        expires = _expiry(answer, asked)
        with transaction(self._db) as db:
            stored = db.get(SubscriptionRow, row.id)
            if stored is None:
                return False
            stored.expires_at = expires
            stored.renewed_at = now
            stored.last_error = None
            stored.updated_at = now
            audit.record(
                db,
                "subscription.renewed",
                object_type="subscription",
                object_id=str(row.id),
                after={"graph_id": row.graph_id, "expires_at": expires},
                at=now,
            )
        result.counts["renewed"] += 1
        return True

    def _delete(self, row: SubscriptionRow, now: datetime, result: SyncResult) -> None:
        if row.graph_id is not None and row.status == SubscriptionStatus.ACTIVE.value:
            if not self._claim(row.id, now):
                return
            try:
                self._graph.request("DELETE", self._url(row.api, f"/subscriptions/{row.graph_id}"))
            except GraphNotFoundError:
                pass  # already gone
            except GraphError as exc:
                # It expires at Graph by itself; its notifications are ignored meanwhile.
                log.warning("notifications.delete_failed", subscription=row.id, reason=exc.reason)
        with transaction(self._db) as db:
            stored = db.get(SubscriptionRow, row.id)
            if stored is None:
                return
            stored.status = SubscriptionStatus.DELETED.value
            stored.updated_at = now
            audit.record(
                db,
                "subscription.deleted",
                object_type="subscription",
                object_id=str(row.id),
                before={"graph_id": row.graph_id, "status": row.status},
                after={"status": SubscriptionStatus.DELETED.value},
                detail={"resource": row.resource},
                at=now,
            )
        result.counts["deleted"] += 1

    def _mark_pending(self, row_id: int, now: datetime) -> None:
        with transaction(self._db) as db:
            stored = db.get(SubscriptionRow, row_id)
            if stored is not None:
                stored.status = SubscriptionStatus.PENDING.value
                stored.updated_at = now

    def _failed(
        self, row: SubscriptionRow, action: str, exc: GraphError, now: datetime, result: SyncResult
    ) -> None:
        reason = exc.reason[:500]
        result.errors.append(f"{action} {row.resource}: {reason}")
        result.counts[f"{action}_failed"] += 1
        log.warning(
            "notifications.subscription_failed", action=action, kind=row.kind, reason=reason
        )
        with transaction(self._db) as db:
            stored = db.get(SubscriptionRow, row.id)
            if stored is None:
                return
            repeated = stored.last_error == reason
            stored.last_error = reason
            stored.updated_at = now
            if not repeated:
                # Each new failure once, not every minute while it lasts.
                audit.record(
                    db,
                    f"subscription.{action}_failed",
                    object_type="subscription",
                    object_id=str(row.id),
                    detail={"resource": row.resource, "reason": reason},
                    at=now,
                )

    def _client_state(self) -> str:
        secret = self._config.client_state
        if secret is None:
            raise GraphError("no clientState is configured", endpoint="/subscriptions")
        return secret.get_secret_value()

    # --- lifecycle notifications --------------------------------------------------------------

    def lifecycle(self, graph_id: str, event: str) -> str:
        """Act on a lifecycle notification; returns what was done (for the audit trail).

        ``reauthorizationRequired``: renew (which reauthorizes too), or recreate if Graph no
        longer has it. ``subscriptionRemoved``: recreate. ``missed``: nothing here (the caller
        catches up on the resource).
        """
        with self._lock:
            row = self.find(graph_id)
            if row is None:
                return "unknown subscription"
            if row.status == SubscriptionStatus.DELETED.value:
                return "ignored: no longer wanted (deleted)"
            now = self._clock()
            result = SyncResult()
            if event == "reauthorizationRequired":
                done = self._renew(row, now, result, force=True)
                return "renewed" if done else f"renewal failed: {'; '.join(result.errors)[:300]}"
            if event == "subscriptionRemoved":
                self._mark_pending(row.id, now)
                fresh = self._row(row.id)
                done = fresh is not None and self._create(fresh, now, result, force=True)
                return (
                    "recreated" if done else f"recreation failed: {'; '.join(result.errors)[:300]}"
                )
            if event == "missed":
                return "catch-up"
            return f"unknown lifecycle event {event[:50]!r}"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def parse_graph_time(value: Any) -> datetime | None:
    """A Graph date-time (seven fractional digits, Z) as an aware datetime; None if not one."""
    if not isinstance(value, str):
        return None
    # Graph writes seven fractional digits; Python reads six.
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip()).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed


def _created(answer: Any, asked: datetime) -> tuple[str, datetime]:
    """(subscription id, expiry) from Graph's 201.

    Raises:
        GraphError: the answer has no subscription id.
    """
    if not isinstance(answer, dict) or not isinstance(answer.get("id"), str) or not answer["id"]:
        raise GraphError("Graph's answer has no subscription id", endpoint="/subscriptions")
    return answer["id"][:64], _expiry(answer, asked)


def _expiry(answer: Any, asked: datetime) -> datetime:
    value = answer.get("expirationDateTime") if isinstance(answer, dict) else None
    return parse_graph_time(value) or asked
