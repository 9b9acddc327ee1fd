"""The picture of one remote session that rules evaluate: typed, JSON-serialisable, offline.

A snapshot says what was seen and, in ``missing``, what could not be read and why. Rules must
treat a key in ``missing`` as "unknown", never as "nothing happened".
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SNAPSHOT_SCHEMA_VERSION = 1


class PersonKind(StrEnum):
    """What kind of identity a participant is, from the school's point of view."""

    STAFF = "staff"
    PUPIL = "pupil"
    GUEST = "guest"  # a guest account in the school's tenant (userType Guest)
    ANONYMOUS = "anonymous"  # joined by link with a typed-in name only
    EXTERNAL = "external"  # a user of another Entra tenant (federated)
    PHONE = "phone"  # dialled in (PSTN)
    APPLICATION = "application"  # a bot or app identity
    UNKNOWN = "unknown"  # a member of the school tenant in none of the configured groups


class Role(StrEnum):
    TEACHER = "teacher"
    SLT = "slt"
    DSL = "dsl"
    DEPUTY_DSL = "deputy_dsl"


HUMAN_KINDS = frozenset(
    {
        PersonKind.STAFF,
        PersonKind.PUPIL,
        PersonKind.GUEST,
        PersonKind.ANONYMOUS,
        PersonKind.EXTERNAL,
        PersonKind.PHONE,
        PersonKind.UNKNOWN,
    }
)


class Person(BaseModel):
    """A participant. ``id`` is the Graph object id, or a synthetic id for those without one."""

    model_config = ConfigDict(frozen=True)

    id: str
    display_name: str = ""
    kind: PersonKind
    roles: frozenset[Role] = frozenset()
    tenant_id: str | None = None
    school: str | None = None
    email: str | None = None

    @property
    def is_human(self) -> bool:
        return self.kind in HUMAN_KINDS


class SessionKind(StrEnum):
    MEETING = "meeting"  # a scheduled, private Teams meeting (found on a calendar)
    CHANNEL_MEETING = "channel_meeting"  # a meeting held in a team channel
    PEER_TO_PEER = "peer_to_peer"  # a direct 1:1 Teams call (call record only)
    OTHER_PROVIDER = "other_provider"  # an event whose meeting is not on Teams
    DIRECT_CHAT = "direct_chat"  # a 1:1 or group chat outside any meeting


class Interval(BaseModel):
    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime | None = None  # None: still present when the data was read


class Presence(BaseModel):
    """When one person was in the session, from one source."""

    person_id: str
    intervals: list[Interval]
    source: Literal["attendance_report", "call_record", "roster_event"]


class ChatActivity(BaseModel):
    """One message in the session's chat. The text is kept only if a school opts in."""

    message_id: str
    created: datetime
    sender_kind: Literal["person", "system", "application"]
    sender_id: str | None = None
    event_type: str | None = None  # for system messages, e.g. callEndedEventMessageDetail
    text: str | None = None


class RecordingEvent(BaseModel):
    """A recording or transcript of the session and, where known, who started it."""

    id: str
    kind: Literal["recording", "transcript"]
    started: datetime | None = None
    initiator_id: str | None = None
    source: Literal["recordings_api", "chat_event", "call_record"]


class MeetingSettings(BaseModel):
    """The meeting options that decide who gets in and what they can do."""

    allow_meeting_chat: str | None = None  # enabled | disabled | limited
    lobby_scope: str | None = None  # organizer | organization | ... | everyone | invited
    dial_in_bypass: bool | None = None
    allowed_presenters: str | None = None
    record_automatically: bool | None = None


class ChannelRef(BaseModel):
    """The team channel a channel meeting is held in.

    ``member_ids`` are the team's members (owners included), who can all join a channel meeting
    without an invitation. Empty when the team's members could not be read (``sources`` then has
    a ``channel_members`` note saying why) or the team is not known: treat empty as "unknown".
    """

    thread_id: str
    team_id: str | None = None
    channel_id: str | None = None
    team_name: str | None = None
    channel_name: str | None = None
    member_ids: list[str] = Field(default_factory=list)


class SessionPhase(StrEnum):
    UPCOMING = "upcoming"
    LIVE = "live"
    ENDED = "ended"


class SessionSnapshot(BaseModel):
    """Everything remote_guard knows about one remote session at ``collected_at``."""

    schema_version: int = SNAPSHOT_SCHEMA_VERSION
    session_id: str
    kind: SessionKind
    subject: str | None = None
    organizer_id: str | None = None
    organizer_email: str | None = None
    organizer_tenant_id: str | None = None
    scheduled_start: datetime | None = None
    scheduled_end: datetime | None = None
    actual_start: datetime | None = None
    actual_end: datetime | None = None
    is_cancelled: bool = False
    join_url: str | None = None
    provider: str | None = None
    channel: ChannelRef | None = None
    series_id: str | None = None  # the calendar series (seriesMasterId) a meeting belongs to
    online_meeting_id: str | None = None
    chat_thread_id: str | None = None
    chat_type: str | None = None  # for direct chats: oneOnOne | group
    member_ids: list[str] = Field(default_factory=list)  # for direct chats: the chat's members
    call_record_ids: list[str] = Field(default_factory=list)
    invitee_ids: list[str] = Field(default_factory=list)
    invitee_emails: list[str] = Field(default_factory=list)
    foreign_links: list[str] = Field(default_factory=list)
    people: dict[str, Person] = Field(default_factory=dict)
    settings: MeetingSettings | None = None
    presence: list[Presence] | None = None
    chat: list[ChatActivity] | None = None
    recordings: list[RecordingEvent] | None = None
    missing: dict[str, str] = Field(default_factory=dict)
    sources: dict[str, str] = Field(default_factory=dict)
    collected_at: datetime

    def phase(self, now: datetime) -> SessionPhase:
        """Where the session stands at ``now``: upcoming, live or ended."""
        start = self.actual_start or self.scheduled_start
        end = self.actual_end or self.scheduled_end
        if start is not None and now < start:
            return SessionPhase.UPCOMING
        if end is not None and now >= end:
            return SessionPhase.ENDED
        return SessionPhase.LIVE

    def person(self, person_id: str) -> Person:
        """The participant with ``person_id``; unknown ids come back as kind UNKNOWN."""
        return self.people.get(person_id) or Person(id=person_id, kind=PersonKind.UNKNOWN)

    def ids_of(self, kind: PersonKind) -> set[str]:
        return {pid for pid, person in self.people.items() if person.kind is kind}


class Missing(StrEnum):
    """The logical pieces of a snapshot a rule can require; keys of ``SessionSnapshot.missing``."""

    CALENDAR = "calendar"
    SETTINGS = "settings"
    PRESENCE = "presence"
    CHAT = "chat"
    RECORDINGS = "recordings"
    DIRECTORY = "directory"
