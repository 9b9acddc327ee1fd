"""The fake tenant's state, built from a :class:`Scenario` and a clock.

Everything the scenario describes is materialised once, at construction, with its time
expressions resolved against one reference "now". What a request can *see* is decided later, by
the clock at request time: a call record or attendance report appears once its call has ended,
chat messages and recordings once their time has passed. Tests may inspect and change the state
(faults, forced responses, cancelled or removed meetings, expired tokens) while the server runs;
every access goes through :attr:`TenantState.lock`.
"""

from __future__ import annotations

import base64
import html
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from remote_guard.fakegraph import _ids
from remote_guard.fakegraph.faults import Chaos, FaultPlan, FaultState
from remote_guard.fakegraph.scenario import (
    ChatMessageSpec,
    MeetingSettingsSpec,
    MeetingSpec,
    Scenario,
)
from remote_guard.fakegraph.throttling import Throttling

Clock = Callable[[], datetime]
IdentityKind = Literal["member", "guest", "anonymous", "external", "phone", "bot"]

# The zone names Outlook accepts in dateTimeTimeZone and Prefer: outlook.timezone, mapped to IANA.
WINDOWS_ZONES = {
    "UTC": "UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin",
    "Romance Standard Time": "Europe/Paris",
    "Eastern Standard Time": "America/New_York",
    "Pacific Standard Time": "America/Los_Angeles",
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Identity:
    """Anyone who can appear in the tenant's data: a user of the tenant, or someone outside it."""

    key: str
    id: str
    display_name: str
    kind: IdentityKind
    tenant_id: str | None
    email: str | None = None
    upn: str | None = None
    job_title: str | None = None

    @property
    def in_tenant(self) -> bool:
        """Whether this is a user object of the school tenant (a member or a guest account)."""
        return self.kind in ("member", "guest")


@dataclass(frozen=True)
class Group:
    key: str
    id: str
    display_name: str
    mail_nickname: str
    mail: str
    members: tuple[tuple[Literal["user", "group"], str], ...]  # direct members, (kind, id)
    is_team: bool
    created: datetime


@dataclass(frozen=True)
class Channel:
    key: str
    id: str  # the channel thread id, 19:...@thread.tacv2
    display_name: str
    team_id: str
    created: datetime


@dataclass(frozen=True)
class Team:
    key: str
    id: str
    display_name: str
    channels: tuple[Channel, ...]
    owner_ids: tuple[str, ...]
    member_ids: tuple[str, ...]
    created: datetime


@dataclass(frozen=True)
class Presence:
    """When one identity was in a call."""

    who: Identity
    intervals: tuple[tuple[datetime, datetime], ...]

    def clipped(self, now: datetime) -> Presence | None:
        """The presence as known at ``now``: later joins dropped, open intervals cut at now."""
        kept = tuple((start, min(end, now)) for start, end in self.intervals if start < now)
        return Presence(self.who, kept) if kept else None

    @property
    def seconds(self) -> float:
        return sum((end - start).total_seconds() for start, end in self.intervals)


@dataclass(frozen=True)
class CallSession:
    """One call: a meeting session (a groupCall) or a direct peerToPeer call."""

    id: str  # the call id, which is also the call record id
    report_id: str
    kind: Literal["groupCall", "peerToPeer"]
    start: datetime
    end: datetime
    organizer: Identity
    presences: tuple[Presence, ...]
    join_url: str | None
    modalities: tuple[str, ...]
    meeting_key: str | None
    has_call_record: bool
    has_attendance_report: bool


@dataclass(frozen=True)
class ChatMessage:
    id: str
    chat_id: str  # the chat or channel thread id
    created: datetime
    sender: Identity | None  # None: a system or bot message
    bot_name: str | None
    text: str
    event_detail: dict[str, Any] | None
    reply_to_id: str | None = None
    subject: str | None = None


@dataclass(frozen=True)
class Recording:
    id: str
    kind: Literal["recording", "transcript"]
    meeting_key: str
    started_by: Identity
    created: datetime
    end: datetime
    call_id: str
    content_correlation_id: str


@dataclass(frozen=True)
class EventAttendee:
    name: str
    address: str


@dataclass(frozen=True)
class Meeting:
    """A meeting as the tenant knows it; the calendar copies live in :class:`StoredEvent`."""

    key: str
    subject: str
    organizer: Identity
    start: datetime
    end: datetime
    created: datetime
    series_key: str | None
    is_online: bool
    provider: str
    location: str | None
    body: str | None
    settings: MeetingSettingsSpec
    attendees: tuple[EventAttendee, ...]
    invited_user_ids: tuple[str, ...]
    team: Team | None
    channel: Channel | None
    thread_id: str | None
    message_id: str | None
    join_url: str | None
    online_meeting_id: str | None
    ical_uid: str
    join_meeting_id: str
    passcode: str
    conference_id: str
    video_teleconference_id: str
    presences: tuple[Presence, ...]
    sessions: tuple[CallSession, ...]
    messages: tuple[ChatMessage, ...]
    recordings: tuple[Recording, ...]

    @property
    def is_teams(self) -> bool:
        return self.is_online and self.provider == "teamsForBusiness"

    @property
    def hosted_here(self) -> bool:
        """Whether the Teams meeting lives in this tenant (an external organiser's does not)."""
        return self.is_teams and self.organizer.in_tenant

    @property
    def is_channel_meeting(self) -> bool:
        return self.channel is not None

    def involves(self, user_id: str) -> bool:
        """Whether the user organised, was invited to, or attended the meeting."""
        return (
            self.organizer.id == user_id
            or user_id in self.invited_user_ids
            or any(p.who.id == user_id for p in self.presences)
        )


@dataclass(frozen=True)
class Chat:
    id: str
    chat_type: Literal["oneOnOne", "group", "meeting"]
    topic: str | None
    created: datetime
    members: tuple[Identity, ...]
    owner_ids: tuple[str, ...]
    messages: tuple[ChatMessage, ...]
    meeting_key: str | None
    key: str | None = None  # the scenario key of a direct chat (chats:)


@dataclass
class StoredEvent:
    """One copy of an event in one mailbox (Exchange gives each copy its own id)."""

    id: str
    mailbox_id: str
    ical_uid: str
    subject: str
    body_html: str
    body_content_type: str
    body_preview: str
    start: datetime
    end: datetime
    display_zone: str  # the zone a POST asked for; reads use UTC unless the client prefers one
    organizer: EventAttendee
    is_organizer: bool
    attendees: list[dict[str, Any]]
    is_online: bool
    provider: str
    online_meeting: dict[str, Any] | None
    location: str | None
    is_cancelled: bool
    created: datetime
    last_modified: datetime
    meeting_key: str | None
    transaction_id: str | None = None
    revision: int = 0
    series_master_id: str | None = None  # set on an occurrence of a recurring meeting
    # An occurrence's start when the series was made (Graph's originalStart): it stays the same
    # when the occurrence is moved, which makes it an exception.
    original_start: datetime | None = None

    @property
    def change_key(self) -> str:
        return _ids.change_key(self.id, str(self.revision))

    def touch(self, now: datetime) -> None:
        self.revision += 1
        self.last_modified = now


@dataclass(frozen=True)
class TokenGrant:
    client_id: str
    roles: frozenset[str]
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request the fake served (or one item of a ``$batch``)."""

    method: str
    path: str  # as sent, percent-encoding kept, with the query string
    status: int
    in_batch: bool
    at: datetime  # the fake tenant's clock when it was served


@dataclass(frozen=True)
class CreatedEvent:
    """An event a client created with ``POST /users/{id}/events``."""

    user_id: str
    event_id: str
    request_body: dict[str, Any]
    transaction_id: str | None
    created_teams_meeting: bool  # Graph made a new Teams meeting for it (isOnlineMeeting true)
    join_url: str | None
    at: datetime


@dataclass(frozen=True)
class SentMail:
    """A message a client sent with ``POST /users/{id}/sendMail``, as Graph accepted it."""

    sender_id: str  # the mailbox it was sent as
    subject: str
    content_type: str  # text | html
    content: str
    to: tuple[str, ...]  # recipients' addresses
    save_to_sent_items: bool
    at: datetime


@dataclass
class PageCursor:
    """Server-side paging state behind an opaque ``$skiptoken``."""

    items: list[Any]
    offset: int
    page_size: int


@dataclass
class DeltaState:
    """What a delta round ended with: the events the client has been told about."""

    user_id: str
    window: tuple[datetime, datetime]
    seen: dict[str, str]  # event id -> changeKey


@dataclass
class DeltaCursor:
    pending: list[StoredEvent | str]  # events to send, or ids of removed events
    page_size: int
    final: DeltaState


@dataclass
class _Overrides:
    created_events: list[CreatedEvent] = field(default_factory=list)
    sent_mail: list[SentMail] = field(default_factory=list)
    transactions: dict[tuple[str, str], str] = field(default_factory=dict)


class TenantState:
    """Users, groups, teams, calendars, meetings and their artefacts, plus run-time knobs.

    Public knobs for tests: :attr:`faults`, :meth:`inject`, :attr:`app_permissions`,
    :attr:`access_policy`, :meth:`invalidate_delta_tokens`, :meth:`expire_tokens`,
    :meth:`cancel_meeting`, :meth:`remove_meeting`, :meth:`update_meeting`, :attr:`chaos`,
    :attr:`created_events`, :attr:`sent_mail`, :attr:`requests`,
    :attr:`client_secret_expired`, :attr:`protected_apis_approved`.
    """

    def __init__(self, scenario: Scenario, *, clock: Clock | None = None) -> None:
        """Materialise the scenario.

        Raises:
            ValueError: a time expression in the scenario cannot be resolved.
        """
        self.scenario = scenario
        self._clock: Clock = clock or _utc_now
        # With no fixed "now" in the scenario, the tenant's clock says what "now" is, so a test
        # that controls the clock also controls where relative times land.
        self.reference_now = (
            scenario.reference_now() if scenario.now is not None else self.now()
        ).astimezone(UTC)
        self.tenant_id = scenario.tenant.id
        self.domain = scenario.tenant.domain
        self.lock = threading.RLock()
        self.faults = FaultState.from_spec(scenario.faults)
        self.fault_plan = FaultPlan(self.faults, scenario.faults.seed)
        # Seeded random faults at the HTTP level, off until a test calls chaos.start().
        self.chaos = Chaos(scenario.faults.seed)
        # Graph's published service limits, off until a test or benchmark turns them on.
        self.throttling = Throttling()
        self.app_permissions: set[str] = set(scenario.app.permissions)
        self.access_policy: Literal["global", "none"] | list[str] = (
            list(scenario.app.access_policy)
            if isinstance(scenario.app.access_policy, list)
            else scenario.app.access_policy
        )
        # The app's client secret has passed its end date in Entra (AADSTS7000222).
        self.client_secret_expired = False
        # Whether Microsoft approved the app for the Teams protected APIs (chat and channel
        # messages); without it they answer 403 even with the permission consented.
        self.protected_apis_approved = True
        self._tokens: dict[str, TokenGrant] = {}
        self._requests: list[RequestRecord] = []
        self._overrides = _Overrides()
        self._cursors: dict[str, PageCursor] = {}
        self._delta_cursors: dict[str, DeltaCursor] = {}
        self._delta_states: dict[str, DeltaState] = {}

        self.identities: dict[str, Identity] = {}  # by scenario key
        self.users: dict[str, Identity] = {}  # by object id, users of the tenant only
        self.groups: dict[str, Group] = {}
        self.teams: dict[str, Team] = {}
        self.meetings: dict[str, Meeting] = VersionedDict()
        self.peer_calls: list[CallSession] = []
        self.chats: dict[str, Chat] = VersionedDict()
        self.calendars: dict[str, dict[str, StoredEvent]] = {}
        self._series_created: dict[str, datetime] = {}
        # Message ids already used in each chat or channel thread (a series shares its thread).
        self._thread_message_ids: dict[str, set[str]] = {}
        self._indexes = _Indexes()
        self._build()
        self.throttling.tenant_users = len(self.users)
        # Change notifications: subscriptions and their delivery (imported here: the module
        # imports this one).
        from remote_guard.fakegraph.notifications import Notifier

        self.notifications = Notifier(self)

    # --- clock ----------------------------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock().astimezone(UTC)

    def when(self, expression: str) -> datetime:
        return self.scenario.when(expression, self.reference_now)

    # --- construction ---------------------------------------------------------------------------

    def _build(self) -> None:
        scenario = self.scenario
        for person in scenario.people:
            upn = scenario.person_upn(person.key)
            mail = upn
            if "#EXT#" in upn:
                # A B2B guest's UPN encodes its home address: jo_example.com#EXT#@tenant.
                local, _, domain = upn.split("#EXT#", 1)[0].rpartition("_")
                mail = f"{local}@{domain}" if local else upn
            identity = Identity(
                key=person.key,
                id=scenario.person_id(person.key),
                display_name=person.name,
                kind="guest" if person.kind == "guest" else "member",
                tenant_id=self.tenant_id,
                email=mail,
                upn=upn,
                job_title=person.job_title,
            )
            self.identities[person.key] = identity
            self.users[identity.id] = identity
        for external in scenario.externals:
            self.identities[external.key] = self._external_identity(external.key)
        created = self.reference_now - timedelta(days=400)
        for group in scenario.groups:
            group_id = scenario.group_id(group.key)
            nickname = re.sub(r"[^A-Za-z0-9]", "", group.name) or group.key
            members: list[tuple[Literal["user", "group"], str]] = []
            for member in group.members:
                if member in self.identities:
                    members.append(("user", self.identities[member].id))
                else:
                    members.append(("group", scenario.group_id(member)))
            self.groups[group_id] = Group(
                key=group.key,
                id=group_id,
                display_name=group.name,
                mail_nickname=nickname,
                mail=f"{nickname}@{self.domain}",
                members=tuple(members),
                is_team=False,
                created=created,
            )
        for team_spec in scenario.teams:
            team_id = scenario.team_id(team_spec.key)
            channels = tuple(
                Channel(
                    key=channel.key,
                    id=channel.id
                    or f"19:{_ids.digest(self.tenant_id, 'channel', team_spec.key, channel.key, size=16).hex()}@thread.tacv2",
                    display_name=channel.name,
                    team_id=team_id,
                    created=created,
                )
                for channel in team_spec.channels
            )
            owner_ids = tuple(self.identities[key].id for key in team_spec.owners)
            member_ids = tuple(
                dict.fromkeys([*owner_ids, *(self.identities[key].id for key in team_spec.members)])
            )
            self.teams[team_id] = Team(
                key=team_spec.key,
                id=team_id,
                display_name=team_spec.name,
                channels=channels,
                owner_ids=owner_ids,
                member_ids=member_ids,
                created=created,
            )
            nickname = re.sub(r"[^A-Za-z0-9]", "", team_spec.name) or team_spec.key
            # Every team is a Microsoft 365 group with the same id.
            self.groups[team_id] = Group(
                key=team_spec.key,
                id=team_id,
                display_name=team_spec.name,
                mail_nickname=nickname,
                mail=f"{nickname}@{self.domain}",
                members=tuple(("user", user_id) for user_id in member_ids),
                is_team=True,
                created=created,
            )
        # The occurrences of a recurring meeting are one Teams meeting, made when the series was:
        # two days before its first occurrence (or before now, whichever is earlier).
        for spec in scenario.meetings:
            if spec.series is not None:
                first = self._series_created.get(spec.series)
                created = min(self.when(spec.start), self.reference_now) - timedelta(days=2)
                self._series_created[spec.series] = min(created, first or created)
        for spec in scenario.meetings:
            meeting = self._build_meeting(spec)
            self.meetings[spec.key] = meeting
            if spec.calendar:
                # An ad-hoc ("Meet now") meeting is on nobody's calendar.
                self._add_calendar_copies(meeting, cancelled=spec.cancelled)
            if meeting.hosted_here and not meeting.is_channel_meeting:
                self._add_meeting_chat(meeting)
        for call in scenario.calls:
            caller = self.identities[call.caller]
            callee = self.identities[call.callee]
            start, end = self.when(call.start), self.when(call.end)
            self.peer_calls.append(
                CallSession(
                    id=self.peer_call_id(call.key),
                    report_id=_ids.guid(self.tenant_id, "attendance-report", call.key),
                    kind="peerToPeer",
                    start=start,
                    end=end,
                    organizer=caller,
                    presences=(
                        Presence(caller, ((start, end),)),
                        Presence(callee, ((start, end),)),
                    ),
                    join_url=None,
                    modalities=tuple(call.modalities),
                    meeting_key=None,
                    has_call_record=True,
                    has_attendance_report=False,
                )
            )
        for chat_spec in scenario.chats:
            chat_members = tuple(self.identities[key] for key in chat_spec.members)
            if len(chat_members) == 2:
                chat_id = "19:" + "_".join(sorted(m.id for m in chat_members)) + "@unq.gbl.spaces"
                chat_type: Literal["oneOnOne", "group"] = "oneOnOne"
            else:
                digest = _ids.digest(self.tenant_id, "chat", chat_spec.key, size=16).hex()
                chat_id = f"19:{digest}@thread.v2"
                chat_type = "group"
            messages = self._build_messages(
                chat_id, chat_spec.messages, meeting=None, sessions=(), organizer=None
            )
            self.chats[chat_id] = Chat(
                id=chat_id,
                chat_type=chat_type,
                topic=None,
                created=self.when(chat_spec.created),
                members=chat_members,
                owner_ids=(),
                messages=messages,
                meeting_key=None,
                key=chat_spec.key,
            )

    def series_master_id(self, meeting: Meeting, mailbox_id: str) -> str | None:
        """The id of the series master event in one mailbox (each mailbox has its own copy, so
        its own id), or None for a meeting that is not part of a series."""
        if meeting.series_key is None:
            return None
        return _ids.outlook_id(self.tenant_id, mailbox_id, "series", meeting.series_key)

    def peer_call_id(self, call_key: str) -> str:
        """The call (and call record) id of the scenario's direct call with ``call_key``."""
        return _ids.guid(self.tenant_id, "call", call_key)

    def _external_identity(self, key: str) -> Identity:
        spec = next(external for external in self.scenario.externals if external.key == key)
        if spec.kind == "anonymous":
            return Identity(
                key=key,
                id=_ids.guid(self.tenant_id, "anonymous", key),
                display_name=spec.name,
                kind="anonymous",
                tenant_id=None,
                email=spec.email,
            )
        if spec.kind == "bot":
            # An application identity (e.g. a recording bot): no user, no tenant account.
            return Identity(
                key=key,
                id=_ids.guid(self.tenant_id, "bot", key),
                display_name=spec.name,
                kind="bot",
                tenant_id=None,
                email=None,
            )
        if spec.kind == "phone":
            number = spec.phone or "+4477009" + _ids.digits(self.tenant_id, key, count=5)
            masked = _mask_phone(number)
            return Identity(
                key=key,
                id=masked,
                display_name=masked,
                kind="phone",
                tenant_id=None,
                email=None,
            )
        home_tenant = spec.tenant_id or _ids.guid(self.tenant_id, "external-tenant", key)
        email = spec.email or f"{key}@external.example"
        return Identity(
            key=key,
            id=_ids.guid(home_tenant, "user", key),
            display_name=spec.name,
            kind="external",
            tenant_id=home_tenant,
            email=email,
            upn=email,
        )

    def transitive_user_ids(self, group_id: str) -> list[str]:
        """Users in the group, directly or through nested groups, in a stable order."""
        users: list[str] = []
        for kind, member_id in self.transitive_members(group_id):
            if kind == "user":
                users.append(member_id)
        return users

    def transitive_members(self, group_id: str) -> list[tuple[Literal["user", "group"], str]]:
        """Users and nested groups under the group, each once (cycles are cut)."""
        seen: set[str] = {group_id}
        found: list[tuple[Literal["user", "group"], str]] = []
        queue = [group_id]
        while queue:
            group = self.groups.get(queue.pop(0))
            if group is None:
                continue
            for kind, member_id in group.members:
                if member_id in seen:
                    continue
                seen.add(member_id)
                found.append((kind, member_id))
                if kind == "group":
                    queue.append(member_id)
        return found

    def _build_meeting(
        self, spec: MeetingSpec, *, created: datetime | None = None, key_kind: str = "meeting"
    ) -> Meeting:
        tenant = self.tenant_id
        organizer = self.identities[spec.organizer]
        start, end = self.when(spec.start), self.when(spec.end)
        if created is None and spec.series is not None:
            created = self._series_created.get(spec.series)
        if created is None:
            created = min(start, self.reference_now) - timedelta(days=2)
        # What identifies the Teams meeting: the series for an occurrence of a recurring meeting
        # (all occurrences share one join URL, onlineMeeting and chat), else the meeting itself.
        link_key = f"series:{spec.series}" if spec.series is not None else spec.key
        attendees, invited_ids = self._invitees(spec, organizer)
        team: Team | None = None
        channel: Channel | None = None
        if spec.channel is not None:
            team_key, channel_key = spec.channel.split("/", 1)
            team = self.teams[self.scenario.team_id(team_key)]
            channel = next(c for c in team.channels if c.key == channel_key)
        is_teams = spec.is_online and spec.provider == "teamsForBusiness"
        thread_id = message_id = join_url = online_meeting_id = None
        if is_teams:
            thread_id, message_id, join_url = self._teams_links(
                link_key, organizer, channel, created, key_kind
            )
        hosted_here = is_teams and organizer.in_tenant
        if hosted_here and thread_id is not None and message_id is not None:
            online_meeting_id = _ids.online_meeting_id(organizer.id, message_id, thread_id)
        presences = tuple(
            Presence(
                self.identities[attendance.who],
                tuple(sorted((self.when(a), self.when(b)) for a, b in attendance.intervals)),
            )
            for attendance in spec.attendance
        )
        sessions = (
            self._sessions(spec, organizer, presences, join_url, key_kind) if hosted_here else ()
        )
        meeting = Meeting(
            key=spec.key,
            subject=spec.subject,
            organizer=organizer,
            start=start,
            end=end,
            created=created,
            series_key=spec.series,
            is_online=spec.is_online,
            provider=spec.provider if spec.is_online else "unknown",
            location=spec.location,
            body=spec.body,
            settings=spec.settings,
            attendees=attendees,
            invited_user_ids=invited_ids,
            team=team,
            channel=channel,
            thread_id=thread_id,
            message_id=message_id,
            join_url=join_url,
            online_meeting_id=online_meeting_id,
            ical_uid=_ids.ical_uid(tenant, key_kind, spec.key),
            join_meeting_id=_ids.digits(tenant, "join-meeting-id", link_key, count=12),
            passcode=base64.b32encode(_ids.digest(tenant, "passcode", link_key, size=5))
            .decode()[:6]
            .replace("0", "x"),
            conference_id=_ids.digits(tenant, "conference", link_key, count=9),
            video_teleconference_id=_ids.digits(tenant, "vtc", link_key, count=10),
            presences=presences,
            sessions=sessions,
            messages=(),
            recordings=self._recordings(spec, sessions) if hosted_here and not channel else (),
        )
        if hosted_here:
            meeting = replace(meeting, messages=self._meeting_messages(meeting, spec))
        return meeting

    def _invitees(
        self, spec: MeetingSpec, organizer: Identity
    ) -> tuple[tuple[EventAttendee, ...], tuple[str, ...]]:
        """The invitation's attendees, and the tenant users who get a calendar copy."""
        attendees: list[EventAttendee] = []
        invited: list[str] = []
        for invitee in spec.invitees:
            if invitee in self.identities:
                person = self.identities[invitee]
                attendees.append(EventAttendee(person.display_name, person.email or ""))
                invited.append(person.id)
            elif "@" in invitee:
                user = self.user(invitee)
                if user is not None:
                    attendees.append(EventAttendee(user.display_name, user.email or invitee))
                    invited.append(user.id)
                else:
                    attendees.append(EventAttendee(invitee, invitee))
            else:
                # Outlook keeps a group as one attendee and delivers to its members.
                group = self.groups[self.scenario.group_id(invitee)]
                attendees.append(EventAttendee(group.display_name, group.mail))
                invited.extend(self.transitive_user_ids(group.id))
        invited_ids = tuple(uid for uid in dict.fromkeys(invited) if uid != organizer.id)
        return tuple(attendees), invited_ids

    def _teams_links(
        self,
        link_key: str,
        organizer: Identity,
        channel: Channel | None,
        created: datetime,
        key_kind: str,
    ) -> tuple[str, str, str]:
        """(chat thread id, chat message id, join URL) of a Teams meeting."""
        tenant = self.tenant_id
        context_tenant = organizer.tenant_id or tenant
        context = (
            f"?context=%7b%22Tid%22%3a%22{context_tenant}%22%2c%22Oid%22%3a%22{organizer.id}%22%7d"
        )
        if channel is not None:
            # A channel meeting is a post in the channel; its id is a Teams message id (ms).
            message_id = str(
                _ids.millis(created) + int(_ids.digits(tenant, key_kind, link_key, count=3))
            )
            join_url = (
                "https://teams.microsoft.com/l/meetup-join/"
                f"{_encode_thread(channel.id)}/{message_id}{context}"
            )
            return channel.id, message_id, join_url
        thread_id = _ids.meeting_thread_id(tenant, f"{key_kind}:{link_key}")
        join_url = (
            f"https://teams.microsoft.com/l/meetup-join/{_encode_thread(thread_id)}/0{context}"
        )
        return thread_id, "0", join_url

    def _recordings(
        self, spec: MeetingSpec, sessions: tuple[CallSession, ...]
    ) -> tuple[Recording, ...]:
        tenant = self.tenant_id
        recordings = []
        for index, recording in enumerate(spec.recordings):
            at = self.when(recording.at)
            recordings.append(
                Recording(
                    id=_ids.guid(tenant, f"{recording.kind}", f"{spec.key}#{index}"),
                    kind=recording.kind,
                    meeting_key=spec.key,
                    started_by=self.identities[recording.started_by],
                    created=at,
                    end=self.when(recording.end) if recording.end else at,
                    call_id=_call_id_at(sessions, at)
                    or _ids.guid(tenant, "call", f"{spec.key}@{index}"),
                    content_correlation_id=_ids.guid(
                        tenant, "recording-correlation", f"{spec.key}#{index}"
                    ),
                )
            )
        return tuple(recordings)

    def _meeting_messages(self, meeting: Meeting, spec: MeetingSpec) -> tuple[ChatMessage, ...]:
        """The meeting chat (or, for a channel meeting, the post and its replies), by time."""
        thread_id = meeting.thread_id or ""
        in_channel = meeting.channel is not None
        # The occurrences of a series share one thread (and, in a channel, one post): message
        # ids stay unique across them, and the post itself is written once.
        first_in_thread = thread_id not in self._thread_message_ids
        used = self._thread_message_ids.setdefault(thread_id, set())
        if in_channel and meeting.message_id:
            used.add(meeting.message_id)
        messages = self._build_messages(
            thread_id,
            spec.chat,
            meeting=meeting,
            sessions=meeting.sessions,
            organizer=meeting.organizer,
            reply_to_id=meeting.message_id if in_channel else None,
            used=used,
        )
        messages += self._recording_messages(meeting, thread_id, used)
        if in_channel and first_in_thread:
            root = ChatMessage(
                id=meeting.message_id or "0",
                chat_id=thread_id,
                created=meeting.created,
                sender=meeting.organizer,
                bot_name=None,
                text=f"<p>{html.escape(meeting.subject)}</p>",
                event_detail=None,
                subject=meeting.subject,
            )
            messages = (root, *messages)
        return tuple(sorted(messages, key=lambda m: (m.created, m.id)))

    def _sessions(
        self,
        spec: MeetingSpec,
        organizer: Identity,
        presences: tuple[Presence, ...],
        join_url: str | None,
        key_kind: str,
    ) -> tuple[CallSession, ...]:
        intervals = sorted(interval for p in presences for interval in p.intervals)
        blocks: list[list[datetime]] = []
        for start, end in intervals:
            if blocks and start <= blocks[-1][1]:
                blocks[-1][1] = max(blocks[-1][1], end)
            else:
                blocks.append([start, end])
        sessions = []
        for index, (block_start, block_end) in enumerate(blocks):
            block_presences = []
            for presence in presences:
                inside = tuple(
                    (start, end)
                    for start, end in presence.intervals
                    if start >= block_start and end <= block_end
                )
                if inside:
                    block_presences.append(Presence(presence.who, inside))
            session_key = f"{key_kind}:{spec.key}#{index}"
            sessions.append(
                CallSession(
                    id=_ids.guid(self.tenant_id, "call", session_key),
                    report_id=_ids.guid(self.tenant_id, "attendance-report", session_key),
                    kind="groupCall",
                    start=block_start,
                    end=block_end,
                    organizer=organizer,
                    presences=tuple(block_presences),
                    join_url=join_url,
                    modalities=("audio", "video", "videoBasedScreenSharing"),
                    meeting_key=spec.key,
                    has_call_record=spec.call_record,
                    has_attendance_report=spec.attendance_report and spec.channel is None,
                )
            )
        return tuple(sessions)

    def _build_messages(
        self,
        chat_id: str,
        specs: Iterable[ChatMessageSpec],
        *,
        meeting: Meeting | None,
        sessions: tuple[CallSession, ...],
        organizer: Identity | None,
        reply_to_id: str | None = None,
        used: set[str] | None = None,
    ) -> tuple[ChatMessage, ...]:
        used = set() if used is None else used
        messages = []
        for spec in specs:
            at = self.when(spec.at)
            message_id = _unique_message_id(at, used)
            initiator = self.identities.get(spec.initiator) if spec.initiator else None
            sender: Identity | None = None
            bot_name: str | None = None
            detail: dict[str, Any] | None = None
            text = html.escape(spec.text)
            if spec.sender == "system" or spec.event is not None:
                detail = self._event_detail(
                    spec.event or "callStarted",
                    at=at,
                    initiator=initiator or self.identities.get(spec.sender) or organizer,
                    meeting=meeting,
                    sessions=sessions,
                    organizer=organizer,
                )
                text = "<systemEventMessage/>"
            elif spec.sender.startswith("bot:"):
                bot_name = spec.sender.removeprefix("bot:")
                text = f"<p>{text}</p>"
            elif self.identities[spec.sender].kind == "bot":
                bot_name = self.identities[spec.sender].display_name
                text = f"<p>{text}</p>"
            else:
                sender = self.identities[spec.sender]
                text = f"<p>{text}</p>"
            messages.append(
                ChatMessage(
                    id=message_id,
                    chat_id=chat_id,
                    created=at,
                    sender=sender,
                    bot_name=bot_name,
                    text=text,
                    event_detail=detail,
                    reply_to_id=reply_to_id,
                )
            )
        return tuple(messages)

    def _recording_messages(
        self, meeting: Meeting, chat_id: str, used: set[str]
    ) -> tuple[ChatMessage, ...]:
        messages = []
        for recording in meeting.recordings:
            detail = self._recording_detail(recording, meeting)
            messages.append(
                ChatMessage(
                    id=_unique_message_id(recording.created, used),
                    chat_id=chat_id,
                    created=recording.created,
                    sender=None,
                    bot_name=None,
                    text="<systemEventMessage/>",
                    event_detail=detail,
                )
            )
        return tuple(messages)

    def _recording_detail(self, recording: Recording, meeting: Meeting) -> dict[str, Any]:
        organizer = meeting.organizer
        if recording.kind == "transcript":
            return {
                "@odata.type": "#microsoft.graph.callTranscriptEventMessageDetail",
                "callId": recording.call_id,
                "callTranscriptICalUid": meeting.ical_uid,
                "meetingOrganizer": teamwork_identity_set(organizer),
            }
        stamp = recording.created.strftime("%Y%m%d_%H%M%S")
        name = f"{meeting.subject}-{stamp}-Meeting Recording"
        upn_path = (organizer.upn or organizer.id).replace("@", "_").replace(".", "_")
        return {
            "@odata.type": "#microsoft.graph.callRecordingEventMessageDetail",
            "callId": recording.call_id,
            "callRecordingDisplayName": name,
            "callRecordingUrl": (
                f"https://{self.domain.split('.')[0]}-my.sharepoint.com/personal/{upn_path}"
                f"/Documents/Recordings/{name.replace(' ', '%20')}.mp4"
            ),
            "callRecordingDuration": _ids.iso_duration(
                (recording.end - recording.created).total_seconds()
            ),
            "callRecordingStatus": "success",
            "initiator": teamwork_identity_set(recording.started_by),
            "meetingOrganizer": teamwork_identity_set(organizer),
        }

    def _event_detail(
        self,
        event: str,
        *,
        at: datetime,
        initiator: Identity | None,
        meeting: Meeting | None,
        sessions: tuple[CallSession, ...],
        organizer: Identity | None,
    ) -> dict[str, Any]:
        call_id = _call_id_at(sessions, at) or _ids.guid(self.tenant_id, "call", f"chat@{at}")
        who = teamwork_identity_set(initiator) if initiator else None
        members = [_member_ref(initiator)] if initiator else []
        if event == "callStarted":
            return {
                "@odata.type": "#microsoft.graph.callStartedEventMessageDetail",
                "callEventType": "meeting",
                "callId": call_id,
                "initiator": who,
            }
        if event == "callEnded":
            session = _session_at(sessions, at)
            participants = session.presences if session else ()
            duration = (session.end - session.start).total_seconds() if session else 0.0
            return {
                "@odata.type": "#microsoft.graph.callEndedEventMessageDetail",
                "callDuration": _ids.iso_duration(duration),
                "callEventType": "meeting",
                "callId": call_id,
                "callParticipants": [
                    {"participant": teamwork_identity_set(p.who)} for p in participants
                ],
                "initiator": who,
            }
        if event == "callRecording" and meeting is not None and initiator is not None:
            recording = Recording(
                id="",
                kind="recording",
                meeting_key=meeting.key,
                started_by=initiator,
                created=at,
                end=at,
                call_id=call_id,
                content_correlation_id="",
            )
            return self._recording_detail(recording, meeting)
        if event == "callRecording":
            return {
                "@odata.type": "#microsoft.graph.callRecordingEventMessageDetail",
                "callId": call_id,
                "callRecordingDisplayName": None,
                "callRecordingUrl": None,
                "callRecordingDuration": None,
                "callRecordingStatus": "success",
                "initiator": who,
                "meetingOrganizer": teamwork_identity_set(organizer) if organizer else None,
            }
        if event == "callTranscript":
            return {
                "@odata.type": "#microsoft.graph.callTranscriptEventMessageDetail",
                "callId": call_id,
                "callTranscriptICalUid": meeting.ical_uid if meeting else None,
                "meetingOrganizer": teamwork_identity_set(organizer) if organizer else None,
            }
        if event == "membersAdded":
            return {
                "@odata.type": "#microsoft.graph.membersAddedEventMessageDetail",
                "visibleHistoryStartDateTime": "0001-01-01T00:00:00Z",
                "members": members,
                "initiator": who,
            }
        return {
            "@odata.type": f"#microsoft.graph.{event}EventMessageDetail",
            "members": members,
            "initiator": who,
        }

    def _add_meeting_chat(self, meeting: Meeting) -> None:
        assert meeting.thread_id is not None  # noqa: S101 - hosted Teams meetings have a thread
        members = [meeting.organizer]
        members.extend(self.users[uid] for uid in meeting.invited_user_ids if uid in self.users)
        members.extend(p.who for p in meeting.presences if p.who.kind in ("member", "guest"))
        messages = meeting.messages
        meeting_key = meeting.key
        existing = self.chats.get(meeting.thread_id)
        if existing is not None:
            # Another occurrence of the same series: one chat holds the whole series.
            members = [*existing.members, *members]
            messages = tuple(
                sorted((*existing.messages, *messages), key=lambda m: (m.created, m.id))
            )
            meeting_key = existing.meeting_key or meeting.key
        unique = tuple({m.id: m for m in members}.values())
        self.chats[meeting.thread_id] = Chat(
            id=meeting.thread_id,
            chat_type="meeting",
            topic=existing.topic if existing is not None else meeting.subject,
            created=min(meeting.created, existing.created) if existing else meeting.created,
            members=unique,
            owner_ids=(meeting.organizer.id,),
            messages=messages,
            meeting_key=meeting_key,
        )

    def _add_calendar_copies(self, meeting: Meeting, *, cancelled: bool) -> None:
        mailboxes = ([meeting.organizer.id] if meeting.organizer.in_tenant else []) + list(
            meeting.invited_user_ids
        )
        body_html, preview = meeting_body(meeting)
        for mailbox in mailboxes:
            is_organizer = mailbox == meeting.organizer.id
            subject = meeting.subject
            if cancelled and not is_organizer:
                subject = f"Canceled: {subject}"
            event = StoredEvent(
                id=_ids.outlook_id(self.tenant_id, mailbox, "event", meeting.key),
                mailbox_id=mailbox,
                ical_uid=meeting.ical_uid,
                subject=subject,
                body_html=body_html,
                body_content_type="html",
                body_preview=preview,
                start=meeting.start,
                end=meeting.end,
                display_zone="UTC",
                organizer=EventAttendee(
                    meeting.organizer.display_name, meeting.organizer.email or ""
                ),
                is_organizer=is_organizer,
                attendees=[_attendee_json(a) for a in meeting.attendees],
                is_online=meeting.is_online,
                provider=meeting.provider,
                online_meeting=online_meeting_info(meeting),
                location=meeting.location
                or ("Microsoft Teams Meeting" if meeting.is_teams else None),
                is_cancelled=cancelled,
                created=meeting.created,
                last_modified=meeting.created,
                meeting_key=meeting.key,
                series_master_id=self.series_master_id(meeting, mailbox),
                original_start=meeting.start if meeting.series_key is not None else None,
            )
            self.calendars.setdefault(mailbox, {})[event.id] = event

    # --- lookups --------------------------------------------------------------------------------

    def user(self, reference: str) -> Identity | None:
        """A user of the tenant by object id, userPrincipalName or mail (case-insensitive)."""
        if reference in self.users:
            return self.users[reference]
        lowered = reference.lower()
        for user in self.users.values():
            if lowered in (user.id.lower(), (user.upn or "").lower(), (user.email or "").lower()):
                return user
        return None

    def user_key_for(self, user_id: str) -> str | None:
        user = self.users.get(user_id)
        return user.key if user else None

    def policy_covers(self, user_id: str) -> bool:
        """Whether the Teams application access policy lets the app act for this user."""
        if self.access_policy == "global":
            return True
        if self.access_policy == "none":
            return False
        key = self.user_key_for(user_id)
        return key is not None and key in self.access_policy

    def all_meetings(self) -> list[Meeting]:
        # A meeting the chaos schedule deleted mid-cycle is gone from Teams too until restored.
        return [m for key, m in self.meetings.items() if key not in self.chaos.removed]

    def meetings_by_join_url(self, join_url: str) -> list[Meeting]:
        """The meetings (of :meth:`all_meetings`, in its order) whose join URL is ``join_url``."""
        keys = self._indexes.meetings(self.meetings)[0].get(join_url, ())
        return [
            self.meetings[key]
            for key in keys
            if key not in self.chaos.removed and self.meetings[key].join_url == join_url
        ]

    def meeting_by_join_url(self, join_url: str) -> Meeting | None:
        for meeting in self.meetings_by_join_url(join_url):
            if meeting.hosted_here:
                return meeting
        return None

    def meetings_in_channel(self, channel_id: str) -> list[Meeting]:
        """The meetings (of :meth:`all_meetings`, in its order) held in the channel."""
        keys = self._indexes.meetings(self.meetings)[2].get(channel_id, ())
        return [
            self.meetings[key]
            for key in keys
            if key not in self.chaos.removed
            and (channel := self.meetings[key].channel) is not None
            and channel.id == channel_id
        ]

    def _with_online_id(self, meeting_id: str) -> list[Meeting]:
        keys = self._indexes.meetings(self.meetings)[1].get(meeting_id, ())
        return [self.meetings[key] for key in keys]

    def meeting_by_online_id(self, meeting_id: str) -> Meeting | None:
        """The meeting with this onlineMeeting id; for a recurring meeting, its first occurrence
        (the series is one onlineMeeting)."""
        found = [
            m
            for m in self._with_online_id(meeting_id)
            if m.key not in self.chaos.removed and m.online_meeting_id == meeting_id
        ]
        return min(found, key=lambda m: (m.start, m.key)) if found else None

    def occurrences(self, meeting: Meeting) -> list[Meeting]:
        """Every meeting that is the same Teams meeting as ``meeting`` (the occurrences of its
        series, by start), or just ``meeting``."""
        if meeting.online_meeting_id is None or meeting.series_key is None:
            return [meeting]
        return sorted(
            (
                m
                for m in self._with_online_id(meeting.online_meeting_id)
                if m.online_meeting_id == meeting.online_meeting_id
            ),
            key=lambda m: (m.start, m.key),
        )

    def all_sessions(self) -> list[CallSession]:
        sessions = [s for m in self.meetings.values() for s in m.sessions]
        return sessions + self.peer_calls

    def call_session(self, call_id: str) -> CallSession | None:
        """The call (meeting session or direct call) with this id, visible or not."""
        return self._indexes.sessions(self.meetings, self.peer_calls).get(call_id)

    def chats_of(self, user_id: str) -> list[Chat]:
        """The chats (of :attr:`chats`, in its order) the user is a member of."""
        ids = self._indexes.chats(self.chats).get(user_id, ())
        return [self.chats[chat_id] for chat_id in ids]

    def chat_id(self, chat_key: str) -> str | None:
        """The Graph id of the scenario's direct chat with ``chat_key``, None if there is none."""
        for chat in self.chats.values():
            if chat.key == chat_key:
                return chat.id
        return None

    def find_team(self, team_id: str) -> Team | None:
        return self.teams.get(team_id)

    # --- tokens ---------------------------------------------------------------------------------

    def issue_token(self, client_id: str) -> tuple[str, int]:
        """A new opaque access token carrying the app's current permissions, and its lifetime."""
        with self.lock:
            token = secrets.token_urlsafe(48)
            lifetime = self.faults.token_lifetime_seconds
            now = self.now()
            self._tokens[token] = TokenGrant(
                client_id=client_id,
                roles=frozenset(self.app_permissions),
                issued_at=now,
                expires_at=now + timedelta(seconds=lifetime),
            )
            return token, lifetime

    def token_grant(self, token: str) -> TokenGrant | None:
        with self.lock:
            return self._tokens.get(token)

    def expire_tokens(self) -> None:
        """Make every token issued so far expired (as if its lifetime had passed)."""
        with self.lock:
            past = self.now() - timedelta(seconds=1)
            for token, grant in list(self._tokens.items()):
                self._tokens[token] = TokenGrant(
                    grant.client_id, grant.roles, grant.issued_at, min(grant.expires_at, past)
                )

    # --- request log ----------------------------------------------------------------------------

    def record_request(self, method: str, path: str, status: int, *, in_batch: bool) -> None:
        with self.lock:
            self._requests.append(RequestRecord(method, path, status, in_batch, self.now()))

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request served so far, oldest first (a copy)."""
        with self.lock:
            return list(self._requests)

    # --- faults ---------------------------------------------------------------------------------

    def inject(
        self,
        path_regex: str,
        status: int,
        count: int = 1,
        retry_after: float | None = None,
        *,
        method: str | None = None,
    ) -> None:
        """Force the next ``count`` responses whose path matches ``path_regex`` to ``status``.

        Matching is ``re.search`` on the served path with its query string (``/v1.0/...`` for
        Graph, batch items included; ``/{tenant}/oauth2/v2.0/token`` for identity). A 429 or
        503 carries ``Retry-After`` (``retry_after`` or ``faults.retry_after_seconds``).

        Raises:
            re.error: ``path_regex`` is not a valid regular expression.
            ValueError: ``count`` is not positive.
        """
        with self.lock:
            self.fault_plan.inject(path_regex, status, count, retry_after, method=method)

    # --- paging and delta -----------------------------------------------------------------------

    def store_cursor(self, cursor: PageCursor) -> str:
        with self.lock:
            token = _opaque_token()
            self._cursors[token] = cursor
            return token

    def cursor(self, token: str) -> PageCursor | None:
        with self.lock:
            return self._cursors.get(token)

    def store_delta_cursor(self, cursor: DeltaCursor) -> str:
        with self.lock:
            token = _opaque_token()
            self._delta_cursors[token] = cursor
            return token

    def delta_cursor(self, token: str) -> DeltaCursor | None:
        with self.lock:
            return self._delta_cursors.get(token)

    def store_delta_state(self, state: DeltaState) -> str:
        with self.lock:
            token = _opaque_token()
            self._delta_states[token] = state
            return token

    def delta_state(self, token: str) -> DeltaState | None:
        with self.lock:
            return self._delta_states.get(token)

    def invalidate_delta_tokens(self) -> None:
        """Forget every delta and delta-paging token, so clients must start a new sync."""
        with self.lock:
            self._delta_cursors.clear()
            self._delta_states.clear()

    # --- calendars ------------------------------------------------------------------------------

    def mailbox(self, user_id: str) -> dict[str, StoredEvent]:
        with self.lock:
            return self.calendars.setdefault(user_id, {})

    def events_in_window(self, user_id: str, start: datetime, end: datetime) -> list[StoredEvent]:
        """The mailbox's events overlapping ``[start, end)``, by start time."""
        with self.lock:
            events = [
                event
                for event in self.mailbox(user_id).values()
                if event.start < end and event.end > start
            ]
        return sorted(events, key=lambda e: (e.start, e.id))

    def _events_of(self, meeting_key: str) -> list[StoredEvent]:
        if meeting_key not in self.meetings:
            raise KeyError(meeting_key)
        return [
            event
            for mailbox in self.calendars.values()
            for event in mailbox.values()
            if event.meeting_key == meeting_key
        ]

    def cancel_meeting(self, key: str) -> None:
        """The organiser cancels the meeting: every copy shows isCancelled (and changes).

        Raises:
            KeyError: no meeting has that key.
        """
        with self.lock:
            now = self.now()
            for event in self._events_of(key):
                event.is_cancelled = True
                if not event.is_organizer and not event.subject.startswith("Canceled: "):
                    event.subject = f"Canceled: {event.subject}"
                event.touch(now)
                self._event_changed(event, "updated")

    def remove_meeting(self, key: str) -> None:
        """Delete every calendar copy of the meeting (the Teams meeting itself stays).

        Raises:
            KeyError: no meeting has that key.
        """
        with self.lock:
            for event in self._events_of(key):
                del self.calendars[event.mailbox_id][event.id]
                self._event_changed(event, "deleted")

    def update_meeting(
        self,
        key: str,
        *,
        subject: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> None:
        """Change the meeting on every calendar copy (a new changeKey each).

        Raises:
            KeyError: no meeting has that key.
        """
        with self.lock:
            now = self.now()
            for event in self._events_of(key):
                if subject is not None:
                    event.subject = subject
                if start is not None:
                    event.start = start.astimezone(UTC)
                if end is not None:
                    event.end = end.astimezone(UTC)
                event.touch(now)
                self._event_changed(event, "updated")

    def delete_event(self, user_id: str, event_id: str) -> None:
        """Delete one calendar copy.

        Raises:
            KeyError: the mailbox has no such event.
        """
        with self.lock:
            event = self.calendars[user_id].pop(event_id)
            self._event_changed(event, "deleted")

    def _event_changed(self, event: StoredEvent, change: str) -> None:
        self.notifications.event_changed(event.mailbox_id, event.id, change, event.change_key)

    # --- live changes (fakegraph.live drives these while the server runs) -----------------------

    def replace_attendance(self, key: str, presences: tuple[Presence, ...]) -> Meeting:
        """Give the scenario meeting ``key`` new join and leave times (someone joined or left
        while it is live, or its call ended); its calls are worked out again from them.

        Raises:
            KeyError: no scenario meeting has that key.
        """
        with self.lock:
            meeting = self.meetings[key]
            spec = next(m for m in self.scenario.meetings if m.key == key)
            sessions = (
                self._sessions(spec, meeting.organizer, presences, meeting.join_url, "meeting")
                if meeting.hosted_here
                else ()
            )
            updated = replace(meeting, presences=presences, sessions=sessions)
            self.meetings[key] = updated
            if meeting.thread_id is not None and meeting.thread_id in self.chats:
                chat = self.chats[meeting.thread_id]
                joiners = [p.who for p in presences if p.who.kind in ("member", "guest")]
                members = tuple({m.id: m for m in (*chat.members, *joiners)}.values())
                self.chats[chat.id] = replace(chat, members=members)
            return updated

    def post_chat_message(
        self, chat_id: str, sender: Identity, text: str, at: datetime
    ) -> ChatMessage:
        """``sender`` posts ``text`` in the chat (a meeting's or a direct one) at ``at``.

        Raises:
            KeyError: no such chat.
        """
        with self.lock:
            chat = self.chats[chat_id]
            used = self._thread_message_ids.setdefault(chat_id, {m.id for m in chat.messages})
            message = ChatMessage(
                id=_unique_message_id(at, used),
                chat_id=chat_id,
                created=at,
                sender=sender,
                bot_name=None,
                text=f"<p>{html.escape(text)}</p>",
                event_detail=None,
            )
            messages = tuple(sorted((*chat.messages, message), key=lambda m: (m.created, m.id)))
            self.chats[chat_id] = replace(chat, messages=messages)
            if chat.meeting_key is not None and chat.meeting_key in self.meetings:
                meeting = self.meetings[chat.meeting_key]
                self.meetings[meeting.key] = replace(
                    meeting,
                    messages=tuple(
                        sorted((*meeting.messages, message), key=lambda m: (m.created, m.id))
                    ),
                )
            return message

    def post_meeting_message(
        self, key: str, sender: Identity, text: str, at: datetime
    ) -> ChatMessage:
        """``sender`` writes in the meeting's chat: a private meeting's chat, or for a channel
        meeting a reply to its post in the channel.

        Raises:
            KeyError: no meeting has that key.
            ValueError: the meeting has no chat here (not on Teams, or organised elsewhere).
        """
        with self.lock:
            meeting = self.meetings[key]
            if meeting.thread_id is None or not meeting.hosted_here:
                raise ValueError(f"meeting {key!r} has no Teams chat in this tenant")
            if meeting.channel is None:
                return self.post_chat_message(meeting.thread_id, sender, text, at)
            used = self._thread_message_ids.setdefault(meeting.thread_id, set())
            used.update(m.id for m in meeting.messages)
            message = ChatMessage(
                id=_unique_message_id(at, used),
                chat_id=meeting.thread_id,
                created=at,
                sender=sender,
                bot_name=None,
                text=f"<p>{html.escape(text)}</p>",
                event_detail=None,
                reply_to_id=meeting.message_id,
            )
            self.meetings[key] = replace(
                meeting,
                messages=tuple(
                    sorted((*meeting.messages, message), key=lambda m: (m.created, m.id))
                ),
            )
            return message

    @property
    def sent_mail(self) -> list[SentMail]:
        """Messages clients sent with sendMail, oldest first (a copy)."""
        with self.lock:
            return list(self._overrides.sent_mail)

    def send_mail(
        self,
        *,
        sender: Identity,
        subject: str,
        content_type: str,
        content: str,
        to: tuple[str, ...],
        save_to_sent_items: bool,
    ) -> SentMail:
        """Keep a message sent as ``sender``'s mailbox (nothing is delivered anywhere)."""
        with self.lock:
            mail = SentMail(
                sender_id=sender.id,
                subject=subject,
                content_type=content_type,
                content=content,
                to=to,
                save_to_sent_items=save_to_sent_items,
                at=self.now(),
            )
            self._overrides.sent_mail.append(mail)
            return mail

    @property
    def created_events(self) -> list[CreatedEvent]:
        """Events clients created with POST, oldest first (a copy)."""
        with self.lock:
            return list(self._overrides.created_events)

    def create_event(
        self, *, user: Identity, body: dict[str, Any], start: datetime, end: datetime, zone: str
    ) -> tuple[StoredEvent, bool]:
        """Store an event POSTed to the user's calendar; (event, True) if it was new.

        A repeated ``transactionId`` returns the first event, as Graph does. Attendees in the
        tenant get a copy (Graph sends them the invitation).
        """
        with self.lock:
            transaction_id = body.get("transactionId")
            if isinstance(transaction_id, str):
                existing = self._overrides.transactions.get((user.id, transaction_id))
                if existing is not None and existing in self.mailbox(user.id):
                    return self.mailbox(user.id)[existing], False
            now = self.now()
            serial = str(len(self._overrides.created_events))
            event_id = _ids.outlook_id(self.tenant_id, user.id, "created", serial, now.isoformat())
            body_field = body.get("body") if isinstance(body.get("body"), dict) else {}
            assert isinstance(body_field, dict)  # noqa: S101 - narrowed above for mypy
            content = str(body_field.get("content") or "")
            content_type = str(body_field.get("contentType") or "text").lower()
            location_field = body.get("location")
            location = (
                str(location_field.get("displayName") or "")
                if isinstance(location_field, dict)
                else None
            )
            attendees: list[dict[str, Any]] = []
            invited: list[Identity] = []
            for attendee in body.get("attendees") or []:
                if not isinstance(attendee, dict):
                    continue
                email = attendee.get("emailAddress") or {}
                address = str(email.get("address") or "")
                name = str(email.get("name") or address)
                attendees.append(
                    {
                        "type": attendee.get("type") or "required",
                        "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
                        "emailAddress": {"name": name, "address": address},
                    }
                )
                found = self.user(address) if address else None
                if found is not None and found.id != user.id:
                    invited.append(found)
            is_online = bool(body.get("isOnlineMeeting"))
            provider = str(body.get("onlineMeetingProvider") or "teamsForBusiness")
            creates_teams = is_online and provider == "teamsForBusiness"
            meeting: Meeting | None = None
            if creates_teams:
                spec = MeetingSpec(
                    key=f"created-{serial}",
                    subject=str(body.get("subject") or ""),
                    organizer=user.key,
                    start=start.isoformat(),
                    end=end.isoformat(),
                    invitees=[i.key for i in invited],
                    call_record=False,
                    attendance_report=False,
                )
                meeting = self._build_meeting(spec, created=now, key_kind="created")
                self.meetings[spec.key] = meeting
            online = online_meeting_info(meeting) if meeting else None
            preview_source = re.sub(r"<[^>]+>", " ", content) if content_type == "html" else content
            body_html = content
            if meeting is not None:
                block_html, block_text = _teams_block(meeting)
                body_html = f"{content}{block_html}"
                preview_source = f"{preview_source}\r\n{block_text}"
            base = StoredEvent(
                id=event_id,
                mailbox_id=user.id,
                ical_uid=_ids.ical_uid(self.tenant_id, "created", serial, now.isoformat()),
                subject=str(body.get("subject") or ""),
                body_html=body_html,
                body_content_type=content_type if meeting is None else "html",
                body_preview=" ".join(preview_source.split())[:255],
                start=start,
                end=end,
                display_zone=zone,
                organizer=EventAttendee(user.display_name, user.email or ""),
                is_organizer=True,
                attendees=attendees,
                is_online=is_online,
                provider=provider if is_online else "unknown",
                online_meeting=online,
                location=location,
                is_cancelled=False,
                created=now,
                last_modified=now,
                meeting_key=meeting.key if meeting else None,
                transaction_id=transaction_id if isinstance(transaction_id, str) else None,
            )
            self.mailbox(user.id)[event_id] = base
            self._event_changed(base, "created")
            for invitee in invited:
                copy_id = _ids.outlook_id(self.tenant_id, invitee.id, "created", serial)
                self.mailbox(invitee.id)[copy_id] = StoredEvent(
                    **{
                        **base.__dict__,
                        "id": copy_id,
                        "mailbox_id": invitee.id,
                        "is_organizer": False,
                        "display_zone": "UTC",
                        "attendees": [dict(a) for a in attendees],
                    }
                )
                self._event_changed(self.mailbox(invitee.id)[copy_id], "created")
            if isinstance(transaction_id, str):
                self._overrides.transactions[(user.id, transaction_id)] = event_id
            self._overrides.created_events.append(
                CreatedEvent(
                    user_id=user.id,
                    event_id=event_id,
                    request_body=body,
                    transaction_id=transaction_id if isinstance(transaction_id, str) else None,
                    created_teams_meeting=creates_teams,
                    join_url=meeting.join_url if meeting else None,
                    at=now,
                )
            )
            return base, True


_V = TypeVar("_V")


class VersionedDict(dict[str, _V]):
    """A dict that counts the changes made to it, so an index over it knows when to rebuild.

    Meetings and chats are frozen dataclasses: any change to one is a new object stored under
    its key, which these methods count (``|=`` is not counted, but the length is checked too).
    """

    version = 0

    def __setitem__(self, key: str, value: _V) -> None:
        super().__setitem__(key, value)
        self.version += 1

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.version += 1

    def pop(self, *args: Any) -> Any:
        self.version += 1
        return super().pop(*args)

    def popitem(self) -> tuple[str, _V]:
        self.version += 1
        return super().popitem()

    def clear(self) -> None:
        self.version += 1
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.version += 1
        super().update(*args, **kwargs)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.version += 1
        return super().setdefault(key, default)


class _Indexes:
    """Lookups by join URL, onlineMeeting id, call id and chat member, so a request to a large
    tenant (thousands of meetings) does not scan every meeting or chat.

    Each index is rebuilt when the collection it indexes has changed since it was built: a
    meeting or chat added, removed or replaced (a :class:`VersionedDict` counts its changes; a
    plain dict put in its place is checked by the ids of its objects, one pass, which is still
    far less than a scan that renders or compares).
    """

    def __init__(self) -> None:
        self._meetings: tuple[object, tuple[dict[str, list[str]], ...]] | None = None
        self._sessions: tuple[object, dict[str, CallSession]] | None = None
        self._chats: tuple[object, dict[str, list[str]]] | None = None

    @staticmethod
    def _stamp(values: dict[str, Any] | list[Any]) -> object:
        if isinstance(values, VersionedDict):
            return (id(values), values.version, len(values))
        count = 0
        total = 0
        for value in values.values() if isinstance(values, dict) else values:
            count += 1
            total += id(value)
        return (id(values), count, total)

    def meetings(self, meetings: dict[str, Meeting]) -> tuple[dict[str, list[str]], ...]:
        """Meeting keys by join URL, by onlineMeeting id and by channel id, in ``meetings``
        order."""
        stamp = self._stamp(meetings)
        if self._meetings is None or self._meetings[0] != stamp:
            by_url: dict[str, list[str]] = {}
            by_online_id: dict[str, list[str]] = {}
            by_channel: dict[str, list[str]] = {}
            for key, meeting in meetings.items():
                if meeting.join_url is not None:
                    by_url.setdefault(meeting.join_url, []).append(key)
                if meeting.online_meeting_id is not None:
                    by_online_id.setdefault(meeting.online_meeting_id, []).append(key)
                if meeting.channel is not None:
                    by_channel.setdefault(meeting.channel.id, []).append(key)
            self._meetings = (stamp, (by_url, by_online_id, by_channel))
        return self._meetings[1]

    def sessions(
        self, meetings: dict[str, Meeting], peer_calls: list[CallSession]
    ) -> dict[str, CallSession]:
        """Every call by id (the first one, as a scan in ``all_sessions`` order finds it)."""
        stamp = (self._stamp(meetings), self._stamp(peer_calls))
        if self._sessions is None or self._sessions[0] != stamp:
            by_id: dict[str, CallSession] = {}
            for meeting in meetings.values():
                for session in meeting.sessions:
                    by_id.setdefault(session.id, session)
            for call in peer_calls:
                by_id.setdefault(call.id, call)
            self._sessions = (stamp, by_id)
        return self._sessions[1]

    def chats(self, chats: dict[str, Chat]) -> dict[str, list[str]]:
        """Chat ids by member id, in ``chats`` order."""
        stamp = self._stamp(chats)
        if self._chats is None or self._chats[0] != stamp:
            by_member: dict[str, list[str]] = {}
            for chat_id, chat in chats.items():
                for member_id in dict.fromkeys(member.id for member in chat.members):
                    by_member.setdefault(member_id, []).append(chat_id)
            self._chats = (stamp, by_member)
        return self._chats[1]


# --- helpers shared with the renderers -----------------------------------------------------------


def teamwork_identity_set(identity: Identity) -> dict[str, Any]:
    """A chat identitySet whose ``user`` is a teamworkUserIdentity (for a bot: ``application``)."""
    if identity.kind == "bot":
        return {
            "application": {
                "@odata.type": "#microsoft.graph.teamworkApplicationIdentity",
                "id": identity.id,
                "displayName": identity.display_name,
                "applicationIdentityType": "bot",
            },
            "device": None,
            "user": None,
        }
    return {
        "application": None,
        "device": None,
        "user": {
            "@odata.type": "#microsoft.graph.teamworkUserIdentity",
            "id": identity.id,
            "displayName": identity.display_name,
            "userIdentityType": user_identity_type(identity),
            "tenantId": identity.tenant_id,
        },
    }


def user_identity_type(identity: Identity) -> str:
    return {
        "member": "aadUser",
        "guest": "aadUser",
        "anonymous": "anonymousGuest",
        "external": "federatedUser",
        "phone": "phoneUser",
        # userIdentityType has no member for applications.
        "bot": "unknownFutureValue",
    }[identity.kind]


def _member_ref(identity: Identity) -> dict[str, Any]:
    return {
        "id": identity.id,
        "displayName": identity.display_name,
        "userIdentityType": user_identity_type(identity),
        "tenantId": identity.tenant_id,
    }


def _attendee_json(attendee: EventAttendee) -> dict[str, Any]:
    return {
        "type": "required",
        "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
        "emailAddress": {"name": attendee.name, "address": attendee.address},
    }


def online_meeting_info(meeting: Meeting | None) -> dict[str, Any] | None:
    """The event's read-only ``onlineMeeting`` (onlineMeetingInfo), or None if not online."""
    if meeting is None or not meeting.is_online:
        return None
    if meeting.is_teams:
        toll = "+44 20 3855 4748"
        return {
            "joinUrl": meeting.join_url,
            "conferenceId": meeting.conference_id,
            "tollNumber": toll,
            "tollFreeNumbers": [],
            "phones": [],
            "quickDial": f"{toll},,{meeting.conference_id}#",
        }
    # Outlook recognises a third-party meeting link in the body or location of an online event.
    link = re.search(r"https://\S+", f"{meeting.location or ''} {meeting.body or ''}")
    if link is None:
        return None
    return {
        "joinUrl": link.group(0).rstrip(".,;)\"'"),
        "conferenceId": None,
        "tollNumber": None,
        "tollFreeNumbers": None,
        "phones": None,
        "quickDial": None,
    }


def _teams_block(meeting: Meeting) -> tuple[str, str]:
    """The Teams meeting block Outlook appends to an invitation body (HTML and as text)."""
    join_id = " ".join(
        meeting.join_meeting_id[i : i + 3] for i in range(0, len(meeting.join_meeting_id), 3)
    )
    rule = "_" * 80
    block_html = (
        f"<div>{rule}</div>"
        '<div><span style="font-size:24px">Microsoft Teams meeting</span></div>'
        f'<div><a href="{meeting.join_url}" target="_blank">Join the meeting now</a></div>'
        f"<div>Meeting ID: {join_id}</div><div>Passcode: {meeting.passcode}</div>"
        f"<div>{rule}</div>"
    )
    block_text = (
        f"{rule}\r\nMicrosoft Teams meeting\r\nJoin the meeting now\r\n"
        f"Meeting ID: {join_id}\r\nPasscode: {meeting.passcode}\r\n{rule}"
    )
    return block_html, block_text


def meeting_body(meeting: Meeting) -> tuple[str, str]:
    """The event body as HTML, and its bodyPreview (plain text, at most 255 characters)."""
    own_text = meeting.body or ""
    own_html = f"<div>{html.escape(own_text)}</div>" if own_text else ""
    preview = own_text
    block_html = ""
    if meeting.is_teams:
        block_html, block_text = _teams_block(meeting)
        preview = f"{own_text}\r\n\r\n{block_text}" if own_text else block_text
    body_html = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
        f"</head><body>{own_html}{block_html}</body></html>"
    )
    return body_html, preview[:255]


def _encode_thread(thread_id: str) -> str:
    """A thread id as Teams writes it in join URLs (lower-case escapes)."""
    return thread_id.replace(":", "%3a").replace("@", "%40")


def _mask_phone(number: str) -> str:
    digits_only = re.sub(r"\D", "", number)
    if len(digits_only) <= 6:
        return "+" + "X" * len(digits_only)
    return "+" + digits_only[:3] + "X" * (len(digits_only) - 6) + digits_only[-3:]


def _unique_message_id(at: datetime, used: set[str]) -> str:
    value = _ids.millis(at)
    while str(value) in used:
        value += 1
    used.add(str(value))
    return str(value)


def _session_at(sessions: tuple[CallSession, ...], at: datetime) -> CallSession | None:
    """The session running at ``at``, else the last one before it, else the first one."""
    if not sessions:
        return None
    for session in sessions:
        if session.start <= at <= session.end:
            return session
    before = [s for s in sessions if s.end <= at]
    return before[-1] if before else sessions[0]


def _call_id_at(sessions: tuple[CallSession, ...], at: datetime) -> str | None:
    session = _session_at(sessions, at)
    return session.id if session else None


def _opaque_token() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(30)).decode()
