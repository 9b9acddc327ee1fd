"""Change notifications as Microsoft Graph sends them: subscriptions and webhook delivery.

The fake serves ``POST/GET/PATCH/DELETE /subscriptions`` (and ``/subscriptions/{id}/reauthorize``)
on v1.0 and beta. A subscription is created only after the validation handshake: Graph POSTs
``{notificationUrl}?validationToken=...`` (``text/plain``), and the lifecycle URL likewise, and
expects ``200`` with the decoded token as plain text within 10 s; otherwise creation fails with
``400``. Notification URLs must be HTTPS; the fake trusts only its own CA (:meth:`Notifier.trust`),
so a receiver under test is served with a certificate from it.

What is delivered, and when, follows the tenant's state and clock. A background thread looks at
the tenant a few times a second and notices what changed since the last look (a chat message
whose time has come, someone joining or leaving a meeting's call, a call ending so its record
appears) and posts ``{"value": [...]}`` to the subscriber after a small delay, shaped as Graph
shapes it (``subscriptionId``, ``subscriptionExpirationDateTime``, ``clientState``, ``changeType``,
``resource``, ``resourceData``, ``tenantId``). A delivery not answered with a 2xx within 3 s is
tried again later, as Graph does. Calendar changes made through the tenant's methods notify at
once. Tests can inject lifecycle notifications (:meth:`Notifier.lifecycle`) and lose
notifications on purpose (:meth:`Notifier.drop_next`).

Only Graph's documented resources are accepted: ``/communications/callRecords``,
``/chats/{id}/messages`` and ``/chats/getAllMessages``, ``/users/{id}/events``, and, on beta only,
``/communications/onlineMeetings/?$filter=JoinWebUrl eq '{joinWebUrl}'`` (the meeting's call
events: CallStarted, CallRosterUpdate, CallEnded), with their maximum lifetimes.
"""

from __future__ import annotations

import heapq
import itertools
import json
import re
import secrets
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import requests
from fastapi import APIRouter, Request, Response

from remote_guard.fakegraph import _ids, _render
from remote_guard.fakegraph._errors import GraphError
from remote_guard.fakegraph._odata import (
    GraphRequest,
    GraphResponse,
    odata_context,
    parse_datetime,
)
from remote_guard.fakegraph.graph_v1 import (
    CALENDAR_READ,
    CALL_RECORDS_READ,
    CHANNEL_MESSAGES_READ,
    CHAT_MESSAGES_READ,
    MEETINGS_READ,
    PROTECTED_API_MESSAGE,
    Context,
    GraphService,
    Need,
    Route,
    _channel_thread,
    _check_permission,
    encode_json,
)
from remote_guard.fakegraph.tenant import CallSession, Identity, Meeting, TenantState

ResourceKind = Literal[
    "callRecords", "chatMessages", "allChatMessages", "channelMessages", "events", "meetingCalls"
]

# Graph's documented maximum lifetimes, in minutes (facts.md section 2).
MAX_MINUTES: dict[ResourceKind, int] = {
    "callRecords": 4230,
    "events": 4230,
    "meetingCalls": 4320,
    # Chat messages: an hour, or longer only with a lifecycleNotificationUrl (the longer limit
    # is not documented; three days, as for meeting calls, is assumed).
    "chatMessages": 60,
    "allChatMessages": 60,
    "channelMessages": 60,
}
_MESSAGE_KINDS = frozenset({"chatMessages", "allChatMessages", "channelMessages"})
CHAT_MAX_WITH_LIFECYCLE_MINUTES = 4320
CHANGE_TYPES: dict[ResourceKind, frozenset[str]] = {
    "callRecords": frozenset({"created", "updated"}),
    "chatMessages": frozenset({"created", "updated", "deleted"}),
    "allChatMessages": frozenset({"created", "updated", "deleted"}),
    "channelMessages": frozenset({"created", "updated", "deleted"}),
    "events": frozenset({"created", "updated", "deleted"}),
    "meetingCalls": frozenset({"updated"}),
}
NEEDS: dict[ResourceKind, Need] = {
    "callRecords": CALL_RECORDS_READ,
    "chatMessages": CHAT_MESSAGES_READ,
    "allChatMessages": CHAT_MESSAGES_READ,
    "channelMessages": CHANNEL_MESSAGES_READ,
    "events": CALENDAR_READ,
    "meetingCalls": MEETINGS_READ,
}
# Any of these lets a request reach the subscription routes; creating one then needs the
# subscribed resource's own permission.
SUBSCRIPTIONS = Need(
    tuple(
        sorted(
            {permission for need in NEEDS.values() for permission in need.permissions}
            | {"Chat.ReadBasic.All"}
        )
    ),
    "other",
)
# Graph allows one subscription per app to a chat's messages.
PER_CHAT_LIMIT = 1
CLIENT_STATE_MAX = 128
VALIDATION_TIMEOUT_SECONDS = 10.0
ANSWER_TIMEOUT_SECONDS = 3.0
TICK_SECONDS = 0.1

_MEETING_FILTER = re.compile(
    r"^communications/onlineMeetings/?\?\$filter=\s*joinWebUrl\s+eq\s+'(?P<url>.+)'\s*$",
    re.IGNORECASE | re.DOTALL,
)


@dataclass
class FakeSubscription:
    """One subscription as the fake keeps it, with what it has already told the subscriber."""

    id: str
    application_id: str
    api: str  # v1.0 | beta
    resource: str  # as the client sent it
    kind: ResourceKind
    target: str  # chat id, user id, join URL, or "" for tenant-wide resources
    change_types: frozenset[str]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: datetime
    created: datetime
    needs_reauthorization: bool = False
    # What the subscriber has been told of (or was there before it subscribed).
    seen: set[str] = field(default_factory=set)
    # Meeting calls: who is in (participant id -> identity), calls in progress, last look.
    present: dict[str, tuple[Identity, datetime]] = field(default_factory=dict)
    active_calls: set[str] = field(default_factory=set)
    looked_at: datetime | None = None

    def json(self, base_url: str) -> dict[str, Any]:
        return {
            "@odata.context": f"{base_url}/{self.api}/$metadata#subscriptions/$entity",
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": ",".join(sorted(self.change_types)),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": _ids.iso_z(self.expires, 7),
            "creatorId": self.application_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }


@dataclass
class Delivery:
    """One POST to a subscriber (a change or lifecycle notification), and what came of it."""

    url: str
    body: dict[str, Any]
    kind: Literal["change", "lifecycle"]
    attempts: int = 0
    statuses: list[int | str] = field(default_factory=list)  # HTTP status, or the error name
    delivered: bool = False
    queued_at: float = field(default_factory=time.monotonic)
    delivered_at: float | None = None


@dataclass
class Validation:
    """One validation handshake the fake made before creating a subscription."""

    url: str
    ok: bool
    detail: str


class Notifier:
    """The tenant's subscriptions and the thread that delivers their notifications.

    Knobs for tests: :attr:`delay_seconds` (how long after a change its notification is
    posted), :attr:`answer_timeout` (how long a subscriber has to answer), :meth:`drop_next`,
    :meth:`lifecycle`, :meth:`trust`; records: :attr:`deliveries`, :attr:`validations`.
    """

    def __init__(self, state: TenantState) -> None:
        self._state_ref = weakref.ref(state)
        self._lock = threading.RLock()
        self.subscriptions: dict[str, FakeSubscription] = {}
        self.ca_path: Path | None = None
        self.delay_seconds = 0.3
        self.answer_timeout = ANSWER_TIMEOUT_SECONDS
        self.validation_timeout = VALIDATION_TIMEOUT_SECONDS
        self.max_attempts = 8
        self.retry_base_seconds = 1.0
        self.deliveries: list[Delivery] = []
        self.validations: list[Validation] = []
        self.dropped: list[dict[str, Any]] = []
        self._drop = 0
        self._queue: list[tuple[float, int, Delivery]] = []
        self._sequence = itertools.count()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._pool: ThreadPoolExecutor | None = None

    # --- knobs ----------------------------------------------------------------------------------

    def trust(self, ca_path: Path) -> None:
        """Verify subscribers' certificates against ``ca_path`` (the fake tenant's own CA)."""
        with self._lock:
            self.ca_path = ca_path

    def drop_next(self, count: int = 1) -> None:
        """Lose the next ``count`` change notifications (they are never delivered)."""
        with self._lock:
            self._drop += count

    def rewind(self, moment: datetime) -> None:
        """Look again from just before ``moment`` (a live change made at a moment the last look
        may already have passed, as with a clock that stands still in a test)."""
        with self._lock:
            for subscription in self.subscriptions.values():
                if subscription.looked_at is not None and subscription.looked_at >= moment:
                    subscription.looked_at = moment - timedelta(microseconds=1)

    def poke(self) -> None:
        """Look at the tenant now rather than at the next tick (after a live change)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop delivering (idempotent); queued notifications are dropped."""
        with self._lock:
            self._stopped = True
            pool, self._pool = self._pool, None
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def active(self, now: datetime) -> list[FakeSubscription]:
        with self._lock:
            return [s for s in self.subscriptions.values() if s.expires > now]

    def delivered_changes(self) -> list[dict[str, Any]]:
        """Every change notification item delivered so far (2xx answered), oldest first."""
        with self._lock:
            return [
                item
                for delivery in self.deliveries
                if delivery.delivered and delivery.kind == "change"
                for item in delivery.body["value"]
            ]

    def lifecycle(self, subscription_id: str, event: str) -> Delivery:
        """Send a lifecycle notification (``reauthorizationRequired``, ``subscriptionRemoved`` or
        ``missed``) for the subscription. ``subscriptionRemoved`` also removes it, as Graph has;
        ``reauthorizationRequired`` pauses its notifications until it is renewed or reauthorized.

        Raises:
            KeyError: no such subscription.
            ValueError: an unknown event, or the subscription has no lifecycle URL.
        """
        if event not in {"reauthorizationRequired", "subscriptionRemoved", "missed"}:
            raise ValueError(f"unknown lifecycle event {event!r}")
        state = self._state()
        with self._lock:
            subscription = self.subscriptions[subscription_id]
            if subscription.lifecycle_url is None:
                raise ValueError("the subscription has no lifecycleNotificationUrl")
            item = {
                "subscriptionId": subscription.id,
                "subscriptionExpirationDateTime": _ids.iso_z(subscription.expires, 7),
                "tenantId": state.tenant_id,
                "clientState": subscription.client_state,
                "lifecycleEvent": event,
            }
            if event == "subscriptionRemoved":
                del self.subscriptions[subscription_id]
            elif event == "reauthorizationRequired":
                subscription.needs_reauthorization = True
            delivery = Delivery(subscription.lifecycle_url, {"value": [item]}, "lifecycle")
            self._enqueue(delivery)
        return delivery

    # --- the subscription API -----------------------------------------------------------------

    def create(self, ctx: Context, api: str) -> GraphResponse:
        """``POST /subscriptions``: validate, handshake with the subscriber, store.

        Raises:
            GraphError: 400 a bad request or a failed handshake; 403 a missing permission or the
                quota reached; 404 the watched chat, user or meeting does not exist.
        """
        body = ctx.request.json_body()
        if not isinstance(body, dict):
            raise GraphError(400, "BadRequest", "The request body must be a subscription object.")
        resource = _text(body, "resource")
        notification_url = _text(body, "notificationUrl")
        change_type = _text(body, "changeType")
        expiration = _text(body, "expirationDateTime")
        kind, target = self._resource(ctx, resource, api)
        wanted = frozenset(part.strip() for part in change_type.split(",") if part.strip())
        if not wanted or not wanted <= CHANGE_TYPES[kind]:
            raise GraphError(
                400,
                "InvalidRequest",
                f"changeType '{change_type}' is not supported for resource '{resource}'; use "
                f"{', '.join(sorted(CHANGE_TYPES[kind]))}.",
            )
        client_state = body.get("clientState")
        if client_state is not None and (
            not isinstance(client_state, str) or len(client_state) > CLIENT_STATE_MAX
        ):
            raise GraphError(
                400, "InvalidRequest", "clientState must be a string of at most 128 characters."
            )
        if body.get("includeResourceData") and not body.get("encryptionCertificate"):
            raise GraphError(
                400,
                "InvalidRequest",
                "encryptionCertificate is required when includeResourceData is true.",
            )
        lifecycle_url = body.get("lifecycleNotificationUrl")
        if lifecycle_url is not None and not isinstance(lifecycle_url, str):
            raise GraphError(400, "InvalidRequest", "lifecycleNotificationUrl must be a string.")
        for url in (notification_url, lifecycle_url):
            if url is not None and urlsplit(url).scheme.lower() != "https":
                raise GraphError(
                    400,
                    "InvalidRequest",
                    "Subscription validation request failed. The notification endpoint must use "
                    "HTTPS.",
                )
        now = ctx.now
        expires = parse_datetime(expiration, name="expirationDateTime")
        self._check_lifetime(kind, expires, now, has_lifecycle=lifecycle_url is not None)
        _check_permission(ctx.grant, NEEDS[kind])
        if kind in _MESSAGE_KINDS and not ctx.state.protected_apis_approved:
            raise GraphError(403, "Forbidden", PROTECTED_API_MESSAGE)
        with self._lock:
            if kind in ("chatMessages", "channelMessages"):
                taken = sum(
                    1
                    for s in self.subscriptions.values()
                    if s.kind == kind and s.target == target and s.expires > now
                    if s.application_id == ctx.grant.client_id
                )
                if taken >= PER_CHAT_LIMIT:
                    raise GraphError(
                        403,
                        "ExtensionError",
                        "Operation: Create; Exception: [Status Code: Forbidden; Reason: The app "
                        f"has reached its limit of {PER_CHAT_LIMIT} subscription on this chat.]",
                    )
        # Graph checks the endpoints before it creates anything.
        for url in (notification_url, lifecycle_url):
            if url is not None:
                self._handshake(url)
        subscription = FakeSubscription(
            id=str(uuid.uuid4()),
            application_id=ctx.grant.client_id,
            api=api,
            resource=resource,
            kind=kind,
            target=target,
            change_types=wanted,
            notification_url=notification_url,
            lifecycle_url=lifecycle_url,
            client_state=client_state,
            expires=expires,
            created=now,
        )
        self._baseline(subscription, ctx.state, now)
        with self._lock:
            self.subscriptions[subscription.id] = subscription
        self._start()
        return GraphResponse(201, subscription.json(ctx.request.base_url))

    def get(self, ctx: Context, api: str) -> GraphResponse:
        subscription = self._owned(ctx)
        return GraphResponse(200, subscription.json(ctx.request.base_url))

    def list_all(self, ctx: Context, api: str) -> GraphResponse:
        now = ctx.now
        with self._lock:
            mine = [
                s
                for s in self.subscriptions.values()
                if s.application_id == ctx.grant.client_id and s.expires > now
            ]
        value = [s.json(ctx.request.base_url) for s in mine]
        for item in value:
            item.pop("@odata.context", None)
        return GraphResponse(
            200,
            {
                "@odata.context": f"{ctx.request.base_url}/{api}/$metadata#subscriptions",
                "value": value,
            },
        )

    def update(self, ctx: Context, api: str) -> GraphResponse:
        """``PATCH /subscriptions/{id}``: renew (and reauthorize) with a new expirationDateTime.

        Raises:
            GraphError: 404 no such subscription (expired, removed or deleted); 400 a bad time.
        """
        subscription = self._owned(ctx)
        body = ctx.request.json_body()
        if not isinstance(body, dict) or "expirationDateTime" not in body:
            raise GraphError(400, "InvalidRequest", "expirationDateTime is required.")
        expires = parse_datetime(_text(body, "expirationDateTime"), name="expirationDateTime")
        self._check_lifetime(
            subscription.kind,
            expires,
            ctx.now,
            has_lifecycle=subscription.lifecycle_url is not None,
        )
        _check_permission(ctx.grant, NEEDS[subscription.kind])
        with self._lock:
            subscription.expires = expires
            subscription.needs_reauthorization = False
        return GraphResponse(200, subscription.json(ctx.request.base_url))

    def delete(self, ctx: Context, api: str) -> GraphResponse:
        subscription = self._owned(ctx)
        with self._lock:
            self.subscriptions.pop(subscription.id, None)
        return GraphResponse(204)

    def reauthorize(self, ctx: Context, api: str) -> GraphResponse:
        subscription = self._owned(ctx)
        _check_permission(ctx.grant, NEEDS[subscription.kind])
        with self._lock:
            subscription.needs_reauthorization = False
        return GraphResponse(204)

    def _owned(self, ctx: Context) -> FakeSubscription:
        with self._lock:
            subscription = self.subscriptions.get(ctx.params["subscription"])
        if (
            subscription is None
            or subscription.application_id != ctx.grant.client_id
            or subscription.expires <= ctx.now
        ):
            raise GraphError(
                404,
                "ResourceNotFound",
                f"The object was not found. Subscription '{ctx.params['subscription']}'.",
            )
        return subscription

    def _resource(self, ctx: Context, resource: str, api: str) -> tuple[ResourceKind, str]:
        state = ctx.state
        raw = resource.strip().lstrip("/")
        text = unquote(raw)
        lowered = text.lower()
        if lowered == "communications/callrecords":
            return "callRecords", ""
        if lowered in ("chats/getallmessages", "chats/getallmessages/"):
            return "allChatMessages", ""
        match = re.fullmatch(r"chats/([^/]+)/messages", text, re.IGNORECASE)
        if match is not None:
            chat = state.chats.get(match.group(1))
            if chat is None or chat.created > ctx.now:
                raise GraphError(404, "NotFound", f"Chat '{match.group(1)}' was not found.")
            return "chatMessages", chat.id
        match = re.fullmatch(r"teams/([^/]+)/channels/([^/]+)/messages", text, re.IGNORECASE)
        if match is not None:
            team = state.find_team(match.group(1))
            if team is None or not any(c.id == match.group(2) for c in team.channels):
                raise GraphError(404, "NotFound", "The team or channel was not found.")
            return "channelMessages", f"{team.id}/{match.group(2)}"
        match = re.fullmatch(r"users/([^/]+)/events", text, re.IGNORECASE)
        if match is not None:
            user = state.user(match.group(1))
            if user is None:
                raise GraphError(
                    404, "ResourceNotFound", f"Resource '{match.group(1)}' does not exist."
                )
            return "events", user.id
        match = _MEETING_FILTER.match(raw) or _MEETING_FILTER.match(text)
        if match is not None:
            if api != "beta":
                raise GraphError(
                    400,
                    "InvalidRequest",
                    f"The resource '{resource}' is not supported on v1.0; use the beta endpoint.",
                )
            # The join URL as written, or URL-encoded once (both forms appear in the docs).
            written = match.group("url").replace("''", "'")
            for url in (written, unquote(written)):
                if state.meetings_by_join_url(url):
                    return "meetingCalls", url
            raise GraphError(404, "NotFound", "No online meeting has this JoinWebUrl.")
        raise GraphError(
            400, "InvalidRequest", f"Resource '{resource}' is not supported for subscriptions."
        )

    @staticmethod
    def _check_lifetime(
        kind: ResourceKind, expires: datetime, now: datetime, *, has_lifecycle: bool
    ) -> None:
        if expires <= now:
            raise GraphError(
                400, "InvalidRequest", "Subscription expiration must be in the future."
            )
        limit = MAX_MINUTES[kind]
        minutes = (expires - now).total_seconds() / 60
        if kind in _MESSAGE_KINDS and minutes > limit:
            if not has_lifecycle:
                raise GraphError(
                    400,
                    "InvalidRequest",
                    "lifecycleNotificationUrl is a required property for subscription creation "
                    "on this resource when the expirationDateTime value is set to greater than "
                    "1 hour",
                )
            limit = CHAT_MAX_WITH_LIFECYCLE_MINUTES
        if minutes > limit:
            raise GraphError(
                400,
                "InvalidRequest",
                f"Subscription expiration can only be {limit} minutes in the future.",
            )

    def _handshake(self, url: str) -> None:
        """Graph's validation request: POST ``url?validationToken=...``, expect the token back.

        Raises:
            GraphError: 400, the endpoint did not answer 200 with the token within 10 s.
        """
        token = (
            f"Validation: Testing client application reachability for subscription Request-Id: "
            f"{uuid.uuid4()} {secrets.token_hex(4)}"
        )
        separator = "&" if "?" in url else "?"
        target = f"{url}{separator}validationToken={quote(token, safe='')}"
        try:
            response = requests.post(
                target,
                data=b"",
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=self.validation_timeout,
                verify=str(self.ca_path) if self.ca_path is not None else True,
            )
        except requests.RequestException as exc:
            self.validations.append(Validation(url, ok=False, detail=type(exc).__name__))
            raise GraphError(
                400,
                "InvalidRequest",
                "Subscription validation request failed. HTTP request failed with "
                f"{type(exc).__name__} talking to the notification endpoint.",
            ) from None
        content_type = response.headers.get("content-type", "")
        ok = (
            response.status_code == 200
            and response.text == token
            and content_type.lower().startswith("text/plain")
        )
        detail = f"HTTP {response.status_code} {content_type}"
        self.validations.append(Validation(url, ok=ok, detail=detail))
        if not ok:
            raise GraphError(
                400,
                "InvalidRequest",
                "Subscription validation request failed. Notification endpoint must respond "
                "with 200 OK and the validation token as text/plain within 10 seconds "
                f"(it answered {detail}).",
            )

    # --- watching the tenant ------------------------------------------------------------------

    def _state(self) -> TenantState:
        state = self._state_ref()
        if state is None:
            raise RuntimeError("the fake tenant is gone")
        return state

    def _baseline(self, subscription: FakeSubscription, state: TenantState, now: datetime) -> None:
        """What is already there when the subscription is made is never notified."""
        subscription.looked_at = now
        if subscription.kind == "callRecords":
            subscription.seen = {
                s.id for s in state.all_sessions() if _record_visible(state, s, now)
            }
        elif subscription.kind in ("chatMessages", "allChatMessages"):
            subscription.seen = {
                f"{chat.id}/{m.id}"
                for chat in _watched_chats(state, subscription)
                for m in chat.messages
                if m.created <= now
            }
        elif subscription.kind == "channelMessages":
            subscription.seen = {
                m.id for m in _channel_posts(state, subscription) if m.created <= now
            }
        elif subscription.kind == "meetingCalls":
            meetings = state.meetings_by_join_url(subscription.target)
            subscription.present = _present(meetings, now)
            subscription.active_calls = _active_calls(meetings, now)

    def _changes(
        self, subscription: FakeSubscription, state: TenantState, now: datetime
    ) -> list[dict[str, Any]]:
        """Notification items for what changed since the subscription last looked."""
        if subscription.kind == "callRecords":
            items = []
            for session in sorted(state.all_sessions(), key=lambda s: (s.end, s.id)):
                if session.id in subscription.seen or not _record_visible(state, session, now):
                    continue
                subscription.seen.add(session.id)
                resource = f"communications/callRecords/{session.id}"
                items.append(
                    self._item(
                        subscription,
                        state,
                        "created",
                        resource,
                        {
                            "@odata.type": "#microsoft.graph.callrecord",
                            "@odata.id": resource,
                            "id": session.id,
                        },
                    )
                )
            return items
        if subscription.kind in ("chatMessages", "allChatMessages"):
            items = []
            for chat in _watched_chats(state, subscription):
                for message in chat.messages:
                    key = f"{chat.id}/{message.id}"
                    if message.created > now or key in subscription.seen:
                        continue
                    subscription.seen.add(key)
                    resource = f"chats('{chat.id}')/messages('{message.id}')"
                    items.append(self._message_created(subscription, state, message.id, resource))
            return items
        if subscription.kind == "channelMessages":
            team_id, channel_id = subscription.target.split("/", 1)
            items = []
            for message in _channel_posts(state, subscription):
                if message.created > now or message.id in subscription.seen:
                    continue
                subscription.seen.add(message.id)
                resource = f"teams('{team_id}')/channels('{channel_id}')/messages('{message.id}')"
                if message.reply_to_id is not None:
                    resource = (
                        f"teams('{team_id}')/channels('{channel_id}')/messages"
                        f"('{message.reply_to_id}')/replies('{message.id}')"
                    )
                items.append(self._message_created(subscription, state, message.id, resource))
            return items
        if subscription.kind == "meetingCalls":
            return self._call_events(subscription, state, now)
        return []

    def _message_created(
        self, subscription: FakeSubscription, state: TenantState, message_id: str, resource: str
    ) -> dict[str, Any]:
        """A ``created`` notification for a chat or channel message (its resource data names
        only the message, as Graph's does without resource data included)."""
        return self._item(
            subscription,
            state,
            "created",
            resource,
            {
                "id": message_id,
                "@odata.type": "#Microsoft.Graph.chatMessage",
                "@odata.id": resource,
            },
        )

    def _call_events(
        self, subscription: FakeSubscription, state: TenantState, now: datetime
    ) -> list[dict[str, Any]]:
        """CallStarted, CallRosterUpdate and CallEnded for every change between the last look and
        now, in the order they happened (so a stay shorter than one look is still told)."""
        meetings = state.meetings_by_join_url(subscription.target)
        since = subscription.looked_at or subscription.created
        moments = sorted(
            {
                moment
                for meeting in meetings
                for presence in meeting.presences
                for interval in presence.intervals
                for moment in interval
                if since < moment <= now
            }
            | {
                moment
                for meeting in meetings
                for session in meeting.sessions
                for moment in (session.start, session.end)
                if since < moment <= now
            }
        )
        items: list[dict[str, Any]] = []
        resource = f"communications/onlineMeetings?$filter=joinWebUrl+eq+'{subscription.target}'"
        for moment in moments:
            present = _present(meetings, moment)
            calls = _active_calls(meetings, moment)
            events: list[dict[str, Any]] = []
            if calls - subscription.active_calls:
                events.append({"eventType": "Microsoft.Communication.CallStarted"})
            joined = [present[key] for key in sorted(present.keys() - subscription.present.keys())]
            exited = [
                subscription.present[key]
                for key in sorted(subscription.present.keys() - present.keys())
            ]
            if joined or exited:
                events.append(
                    {
                        "eventType": "Microsoft.Communication.CallRosterUpdate",
                        "activeParticipants@joined": [
                            _active_participant(key, who)
                            for key, (who, _) in zip(
                                sorted(present.keys() - subscription.present.keys()),
                                joined,
                                strict=True,
                            )
                        ],
                        "activeParticipants@exited": [
                            _active_participant(key, who)
                            for key, (who, _) in zip(
                                sorted(subscription.present.keys() - present.keys()),
                                exited,
                                strict=True,
                            )
                        ],
                    }
                )
            if subscription.active_calls - calls:
                events.append({"eventType": "Microsoft.Communication.CallEnded"})
            subscription.present = present
            subscription.active_calls = calls
            for event in events:
                data = {
                    "@odata.type": "#Microsoft.Graph.onlineMeeting",
                    "@odata.id": resource,
                    "id": resource,
                    "eventDateTime": _ids.iso_z(moment, 7),
                    "state": "active",
                    **event,
                }
                items.append(self._item(subscription, state, "updated", resource, data))
        return items

    def event_changed(self, mailbox_id: str, event_id: str, change: str, etag: str) -> None:
        """A calendar event was created, updated or deleted: tell its mailbox's subscribers."""
        state = self._state_ref()
        if state is None:
            return
        now = state.now()
        resource = f"Users/{mailbox_id}/Events/{event_id}"
        with self._lock:
            for subscription in list(self.subscriptions.values()):
                if (
                    subscription.kind != "events"
                    or subscription.target != mailbox_id
                    or change not in subscription.change_types
                    or subscription.expires <= now
                    or subscription.needs_reauthorization
                ):
                    continue
                item = self._item(
                    subscription,
                    state,
                    change,
                    resource,
                    {
                        "@odata.type": "#Microsoft.Graph.Event",
                        "@odata.id": resource,
                        "@odata.etag": f'W/"{etag}"',
                        "id": event_id,
                    },
                )
                self._send_change(subscription, [item])

    @staticmethod
    def _item(
        subscription: FakeSubscription,
        state: TenantState,
        change: str,
        resource: str,
        data: dict[str, Any],
    ) -> dict[str, Any]:
        return {
            "subscriptionId": subscription.id,
            "subscriptionExpirationDateTime": _ids.iso_z(subscription.expires, 7),
            "changeType": change,
            "resource": resource,
            "resourceData": data,
            "clientState": subscription.client_state,
            "tenantId": state.tenant_id,
        }

    def _send_change(self, subscription: FakeSubscription, items: list[dict[str, Any]]) -> None:
        kept = []
        for item in items:
            if self._drop > 0:
                self._drop -= 1
                self.dropped.append(item)
                continue
            kept.append(item)
        if kept:
            self._enqueue(Delivery(subscription.notification_url, {"value": kept}, "change"))

    def _look(self) -> None:
        state = self._state_ref()
        if state is None:
            return
        with state.lock:
            now = state.now()
            with self._lock:
                for subscription in list(self.subscriptions.values()):
                    if subscription.expires <= now:
                        # Graph deletes an expired subscription; nothing more is sent.
                        del self.subscriptions[subscription.id]
                        continue
                    items = self._changes(subscription, state, now)
                    subscription.looked_at = now
                    if subscription.needs_reauthorization:
                        # Delivery pauses until it is reauthorized; these changes are lost.
                        continue
                    if items:
                        self._send_change(subscription, items)

    # --- delivering -----------------------------------------------------------------------------

    def _enqueue(self, delivery: Delivery, delay: float | None = None) -> None:
        with self._lock:
            if self._stopped:
                return
            due = time.monotonic() + (self.delay_seconds if delay is None else delay)
            heapq.heappush(self._queue, (due, next(self._sequence), delivery))
            if delivery not in self.deliveries:
                self.deliveries.append(delivery)
        self._start()
        self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._stopped or (self._thread is not None and self._thread.is_alive()):
                return
            # One delivery at a time, so notifications arrive in the order of the changes
            # (a retried one comes later, as with Graph).
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fake-notify")
            self._thread = threading.Thread(
                target=_run, args=(weakref.ref(self),), name="fake-notifier", daemon=True
            )
            self._thread.start()

    def _due(self) -> list[Delivery]:
        now = time.monotonic()
        due = []
        with self._lock:
            while self._queue and self._queue[0][0] <= now:
                due.append(heapq.heappop(self._queue)[2])
        return due

    def _post(self, delivery: Delivery) -> None:
        delivery.attempts += 1
        try:
            response = requests.post(
                delivery.url,
                data=json.dumps(delivery.body).encode("utf-8"),
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=self.answer_timeout,
                verify=str(self.ca_path) if self.ca_path is not None else True,
            )
        except requests.RequestException as exc:
            outcome: int | str = type(exc).__name__
        else:
            outcome = response.status_code
        with self._lock:
            delivery.statuses.append(outcome)
            if isinstance(outcome, int) and 200 <= outcome < 300:
                delivery.delivered = True
                delivery.delivered_at = time.monotonic()
                return
        if delivery.attempts < self.max_attempts:
            # Graph retries with an exponential back-off (for up to 4 hours).
            self._enqueue(delivery, delay=self.retry_base_seconds * 2 ** (delivery.attempts - 1))


def _run(reference: weakref.ref[Notifier]) -> None:
    """The delivery thread: look at the tenant, post what is due, until the notifier is gone."""
    while True:
        notifier = reference()
        if notifier is None or notifier._stopped:
            return
        try:
            notifier._look()
        except RuntimeError:
            return
        pool = notifier._pool
        for delivery in notifier._due():
            if pool is not None:
                try:
                    pool.submit(notifier._post, delivery)
                except RuntimeError:  # shut down meanwhile
                    return
        wake = notifier._wake
        del notifier  # hold no reference while waiting, so the tenant can be collected
        wake.wait(TICK_SECONDS)
        wake.clear()


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise GraphError(400, "InvalidRequest", f"'{name}' is required.")
    return value.strip()


def _record_visible(state: TenantState, session: CallSession, now: datetime) -> bool:
    delay = timedelta(seconds=state.faults.call_record_delay_seconds)
    return session.has_call_record and now >= session.end + delay


def _watched_chats(state: TenantState, subscription: FakeSubscription) -> list[Any]:
    if subscription.kind == "allChatMessages":
        return list(state.chats.values())
    chat = state.chats.get(subscription.target)
    return [chat] if chat is not None else []


def _channel_posts(state: TenantState, subscription: FakeSubscription) -> list[Any]:
    """Every post and reply of the channel's meetings, each once (a series shares its post)."""
    channel_id = subscription.target.split("/", 1)[1]
    posts: dict[str, Any] = {}
    for meeting in state.meetings_in_channel(channel_id):
        for message in meeting.messages:
            posts.setdefault(message.id, message)
    return sorted(posts.values(), key=lambda m: (m.created, m.id))


def _participant_id(meeting: Meeting, who: Identity, joined: datetime) -> str:
    return _ids.guid(meeting.organizer.id, "call-participant", f"{meeting.key}:{who.id}:{joined}")


def _present(meetings: list[Meeting], moment: datetime) -> dict[str, tuple[Identity, datetime]]:
    """Who is in the meeting's call at ``moment``: participant id -> (identity, joined)."""
    present: dict[str, tuple[Identity, datetime]] = {}
    for meeting in meetings:
        for presence in meeting.presences:
            for start, end in presence.intervals:
                if start <= moment < end:
                    present[_participant_id(meeting, presence.who, start)] = (presence.who, start)
    return present


def _active_calls(meetings: list[Meeting], moment: datetime) -> set[str]:
    return {
        session.id
        for meeting in meetings
        for session in meeting.sessions
        if session.start <= moment < session.end
    }


def _active_participant(participant_id: str, who: Identity) -> dict[str, Any]:
    """An activeParticipant as the documented roster payload writes it (PascalCase identity)."""
    identity: dict[str, dict[str, str | None]]
    if who.kind == "anonymous":
        identity = {"Guest": {"Id": who.id, "DisplayName": who.display_name}}
    elif who.kind == "phone":
        identity = {"Phone": {"Id": who.id, "DisplayName": who.display_name}}
    elif who.kind == "bot":
        identity = {"Application": {"Id": who.id, "DisplayName": who.display_name}}
    else:
        identity = {
            "User": {"Id": who.id, "DisplayName": who.display_name, "TenantId": who.tenant_id}
        }
    return {"id": participant_id, "identity": identity}


# --- routes ---------------------------------------------------------------------------------------


def _handler(name: str, api: str) -> Callable[[Context], GraphResponse]:
    def handle(ctx: Context) -> GraphResponse:
        notifier: Notifier = ctx.state.notifications
        method: Callable[[Context, str], GraphResponse] = getattr(notifier, name)
        return method(ctx, api)

    return handle


def get_channel_reply(ctx: Context) -> GraphResponse:
    """``GET /teams/{id}/channels/{id}/messages/{id}/replies/{id}``: one reply to a post (what a
    channel message notification names)."""
    for message in _channel_thread(ctx):
        if message.id == ctx.params["reply"] and message.reply_to_id is not None:
            if message.created > ctx.now:
                break
            context = (
                f"teams('{ctx.params['team']}')/channels('{ctx.params['channel']}')/messages"
                f"('{ctx.params['message']}')/replies/$entity"
            )
            body = {
                "@odata.context": odata_context(ctx.request, context),
                **_render.chat_message_json(
                    message,
                    include_unknown=ctx.request.include_unknown_enum_members,
                    team_id=ctx.params["team"],
                    channel_id=ctx.params["channel"],
                    tenant_id=ctx.state.tenant_id,
                ),
            }
            return GraphResponse(200, body)
    raise GraphError(404, "ResourceNotFound", "The message was not found.")


def subscription_routes() -> list[Route]:
    """The ``/subscriptions`` routes, on v1.0 and (under ``beta/``) on beta, and the read of one
    channel reply (what a channel message notification names)."""
    routes = [
        Route(
            "GET",
            (
                "teams",
                "{team}",
                "channels",
                "{channel}",
                "messages",
                "{message}",
                "replies",
                "{reply}",
            ),
            get_channel_reply,
            CHANNEL_MESSAGES_READ,
        )
    ]
    for api, prefix in (("v1.0", ""), ("beta", "beta/")):
        for method, path, name in (
            ("POST", "subscriptions", "create"),
            ("GET", "subscriptions", "list_all"),
            ("GET", "subscriptions/{subscription}", "get"),
            ("PATCH", "subscriptions/{subscription}", "update"),
            ("DELETE", "subscriptions/{subscription}", "delete"),
            ("POST", "subscriptions/{subscription}/reauthorize", "reauthorize"),
        ):
            routes.append(
                Route(
                    method, tuple(f"{prefix}{path}".split("/")), _handler(name, api), SUBSCRIPTIONS
                )
            )
    return routes


def beta_router(service: GraphService) -> APIRouter:
    """``/beta/...``: served by the same service, under ``beta/`` routes (only subscriptions)."""
    router = APIRouter()

    @router.api_route("/beta/{rest:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    async def beta(request: Request) -> Response:
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        path = raw_path.decode("latin-1").split("?", 1)[0]
        sub_path = re.sub(r"^/beta", "", path, flags=re.IGNORECASE)
        graph_request = GraphRequest(
            method=request.method,
            raw_path="/beta" + (sub_path or "/"),
            query_string=request.scope.get("query_string", b"").decode("latin-1"),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=await request.body(),
            base_url=f"{request.url.scheme}://{request.url.netloc}",
        )
        response = service.handle(graph_request)
        content = encode_json(response.body) if response.body is not None else b""
        return Response(content=content, status_code=response.status, headers=response.headers)

    return router
