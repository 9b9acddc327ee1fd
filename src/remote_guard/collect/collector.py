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
import html
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

# Meeting links of providers other than the school's Teams, found in an invitation's body or
# location: video services, Teams free on personal accounts (teams.live.com), consumer Skype,
# Google Meet's short links and WhatsApp calls and chats. Hosts under "(?:[\w-]+\.)*" match with
# any subdomain (us06web.zoom.us); the others only as written, so a mention of www.skype.com or
# whatsapp.com is not taken for a meeting. A host must end there (not zoom.us.example.com).
FOREIGN_LINK = re.compile(
    r"(?:https?://(?:"
    r"(?:[\w-]+\.)*(?:zoom\.us|zoom\.com|zoomgov\.com|meet\.google\.com|webex\.com|whereby\.com|"
    r"gotomeeting\.com|goto\.com|meet\.jit\.si|discord\.gg|discord\.com|facetime\.apple\.com|"
    r"bluejeans\.com|chime\.aws)"
    r"|(?:join|web|go)\.skype\.com|meet\.app\.goo\.gl|(?:call|chat)\.whatsapp\.com|wa\.me"
    r")(?![\w-]|\.[\w-])(?::\d+)?(?:[/?#][^\s\"'<>]*)?"
    r"|https?://teams\.live\.com/(?:meet|l/meetup-join)/[^\s\"'<>]*"
    r"|https?://g\.co/meet/[^\s\"'<>]*"
    r"|\bskype:[\w.:-]+(?:\?[^\s\"'<>]*)?)",
    re.IGNORECASE,
)
# A link wrapped by a redirector (Microsoft Defender Safe Links, ...) carries the real one,
# percent-encoded, in its "url" parameter.
_WRAPPED_LINK = re.compile(r"[?&](?:amp;)?url=([^&\s\"'<>]+)", re.IGNORECASE)
# What a link picks up from the sentence around it.
_TRAILING_PUNCTUATION = ".,;:!?)]}'\""
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
# How far before its scheduled start and after its end (or its call's) something still belongs
# to one occurrence of a recurring meeting: people join early and lessons overrun.
OCCURRENCE_SLACK = timedelta(hours=2)
# Attendance identities (the record's @odata.type) of people with no Entra account: they joined
# by link with a typed-in name. Graph documents azureCommunicationServicesUserIdentity for
# attendance records; the guest and anonymous types are what call records and chats call them.
_ANONYMOUS_ATTENDEE_TYPES = frozenset(
    {
        "azurecommunicationservicesuseridentity",
        "communicationsguestidentity",
        "communicationsanonymousguestidentity",
    }
)


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
    # For an occurrence of a recurring Teams meeting: its start in the series (originalStart).
    occurrence_start: datetime | None = None
    series_id: str | None = None
    series_from_organizer: bool = False
    invitee_ids: set[str] = field(default_factory=set)
    invitee_emails: set[str] = field(default_factory=set)
    invitee_groups: dict[str, str] = field(default_factory=dict)  # group address -> group id


@dataclass(frozen=True)
class _Occurrence:
    """One occurrence of a recurring meeting: its session and when it ran (scheduled, widened
    by the call records matched to it)."""

    session_id: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class _Scope:
    """Which of a recurring meeting's shared data belongs to one occurrence.

    The occurrences of a series share one join URL, one onlineMeeting (so one list of attendance
    reports and recordings) and one chat. A call record, report, message or recording belongs to
    the occurrence it overlaps, or is nearest to within :data:`OCCURRENCE_SLACK`.
    """

    session_id: str
    occurrences: tuple[_Occurrence, ...]

    @property
    def own(self) -> _Occurrence:
        return next(o for o in self.occurrences if o.session_id == self.session_id)

    def owns(self, start: datetime | None, end: datetime | None = None) -> bool:
        """Whether the span (or moment) ``start``..``end`` belongs to this occurrence."""
        if start is None:
            return False
        best = nearest_occurrence(self.occurrences, start, end or start)
        return best is not None and best.session_id == self.session_id

    def window(self) -> tuple[datetime, datetime]:
        own = self.own
        return own.start - OCCURRENCE_SLACK, own.end + OCCURRENCE_SLACK


def nearest_occurrence(
    occurrences: tuple[_Occurrence, ...] | list[_Occurrence], start: datetime, end: datetime
) -> _Occurrence | None:
    """The occurrence the span ``start``..``end`` belongs to: of those it comes within
    :data:`OCCURRENCE_SLACK` of, the nearest (overlapping ones first, the larger overlap first,
    then the closer start). None if it is near none."""
    best: tuple[float, float, float, _Occurrence] | None = None
    for occurrence in occurrences:
        overlap = (min(end, occurrence.end) - max(start, occurrence.start)).total_seconds()
        gap = max(0.0, -overlap)
        if gap > OCCURRENCE_SLACK.total_seconds():
            continue
        score = (gap, -max(overlap, 0.0), abs((start - occurrence.start).total_seconds()))
        if best is None or score < best[:3]:
            best = (*score, occurrence)
    return best[3] if best is not None else None


def _widen(occurrence: _Occurrence, records: list[CallRecord]) -> _Occurrence:
    """The occurrence stretched to cover its calls (people join early, lessons overrun)."""
    starts = [r.start_date_time for r in records if r.start_date_time is not None]
    ends = [r.end_date_time for r in records if r.end_date_time is not None]
    return _Occurrence(
        session_id=occurrence.session_id,
        start=min([occurrence.start, *starts]),
        end=max([occurrence.end, *ends]),
    )


@dataclass(frozen=True)
class _InvitedGroup:
    """A group an invitation was addressed to, with the users in it."""

    id: str
    members: tuple[Person, ...]


def normalise_join_url(url: str) -> str:
    """A join URL reduced to what identifies the meeting (decoded path, lower case)."""
    parts = urlsplit(unquote(url.strip()))
    return f"{parts.netloc}{parts.path}".rstrip("/").lower()


def session_id_for_join_url(url: str, occurrence_start: datetime | None = None) -> str:
    """The session id of a Teams meeting, from its join URL.

    All occurrences of a recurring meeting share one join URL, so an occurrence is told apart by
    ``occurrence_start``: the start it has in the series (the calendar's ``originalStart``, which
    stays the same when one occurrence is moved). A meeting that is not part of a series has no
    occurrence start, and its id is the join URL's alone (as it always was).
    """
    key = normalise_join_url(url)
    if occurrence_start is not None:
        key = f"{key}|{_iso(occurrence_start)}"
    return "mtg_" + hashlib.sha256(key.encode()).hexdigest()[:24]


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


def foreign_links(text: str) -> list[str]:
    """The meeting links of other providers in ``text`` (an invitation's body, HTML or plain, and
    location), each reduced to scheme, host and path, sorted and without repeats.

    Query strings and fragments are dropped because meeting passcodes ride there (Zoom's
    ``?pwd=``, Teams free's ``?p=``), so a stored snapshot never holds one.
    """
    plain = html.unescape(text)
    unwrapped = " ".join(unquote(match) for match in _WRAPPED_LINK.findall(plain))
    found = {reduce_link(match) for match in FOREIGN_LINK.findall(f"{plain} {unwrapped}")}
    return sorted(link for link in found if link)


def reduce_link(link: str) -> str:
    """Scheme, host and path of a link (``skype:`` URIs: scheme and name), lower-case host,
    without query, fragment or the punctuation of the sentence it ended."""
    parts = urlsplit(link.strip())
    scheme = parts.scheme.lower()
    path = parts.path.rstrip(_TRAILING_PUNCTUATION)
    if not parts.netloc:
        # skype:live:.cid.1234 - an account to call, with no host.
        return f"{scheme}:{path}" if path else ""
    return f"{scheme}://{(parts.hostname or '').lower()}{path}"


def invitation_text(event: Event) -> str:
    """The invitation's body and location, where a foreign meeting link would be written."""
    parts = (
        event.body.content if event.body else None,
        event.location.display_name if event.location else None,
    )
    return " ".join(part for part in parts if part)


def _graph_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _page_values(page: dict[str, object], endpoint: str) -> list[object]:
    """The ``value`` list of a collection page read with ``get``.

    Raises:
        GraphError: the page has no ``value`` list (a damaged answer is not an empty one).
    """
    values = page.get("value")
    if not isinstance(values, list):
        raise GraphError("a collection page has no 'value' list", endpoint=endpoint)
    return values


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class Collector:
    """Reads sessions for one tenant. ``errors`` lists what went wrong during ``collect``."""

    def __init__(
        self,
        *,
        graph: GraphClient,
        settings: Settings,
        directory: Directory,
        clock: Clock,
        keep_pupil_only_meetings: bool = False,
    ) -> None:
        self._graph = graph
        # Meetings with only pupils in them are kept only when a rule of the policy is about them
        # (pupils_without_staff); otherwise pupils' calls among themselves are not kept.
        self._keep_pupil_only_meetings = keep_pupil_only_meetings
        self._settings = settings
        self._directory = directory
        self._clock = clock
        self._channels: dict[str, ChannelRef] | None = None
        self._channels_error: str | None = None  # why the teams could not be listed
        # Read at most once per collector run: groups by invited address (None: no such group,
        # or unreadable), team members by team id (None: unreadable, reason alongside).
        self._groups: dict[str, _InvitedGroup | None] = {}
        self._group_people: dict[str, Person] = {}
        self._team_members: dict[str, tuple[Person, ...] | None] = {}
        self._team_member_errors: dict[str, str] = {}
        self._participants: dict[str, list[CallRecordParticipant]] = {}
        self.errors: list[str] = []
        # Invited addresses whose group lookup failed -> why; and each session's share of them.
        self._group_failures: dict[str, str] = {}
        # Calendars (or events on them) that could not be read this run: while there are any,
        # meetings found only in call records wait for the next poll (see _unmatched_calls).
        self._calendar_errors: list[str] = []
        self._call_records_error: str | None = None  # why the call records were not all listed
        self._invitation_failures: dict[str, list[str]] = {}
        # Whether this run listed every staff member's chats (None: chats were not read).
        self.chat_scan_complete: bool | None = None

    # --- discovery ----------------------------------------------------------------------------

    def collect(
        self,
        *,
        window_start: datetime,
        window_end: datetime,
        skip: set[str],
        chats_since: datetime | None = None,
        read_chats: bool = True,
    ) -> Iterator[Collected]:
        """Yield a snapshot for every session in the window not in ``skip``: calendar meetings,
        calls, then (if ``read_chats``) chats between staff and pupils with messages since
        ``chats_since`` (default ``window_start``).

        The occurrences of a recurring Teams meeting share one join URL: each is its own session,
        and the call records, attendance reports, chat messages and recordings of the series are
        shared out among them by time (:class:`_Scope`).
        """
        for collected in self._collect(
            window_start=window_start,
            window_end=window_end,
            skip=skip,
            chats_since=chats_since,
            read_chats=read_chats,
        ):
            self._note_unread_directory(collected)
            yield collected

    def _note_unread_directory(self, collected: Collected) -> None:
        """Mark a session whose people could not all be identified as missing directory data.

        When the lookup of someone in the session failed (so a guest may look like an unlisted
        member), or an invited group could not be expanded (so its pupils look uninvited), the
        rules that need to know who is who give ``error``, and the session is read again next
        poll instead of being kept as final with the gap in it. A direct chat read with a gap
        makes the chat scan incomplete, so it is read again next poll, not a day later.
        """
        snapshot = collected.snapshot
        reasons = [
            f"{(snapshot.people[pid].display_name or pid)}: {self._directory.lookup_failures[pid]}"
            for pid in sorted(snapshot.people)
            if pid in self._directory.lookup_failures
        ]
        reasons += self._invitation_failures.get(snapshot.session_id, [])
        if reasons:
            snapshot.missing.setdefault(
                Missing.DIRECTORY, "who is who could not be read: " + "; ".join(reasons)
            )
            collected.final = False
        if snapshot.kind is SessionKind.DIRECT_CHAT and snapshot.missing:
            self.chat_scan_complete = False

    def _collect(
        self,
        *,
        window_start: datetime,
        window_end: datetime,
        skip: set[str],
        chats_since: datetime | None,
        read_chats: bool,
    ) -> Iterator[Collected]:
        found = self._discover(window_start, window_end)
        records = sorted(
            self._call_records(window_start, min(self._clock(), window_end)),
            key=lambda r: (r.start_date_time is None, r.start_date_time or window_start, r.id),
        )
        single: dict[str, str] = {}  # join URL -> session of a meeting that is not a series
        series: dict[str, list[_Occurrence]] = {}  # join URL -> its occurrences
        for session_id, item in sorted(found.items()):
            join_url = self._join_url(item.event)
            if not join_url:
                continue
            key = normalise_join_url(join_url)
            if item.occurrence_start is None:
                single.setdefault(key, session_id)
                continue
            start, end = item.event.start_utc, item.event.end_utc
            if start is not None:
                series.setdefault(key, []).append(
                    _Occurrence(session_id=session_id, start=start, end=end or start)
                )
        related: dict[str, list[CallRecord]] = {}
        unmatched: list[CallRecord] = []
        for record in records:
            url = normalise_join_url(record.join_web_url) if record.join_web_url else None
            if url is not None and url in single:
                related.setdefault(single[url], []).append(record)
                continue
            if url is not None and url in series and record.start_date_time is not None:
                occurrence = nearest_occurrence(
                    series[url], record.start_date_time, record.end_date_time or self._clock()
                )
                if occurrence is not None:
                    related.setdefault(occurrence.session_id, []).append(record)
                    continue
            unmatched.append(record)
        # An occurrence runs from its scheduled start (or its call's, if earlier) to its end (or
        # its call's, if later); attendance reports, chat and recordings are matched to that.
        scopes: dict[str, _Scope] = {}
        for occurrences in series.values():
            widened = tuple(_widen(o, related.get(o.session_id, [])) for o in occurrences)
            for occurrence in widened:
                scopes[occurrence.session_id] = _Scope(occurrence.session_id, widened)
        for session_id, item in sorted(found.items()):
            if session_id in skip:
                continue
            yield self._resolve_event(
                session_id, item, related.get(session_id, []), scopes.get(session_id)
            )
        yield from self._unmatched_calls(unmatched, series, skip)
        if read_chats:
            yield from self._direct_chats(
                chats_since or window_start, min(self._clock(), window_end), skip
            )

    def _unmatched_calls(
        self,
        records: list[CallRecord],
        series: dict[str, list[_Occurrence]],
        skip: set[str],
    ) -> Iterator[Collected]:
        """Sessions found only in call records: direct calls, ad-hoc ("Meet now") meetings, and a
        recurring meeting's link used when no occurrence was scheduled.

        The records of one ad-hoc meeting (one join URL) make one session; a call on a series'
        link away from every occurrence is a session of its own, named by the call's start.
        """
        sessions: dict[str, tuple[list[CallRecord], _Scope | None]] = {}
        for record in records:
            url = record.join_web_url
            key = normalise_join_url(url) if url else None
            if url is None or key is None:
                sessions[f"call_{record.id}"] = ([record], None)
            elif self._calendar_errors:
                # Some calendar could not be read, so this meeting may be a scheduled one (an
                # occurrence of a series, say) whose entry is on it: read as an ad-hoc meeting
                # now, it would become a second session of the same call. Read it next poll.
                self.errors.append(
                    f"call record {record.id}: left for the next poll, as its meeting may be on "
                    "a calendar that could not be read"
                )
            elif key in series and record.start_date_time is not None:
                session_id = session_id_for_join_url(url, record.start_date_time)
                own = _Occurrence(
                    session_id=session_id,
                    start=record.start_date_time,
                    end=record.end_date_time or record.start_date_time,
                )
                sessions[session_id] = ([record], _Scope(session_id, (*series[key], own)))
            else:
                sessions.setdefault(session_id_for_join_url(url), ([], None))[0].append(record)
        for session_id, (group, scope) in sessions.items():
            if session_id in skip:
                continue
            collected = self._resolve_call(session_id, group, scope)
            if collected is not None:
                yield collected

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
                        self._calendar_errors.append(f"calendar of {mailbox_id}: {exc}")
                        continue
                    self._add_event(found, event, mailbox_id)
            except GraphError as exc:
                # A calendar we could not read hides its sessions; the poll is partial.
                self.errors.append(f"calendar of {mailbox_id}: {exc.reason}")
                self._calendar_errors.append(f"calendar of {mailbox_id}: {exc.reason}")
        return found

    def _add_event(self, found: dict[str, _Found], event: Event, mailbox_id: str) -> None:
        join_url = self._join_url(event)
        foreign = bool(foreign_links(invitation_text(event)))
        if not (event.is_online_meeting or join_url or foreign):
            return
        occurrence_start: datetime | None = None
        if join_url and TEAMS_JOIN.match(join_url):
            if event.series_master_id or (event.type or "") in ("occurrence", "exception"):
                # Every occurrence of a series has the series' join URL; its place in the series
                # (the same in every mailbox's copy, even once moved) tells them apart.
                occurrence_start = event.original_start or event.start_utc
            session_id = session_id_for_join_url(join_url, occurrence_start)
        else:
            # Each occurrence of a series has its own iCalUId.
            session_id = session_id_for_event(event.i_cal_u_id or event.id or "")
        item = found.get(session_id)
        if item is None:
            item = found[session_id] = _Found(
                event=event,
                mailbox_id=mailbox_id,
                series_id=event.series_master_id,
                occurrence_start=occurrence_start,
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
                failure = self._group_failures.get(address.strip().lower())
                if failure is not None:
                    self._invitation_failures.setdefault(session_id, []).append(
                        f"invited address {address}: {failure}"
                    )
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
                values = _page_values(page, "/groups")
                if values:
                    found = parse(Group, values[0], what="group")
                    members = tuple(
                        self._directory.member(obj) for obj in group_users(self._graph, found.id)
                    )
                    group = _InvitedGroup(id=found.id, members=members)
        except _UnreadableError as exc:
            self.errors.append(f"invited address {key}: group lookup failed: {exc}")
            self._group_failures[key] = f"group lookup failed: {exc}"
        self._groups[key] = group
        return group

    # --- resolving a calendar session ---------------------------------------------------------

    def _resolve_event(
        self,
        session_id: str,
        item: _Found,
        records: list[CallRecord],
        scope: _Scope | None = None,
    ) -> Collected:
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
            foreign_links=foreign_links(text),
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

        # Meeting options: looked up through the organiser if they are ours, else the attendee
        # whose calendar it was on.
        lookup_user = organizer.id if organizer is not None else item.mailbox_id
        return self._teams_meeting(
            snapshot, join_url, lookup_user, organizer, records, end=end, scope=scope
        )

    def _teams_meeting(
        self,
        snapshot: SessionSnapshot,
        join_url: str,
        lookup_user: str | None,
        organizer: Person | None,
        records: list[CallRecord],
        *,
        end: datetime | None,
        scope: _Scope | None,
    ) -> Collected:
        """Fill in what Teams holds about a meeting: its channel, options, and (once it has
        ended) who attended, its chat and its recordings. ``lookup_user`` is whose
        ``onlineMeetings`` to search by join URL (None: nobody of ours can see it)."""
        now = self._clock()
        thread = channel_thread_of(join_url)
        if thread is not None:
            snapshot.kind = SessionKind.CHANNEL_MEETING
            snapshot.channel = self._channel(thread) or ChannelRef(thread_id=thread)
            self._channel_members(snapshot, snapshot.channel)

        meeting: OnlineMeeting | None = None
        if lookup_user is None:
            snapshot.missing[Missing.SETTINGS] = (
                "the meeting was organised outside the school's tenant, so its options cannot "
                "be read"
            )
        else:
            try:
                meeting = self._online_meeting(lookup_user, join_url)
            except _UnreadableError as exc:
                snapshot.missing[Missing.SETTINGS] = str(exc)
        if meeting is not None:
            snapshot.subject = snapshot.subject or meeting.subject
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
        self._presence(snapshot, meeting, organizer, records, settled=settled, scope=scope)
        self._chat(snapshot, meeting, scope=scope)
        self._recordings(snapshot, meeting, organizer, scope=scope)
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
            values = _page_values(page, "/users/{id}/onlineMeetings")
            if not values:
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
        scope: _Scope | None = None,
    ) -> None:
        reasons: list[str] = []
        presence: list[Presence] = []
        # Attendance reports: only the organiser can read them; channel meetings have none.
        if meeting is not None and organizer is not None and snapshot.channel is None:
            try:
                presence = self._attendance(snapshot, organizer.id, meeting.id or "", scope)
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
        if snapshot.presence is None and not records and self._call_records_error is not None:
            # The call records could not all be listed: this session's may be among those
            # missing, so its attendance is unknown, not merely late.
            reasons.append(f"call records: {self._call_records_error}")
        if snapshot.presence is None:
            if reasons:
                snapshot.missing[Missing.PRESENCE] = "; ".join(reasons)
            elif settled:
                snapshot.missing[Missing.PRESENCE] = (
                    "no attendance report or call record was found "
                    f"{self._settings.poll.data_settle_minutes} minutes after the session ended"
                )

    def _attendance(
        self,
        snapshot: SessionSnapshot,
        organizer_id: str,
        meeting_id: str,
        scope: _Scope | None = None,
    ) -> list[Presence]:
        """Presence from the meeting's attendance reports (one per time the meeting ran). For an
        occurrence of a series, only the reports whose meeting times are this occurrence's."""
        base = f"/users/{organizer_id}/onlineMeetings/{meeting_id}/attendanceReports"
        presence: dict[str, list[Interval]] = {}
        with _reading():
            for item in self._graph.iter_items(base):
                report = parse(MeetingAttendanceReport, item, what="attendance report")
                if not report.id:
                    continue
                if scope is not None and not scope.owns(
                    report.meeting_start_date_time, report.meeting_end_date_time
                ):
                    # Another occurrence's (or, without times, nobody's: it cannot be placed).
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
        if odata_type.rsplit(".", 1)[-1] in _ANONYMOUS_ATTENDEE_TYPES:
            # No Entra account: joined by link under a typed-in name. Nothing to look up; the
            # same id as the call record's guest identity, so one joiner has one id.
            name = (identity.display_name if identity else None) or ""
            return Person(id=f"anon:{ident}", display_name=name, kind=PersonKind.ANONYMOUS)
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
        # An expanded participants_v2 is itself paged; read the whole list from its own endpoint
        # (once per run: an ad-hoc meeting's participants decide whether it is kept, then count).
        if (not participants or record.participants_next_link) and record.id:
            if record.id not in self._participants:
                with _reading():
                    self._participants[record.id] = [
                        parse(CallRecordParticipant, raw, what="call participant")
                        for raw in self._graph.iter_items(
                            f"/communications/callRecords/{record.id}/participants_v2"
                        )
                    ]
            participants = self._participants[record.id]
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

    def _chat(
        self,
        snapshot: SessionSnapshot,
        meeting: OnlineMeeting | None,
        *,
        scope: _Scope | None = None,
    ) -> None:
        """The meeting chat's messages (who and when). A recurring meeting has one chat for the
        whole series: an occurrence keeps the messages posted during it (see :class:`_Scope`)."""
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
        params = {"$top": "50"}
        earliest: datetime | None = None
        if scope is not None and snapshot.channel is None:
            # A series' chat only grows: newest first by creation time (Graph's documented
            # ordering), so paging stops at the first message from before this occurrence.
            params["$orderby"] = "createdDateTime desc"
            earliest = scope.window()[0]
        activity: list[ChatActivity] = []
        store_text = self._settings.privacy.store_chat_text
        try:
            with _reading():
                for raw in self._graph.iter_items(path, params=params, headers=PREFER):
                    message = parse(ChatMessage, raw, what="chat message")
                    created = message.created_date_time
                    if earliest is not None and created is not None and created < earliest:
                        break
                    if scope is not None and not scope.owns(created):
                        continue
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
        self,
        snapshot: SessionSnapshot,
        meeting: OnlineMeeting | None,
        organizer: Person | None,
        *,
        scope: _Scope | None = None,
    ) -> None:
        """Recordings and transcripts from the recordings API (added to those the chat named).
        A recurring meeting's are listed for the whole series: an occurrence keeps those that
        started during it."""
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
                        if scope is not None and not scope.owns(item.created_date_time):
                            if item.created_date_time is None:
                                self.errors.append(
                                    f"{kind} {item.id} of a recurring meeting has no start, so "
                                    "it cannot be placed in an occurrence"
                                )
                            continue
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
                    self._call_records_error = str(exc)
        except GraphError as exc:
            self.errors.append(f"call records: {exc.reason}")
            self._call_records_error = exc.reason
        return records

    def _resolve_call(
        self, session_id: str, records: list[CallRecord], scope: _Scope | None = None
    ) -> Collected | None:
        """A session found only in call records: a direct call, a group call, or an ad-hoc
        ("Meet now") meeting, whose options, attendance, chat and recordings are read through
        its onlineMeeting like a calendar meeting's. None if it does not concern pupils."""
        now = self._clock()
        first = records[0]
        join_url = first.join_web_url
        snapshot = SessionSnapshot(
            session_id=session_id,
            kind=SessionKind.PEER_TO_PEER if first.type == "peerToPeer" else SessionKind.MEETING,
            join_url=join_url,
            sources={"call_record": f"/communications/callRecords/{first.id}"},
            collected_at=now,
        )
        participants: list[Presence] = []
        for record in records:
            try:
                participants.extend(self._call_participants(snapshot, record))
            except _UnreadableError as exc:
                self.errors.append(f"call record {record.id}: {exc}")
                return None
        kinds = {snapshot.person(p.person_id).kind for p in participants}
        # Only calls that involve a pupil and someone who is not a pupil concern the code of
        # practice; pupils' calls among themselves are not kept (data minimisation), except
        # group meetings of pupils alone when the policy checks for them (pupils_without_staff).
        if PersonKind.PUPIL not in kinds:
            return None
        if kinds <= {PersonKind.PUPIL} and not (
            self._keep_pupil_only_meetings and snapshot.kind is SessionKind.MEETING
        ):
            return None
        organizer = self._call_organizer(snapshot, first)
        if join_url and TEAMS_JOIN.match(join_url) and snapshot.kind is SessionKind.MEETING:
            # Meeting options and the chat belong to the organiser's onlineMeeting; only one of
            # the school's own users can be looked up.
            ours = (
                organizer is not None
                and snapshot.organizer_tenant_id is not None
                and (
                    snapshot.organizer_tenant_id.lower() == self._settings.tenant.tenant_id.lower()
                )
            )
            end = max((r.end_date_time for r in records if r.end_date_time), default=now)
            return self._teams_meeting(
                snapshot,
                join_url,
                organizer.id if ours and organizer is not None else None,
                organizer if ours else None,
                records,
                end=end,
                scope=scope,
            )
        snapshot.presence = participants
        snapshot.call_record_ids = [record.id or "" for record in records]
        snapshot.actual_start = min(
            (r.start_date_time for r in records if r.start_date_time), default=None
        )
        snapshot.actual_end = max(
            (r.end_date_time for r in records if r.end_date_time), default=None
        )
        if snapshot.kind is SessionKind.MEETING:
            # A group call started without a meeting link (from a group chat, say): no
            # onlineMeeting leads to its chat.
            snapshot.missing[Missing.CHAT] = (
                "the call has no meeting link, so its chat cannot be identified"
            )
        # A direct call's recordings are not read (no onlineMeeting lists them); the recording
        # rules say so for a session whose recordings are None.
        return Collected(snapshot=snapshot, final=True)

    def _call_organizer(self, snapshot: SessionSnapshot, record: CallRecord) -> Person | None:
        """Who organised the call (``organizer_v2``), recorded as the snapshot's organiser with
        their tenant: the identity's own, or the school's for someone in its directory."""
        identity = record.organizer.identity if record.organizer else None
        if identity is None:
            return None
        person = self._directory.resolve(
            self._graph, self._directory.identity(identity, fallback_id="unknown")
        )
        primary = identity.primary()
        tenant = primary.tenant_id if primary is not None else None
        if tenant is None and (
            person.id in self._directory.people or person.id in self._directory.looked_up_found
        ):
            tenant = self._settings.tenant.tenant_id
        snapshot.organizer_id = person.id
        snapshot.organizer_tenant_id = tenant
        snapshot.organizer_email = person.email
        snapshot.people.setdefault(person.id, person)
        return person

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
                self._channels_error = str(exc)
        return self._channels.get(thread_id.lower())

    def _channel_members(self, snapshot: SessionSnapshot, ref: ChannelRef) -> None:
        """Fill the channel's ``member_ids`` with its team's members, read once per team.

        A failure leaves the list empty ("unknown" to rules), is recorded in ``errors``, explained
        in ``sources["channel_members"]`` and marks the directory data missing (so the rules
        that need to know who the lesson was for give ``error``, and it is read again).
        """
        team_id = ref.team_id
        if not team_id:
            snapshot.sources["channel_members"] = "not read: the channel's team is not known"
            if self._channels_error is not None:
                # The teams could not be listed: who belongs in the lesson is not known.
                snapshot.missing.setdefault(
                    Missing.DIRECTORY,
                    f"the channel's team could not be found: {self._channels_error}",
                )
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
            reason = self._team_member_errors.get(team_id, "unknown error")
            snapshot.sources["channel_members"] = f"not read: {reason}"
            # Without the team's members nobody knows which pupils the lesson was for.
            snapshot.missing.setdefault(
                Missing.DIRECTORY, f"the channel's team members could not be read: {reason}"
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
        ``[start, end]``, found through the staff members' chat lists (each chat once).

        Sets :attr:`chat_scan_complete`: True once every staff member's chat list was read.
        """
        if end <= start:
            self.chat_scan_complete = True
            return
        chats: dict[str, tuple[Chat, str]] = {}
        complete = True
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
                        # A chat we could not read may be one with a pupil: list it again.
                        complete = False
                        continue
                    if chat.chat_type in DIRECT_CHAT_TYPES and chat.id not in chats:
                        chats[chat.id] = (chat, mailbox_id)
            except GraphError as exc:
                # Chats we could not list may hide contact with pupils; the poll is partial.
                self.errors.append(f"chats of {mailbox_id}: {exc.reason}")
                complete = False
        self.chat_scan_complete = complete
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
                self.chat_scan_complete = False
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
