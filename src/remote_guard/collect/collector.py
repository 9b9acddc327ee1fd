"""Finds each remote session and builds its snapshot from Graph.

There is no "list online meetings" call in Graph v1.0, so sessions are found on staff calendars;
peer-to-peer calls and ad-hoc meetings are found in call records, and chats between staff and
pupils outside meetings in the staff members' chat lists. Each session is then resolved: meeting
options, who was invited (group invitations expanded to their members), who attended when, the
meeting chat (who posted; text only if the school opts in) and recordings. Whatever could not be
read is recorded in ``missing`` with the reason, so a rule reports ``error`` rather than passing.
No rule logic lives here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import structlog

from remote_guard.clock import Clock
from remote_guard.collect.snapshot import (
    ChannelRef,
    ChatActivity,
    Interval,
    MeetingSettings,
    Missing,
    Person,
    PersonKind,
    Presence,
    RecordingEvent,
    SessionKind,
    SessionSnapshot,
)
from remote_guard.directory.service import Directory, group_users
from remote_guard.graph.client import PREFER_UNKNOWN_ENUMS, GraphClient
from remote_guard.graph.errors import GraphError
from remote_guard.graph.models import (
    AttendanceRecord,
    CallRecord,
    CallRecording,
    CallRecordParticipant,
    CallRecordSession,
    CallTranscript,
    Channel,
    Chat,
    ChatMessage,
    ConversationMember,
    Event,
    Group,
    MeetingAttendanceReport,
    OnlineMeeting,
    PayloadError,
    Team,
    parse,
)
from remote_guard.settings import Settings

log = structlog.get_logger(__name__)

PREFER = {"Prefer": PREFER_UNKNOWN_ENUMS}

# Meeting links of providers other than Teams, found in an invitation's body or location.
FOREIGN_LINK = re.compile(
    r"https?://(?:[\w-]+\.)*(?:zoom\.us|zoom\.com|zoomgov\.com|meet\.google\.com|webex\.com|"
    r"whereby\.com|gotomeeting\.com|goto\.com|meet\.jit\.si|join\.skype\.com|discord\.gg|"
    r"discord\.com|facetime\.apple\.com|bluejeans\.com|chime\.aws)(?:/[^\s\"'<>]*)?",
    re.IGNORECASE,
)
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# A dialled-in number as Teams shows it, often masked: "+447XXXXXX123".
_PHONE = re.compile(r"(?=.*\d)[+\dXx*#\s()-]{6,}")
TEAMS_JOIN = re.compile(r"^https://teams\.microsoft\.com/l/meetup-join/", re.IGNORECASE)
# Chats outside meetings; "meeting" chats are read with their meeting.
DIRECT_CHAT_TYPES = frozenset({"oneOnOne", "group"})
# Graph's documented known issue: `$expand=members` on a chat list returns at most 25 members.
EXPANDED_MEMBERS_CAP = 25


# Joiners without a school account whose e-mail address, when Graph gives one, is kept.
_OUTSIDE_KINDS = frozenset({PersonKind.EXTERNAL, PersonKind.GUEST, PersonKind.UNKNOWN})


class _UnreadableError(Exception):
    """A piece of a session could not be read; the message is the reason for ``missing``."""


@contextmanager
def _reading() -> Iterator[None]:
    """Turn a Graph failure or a bad payload into an ``_UnreadableError`` with its reason."""
    try:
        yield
    except GraphError as exc:
        raise _UnreadableError(exc.reason) from exc
    except PayloadError as exc:
        raise _UnreadableError(str(exc)) from exc


@dataclass
class Collected:
    snapshot: SessionSnapshot
    final: bool  # everything that appears after the session ended has been read


@dataclass
class _Found:
    """A session as found on one or more calendars."""

    event: Event
    mailbox_id: str
    series_id: str | None = None
    series_from_organizer: bool = False
    invitee_ids: set[str] = field(default_factory=set)
    invitee_emails: set[str] = field(default_factory=set)
    invitee_groups: dict[str, str] = field(default_factory=dict)  # group address -> group id


@dataclass(frozen=True)
class _InvitedGroup:
    """A group an invitation was addressed to, with the users in it."""

    id: str
    members: tuple[Person, ...]


def normalise_join_url(url: str) -> str:
    """A join URL reduced to what identifies the meeting (decoded path, lower case)."""
    parts = urlsplit(unquote(url.strip()))
    return f"{parts.netloc}{parts.path}".rstrip("/").lower()


def session_id_for_join_url(url: str) -> str:
    return "mtg_" + hashlib.sha256(normalise_join_url(url).encode()).hexdigest()[:24]


def session_id_for_event(ical_uid_or_id: str) -> str:
    """The session id of a calendar event whose meeting is not on Teams (or has no join URL),
    from its ``iCalUId`` (its ``id`` when it has none)."""
    return "evt_" + hashlib.sha256(ical_uid_or_id.encode()).hexdigest()[:24]


def session_id_for_chat(chat_id: str) -> str:
    """The session id of a 1:1 or group chat outside a meeting, from its Graph chat id."""
    return "chat_" + hashlib.sha256(chat_id.encode()).hexdigest()[:24]


def join_url_context(url: str) -> dict[str, str]:
    """The ``context`` a Teams join URL carries: the organiser's tenant (Tid) and id (Oid)."""
    query = parse_qs(urlsplit(url).query)
    raw = query.get("context", [""])[0]
    try:
        data = json.loads(unquote(raw)) if raw else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def channel_thread_of(url: str) -> str | None:
    """The channel thread of a channel meeting's join URL (private meetings use 19:meeting_...)."""
    path = unquote(urlsplit(url).path)
    match = re.search(r"/l/meetup-join/(19:[^/]+@thread\.(?:skype|tacv2))/", path, re.IGNORECASE)
    return match.group(1) if match else None


def invitation_text(event: Event) -> str:
    """The invitation's body and location, where a foreign meeting link would be written."""
    parts = (
        event.body.content if event.body else None,
        event.location.display_name if event.location else None,
    )
    return " ".join(part for part in parts if part)


def _graph_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class Collector:
    """Reads sessions for one tenant. ``errors`` lists what went wrong during ``collect``."""

    def __init__(
        self, *, graph: GraphClient, settings: Settings, directory: Directory, clock: Clock
    ) -> None:
        self._graph = graph
        self._settings = settings
        self._directory = directory
        self._clock = clock
        self._channels: dict[str, ChannelRef] | None = None
        # Read at most once per collector run: groups by invited address (None: no such group,
        # or unreadable), team members by team id (None: unreadable, reason alongside).
        self._groups: dict[str, _InvitedGroup | None] = {}
        self._group_people: dict[str, Person] = {}
        self._team_members: dict[str, tuple[Person, ...] | None] = {}
        self._team_member_errors: dict[str, str] = {}
        self.errors: list[str] = []

    # --- discovery ----------------------------------------------------------------------------

    def collect(
        self, *, window_start: datetime, window_end: datetime, skip: set[str]
    ) -> Iterator[Collected]:
        """Yield a snapshot for every session in the window not in ``skip``: calendar meetings,
        calls, then chats between staff and pupils with messages in the window."""
        found = self._discover(window_start, window_end)
        records = self._call_records(window_start, min(self._clock(), window_end))
        by_join: dict[str, list[CallRecord]] = {}
        for record in records:
            if record.join_web_url:
                by_join.setdefault(normalise_join_url(record.join_web_url), []).append(record)
        matched: set[str] = set()
        for session_id, item in sorted(found.items()):
            join_url = self._join_url(item.event)
            if join_url:
                matched.add(normalise_join_url(join_url))
            if session_id in skip:
                continue
            related = by_join.get(normalise_join_url(join_url), []) if join_url else []
            yield self._resolve_event(session_id, item, related)
        for record in records:
            if record.join_web_url and normalise_join_url(record.join_web_url) in matched:
                continue
            session_id = (
                session_id_for_join_url(record.join_web_url)
                if record.join_web_url
                else f"call_{record.id}"
            )
            if session_id in skip:
                continue
            collected = self._resolve_call(session_id, record)
            if collected is not None:
                yield collected
        yield from self._direct_chats(window_start, min(self._clock(), window_end), skip)

    @staticmethod
    def _join_url(event: Event) -> str | None:
        if event.online_meeting is not None and event.online_meeting.join_url:
            return event.online_meeting.join_url
        return event.online_meeting_url or None

    def _staff_ids(self) -> list[str]:
        return sorted(
            person.id
            for person in self._directory.people.values()
            if person.kind is PersonKind.STAFF
        )

    def _discover(self, start: datetime, end: datetime) -> dict[str, _Found]:
        found: dict[str, _Found] = {}
        for mailbox_id in self._staff_ids():
            try:
                for item in self._graph.iter_items(
                    f"/users/{mailbox_id}/calendarView",
                    params={"startDateTime": _iso(start), "endDateTime": _iso(end)},
                    headers={"Prefer": f"odata.maxpagesize={self._settings.poll.page_size}"},
                ):
                    try:
                        event = parse(Event, item, what="calendar event")
                    except PayloadError as exc:
                        self.errors.append(f"calendar of {mailbox_id}: {exc}")
                        continue
                    self._add_event(found, event, mailbox_id)
            except GraphError as exc:
                # A calendar we could not read hides its sessions; the poll is partial.
                self.errors.append(f"calendar of {mailbox_id}: {exc.reason}")
        return found

    def _add_event(self, found: dict[str, _Found], event: Event, mailbox_id: str) -> None:
        join_url = self._join_url(event)
        text = invitation_text(event)
        foreign = FOREIGN_LINK.search(text) is not None
        if not (event.is_online_meeting or join_url or foreign):
            return
        if join_url and TEAMS_JOIN.match(join_url):
            session_id = session_id_for_join_url(join_url)
        else:
            session_id = session_id_for_event(event.i_cal_u_id or event.id or "")
        item = found.get(session_id)
        if item is None:
            item = found[session_id] = _Found(
                event=event, mailbox_id=mailbox_id, series_id=event.series_master_id
            )
        if event.series_master_id and event.is_organizer and not item.series_from_organizer:
            # Each mailbox's copy has its own ids; the organiser's copy names the series the same
            # way for every occurrence, whoever else was invited.
            item.series_id = event.series_master_id
            item.series_from_organizer = True
        for attendee in event.attendees or []:
            address = attendee.email_address.address if attendee.email_address else None
            person = self._directory.find_by_address(address)
            if person is not None:
                item.invitee_ids.add(person.id)
                continue
            if not address:
                continue
            group = self._invited_group(address)
            if group is None:
                item.invitee_emails.add(address.lower())
                continue
            # Outlook keeps an invited group as one attendee; everyone in it was invited.
            item.invitee_groups[address.lower()] = group.id
            for member in group.members:
                item.invitee_ids.add(member.id)
                self._group_people.setdefault(member.id, member)

    def _invited_group(self, address: str) -> _InvitedGroup | None:
        """The group whose mail address this is, with its users, looked up once per run.

        None when no group has the address (an outside address) or the lookup failed; a failure
        is recorded in ``errors``, since the invitation may then name pupils nobody can see.
        """
        key = address.strip().lower()
        if key in self._groups:
            return self._groups[key]
        group: _InvitedGroup | None = None
        try:
            with _reading():
                page = self._graph.get(
                    "/groups",
                    params={
                        "$filter": f"mail eq {_graph_literal(key)}",
                        "$select": "id,displayName,mail",
                    },
                )
                values = page.get("value")
                if isinstance(values, list) and values:
                    found = parse(Group, values[0], what="group")
                    members = tuple(
                        self._directory.member(obj) for obj in group_users(self._graph, found.id)
                    )
                    group = _InvitedGroup(id=found.id, members=members)
        except _UnreadableError as exc:
            self.errors.append(f"invited address {key}: group lookup failed: {exc}")
        self._groups[key] = group
        return group

    # --- resolving a calendar session ---------------------------------------------------------

    def _resolve_event(self, session_id: str, item: _Found, records: list[CallRecord]) -> Collected:
        now = self._clock()
        event = item.event
        join_url = self._join_url(event)
        start = event.start.to_utc() if event.start else None
        end = event.end.to_utc() if event.end else None
        organizer_address = (
            event.organizer.email_address.address
            if event.organizer and event.organizer.email_address
            else None
        )
        organizer = self._directory.find_by_address(organizer_address)
        context = join_url_context(join_url) if join_url else {}
        people: dict[str, Person] = {}
        for person_id in item.invitee_ids:
            people[person_id] = (
                self._directory.people.get(person_id) or self._group_people[person_id]
            )
        organizer_id = organizer.id if organizer else context.get("Oid")
        if organizer is not None:
            people[organizer.id] = organizer
        elif organizer_id:
            people[organizer_id] = self._directory.user(
                organizer_id,
                display_name=event.organizer.email_address.name
                if event.organizer and event.organizer.email_address
                else None,
                tenant_id=context.get("Tid"),
            )
        is_teams = bool(join_url and TEAMS_JOIN.match(join_url))
        text = invitation_text(event)
        snapshot = SessionSnapshot(
            session_id=session_id,
            kind=SessionKind.MEETING if is_teams else SessionKind.OTHER_PROVIDER,
            subject=event.subject,
            organizer_id=organizer_id,
            organizer_email=organizer_address,
            organizer_tenant_id=context.get("Tid")
            or (self._settings.tenant.tenant_id if organizer else None),
            scheduled_start=start,
            scheduled_end=end,
            is_cancelled=bool(event.is_cancelled),
            join_url=join_url,
            provider=event.online_meeting_provider,
            series_id=item.series_id,
            invitee_ids=sorted(item.invitee_ids),
            invitee_emails=sorted(item.invitee_emails),
            foreign_links=sorted(set(FOREIGN_LINK.findall(text))),
            people=people,
            sources={"calendar": f"/users/{item.mailbox_id}/calendarView"},
            collected_at=now,
        )
        if item.invitee_groups:
            snapshot.sources["invitee_groups"] = ", ".join(
                f"{address} -> /groups/{group_id}/transitiveMembers"
                for address, group_id in sorted(item.invitee_groups.items())
            )
        if not is_teams or join_url is None:
            return Collected(snapshot=snapshot, final=end is not None and now >= end)

        thread = channel_thread_of(join_url)
        if thread is not None:
            snapshot.kind = SessionKind.CHANNEL_MEETING
            snapshot.channel = self._channel(thread) or ChannelRef(thread_id=thread)
            self._channel_members(snapshot, snapshot.channel)

        # Meeting options: looked up through the organiser if they are ours, else the attendee
        # whose calendar it was on.
        lookup_user = organizer.id if organizer is not None else item.mailbox_id
        meeting: OnlineMeeting | None = None
        try:
            meeting = self._online_meeting(lookup_user, join_url)
        except _UnreadableError as exc:
            snapshot.missing[Missing.SETTINGS] = str(exc)
        if meeting is not None:
            snapshot.online_meeting_id = meeting.id
            snapshot.chat_thread_id = meeting.chat_info.thread_id if meeting.chat_info else None
            lobby = meeting.lobby_bypass_settings
            snapshot.settings = MeetingSettings(
                allow_meeting_chat=meeting.allow_meeting_chat,
                lobby_scope=lobby.scope if lobby else None,
                dial_in_bypass=lobby.is_dial_in_bypass_enabled if lobby else None,
                allowed_presenters=meeting.allowed_presenters,
                record_automatically=meeting.record_automatically,
            )
            snapshot.sources["online_meeting"] = f"/users/{lookup_user}/onlineMeetings"
        elif Missing.SETTINGS not in snapshot.missing:
            snapshot.missing[Missing.SETTINGS] = "no online meeting matches the event's join URL"

        phase_ended = end is not None and now >= end
        if not phase_ended:
            # Attendance, call records and the chat are read once the session has ended (Graph
            # asks apps not to poll Teams resources; live signals come from notifications).
            return Collected(snapshot=snapshot, final=False)

        settle = timedelta(minutes=self._settings.poll.data_settle_minutes)
        settled = end is not None and now - end >= settle
        self._presence(snapshot, meeting, organizer, records, settled=settled)
        self._chat(snapshot, meeting)
        self._recordings(snapshot, meeting, organizer)
        complete = (
            not snapshot.missing
            and snapshot.presence is not None
            and (
                settled
                or (
                    bool(records)
                    and any(p.source == "attendance_report" for p in snapshot.presence)
                )
            )
        )
        return Collected(snapshot=snapshot, final=complete)

    def _online_meeting(self, user_id: str, join_url: str) -> OnlineMeeting | None:
        with _reading():
            page = self._graph.get(
                f"/users/{user_id}/onlineMeetings",
                params={"$filter": f"JoinWebUrl eq {_graph_literal(join_url)}"},
                headers=PREFER,
            )
            values = page.get("value")
            if not isinstance(values, list) or not values:
                return None
            return parse(OnlineMeeting, values[0], what="online meeting")

    def _presence(
        self,
        snapshot: SessionSnapshot,
        meeting: OnlineMeeting | None,
        organizer: Person | None,
        records: list[CallRecord],
        *,
        settled: bool,
    ) -> None:
        reasons: list[str] = []
        presence: list[Presence] = []
        # Attendance reports: only the organiser can read them; channel meetings have none.
        if meeting is not None and organizer is not None and snapshot.channel is None:
            try:
                presence = self._attendance(snapshot, organizer.id, meeting.id or "")
            except _UnreadableError as exc:
                reasons.append(f"attendance report: {exc}")
        # Call records name everyone who took part (including dial-in and anonymous joiners).
        call_presence: list[Presence] = []
        for record in records:
            try:
                participants = self._call_participants(snapshot, record)
                # Without an attendance report (channel meetings), the call's sessions give each
                # participant's join and leave times; the participant list alone does not.
                timed = self._call_sessions(snapshot, record) if not presence else []
                call_presence.extend(timed or participants)
            except _UnreadableError as exc:
                reasons.append(f"call record: {exc}")
            snapshot.call_record_ids.append(record.id or "")
            snapshot.actual_start = min(
                filter(None, [snapshot.actual_start, record.start_date_time]), default=None
            )
            snapshot.actual_end = max(
                filter(None, [snapshot.actual_end, record.end_date_time]), default=None
            )
        if presence:
            snapshot.presence = presence
            snapshot.sources["attendance"] = "attendanceReports/attendanceRecords"
        elif call_presence:
            snapshot.presence = call_presence
        if records:
            snapshot.sources["call_record"] = "/communications/callRecords"
        if snapshot.presence is None:
            if reasons:
                snapshot.missing[Missing.PRESENCE] = "; ".join(reasons)
            elif settled:
                snapshot.missing[Missing.PRESENCE] = (
                    "no attendance report or call record was found "
                    f"{self._settings.poll.data_settle_minutes} minutes after the session ended"
                )

    def _attendance(
        self, snapshot: SessionSnapshot, organizer_id: str, meeting_id: str
    ) -> list[Presence]:
        base = f"/users/{organizer_id}/onlineMeetings/{meeting_id}/attendanceReports"
        presence: dict[str, list[Interval]] = {}
        with _reading():
            for item in self._graph.iter_items(base):
                report = parse(MeetingAttendanceReport, item, what="attendance report")
                if not report.id:
                    continue
                for raw in self._graph.iter_items(f"{base}/{report.id}/attendanceRecords"):
                    record = parse(AttendanceRecord, raw, what="attendance record")
                    person = self._attendee(record)
                    snapshot.people.setdefault(person.id, person)
                    for interval in record.attendance_intervals or []:
                        if interval.join_date_time is None:
                            continue
                        presence.setdefault(person.id, []).append(
                            Interval(start=interval.join_date_time, end=interval.leave_date_time)
                        )
        return [
            Presence(person_id=pid, intervals=intervals, source="attendance_report")
            for pid, intervals in sorted(presence.items())
        ]

    def _attendee(self, record: AttendanceRecord) -> Person:
        person = self._attendee_identity(record)
        if person.email is None and record.email_address and person.kind in _OUTSIDE_KINDS:
            # The report's address is how an invited outsider is recognised on the invitation.
            person = person.model_copy(update={"email": record.email_address})
        return person

    def _attendee_identity(self, record: AttendanceRecord) -> Person:
        identity = record.identity
        ident = (identity.id if identity else None) or record.id or "unknown"
        if ident in self._directory.people:
            return self._directory.people[ident]
        odata_type = ((identity.odata_type if identity else None) or "").lower()
        if "application" in odata_type:
            # communicationsApplicationIdentity (or ...InstanceIdentity): a bot, not a person.
            name = (identity.display_name if identity else None) or ""
            return Person(id=f"app:{ident}", display_name=name, kind=PersonKind.APPLICATION)
        by_address = self._directory.find_by_address(record.email_address)
        if by_address is not None:
            return by_address
        name = (identity.display_name if identity else None) or ""
        tenant = identity.tenant_id if identity else None
        if not _GUID.fullmatch(ident):
            # Not an Entra object id: joined by link with a typed-in name, or by phone.
            # The same prefixes as call-record identities, so one joiner has one id.
            if _PHONE.fullmatch(name):
                return Person(id=f"phone:{ident}", display_name=name, kind=PersonKind.PHONE)
            return Person(id=f"anon:{ident}", display_name=name, kind=PersonKind.ANONYMOUS)
        if tenant and tenant.lower() != self._settings.tenant.tenant_id.lower():
            return self._directory.user(ident, display_name=name, tenant_id=tenant)
        # Microsoft's attendance records often carry no tenantId, even for members: ask the
        # directory whether this is one of ours (a guest, or someone in no configured group).
        person = self._directory.resolve(
            self._graph, self._directory.user(ident, display_name=name, tenant_id=None)
        )
        if person.kind is PersonKind.UNKNOWN and person.id not in self._directory.looked_up_found:
            return Person(id=ident, display_name=name, kind=PersonKind.EXTERNAL, tenant_id=tenant)
        return person

    def _call_participants(self, snapshot: SessionSnapshot, record: CallRecord) -> list[Presence]:
        participants: list[CallRecordParticipant] = list(record.participants or [])
        # An expanded participants_v2 is itself paged; read the whole list from its own endpoint.
        if (not participants or record.participants_next_link) and record.id:
            with _reading():
                participants = [
                    parse(CallRecordParticipant, raw, what="call participant")
                    for raw in self._graph.iter_items(
                        f"/communications/callRecords/{record.id}/participants_v2"
                    )
                ]
        presence: list[Presence] = []
        start, end = record.start_date_time, record.end_date_time
        for participant in participants:
            person = self._directory.identity(
                participant.identity, fallback_id=participant.id or "unknown"
            )
            person = self._directory.resolve(self._graph, person)
            snapshot.people.setdefault(person.id, person)
            if start is not None:
                # Call records give who took part, not when: the whole call is assumed.
                presence.append(
                    Presence(
                        person_id=person.id,
                        intervals=[Interval(start=start, end=end)],
                        source="call_record",
                    )
                )
        return presence

    def _call_sessions(self, snapshot: SessionSnapshot, record: CallRecord) -> list[Presence]:
        if not record.id:
            return []
        with _reading():
            body = self._graph.get(
                f"/communications/callRecords/{record.id}",
                params={"$expand": "sessions($expand=segments)"},
            )
            raw_sessions = body.get("sessions")
            sessions = [
                parse(CallRecordSession, raw, what="call session")
                for raw in (raw_sessions if isinstance(raw_sessions, list) else [])
            ]
        intervals: dict[str, list[Interval]] = {}
        for session in sessions:
            caller = session.caller.identity if session.caller else None
            if caller is None or session.start_date_time is None:
                continue
            person = self._directory.resolve(
                self._graph, self._directory.identity(caller, fallback_id=session.id or "unknown")
            )
            snapshot.people.setdefault(person.id, person)
            intervals.setdefault(person.id, []).append(
                Interval(start=session.start_date_time, end=session.end_date_time)
            )
        return [
            Presence(person_id=pid, intervals=spans, source="call_record")
            for pid, spans in sorted(intervals.items())
        ]

    def _chat(self, snapshot: SessionSnapshot, meeting: OnlineMeeting | None) -> None:
        if meeting is None or meeting.chat_info is None or not meeting.chat_info.thread_id:
            snapshot.missing[Missing.CHAT] = "the meeting's chat could not be identified"
            return
        if snapshot.channel is not None:
            ref = snapshot.channel
            message_id = meeting.chat_info.message_id
            if not (ref.team_id and ref.channel_id and message_id and message_id != "0"):
                snapshot.missing[Missing.CHAT] = "the channel meeting's team or post is not known"
                return
            path = f"/teams/{ref.team_id}/channels/{ref.channel_id}/messages/{message_id}/replies"
        else:
            path = f"/chats/{meeting.chat_info.thread_id}/messages"
        activity: list[ChatActivity] = []
        store_text = self._settings.privacy.store_chat_text
        try:
            with _reading():
                for raw in self._graph.iter_items(path, params={"$top": "50"}, headers=PREFER):
                    message = parse(ChatMessage, raw, what="chat message")
                    activity.append(self._chat_activity(snapshot, message, store_text=store_text))
        except _UnreadableError as exc:
            snapshot.missing[Missing.CHAT] = str(exc)
            return
        snapshot.chat = sorted(activity, key=lambda item: (item.created, item.message_id))
        snapshot.sources["chat"] = path

    def _chat_activity(
        self, snapshot: SessionSnapshot, message: ChatMessage, *, store_text: bool
    ) -> ChatActivity:
        created = message.created_date_time or snapshot.collected_at
        if message.is_system:
            detail = message.event_detail
            event_type = (detail.odata_type or "").rsplit(".", 1)[-1] if detail else None
            if (
                detail is not None
                and detail.initiator is not None
                and event_type
                in {
                    "callRecordingEventMessageDetail",
                    "callTranscriptEventMessageDetail",
                }
            ):
                initiator = self._directory.identity(detail.initiator, fallback_id="unknown")
                snapshot.people.setdefault(initiator.id, initiator)
                snapshot.recordings = [
                    *(snapshot.recordings or []),
                    RecordingEvent(
                        id=f"chat:{message.id}",
                        kind="recording"
                        if event_type.startswith("callRecording")
                        else "transcript",
                        started=created,
                        initiator_id=initiator.id,
                        source="chat_event",
                    ),
                ]
            return ChatActivity(
                message_id=message.id or "",
                created=created,
                sender_kind="system",
                event_type=event_type,
            )
        sender = (
            self._directory.identity(message.from_, fallback_id="unknown")
            if message.from_
            else None
        )
        if sender is None or sender.kind is PersonKind.APPLICATION:
            return ChatActivity(
                message_id=message.id or "",
                created=created,
                sender_kind="application",
                sender_id=sender.id if sender else None,
            )
        snapshot.people.setdefault(sender.id, sender)
        return ChatActivity(
            message_id=message.id or "",
            created=created,
            sender_kind="person",
            sender_id=sender.id,
            text=(message.body.content if message.body else None) if store_text else None,
        )

    def _recordings(
        self, snapshot: SessionSnapshot, meeting: OnlineMeeting | None, organizer: Person | None
    ) -> None:
        if snapshot.channel is not None:
            # The recordings API does not cover channel meetings; the chat event still does.
            snapshot.recordings = snapshot.recordings or []
            return
        if meeting is None or organizer is None or not meeting.id:
            if Missing.SETTINGS in snapshot.missing:
                snapshot.missing[Missing.RECORDINGS] = snapshot.missing[Missing.SETTINGS]
            else:
                snapshot.recordings = snapshot.recordings or []
            return
        found = list(snapshot.recordings or [])
        base = f"/users/{organizer.id}/onlineMeetings/{meeting.id}"
        artefacts: tuple[
            tuple[Literal["recording", "transcript"], str, type[CallRecording | CallTranscript]],
            ...,
        ] = (
            ("recording", "recordings", CallRecording),
            ("transcript", "transcripts", CallTranscript),
        )
        try:
            with _reading():
                for kind, path, model in artefacts:
                    for raw in self._graph.iter_items(f"{base}/{path}"):
                        item = parse(model, raw, what=kind)
                        found.append(
                            RecordingEvent(
                                id=f"{path}:{item.id}",
                                kind=kind,
                                started=item.created_date_time,
                                source="recordings_api",
                            )
                        )
        except _UnreadableError as exc:
            snapshot.missing[Missing.RECORDINGS] = str(exc)
            return
        snapshot.recordings = found

    # --- call records -------------------------------------------------------------------------

    def _call_records(self, start: datetime, end: datetime) -> list[CallRecord]:
        if end <= start:
            return []
        records: list[CallRecord] = []
        try:
            for raw in self._graph.iter_items(
                "/communications/callRecords",
                params={
                    "$filter": f"startDateTime ge {_iso(start)} and startDateTime lt {_iso(end)}"
                },
            ):
                try:
                    records.append(parse(CallRecord, raw, what="call record"))
                except PayloadError as exc:
                    self.errors.append(f"call records: {exc}")
        except GraphError as exc:
            self.errors.append(f"call records: {exc.reason}")
        return records

    def _resolve_call(self, session_id: str, record: CallRecord) -> Collected | None:
        now = self._clock()
        snapshot = SessionSnapshot(
            session_id=session_id,
            kind=SessionKind.PEER_TO_PEER if record.type == "peerToPeer" else SessionKind.MEETING,
            actual_start=record.start_date_time,
            actual_end=record.end_date_time,
            join_url=record.join_web_url,
            call_record_ids=[record.id or ""],
            sources={"call_record": f"/communications/callRecords/{record.id}"},
            collected_at=now,
        )
        try:
            snapshot.presence = self._call_participants(snapshot, record)
        except _UnreadableError as exc:
            self.errors.append(f"call record {record.id}: {exc}")
            return None
        kinds = {snapshot.person(p.person_id).kind for p in snapshot.presence}
        # Only calls that involve a pupil and someone who is not a pupil concern the code of
        # practice; pupils' calls among themselves are not kept (data minimisation).
        if PersonKind.PUPIL not in kinds or kinds <= {PersonKind.PUPIL}:
            return None
        organizer = record.organizer.identity if record.organizer else None
        if organizer is not None:
            person = self._directory.identity(organizer, fallback_id="unknown")
            snapshot.organizer_id = person.id
        if snapshot.kind is SessionKind.MEETING:
            # An ad-hoc meeting ("Meet now") has a chat, but no calendar entry leads to it.
            snapshot.missing[Missing.CHAT] = (
                "the chat of an ad-hoc meeting without a calendar entry is not read"
            )
        return Collected(snapshot=snapshot, final=True)

    def _channel(self, thread_id: str) -> ChannelRef | None:
        """The team and channel of a channel thread, from a list read once per collector."""
        if self._channels is None:
            self._channels = {}
            try:
                for raw_team in self._graph.iter_items("/teams"):
                    team = parse(Team, raw_team, what="team")
                    if not team.id:
                        continue
                    for raw_channel in self._graph.iter_items(f"/teams/{team.id}/channels"):
                        channel = parse(Channel, raw_channel, what="channel")
                        if channel.id:
                            self._channels[channel.id.lower()] = ChannelRef(
                                thread_id=channel.id,
                                team_id=team.id,
                                channel_id=channel.id,
                                team_name=team.display_name,
                                channel_name=channel.display_name,
                            )
            except (GraphError, PayloadError) as exc:
                self.errors.append(f"teams and channels: {exc}")
        return self._channels.get(thread_id.lower())

    def _channel_members(self, snapshot: SessionSnapshot, ref: ChannelRef) -> None:
        """Fill the channel's ``member_ids`` with its team's members, read once per team.

        A failure leaves the list empty ("unknown" to rules), is recorded in ``errors`` and
        explained in ``sources["channel_members"]``.
        """
        team_id = ref.team_id
        if not team_id:
            snapshot.sources["channel_members"] = "not read: the channel's team is not known"
            return
        if team_id not in self._team_members:
            try:
                with _reading():
                    members = tuple(
                        self._directory.member(obj) for obj in group_users(self._graph, team_id)
                    )
            except _UnreadableError as exc:
                self._team_members[team_id] = None
                self._team_member_errors[team_id] = str(exc)
                self.errors.append(f"members of team {team_id}: {exc}")
            else:
                self._team_members[team_id] = members
        members_read = self._team_members[team_id]
        if members_read is None:
            snapshot.sources["channel_members"] = (
                f"not read: {self._team_member_errors.get(team_id, 'unknown error')}"
            )
            return
        # The cached ChannelRef is shared by every meeting in the channel: give this snapshot
        # its own copy rather than changing the cache.
        snapshot.channel = ref.model_copy(
            update={"member_ids": sorted({person.id for person in members_read})}
        )
        for person in members_read:
            snapshot.people.setdefault(person.id, person)
        snapshot.sources["channel_members"] = f"/groups/{team_id}/transitiveMembers"

    # --- chats outside meetings ---------------------------------------------------------------

    def _direct_chats(self, start: datetime, end: datetime, skip: set[str]) -> Iterator[Collected]:
        """A snapshot for each 1:1 or group chat between staff and pupils with a message in
        ``[start, end]``, found through the staff members' chat lists (each chat once)."""
        if end <= start:
            return
        chats: dict[str, tuple[Chat, str]] = {}
        for mailbox_id in self._staff_ids():
            try:
                for raw in self._graph.iter_items(
                    f"/users/{mailbox_id}/chats",
                    params={"$expand": "members", "$top": "50"},
                ):
                    try:
                        chat = parse(Chat, raw, what="chat")
                    except PayloadError as exc:
                        self.errors.append(f"chats of {mailbox_id}: {exc}")
                        continue
                    if chat.chat_type in DIRECT_CHAT_TYPES and chat.id not in chats:
                        chats[chat.id] = (chat, mailbox_id)
            except GraphError as exc:
                # Chats we could not list may hide contact with pupils; the poll is partial.
                self.errors.append(f"chats of {mailbox_id}: {exc.reason}")
        for chat_id, (chat, mailbox_id) in sorted(chats.items()):
            session_id = session_id_for_chat(chat_id)
            if session_id in skip:
                continue
            collected = self._resolve_chat(session_id, chat, mailbox_id, start, end)
            if collected is not None:
                yield collected

    def _chat_members(self, chat: Chat) -> tuple[list[ConversationMember], str | None]:
        """The chat's members and, if only a partial list could be had, why.

        Graph returns at most 25 members in ``$expand=members``; a list that long (or a missing
        one) is read in full from ``/chats/{id}/members``.
        """
        expanded = chat.members
        if expanded is not None and len(expanded) < EXPANDED_MEMBERS_CAP:
            return list(expanded), None
        try:
            with _reading():
                return [
                    parse(ConversationMember, raw, what="chat member")
                    for raw in self._graph.iter_items(f"/chats/{chat.id}/members")
                ], None
        except _UnreadableError as exc:
            return list(expanded or []), f"the chat's full member list could not be read: {exc}"

    def _resolve_chat(
        self, session_id: str, chat: Chat, mailbox_id: str, start: datetime, end: datetime
    ) -> Collected | None:
        members, partial = self._chat_members(chat)
        people = [self._directory.chat_member(member) for member in members]
        kinds = {person.kind for person in people}
        if not (PersonKind.STAFF in kinds and PersonKind.PUPIL in kinds):
            # Only chats between staff and pupils concern the code of practice (and nothing
            # else is kept: data minimisation). Members we could not see may include a pupil.
            if partial is not None:
                self.errors.append(f"chat {chat.id}: {partial}")
            return None
        people = [self._directory.resolve(self._graph, person) for person in people]
        snapshot = SessionSnapshot(
            session_id=session_id,
            kind=SessionKind.DIRECT_CHAT,
            subject=chat.topic,
            chat_type=chat.chat_type,
            member_ids=sorted({person.id for person in people}),
            people={person.id: person for person in people},
            chat_thread_id=chat.id,
            sources={"chats": f"/users/{mailbox_id}/chats"},
            collected_at=self._clock(),
        )
        if partial is not None:
            snapshot.missing[Missing.DIRECTORY] = partial
        path = f"/chats/{chat.id}/messages"
        activity: list[ChatActivity] = []
        store_text = self._settings.privacy.store_chat_text
        try:
            with _reading():
                # Newest first by creation time (Graph's documented ordering), so paging stops at
                # the first message older than the window.
                for raw in self._graph.iter_items(
                    path,
                    params={"$top": "50", "$orderby": "createdDateTime desc"},
                    headers=PREFER,
                ):
                    message = parse(ChatMessage, raw, what="chat message")
                    created = message.created_date_time
                    if created is not None and created < start:
                        break
                    if created is None or created > end:
                        continue
                    activity.append(self._chat_activity(snapshot, message, store_text=store_text))
        except _UnreadableError as exc:
            snapshot.missing[Missing.CHAT] = str(exc)
            return Collected(snapshot=snapshot, final=False)
        if not activity:
            return None
        snapshot.chat = sorted(activity, key=lambda item: (item.created, item.message_id))
        snapshot.actual_start = snapshot.chat[0].created
        snapshot.actual_end = snapshot.chat[-1].created
        snapshot.sources["chat"] = path
        # A chat never ends: it is read again on the next poll.
        return Collected(snapshot=snapshot, final=False)
