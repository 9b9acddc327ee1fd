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

import bisect
import contextvars
import hashlib
import html
import json
import math
import re
import threading
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import structlog

from remote_guard.clock import Clock
from remote_guard.collect.batched import BatchedReader, Read
from remote_guard.collect.calendar_store import CalendarEntry
from remote_guard.collect.calendar_sync import CalendarSync, sync_window
from remote_guard.collect.lookups import InvitedGroup
from remote_guard.collect.memory import CollectMemory, StoredSession, source_digest
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
from remote_guard.directory.service import USER_SELECT, Directory, group_users
from remote_guard.graph.client import PREFER_UNKNOWN_ENUMS, GraphClient, GraphReads
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

# Where a session was found: on a staff calendar, only in the call records, in a chat list.
FoundIn = Literal["calendar", "call_records", "chats"]
# Asked with a session's id, and where it was found, before the session is read from Graph:
# True to read it, False to leave it (another poller process has it, or should: see
# remote_guard.leases). May raise to stop the run.
SessionClaim = Callable[[str, FoundIn], bool]

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
# How long a frugal poller keeps the list of teams and channels (Teams resources: Microsoft
# asks apps not to poll them more than once a day).
CHANNELS_KEPT = timedelta(days=1)
_CHAT_LIST_PARAMS = {"$expand": "members", "$top": "50"}
# Newest first by creation time (Graph's documented ordering), so paging can stop at the first
# message older than the window.
_DIRECT_CHAT_MESSAGE_PARAMS = {"$top": "50", "$orderby": "createdDateTime desc"}


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
    # What the snapshot was built from (see collect.memory); stored with it, so the next poll
    # can tell whether the session changed. None: read the session again at the next poll.
    source_digest: str | None = None


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
    # Invited addresses that are nobody in the directory: groups are looked up (and their
    # members added) only when the session is read, not for every event on every calendar.
    unknown_addresses: list[str] = field(default_factory=list)
    # Every calendar copy: (mailbox, event id, digest of what the collector reads of it).
    copies: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Plan:
    """What fetching ahead knows of a Teams meeting about to be read."""

    session_id: str
    join_url: str
    lookup_user: str  # whose onlineMeetings to search by join URL
    organizer: Person | None
    ended: bool
    records: list[CallRecord]


@dataclass(frozen=True)
class _Occurrence:
    """One occurrence of a recurring meeting: its session and when it ran (scheduled, widened
    by the call records matched to it)."""

    session_id: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class StoredOccurrence:
    """A session already stored for a meeting link at a time: one occurrence of a recurring
    meeting (or a call on its link), with when it was scheduled (or ran). A call on that link at
    that time is that session's, even once the occurrence is gone from the calendars."""

    session_id: str
    join_url: str
    start: datetime
    end: datetime
    call_record_ids: frozenset[str] = frozenset()  # the call records it was read with


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


def _gone_occurrences(
    stored: Collection[StoredOccurrence],
    found: Collection[str],
    window_start: datetime,
    window_end: datetime,
) -> dict[str, list[_Occurrence]]:
    """The stored occurrences in the window that no calendar has now (deleted after they ran,
    say), by normalised join URL. A meeting named by its link alone is not an occurrence."""
    gone: dict[str, list[_Occurrence]] = {}
    for item in stored:
        if (
            item.session_id in found
            or item.session_id == session_id_for_join_url(item.join_url)
            or item.start > window_end
            or item.end < window_start
        ):
            continue
        gone.setdefault(normalise_join_url(item.join_url), []).append(
            _Occurrence(session_id=item.session_id, start=item.start, end=item.end)
        )
    return gone


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


# --- the reads of a session, built in one place for reading them and for fetching them ahead ---


_HOUR = timedelta(hours=1)
# The slices of a first listing, when nothing is known yet of where the calls are.
FIRST_SLICE = timedelta(hours=6)


def call_record_slices(
    start: datetime, end: datetime, known_starts: list[datetime] | None, *, per_slice: int
) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into slices to list call records by, each expected to fit in one
    page: whole hours, merged where the last listing (``known_starts``, sorted) found fewer
    than ``per_slice`` records (leave room on the page for records new since) and split where
    it found more. With no listing to go by (None), slices of :data:`FIRST_SLICE`."""
    if end <= start:
        return []
    step = FIRST_SLICE if known_starts is None else _HOUR
    hours: list[tuple[datetime, datetime]] = []
    edge = start.replace(minute=0, second=0, microsecond=0)
    while edge < end:
        hours.append((max(start, edge), min(end, edge + step)))
        edge += step
    if known_starts is None:
        return hours
    slices: list[tuple[datetime, datetime]] = []
    open_start, open_count = start, 0
    for low, high in hours:
        count = bisect.bisect_left(known_starts, high) - bisect.bisect_left(known_starts, low)
        if count > per_slice:
            if open_start < low:
                slices.append((open_start, low))
            parts = math.ceil(count / per_slice)
            step = timedelta(seconds=math.ceil((high - low).total_seconds() / parts))
            edge = low
            while edge < high:
                slices.append((edge, min(high, edge + step)))
                edge += step
            open_start, open_count = high, 0
        elif open_count + count > per_slice:
            slices.append((open_start, low))
            open_start, open_count = low, count
        else:
            open_count += count
    if open_start < end:
        slices.append((open_start, end))
    return slices


def _changed(known: StoredSession | None, digest: str | None) -> bool:
    """Whether a session must be read again because of what it was built from: never read,
    read without a digest (by a poll without memory), or built from something else."""
    return (
        known is None
        or not known.has_snapshot
        or known.source_digest is None
        or digest is None
        or known.source_digest != digest
    )


def _version(record: CallRecord) -> str:
    """What changes when Graph updates a call record."""
    return f"{record.version}|{record.last_modified_date_time}|{record.end_date_time}"


def _organizer_address(event: Event) -> str | None:
    if event.organizer is None or event.organizer.email_address is None:
        return None
    return event.organizer.email_address.address


def _online_meeting_read(user_id: str, join_url: str) -> Read:
    return Read(
        f"/users/{user_id}/onlineMeetings",
        {"$filter": f"JoinWebUrl eq {_graph_literal(join_url)}"},
        PREFER,
    )


def _group_read(address: str) -> Read:
    return Read(
        "/groups",
        {"$filter": f"mail eq {_graph_literal(address)}", "$select": "id,displayName,mail"},
    )


def _participants_read(record_id: str) -> Read:
    return Read(f"/communications/callRecords/{record_id}/participants_v2", all_pages=True)


def _call_sessions_read(record_id: str) -> Read:
    return Read(
        f"/communications/callRecords/{record_id}", {"$expand": "sessions($expand=segments)"}
    )


def _call_records_read(start: datetime, end: datetime, page_size: int) -> Read:
    return Read(
        "/communications/callRecords",
        {"$filter": f"startDateTime ge {_iso(start)} and startDateTime lt {_iso(end)}"},
        {"Prefer": f"odata.maxpagesize={page_size}"},
        all_pages=True,
    )


def _chat_read(
    channel: ChannelRef | None, meeting: OnlineMeeting | None, scope: _Scope | None
) -> Read | str:
    """The read of a meeting's chat (a channel meeting's: the replies to its post), or why it
    cannot be read."""
    if meeting is None or meeting.chat_info is None or not meeting.chat_info.thread_id:
        return "the meeting's chat could not be identified"
    params = {"$top": "50"}
    if channel is not None:
        message_id = meeting.chat_info.message_id
        if not (channel.team_id and channel.channel_id and message_id and message_id != "0"):
            return "the channel meeting's team or post is not known"
        path = (
            f"/teams/{channel.team_id}/channels/{channel.channel_id}/messages/{message_id}/replies"
        )
        return Read(path, params, PREFER)
    if scope is not None:
        # A series' chat only grows: newest first by creation time.
        params["$orderby"] = "createdDateTime desc"
    return Read(f"/chats/{meeting.chat_info.thread_id}/messages", params, PREFER)


class Collector:
    """Reads sessions for one tenant. ``errors`` lists what went wrong during ``collect``;
    ``unchanged`` the sessions left as stored because nothing they were built from changed.

    With ``memory`` (frugal polling, see ``collect/memory.py``), calendars are read with change
    tracking, reads go out in ``$batch`` envelopes several at a time, and a session is read from
    Graph again only when it changed or still has data to come. Without it, every calendar is
    read in full and every session found is read, one request at a time.

    ``frugal=False`` is the naive reading a benchmark compares against: no memory, and each
    meeting's call records fetched one by one rather than taken from the listing. It finds
    the same sessions and builds the same snapshots, with many more requests.
    """

    def __init__(
        self,
        *,
        graph: GraphClient,
        settings: Settings,
        directory: Directory,
        clock: Clock,
        keep_pupil_only_meetings: bool = False,
        memory: CollectMemory | None = None,
        frugal: bool = True,
        mailboxes: Callable[[str], bool] | None = None,
        claim: SessionClaim | None = None,
        stored_occurrences: Collection[StoredOccurrence] = (),
    ) -> None:
        if memory is not None and not frugal:
            raise ValueError("the naive reading keeps no memory between polls")
        # Which staff members' calendars and chats this run reads (None: everyone's), and who
        # must agree before a session is read: how several poller processes share a tenant.
        self._mailboxes = mailboxes
        self._claim = claim
        # Occurrences of recurring meetings stored by earlier polls (see _unmatched_calls).
        self._stored_occurrences = tuple(stored_occurrences)
        self._client = graph
        # Where reads go: the client, or during a frugal run a reader serving batched answers.
        self._graph: GraphReads = graph
        self._memory = memory
        self._frugal = frugal
        self.unchanged: list[str] = []
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
        self._groups: dict[str, InvitedGroup | None] = {}
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
        # When the channel list was read (kept between polls with memory), and whether this run
        # read it.
        self._channels_read_at: datetime | None = None
        self._channels_read_this_run = False
        if memory is not None:
            lookups = memory.lookups
            kept_at = lookups.channels_read_at
            if lookups.channels is not None and kept_at is not None:
                # Teams resources: read again once a day whether or not anything is missing.
                fresh = self._clock() - kept_at < CHANNELS_KEPT
                self._channels = dict(lookups.channels) if fresh else None
                self._channels_read_at = kept_at if fresh else None
            self._groups = dict(lookups.groups)
            self._team_members = dict(lookups.team_members)
            for group in self._groups.values():
                for member in group.members if group is not None else ():
                    self._group_people.setdefault(member.id, member)
        # Sessions to read whatever the store says (collect_sessions), and nothing else.
        self._only: frozenset[str] | None = None

    def _remember_lookups(self) -> None:
        """Keep what this run looked up successfully for the next poll (see collect.lookups)."""
        if self._memory is None:
            return
        lookups = self._memory.lookups
        if self._channels is not None and self._channels_error is None:
            lookups.channels = dict(self._channels)
            lookups.channels_read_at = self._channels_read_at
        lookups.groups = {
            address: group
            for address, group in self._groups.items()
            if address not in self._group_failures
        }
        lookups.team_members = {
            team: members for team, members in self._team_members.items() if members is not None
        }

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

        With memory, sessions whose sources did not change are not read (their ids end up in
        :attr:`unchanged` once the iterator is exhausted).
        """
        pool = (
            ThreadPoolExecutor(
                max_workers=self._settings.poll.max_concurrent_requests,
                thread_name_prefix="graph",
            )
            if self._memory is not None
            else None
        )
        if pool is not None:
            self._graph = BatchedReader(self._client, pool=pool)
        try:
            for collected in self._collect(
                window_start=window_start,
                window_end=window_end,
                skip=skip,
                chats_since=chats_since,
                read_chats=read_chats,
            ):
                self._note_unread_directory(collected)
                yield collected
        finally:
            self._remember_lookups()
            self._graph = self._client
            if pool is not None:
                pool.shutdown(wait=True)

    def collect_sessions(
        self,
        session_ids: Collection[str],
        *,
        window_start: datetime,
        window_end: datetime,
    ) -> Iterator[Collected]:
        """Read ``session_ids`` now, whether or not they changed (a change notification said
        they did, say), and yield a snapshot for each one found in the window; nothing else is
        read but the calendars (one delta round each, with memory) and the call records.

        A session not found (deleted, or outside the window) yields nothing.
        """
        self._only = frozenset(session_ids)
        try:
            yield from self.collect(
                window_start=window_start, window_end=window_end, skip=set(), read_chats=False
            )
        finally:
            self._only = None

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
        listing = self._list_call_records(window_start, min(self._clock(), window_end))
        found = self._discover(window_start, window_end)
        records = sorted(
            listing(),
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
        # Occurrences read by an earlier poll whose calendar entry is gone: a call at the time
        # of one is still that session, not a second one (see _unmatched_calls).
        gone = _gone_occurrences(self._stored_occurrences, found, window_start, window_end)
        related: dict[str, list[CallRecord]] = {}
        placed: dict[str, _Occurrence] = {}  # call record id -> the gone occurrence it is of
        unmatched: list[CallRecord] = []
        for record in records:
            url = normalise_join_url(record.join_web_url) if record.join_web_url else None
            if url is not None and url in single:
                related.setdefault(single[url], []).append(record)
                continue
            if (
                url is not None
                and (url in series or url in gone)
                and record.start_date_time is not None
            ):
                occurrence = nearest_occurrence(
                    [*series.get(url, []), *gone.get(url, [])],
                    record.start_date_time,
                    record.end_date_time or self._clock(),
                )
                if occurrence is not None and occurrence.session_id in found:
                    related.setdefault(occurrence.session_id, []).append(record)
                    continue
                if occurrence is not None:
                    placed[record.id] = occurrence
            unmatched.append(record)
        # An occurrence runs from its scheduled start (or its call's, if earlier) to its end (or
        # its call's, if later); attendance reports, chat and recordings are matched to that.
        scopes: dict[str, _Scope] = {}
        for occurrences in series.values():
            widened = tuple(_widen(o, related.get(o.session_id, [])) for o in occurrences)
            for occurrence in widened:
                scopes[occurrence.session_id] = _Scope(occurrence.session_id, widened)
        yield from self._calendar_sessions(found, related, scopes, skip)
        yield from self._unmatched_calls(unmatched, series, skip, gone=gone, placed=placed)
        if read_chats:
            yield from self._direct_chats(
                chats_since or window_start, min(self._clock(), window_end), skip
            )

    # --- which calendar sessions to read, and reading them --------------------------------------

    def _calendar_sessions(
        self,
        found: dict[str, _Found],
        related: dict[str, list[CallRecord]],
        scopes: dict[str, _Scope],
        skip: set[str],
    ) -> Iterator[Collected]:
        """Read the calendar sessions :meth:`_choose` picks, in session id order, with what
        they will ask Graph for fetched ahead in batches (in a frugal run)."""
        candidates = [
            (session_id, item)
            for session_id, item in sorted(found.items())
            if session_id not in skip
            and self._wanted(session_id)
            and self._claimed(session_id, "calendar")
        ]
        digests = {
            session_id: self._source_digest(
                item, related.get(session_id, []), scopes.get(session_id)
            )
            for session_id, item in candidates
        }
        chosen = self._choose(candidates, digests)
        self._prefetch_sessions([(sid, found[sid]) for sid in chosen], related, scopes)
        for session_id in chosen:
            records = related.get(session_id, [])
            if not self._frugal:
                records = self._fetch_each(records)
            collected = self._resolve_event(
                session_id, found[session_id], records, scopes.get(session_id)
            )
            collected.source_digest = digests[session_id]
            yield collected

    def _wanted(self, session_id: str) -> bool:
        """Whether this run is to read ``session_id`` at all (collect_sessions names a few)."""
        return self._only is None or session_id in self._only

    def _claimed(self, session_id: str, found_in: FoundIn) -> bool:
        """Whether this run may read ``session_id`` (asked before any read of it)."""
        return self._claim is None or self._claim(session_id, found_in)

    def _source_digest(
        self, item: _Found, records: list[CallRecord], scope: _Scope | None
    ) -> str | None:
        """What a calendar session's snapshot is built from, as a digest: its calendar copies
        (what the collector reads of each), the call records matched to it and, for an
        occurrence of a series, the occurrences it is told apart from. None without memory."""
        if self._memory is None:
            return None
        return source_digest(
            [
                "calendar-session/1",
                sorted(item.copies),
                sorted(
                    [
                        record.id,
                        record.version,
                        record.last_modified_date_time,
                        record.start_date_time,
                        record.end_date_time,
                    ]
                    for record in records
                ),
                [[o.session_id, o.start, o.end] for o in scope.occurrences] if scope else None,
            ]
        )

    def _choose(
        self, candidates: list[tuple[str, _Found]], digests: dict[str, str | None]
    ) -> list[str]:
        """The calendar sessions to read from Graph now, in session id order: the one place a
        calendar session is picked for reading.

        Without memory, or for :meth:`collect_sessions`, every candidate. With memory:

        - a session never read, or whose sources changed (see :meth:`_source_digest`);
        - an upcoming or live session whose last snapshot has gaps (tried again every poll);
        - an ended session while its data settles (``data_settle_minutes``), and once more
          after that (it is final when everything is in, and not a candidate again);
        - a session nothing says has changed, every ``reread_every_hours``: an upcoming Teams
          meeting (its options can change in Teams alone) and an ended one still incomplete
          (its attendance or call record never came), the longest-waiting first, spread over
          the polls.

        The others stay as stored and are listed in :attr:`unchanged`.
        """
        if self._memory is None or self._only is not None:
            return [session_id for session_id, _ in candidates]
        stored = self._memory.stored_sessions([session_id for session_id, _ in candidates])
        now = self._clock()
        poll = self._settings.poll
        every = timedelta(hours=poll.reread_every_hours)
        settle = timedelta(minutes=poll.data_settle_minutes)
        chosen: list[str] = []
        due: list[tuple[datetime, str]] = []
        quiet = 0  # sessions that are re-read every `every`
        for session_id, item in candidates:
            known = stored.get(session_id)
            end = item.event.end_utc
            if _changed(known, digests[session_id]) or end is None:
                chosen.append(session_id)
                continue
            assert known is not None  # noqa: S101 - _changed is True without a stored session
            if now < end:
                join_url = self._join_url(item.event)
                teams = bool(join_url and TEAMS_JOIN.match(join_url))
                if known.has_gaps:
                    chosen.append(session_id)
                    continue
                if not teams:
                    self.unchanged.append(session_id)
                    continue
            elif now - end < settle or known.last_collected_at < end + settle:
                chosen.append(session_id)
                continue
            quiet += 1
            if now - known.last_collected_at >= every:
                due.append((known.last_collected_at, session_id))
            else:
                self.unchanged.append(session_id)
        # After a first poll every re-read falls due at once; reading twice one poll's share
        # spreads them out, and each is still read within about twice reread_every_hours.
        polls_per_period = max(1.0, every.total_seconds() / poll.interval_seconds)
        budget = max(20, math.ceil(2 * quiet / polls_per_period))
        due.sort()
        chosen += [session_id for _, session_id in due[:budget]]
        self.unchanged += [session_id for _, session_id in due[budget:]]
        return sorted(chosen)

    def _prefetch_sessions(
        self,
        sessions: list[tuple[str, _Found]],
        related: dict[str, list[CallRecord]],
        scopes: dict[str, _Scope],
    ) -> None:
        """Fetch ahead, in batches, what reading ``sessions`` will ask Graph for, in three
        waves: what the calendar entries and call records lead to (meeting options, invited
        groups, call participants); then what the meetings lead to once they have ended
        (attendance reports, chat, recordings, transcripts; group members); then the attendance
        records of the reports that belong to each session. Whatever is not fetched ahead is
        read as usual when the session is read."""
        if not isinstance(self._graph, BatchedReader) or not sessions:
            return
        reader = self._graph
        plans, addresses = self._first_wave(reader, sessions, related)
        reports = self._second_wave(reader, plans, addresses, scopes)
        third: list[Read] = []
        for base, scope in reports:
            try:
                for raw in reader.iter_items(base):
                    report = parse(MeetingAttendanceReport, raw, what="attendance report")
                    if report.id and (
                        scope is None
                        or scope.owns(report.meeting_start_date_time, report.meeting_end_date_time)
                    ):
                        third.append(Read(f"{base}/{report.id}/attendanceRecords", all_pages=True))
            except (GraphError, PayloadError):
                continue
        reader.prefetch(third)

    def _first_wave(
        self,
        reader: BatchedReader,
        sessions: list[tuple[str, _Found]],
        related: dict[str, list[CallRecord]],
    ) -> tuple[list[_Plan], list[str]]:
        """Fetch each Teams meeting's options, the participants of its call records and the
        invited groups; the plan for the next wave, and the invited addresses looked up."""
        now = self._clock()
        addresses: set[str] = set()
        plans: list[_Plan] = []
        reads: list[Read] = []
        for session_id, item in sessions:
            addresses.update(a.strip().lower() for a in item.unknown_addresses)
            join_url = self._join_url(item.event)
            if not (join_url and TEAMS_JOIN.match(join_url)):
                continue
            organizer = self._directory.find_by_address(_organizer_address(item.event))
            lookup_user = organizer.id if organizer is not None else item.mailbox_id
            reads.append(_online_meeting_read(lookup_user, join_url))
            end = item.event.end_utc
            ended = end is not None and now >= end
            records = related.get(session_id, []) if ended else []
            reads.extend(
                _participants_read(record.id)
                for record in records
                if record.id
                and (not record.participants or record.participants_next_link)
                and record.id not in self._participants
            )
            plans.append(_Plan(session_id, join_url, lookup_user, organizer, ended, records))
        looked_up = sorted(addresses - set(self._groups))
        reads.extend(_group_read(address) for address in looked_up)
        reader.prefetch(reads)
        return plans, looked_up

    def _second_wave(
        self,
        reader: BatchedReader,
        plans: list[_Plan],
        addresses: list[str],
        scopes: dict[str, _Scope],
    ) -> list[tuple[str, _Scope | None]]:
        """Fetch the invited groups' members and, for each meeting that has ended, its chat,
        attendance reports, recordings and transcripts (or its calls' sessions, for a channel
        meeting); the attendance report lists to look into, with each session's scope."""
        reads: list[Read] = []
        for address in addresses:
            read = _group_read(address)
            try:
                values = _page_values(reader.get(read.path, params=read.params), "/groups")
                group = parse(Group, values[0], what="group") if values else None
            except (GraphError, PayloadError):
                continue
            if group is not None:
                reads.append(
                    Read(
                        f"/groups/{group.id}/transitiveMembers",
                        {"$select": USER_SELECT},
                        all_pages=True,
                    )
                )
        reports: list[tuple[str, _Scope | None]] = []
        for plan in plans:
            if not plan.ended:
                continue
            try:
                meeting = self._online_meeting(plan.lookup_user, plan.join_url)
            except _UnreadableError:
                continue
            if meeting is None:
                continue
            thread = channel_thread_of(plan.join_url)
            channel = (self._channel(thread) or ChannelRef(thread_id=thread)) if thread else None
            chat = _chat_read(channel, meeting, scopes.get(plan.session_id))
            if isinstance(chat, Read):
                reads.append(chat)
            if channel is not None:
                # No attendance reports for channel meetings: the calls' sessions say who was
                # there when.
                reads.extend(_call_sessions_read(r.id) for r in plan.records if r.id)
            elif plan.organizer is not None and meeting.id:
                base = f"/users/{plan.organizer.id}/onlineMeetings/{meeting.id}"
                reads.extend(
                    Read(f"{base}/{path}", all_pages=True)
                    for path in ("attendanceReports", "recordings", "transcripts")
                )
                reports.append((f"{base}/attendanceReports", scopes.get(plan.session_id)))
        reader.prefetch(reads)
        return reports

    def _ignored(self, records: list[CallRecord]) -> bool:
        """Whether these call records were found, in an earlier poll, not to concern the code
        of practice (no pupil, or pupils only), and have not changed since."""
        if self._memory is None:
            return False
        known = self._memory.ignored_calls
        return all(
            record.id in known and known[record.id] == _version(record) for record in records
        )

    def _ignore(self, records: list[CallRecord]) -> None:
        if self._memory is not None:
            for record in records:
                self._memory.ignored_calls[record.id] = _version(record)

    def _prefetch_calls(self, records: list[CallRecord]) -> None:
        """Fetch ahead the participants of calls found only in call records."""
        if isinstance(self._graph, BatchedReader):
            self._graph.prefetch(
                _participants_read(record.id)
                for record in records
                if record.id
                and (not record.participants or record.participants_next_link)
                and record.id not in self._participants
            )

    def _fetch_each(self, records: list[CallRecord]) -> list[CallRecord]:
        """The naive reading: each of a meeting's call records fetched on its own instead of
        taken from the listing (the listing's copy is kept if the fetch fails)."""
        fetched: list[CallRecord] = []
        for record in records:
            try:
                with _reading():
                    body = self._graph.get(f"/communications/callRecords/{record.id}")
                    fetched.append(parse(CallRecord, body, what="call record"))
            except _UnreadableError as exc:
                self.errors.append(f"call record {record.id}: {exc}")
                fetched.append(record)
        return fetched

    def _unmatched_calls(
        self,
        records: list[CallRecord],
        series: dict[str, list[_Occurrence]],
        skip: set[str],
        *,
        gone: dict[str, list[_Occurrence]] | None = None,
        placed: dict[str, _Occurrence] | None = None,
    ) -> Iterator[Collected]:
        """Sessions found only in call records: direct calls, ad-hoc ("Meet now") meetings, and a
        recurring meeting's link used when no occurrence was scheduled.

        The records of one ad-hoc meeting (one join URL) make one session; a call on a series'
        link away from every occurrence is a session of its own, named by the call's start.

        A call ``placed`` at an occurrence stored by an earlier poll whose calendar entry is now
        gone (deleted after it ran, say; ``gone`` has them by link) is that session: nothing is
        read if the session was read in full with this call, otherwise it is read from the call
        under the stored id. When this run reads only some staff members' calendars, the entry
        may be on another's: such a session is left to the run that reads it. A call left, or
        one a session read in full was not read with, is named as any other.
        """
        gone = gone or {}
        placed = placed or {}
        read_with = {o.session_id: o.call_record_ids for o in self._stored_occurrences}
        sessions: dict[str, tuple[list[CallRecord], _Scope | None]] = {}
        for record in records:
            url = record.join_web_url
            key = normalise_join_url(url) if url else None
            stored = placed.get(record.id)
            if stored is not None and stored.session_id in skip:
                if record.id in read_with.get(stored.session_id, frozenset()):
                    # Read in full with this call while its calendar entry was there.
                    continue
                stored = None
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
            elif stored is not None and self._mailboxes is None:
                group, _ = sessions.get(stored.session_id, ([], None))
                group.append(record)
                others = [
                    o
                    for o in (*series.get(key, []), *gone.get(key, []))
                    if o.session_id != stored.session_id
                ]
                sessions[stored.session_id] = (
                    group,
                    _Scope(stored.session_id, (*others, _widen(stored, group))),
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
        wanted = {
            session_id: (group, scope)
            for session_id, (group, scope) in sessions.items()
            if session_id not in skip
            and self._wanted(session_id)
            and not self._ignored(group)
            and self._claimed(session_id, "call_records")
        }
        self._prefetch_calls([record for group, _ in wanted.values() for record in group])
        for session_id, (group, scope) in wanted.items():
            errors = len(self.errors)
            collected = self._resolve_call(session_id, group, scope)
            if collected is not None:
                yield collected
            elif len(self.errors) == errors:
                self._ignore(group)

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
            and (self._mailboxes is None or self._mailboxes(person.id))
        )

    def _discover(self, start: datetime, end: datetime) -> dict[str, _Found]:
        if self._memory is not None:
            return self._discover_by_delta(start, end)
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

    def _discover_by_delta(self, start: datetime, end: datetime) -> dict[str, _Found]:
        """Sessions on the staff calendars, from the stored events once one delta round per
        mailbox has brought them up to date (see collect.calendar_sync). A mailbox whose round
        failed keeps the events stored before; the calendar error is recorded all the same."""
        assert self._memory is not None  # noqa: S101 - only called with memory
        store = self._memory.calendars
        mailboxes = self._staff_ids()
        now = self._clock()
        poll = self._settings.poll
        syncs = store.syncs(mailboxes)
        sync = CalendarSync(
            graph=self._client,
            store=store,
            pool=self._graph.pool if isinstance(self._graph, BatchedReader) else None,
            page_size=poll.page_size,
            body_links=foreign_links,
        )
        report = sync.run(
            mailboxes,
            needed=(start, end),
            fresh_window=sync_window(
                now, lookback_hours=poll.lookback_hours, lookahead_days=poll.lookahead_days
            ),
            syncs=syncs,
            now=now,
        )
        for mailbox_id, reason in sorted(report.errors.items()):
            # A calendar we could not read may hide new sessions; the poll is partial.
            self.errors.append(f"calendar of {mailbox_id}: {reason}")
            self._calendar_errors.append(f"calendar of {mailbox_id}: {reason}")
        if report.stale:
            log.info("collect.calendars_resynced", mailboxes=len(report.stale))
        found: dict[str, _Found] = {}
        entries = store.events(mailboxes)
        for mailbox_id in mailboxes:
            for entry in entries.get(mailbox_id, []):
                if not entry.overlaps(start, end):
                    continue
                try:
                    event = entry.event
                except PayloadError as exc:
                    self.errors.append(f"calendar of {mailbox_id}: {exc}")
                    self._calendar_errors.append(f"calendar of {mailbox_id}: {exc}")
                    continue
                self._add_event(found, event, mailbox_id, entry)
        return found

    def _add_event(
        self,
        found: dict[str, _Found],
        event: Event,
        mailbox_id: str,
        entry: CalendarEntry | None = None,
    ) -> None:
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
        item.copies.append((mailbox_id, event.id, entry.digest if entry is not None else ""))
        for attendee in event.attendees or []:
            address = attendee.email_address.address if attendee.email_address else None
            person = self._directory.find_by_address(address)
            if person is not None:
                item.invitee_ids.add(person.id)
                continue
            if address:
                item.unknown_addresses.append(address)

    def _expand_invitations(self, session_id: str, item: _Found) -> None:
        """Look up the groups behind the session's invited addresses that are nobody in the
        directory (once per address per run, or kept from an earlier poll)."""
        addresses, item.unknown_addresses = item.unknown_addresses, []
        for address in addresses:
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

    def _invited_group(self, address: str) -> InvitedGroup | None:
        """The group whose mail address this is, with its users, looked up once per run.

        None when no group has the address (an outside address) or the lookup failed; a failure
        is recorded in ``errors``, since the invitation may then name pupils nobody can see.
        """
        key = address.strip().lower()
        if key in self._groups:
            return self._groups[key]
        group: InvitedGroup | None = None
        try:
            with _reading():
                read = _group_read(key)
                page = self._graph.get(read.path, params=read.params)
                values = _page_values(page, "/groups")
                if values:
                    found = parse(Group, values[0], what="group")
                    members = tuple(
                        self._directory.member(obj) for obj in group_users(self._graph, found.id)
                    )
                    group = InvitedGroup(id=found.id, members=members)
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
        self._expand_invitations(session_id, item)
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
                    # A channel meeting has no attendance report: its call records are all.
                    and (
                        snapshot.channel is not None
                        or any(p.source == "attendance_report" for p in snapshot.presence)
                    )
                )
            )
        )
        return Collected(snapshot=snapshot, final=complete)

    def _online_meeting(self, user_id: str, join_url: str) -> OnlineMeeting | None:
        read = _online_meeting_read(user_id, join_url)
        with _reading():
            page = self._graph.get(read.path, params=read.params, headers=read.headers)
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
        source = _chat_read(snapshot.channel, meeting, scope)
        if isinstance(source, str):
            snapshot.missing[Missing.CHAT] = source
            return
        path, params = source.path, source.params
        earliest: datetime | None = None
        if scope is not None and snapshot.channel is None:
            # A series' chat only grows: newest first by creation time (Graph's documented
            # ordering), so paging stops at the first message from before this occurrence.
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

    def _list_call_records(self, start: datetime, end: datetime) -> Callable[[], list[CallRecord]]:
        """Start listing the call records that started in ``[start, end)``; the function
        returned gives the list. In a frugal run the listing goes on in a thread of its own
        while the calendars are brought up to date, its batches sharing the run's pool."""
        if not isinstance(self._graph, BatchedReader):
            return lambda: self._call_records(start, end)
        outcome: list[list[CallRecord] | BaseException] = []

        def run() -> None:
            try:
                outcome.append(self._call_records(start, end))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread below
                outcome.append(exc)

        # In a copy of this context, so its log lines carry the poll run's id.
        context = contextvars.copy_context()
        thread = threading.Thread(target=lambda: context.run(run), name="call-records", daemon=True)
        thread.start()

        def wait() -> list[CallRecord]:
            thread.join()
            result = outcome[0]
            if isinstance(result, BaseException):
                raise result
            return result

        return wait

    def _call_records(self, start: datetime, end: datetime) -> list[CallRecord]:
        """The call records that started in ``[start, end)``, each once (a record served on two
        pages is kept once). In a frugal run the window is listed in slices of about a page
        each (:func:`call_record_slices`), all fetched at once in batches."""
        if end <= start:
            return []
        windows = [(start, end)]
        page_size = self._settings.poll.page_size
        if self._memory is not None and isinstance(self._graph, BatchedReader):
            windows = call_record_slices(
                start, end, self._memory.call_record_starts, per_slice=max(1, page_size * 2 // 3)
            )
            self._graph.prefetch(_call_records_read(low, high, page_size) for low, high in windows)
        records: dict[str, CallRecord] = {}
        for low, high in windows:
            read = _call_records_read(low, high, page_size)
            try:
                for raw in self._graph.iter_items(
                    read.path, params=read.params, headers=read.headers
                ):
                    try:
                        record = parse(CallRecord, raw, what="call record")
                    except PayloadError as exc:
                        self.errors.append(f"call records: {exc}")
                        self._call_records_error = str(exc)
                        continue
                    records.setdefault(record.id, record)
            except GraphError as exc:
                self.errors.append(f"call records: {exc.reason}")
                self._call_records_error = exc.reason
        if self._memory is not None and self._call_records_error is None:
            self._memory.call_record_starts = sorted(
                r.start_date_time for r in records.values() if r.start_date_time is not None
            )
            self._memory.ignored_calls = {
                record_id: version
                for record_id, version in self._memory.ignored_calls.items()
                if record_id in records
            }
        return list(records.values())

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
        """The team and channel of a channel thread, from the list of the school's teams and
        channels: read once per run without memory. With memory the list is kept between polls
        (see collect.lookups) and read again once a day, or sooner when a thread is in none of
        its channels and it is ``directory_refresh_minutes`` old (a channel made since)."""
        key = thread_id.lower()
        if self._channels is not None and key in self._channels:
            return self._channels[key]
        if self._channels is None or self._channels_due():
            self._read_channels()
        return (self._channels or {}).get(key)

    def _channels_due(self) -> bool:
        """Whether a kept channel list should be read again for a thread it does not hold."""
        if self._channels_read_this_run or self._channels_read_at is None:
            return False
        age = self._clock() - self._channels_read_at
        return age >= timedelta(minutes=self._settings.poll.directory_refresh_minutes)

    def _read_channels(self) -> None:
        """List the teams and each one's channels (fetched together in a frugal run). What
        could be read is kept for this run; a failure is recorded in ``errors``."""
        channels: dict[str, ChannelRef] = {}
        self._channels_error = None
        try:
            teams = [
                team
                for team in (
                    parse(Team, raw, what="team") for raw in self._graph.iter_items("/teams")
                )
                if team.id
            ]
            if isinstance(self._graph, BatchedReader):
                self._graph.prefetch(
                    Read(f"/teams/{team.id}/channels", all_pages=True) for team in teams
                )
            for team in teams:
                for raw_channel in self._graph.iter_items(f"/teams/{team.id}/channels"):
                    channel = parse(Channel, raw_channel, what="channel")
                    if channel.id:
                        channels[channel.id.lower()] = ChannelRef(
                            thread_id=channel.id,
                            team_id=team.id,
                            channel_id=channel.id,
                            team_name=team.display_name,
                            channel_name=channel.display_name,
                        )
        except (GraphError, PayloadError) as exc:
            self.errors.append(f"teams and channels: {exc}")
            self._channels_error = str(exc)
        self._channels = channels
        self._channels_read_at = self._clock()
        self._channels_read_this_run = True

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
        mailboxes = self._staff_ids()
        if isinstance(self._graph, BatchedReader):
            self._graph.prefetch(
                Read(f"/users/{mailbox_id}/chats", _CHAT_LIST_PARAMS, all_pages=True)
                for mailbox_id in mailboxes
            )
        for mailbox_id in mailboxes:
            try:
                for raw in self._graph.iter_items(
                    f"/users/{mailbox_id}/chats", params=_CHAT_LIST_PARAMS
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
        if isinstance(self._graph, BatchedReader):
            # The first page of messages of each chat its listed members show is between staff
            # and pupils (the others are read as before, once their full member list is in).
            self._graph.prefetch(
                Read(f"/chats/{chat_id}/messages", _DIRECT_CHAT_MESSAGE_PARAMS, PREFER)
                for chat_id, (chat, _) in sorted(chats.items())
                if session_id_for_chat(chat_id) not in skip
                and self._staff_and_pupil(chat)
                and self._claimed(session_id_for_chat(chat_id), "chats")
            )
        for chat_id, (chat, mailbox_id) in sorted(chats.items()):
            session_id = session_id_for_chat(chat_id)
            if session_id in skip or not self._claimed(session_id, "chats"):
                continue
            collected = self._resolve_chat(session_id, chat, mailbox_id, start, end)
            if collected is not None:
                yield collected

    def _staff_and_pupil(self, chat: Chat) -> bool:
        """Whether a chat's listed members (when Graph listed them all) include staff and a
        pupil."""
        if chat.members is None or len(chat.members) >= EXPANDED_MEMBERS_CAP:
            return False
        kinds = {self._directory.chat_member(member).kind for member in chat.members}
        return PersonKind.STAFF in kinds and PersonKind.PUPIL in kinds

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
                    path, params=_DIRECT_CHAT_MESSAGE_PARAMS, headers=PREFER
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
