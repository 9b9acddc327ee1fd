"""Typed, tolerant parsers for the Microsoft Graph v1.0 payloads remote_guard reads.

Every model here is validated against real example responses from Microsoft's
published API reference (see ``tests/fixtures/graph/SOURCES.md``). The models are:

* **tolerant** of what Graph adds: unknown properties are ignored, and any property
  Graph may omit or send as ``null`` is optional, so a new Graph field never breaks
  a collector;
* **strict** about what Graph promises: JSON types are not coerced (``"2"`` is not an
  integer, ``1`` is not a boolean), entity ids must be present, and every date-time
  becomes an aware UTC :class:`~datetime.datetime`, so a rule never compares a naive
  wall-clock time with an instant;
* **bounded**: strings have length caps, so a hostile or corrupted payload is
  rejected instead of being carried into snapshots and logs.

Enumerations (``role``, ``chatType``, ``messageType``...) are kept as plain strings:
Graph's enums are *evolvable* (``unknownFutureValue`` and members that only appear
with ``Prefer: include-unknown-enum-members``), and a value we have not seen must
reach the rules, which decide what it means, rather than fail the whole payload.

Use :func:`parse` to validate one object; it raises :class:`PayloadError` and nothing
else on bad data. Paging (``value``/``@odata.nextLink``) is the client's job.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Annotated, ClassVar, Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "AttendanceInterval",
    "AttendanceRecord",
    "Attendee",
    "BatchResponse",
    "BatchResponseItem",
    "CallParticipantInfo",
    "CallRecord",
    "CallRecordParticipant",
    "CallRecording",
    "CallTranscript",
    "Channel",
    "ChannelIdentity",
    "Chat",
    "ChatInfo",
    "ChatMessage",
    "ChatMessageEventDetail",
    "ChatMessageFrom",
    "ConversationMember",
    "DateTimeTimeZone",
    "DirectoryObject",
    "EmailAddress",
    "Event",
    "GraphError",
    "GraphErrorBody",
    "GraphInnerError",
    "Group",
    "Identity",
    "IdentitySet",
    "ItemBody",
    "JoinMeetingIdSettings",
    "LobbyBypassSettings",
    "Location",
    "MeetingAttendanceReport",
    "MeetingParticipantInfo",
    "MeetingParticipants",
    "OnlineMeeting",
    "OnlineMeetingInfo",
    "PayloadError",
    "Recipient",
    "RemovedInfo",
    "ResponseStatus",
    "Team",
    "TeamworkOnlineMeetingInfo",
    "User",
    "parse",
    "resolve_time_zone",
]

# --------------------------------------------------------------------------------------
# Limits. Graph ids are opaque but short (the longest in the reference, a recording id,
# is ~330 characters); names, URLs and enum values are short; only HTML bodies are long.
# A value over these caps is treated as a corrupt or hostile payload, not truncated,
# because a truncated id or URL would silently point at the wrong thing.
# --------------------------------------------------------------------------------------
_ID_MAX_CHARS: Final = 2_048
_TEXT_MAX_CHARS: Final = 16_384
_BODY_MAX_CHARS: Final = 4 * 1024 * 1024
_DATETIME_MAX_CHARS: Final = 64
_PROBLEM_MAX_CHARS: Final = 200

GraphId = Annotated[str, StringConstraints(min_length=1, max_length=_ID_MAX_CHARS)]
"""An entity id: required entities must carry a non-empty one."""

Text = Annotated[str, StringConstraints(max_length=_TEXT_MAX_CHARS)]
"""Names, addresses, URLs, enum values: anything that is not a message body."""

BodyText = Annotated[str, StringConstraints(max_length=_BODY_MAX_CHARS)]
"""HTML or text bodies of events and chat messages."""

_T = TypeVar("_T")


def _null_as_empty_list(value: object) -> object:
    """Graph sends ``null`` for some empty collections; a rule should see ``[]``."""
    return [] if value is None else value


NullableList = Annotated[list[_T], BeforeValidator(_null_as_empty_list)]
"""A plain collection property: ``null`` or missing both read as empty.

Navigation properties that must be *expanded* (``participants_v2``,
``attendanceRecords``, ``members``) are ``list | None`` instead, because "not
fetched" (``None``) must not be mistaken for "fetched and empty" (``[]``).
"""

# --------------------------------------------------------------------------------------
# Date-times.
# --------------------------------------------------------------------------------------

# Graph writes up to 7 fractional digits (.NET ticks: "2020-02-25T18:52:21.2169889Z");
# Python keeps 6, so the 7th (100 ns) is dropped, never rounded into the next second.
_ISO_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"T(?P<time>\d{2}:\d{2}(?::\d{2})?)"
    r"(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<offset>Z|z|[+-]\d{2}:?\d{2})?"
)


def _parse_iso(value: str) -> datetime:
    """Parse an ISO 8601 date-time as Graph writes it; naive if it has no offset.

    Raises:
        ValueError: the text is not an ISO 8601 date-time.
    """
    if len(value) > _DATETIME_MAX_CHARS:
        raise ValueError(f"date-time text is {len(value)} characters long")
    match = _ISO_DATETIME.fullmatch(value)
    if match is None:
        raise ValueError("not an ISO 8601 date-time")
    fraction = match["fraction"] or ""
    offset = match["offset"] or ""
    if offset in ("Z", "z"):
        offset = "+00:00"
    text = f"{match['date']}T{match['time']}"
    if fraction:
        text += "." + fraction[:6].ljust(6, "0")
    return datetime.fromisoformat(text + offset)


def _as_utc(moment: datetime) -> datetime:
    """Convert an aware date-time to UTC.

    Raises:
        ValueError: the instant is outside the range Python can represent in UTC
            (e.g. ``0001-01-01T00:00:00+01:00``).
    """
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("date-time is out of range once converted to UTC") from exc


def _utc_instant(value: object) -> datetime:
    """Validate an instant property (``createdDateTime``...) into an aware UTC datetime.

    Graph writes instants with ``Z`` or an offset. A value without one is read as UTC,
    which is Graph's documented convention for offset-less date-times (calendarView's
    ``startDateTime``), rather than dropping the whole object over it.

    Raises:
        ValueError: not a string or datetime, or not an ISO 8601 date-time.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = _parse_iso(value)
    else:
        raise ValueError("a date-time must be an ISO 8601 string")  # noqa: TRY004 - pydantic only reports ValueError
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _as_utc(moment)


UtcDateTime = Annotated[datetime, BeforeValidator(_utc_instant)]
"""An instant, always timezone-aware and in UTC."""

_DURATION = re.compile(
    r"P(?:(?P<days>\d{1,9})D)?"
    r"(?:T(?:(?P<hours>\d{1,9})H)?(?:(?P<minutes>\d{1,9})M)?(?:(?P<seconds>\d{1,9}(?:\.\d{1,9})?)S)?)?"
)


def _iso_duration(value: object) -> timedelta:
    """Validate an ISO 8601 duration such as ``PT59S`` or ``PT40M19.26S``.

    Raises:
        ValueError: not a string or timedelta, or not a day/time ISO 8601 duration.
    """
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError("a duration must be an ISO 8601 string")  # noqa: TRY004 - pydantic only reports ValueError
    match = _DURATION.fullmatch(value)
    if match is None or value in ("P", "PT") or value.endswith("T"):
        raise ValueError("not an ISO 8601 duration")
    try:
        return timedelta(
            days=int(match["days"] or 0),
            hours=int(match["hours"] or 0),
            minutes=int(match["minutes"] or 0),
            seconds=float(match["seconds"] or 0),
        )
    except OverflowError as exc:
        raise ValueError("duration is out of range") from exc


Duration = Annotated[timedelta, BeforeValidator(_iso_duration)]

# Windows time-zone names (what Outlook writes in dateTimeTimeZone.timeZone) to IANA,
# from the Unicode CLDR windowsZones table (territory "001"). Graph returns calendar
# times in UTC unless a caller sends `Prefer: outlook.timezone`, but events created in
# Outlook can still carry these names, so the common ones are mapped. A name that is in
# neither this table nor the IANA database is rejected rather than guessed.
_WINDOWS_TO_IANA: Final[dict[str, str]] = {
    "Dateline Standard Time": "Etc/GMT+12",
    "UTC-11": "Etc/GMT+11",
    "Aleutian Standard Time": "America/Adak",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Marquesas Standard Time": "Pacific/Marquesas",
    "Alaskan Standard Time": "America/Anchorage",
    "UTC-09": "Etc/GMT+9",
    "Pacific Standard Time (Mexico)": "America/Tijuana",
    "UTC-08": "Etc/GMT+8",
    "Pacific Standard Time": "America/Los_Angeles",
    "US Mountain Standard Time": "America/Phoenix",
    "Mountain Standard Time (Mexico)": "America/Mazatlan",
    "Mountain Standard Time": "America/Denver",
    "Yukon Standard Time": "America/Whitehorse",
    "Central America Standard Time": "America/Guatemala",
    "Central Standard Time": "America/Chicago",
    "Easter Island Standard Time": "Pacific/Easter",
    "Central Standard Time (Mexico)": "America/Mexico_City",
    "Canada Central Standard Time": "America/Regina",
    "SA Pacific Standard Time": "America/Bogota",
    "Eastern Standard Time (Mexico)": "America/Cancun",
    "Eastern Standard Time": "America/New_York",
    "Haiti Standard Time": "America/Port-au-Prince",
    "Cuba Standard Time": "America/Havana",
    "US Eastern Standard Time": "America/Indiana/Indianapolis",
    "Turks And Caicos Standard Time": "America/Grand_Turk",
    "Paraguay Standard Time": "America/Asuncion",
    "Atlantic Standard Time": "America/Halifax",
    "Venezuela Standard Time": "America/Caracas",
    "Central Brazilian Standard Time": "America/Cuiaba",
    "SA Western Standard Time": "America/La_Paz",
    "Pacific SA Standard Time": "America/Santiago",
    "Newfoundland Standard Time": "America/St_Johns",
    "Tocantins Standard Time": "America/Araguaina",
    "E. South America Standard Time": "America/Sao_Paulo",
    "SA Eastern Standard Time": "America/Cayenne",
    "Argentina Standard Time": "America/Argentina/Buenos_Aires",
    "Montevideo Standard Time": "America/Montevideo",
    "Magallanes Standard Time": "America/Punta_Arenas",
    "Saint Pierre Standard Time": "America/Miquelon",
    "Bahia Standard Time": "America/Bahia",
    "UTC-02": "Etc/GMT+2",
    "Azores Standard Time": "Atlantic/Azores",
    "Cape Verde Standard Time": "Atlantic/Cape_Verde",
    "UTC": "Etc/UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "Sao Tome Standard Time": "Africa/Sao_Tome",
    "Morocco Standard Time": "Africa/Casablanca",
    "W. Europe Standard Time": "Europe/Berlin",
    "Central Europe Standard Time": "Europe/Budapest",
    "Romance Standard Time": "Europe/Paris",
    "Central European Standard Time": "Europe/Warsaw",
    "W. Central Africa Standard Time": "Africa/Lagos",
    "Jordan Standard Time": "Asia/Amman",
    "GTB Standard Time": "Europe/Bucharest",
    "Middle East Standard Time": "Asia/Beirut",
    "Egypt Standard Time": "Africa/Cairo",
    "E. Europe Standard Time": "Europe/Chisinau",
    "Syria Standard Time": "Asia/Damascus",
    "West Bank Standard Time": "Asia/Hebron",
    "South Africa Standard Time": "Africa/Johannesburg",
    "FLE Standard Time": "Europe/Kiev",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Sudan Standard Time": "Africa/Juba",
    "Kaliningrad Standard Time": "Europe/Kaliningrad",
    "Sudan Standard Time": "Africa/Khartoum",
    "Libya Standard Time": "Africa/Tripoli",
    "Namibia Standard Time": "Africa/Windhoek",
    "Arabic Standard Time": "Asia/Baghdad",
    "Turkey Standard Time": "Europe/Istanbul",
    "Arab Standard Time": "Asia/Riyadh",
    "Belarus Standard Time": "Europe/Minsk",
    "Russian Standard Time": "Europe/Moscow",
    "E. Africa Standard Time": "Africa/Nairobi",
    "Volgograd Standard Time": "Europe/Volgograd",
    "Iran Standard Time": "Asia/Tehran",
    "Arabian Standard Time": "Asia/Dubai",
    "Astrakhan Standard Time": "Europe/Astrakhan",
    "Azerbaijan Standard Time": "Asia/Baku",
    "Russia Time Zone 3": "Europe/Samara",
    "Mauritius Standard Time": "Indian/Mauritius",
    "Saratov Standard Time": "Europe/Saratov",
    "Georgian Standard Time": "Asia/Tbilisi",
    "Caucasus Standard Time": "Asia/Yerevan",
    "Afghanistan Standard Time": "Asia/Kabul",
    "West Asia Standard Time": "Asia/Tashkent",
    "Ekaterinburg Standard Time": "Asia/Yekaterinburg",
    "Pakistan Standard Time": "Asia/Karachi",
    "Qyzylorda Standard Time": "Asia/Qyzylorda",
    "India Standard Time": "Asia/Kolkata",
    "Sri Lanka Standard Time": "Asia/Colombo",
    "Nepal Standard Time": "Asia/Kathmandu",
    "Bangladesh Standard Time": "Asia/Dhaka",
    "Omsk Standard Time": "Asia/Omsk",
    "Myanmar Standard Time": "Asia/Yangon",
    "SE Asia Standard Time": "Asia/Bangkok",
    "Altai Standard Time": "Asia/Barnaul",
    "W. Mongolia Standard Time": "Asia/Hovd",
    "North Asia Standard Time": "Asia/Krasnoyarsk",
    "N. Central Asia Standard Time": "Asia/Novosibirsk",
    "Tomsk Standard Time": "Asia/Tomsk",
    "China Standard Time": "Asia/Shanghai",
    "North Asia East Standard Time": "Asia/Irkutsk",
    "Singapore Standard Time": "Asia/Singapore",
    "W. Australia Standard Time": "Australia/Perth",
    "Taipei Standard Time": "Asia/Taipei",
    "Ulaanbaatar Standard Time": "Asia/Ulaanbaatar",
    "Aus Central W. Standard Time": "Australia/Eucla",
    "Transbaikal Standard Time": "Asia/Chita",
    "Tokyo Standard Time": "Asia/Tokyo",
    "North Korea Standard Time": "Asia/Pyongyang",
    "Korea Standard Time": "Asia/Seoul",
    "Yakutsk Standard Time": "Asia/Yakutsk",
    "Cen. Australia Standard Time": "Australia/Adelaide",
    "AUS Central Standard Time": "Australia/Darwin",
    "E. Australia Standard Time": "Australia/Brisbane",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "West Pacific Standard Time": "Pacific/Port_Moresby",
    "Tasmania Standard Time": "Australia/Hobart",
    "Vladivostok Standard Time": "Asia/Vladivostok",
    "Lord Howe Standard Time": "Australia/Lord_Howe",
    "Bougainville Standard Time": "Pacific/Bougainville",
    "Russia Time Zone 10": "Asia/Srednekolymsk",
    "Magadan Standard Time": "Asia/Magadan",
    "Norfolk Standard Time": "Pacific/Norfolk",
    "Sakhalin Standard Time": "Asia/Sakhalin",
    "Central Pacific Standard Time": "Pacific/Guadalcanal",
    "Russia Time Zone 11": "Asia/Kamchatka",
    "New Zealand Standard Time": "Pacific/Auckland",
    "UTC+12": "Etc/GMT-12",
    "Fiji Standard Time": "Pacific/Fiji",
    "Chatham Islands Standard Time": "Pacific/Chatham",
    "UTC+13": "Etc/GMT-13",
    "Tonga Standard Time": "Pacific/Tongatapu",
    "Samoa Standard Time": "Pacific/Apia",
    "Line Islands Standard Time": "Pacific/Kiritimati",
}
_WINDOWS_TO_IANA_FOLDED: Final = {name.casefold(): iana for name, iana in _WINDOWS_TO_IANA.items()}

# Spellings of UTC seen in Graph payloads besides the plain name: recurrence ranges and
# original*TimeZone use Exchange's "tzone://Microsoft/Utc".
_UTC_NAMES: Final = frozenset({"utc", "etc/utc", "gmt", "etc/gmt", "z", "tzone://microsoft/utc"})


def resolve_time_zone(name: str | None) -> tzinfo:
    """Return the tzinfo for a Graph ``timeZone`` value (Windows or IANA name).

    A missing name reads as UTC: Graph returns calendar times in UTC unless the caller
    asks for another zone with ``Prefer: outlook.timezone``.

    Raises:
        ValueError: the name is neither a known Windows zone nor an IANA zone.
    """
    if name is None or not name.strip():
        return UTC
    folded = name.strip().casefold()
    if folded in _UTC_NAMES:
        return UTC
    iana = _WINDOWS_TO_IANA_FOLDED.get(folded, name.strip())
    try:
        return ZoneInfo(iana)
    # ZoneInfo reports an unusable key in several ways: not found, a malformed key
    # (ValueError), or a key that names a directory or unreadable file (OSError).
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError("unknown time zone name") from exc


# --------------------------------------------------------------------------------------
# Base model.
# --------------------------------------------------------------------------------------


class GraphModel(BaseModel):
    """Base for every Graph payload model: camelCase aliases, tolerant of additions."""

    model_config = ConfigDict(
        # Graph adds properties over time; ignoring them keeps collectors working.
        extra="ignore",
        # JSON types are honoured, not coerced: a string id of 12345 is a different
        # payload from the number 12345, and "true" is not a boolean.
        strict=True,
        # Parsed payloads are evidence; nothing downstream should edit them in place.
        frozen=True,
        alias_generator=to_camel,
        # Only Graph's own names are accepted on input. Accepting Python names too
        # would let the deprecated callRecord "organizer" fill the `organizer` field
        # that is meant for "organizer_v2".
        validate_by_name=False,
        validate_by_alias=True,
        # Dumps use Graph's names, so a saved snapshot parses back with the same models.
        serialize_by_alias=True,
    )


class ODataTyped(GraphModel):
    """A model whose ``@odata.type`` tells a subtype apart (identities, members...)."""

    odata_type: Text | None = Field(default=None, alias="@odata.type")


# --------------------------------------------------------------------------------------
# Outlook calendar.
# --------------------------------------------------------------------------------------


class DateTimeTimeZone(GraphModel):
    """A wall-clock time plus the zone it is in (Outlook's ``dateTimeTimeZone``).

    ``dateTime`` is naive (``2017-04-15T11:00:00.0000000``) and ``timeZone`` is a
    Windows or IANA name. Both are checked when the payload is parsed, so
    :meth:`to_utc` cannot fail later.
    """

    date_time: Annotated[str, StringConstraints(max_length=_DATETIME_MAX_CHARS)]
    time_zone: Text | None = None

    @model_validator(mode="after")
    def _check_convertible(self) -> DateTimeTimeZone:
        self.to_utc()
        return self

    def to_utc(self) -> datetime:
        """Return the instant as an aware UTC datetime.

        An explicit offset inside ``dateTime`` wins over ``timeZone``. Wall times that
        fall in a DST gap or fold resolve with ``fold=0`` (the earlier reading).

        Raises:
            ValueError: unparseable text or unknown zone (only for hand-built instances;
                parsed ones were checked already).
        """
        moment = _parse_iso(self.date_time)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=resolve_time_zone(self.time_zone))
        return _as_utc(moment)


class EmailAddress(GraphModel):
    name: Text | None = None
    address: Text | None = None


class Recipient(GraphModel):
    email_address: EmailAddress | None = None


class ResponseStatus(GraphModel):
    response: Text | None = None
    time: UtcDateTime | None = None


class Attendee(Recipient):
    """An event attendee; ``type`` is ``required``, ``optional`` or ``resource``."""

    type: Text | None = None
    status: ResponseStatus | None = None


class OnlineMeetingInfo(GraphModel):
    """The Teams details on an event (``event.onlineMeeting``); read-only in Graph."""

    join_url: Text | None = None
    conference_id: Text | None = None
    toll_number: Text | None = None
    toll_free_numbers: NullableList[Text] = Field(default_factory=list)
    quick_dial: Text | None = None


class Location(GraphModel):
    display_name: Text | None = None
    location_type: Text | None = None
    unique_id: Text | None = None
    location_uri: Text | None = None


class ItemBody(GraphModel):
    content_type: Text | None = None
    content: BodyText | None = None


class RemovedInfo(GraphModel):
    """The ``@removed`` marker of a delta entry; ``reason`` is ``deleted`` or ``changed``."""

    reason: Text | None = None


class Event(GraphModel):
    """An Outlook calendar event, from calendarView or its delta.

    A delta entry with :attr:`removed` set carries only ``id``: the event was deleted,
    or (for calendarView delta) it may lie *outside* the requested window.
    """

    id: GraphId
    i_cal_u_id: Text | None = None
    subject: Text | None = None
    body: ItemBody | None = None
    body_preview: Text | None = None
    start: DateTimeTimeZone | None = None
    end: DateTimeTimeZone | None = None
    is_all_day: bool | None = None
    organizer: Recipient | None = None
    attendees: NullableList[Attendee] = Field(default_factory=list)
    is_online_meeting: bool | None = None
    online_meeting_provider: Text | None = None
    online_meeting: OnlineMeetingInfo | None = None
    online_meeting_url: Text | None = None
    location: Location | None = None
    is_cancelled: bool | None = None
    is_organizer: bool | None = None
    type: Text | None = None
    series_master_id: Text | None = None
    # An occurrence's (or exception's) start in its series, always UTC; absent on single events.
    original_start: UtcDateTime | None = None
    created_date_time: UtcDateTime | None = None
    last_modified_date_time: UtcDateTime | None = None
    web_link: Text | None = None
    removed: RemovedInfo | None = Field(default=None, alias="@removed")

    @property
    def is_removed(self) -> bool:
        """True for a delta tombstone (``@removed`` present)."""
        return self.removed is not None

    @property
    def start_utc(self) -> datetime | None:
        return self.start.to_utc() if self.start is not None else None

    @property
    def end_utc(self) -> datetime | None:
        return self.end.to_utc() if self.end is not None else None


# --------------------------------------------------------------------------------------
# Identities.
# --------------------------------------------------------------------------------------


class Identity(ODataTyped):
    """One identity: a user, application, device, phone number, guest...

    Subtypes (``teamworkUserIdentity``, ``communicationsUserIdentity``,
    ``userIdentity``...) differ only in optional properties, so one model reads them
    all; ``odata_type`` says which it was when Graph tells us.
    """

    id: Text | None = None
    display_name: Text | None = None
    tenant_id: Text | None = None
    user_identity_type: Text | None = None
    identity_provider: Text | None = None
    user_principal_name: Text | None = None


class IdentitySet(GraphModel):
    """Graph's ``identitySet`` and its communications/chat variants.

    Normally exactly one member is set; :meth:`kind` names it.
    """

    # Order matters for :meth:`kind` when several members are set: people first
    # (a person is who a safeguarding rule cares about), then software, then devices.
    _KINDS: ClassVar[tuple[str, ...]] = (
        "user",
        "guest",
        "phone",
        "acs_user",
        "azure_communication_services_user",
        "spool_user",
        "encrypted",
        "on_premises",
        "application",
        "application_instance",
        "acs_application_instance",
        "spool_application_instance",
        "device",
    )

    user: Identity | None = None
    application: Identity | None = None
    device: Identity | None = None
    guest: Identity | None = None
    phone: Identity | None = None
    encrypted: Identity | None = None
    on_premises: Identity | None = None
    acs_user: Identity | None = None
    spool_user: Identity | None = None
    azure_communication_services_user: Identity | None = None
    application_instance: Identity | None = None
    acs_application_instance: Identity | None = None
    spool_application_instance: Identity | None = None

    def kinds(self) -> tuple[str, ...]:
        """Graph names (camelCase) of every member that is set, in priority order."""
        return tuple(to_camel(name) for name in self._KINDS if getattr(self, name) is not None)

    def kind(self) -> str:
        """Graph name of the member that is set (``user``, ``phone``, ``acsUser``...).

        Returns ``"none"`` when no member is set. When several are set, returns the
        first in the order people, software, devices.
        """
        kinds = self.kinds()
        return kinds[0] if kinds else "none"

    def primary(self) -> Identity | None:
        """The identity that :meth:`kind` names, or ``None``."""
        for name in self._KINDS:
            identity: Identity | None = getattr(self, name)
            if identity is not None:
                return identity
        return None


# --------------------------------------------------------------------------------------
# onlineMeeting.
# --------------------------------------------------------------------------------------


class MeetingParticipantInfo(GraphModel):
    """A meeting participant; ``role`` is attendee/presenter/producer/coorganizer."""

    identity: IdentitySet | None = None
    upn: Text | None = None
    role: Text | None = None


class MeetingParticipants(GraphModel):
    organizer: MeetingParticipantInfo | None = None
    attendees: NullableList[MeetingParticipantInfo] = Field(default_factory=list)


class ChatInfo(GraphModel):
    """Where the meeting's chat lives; ``threadId`` is the chat id for /chats/{id}."""

    thread_id: Text | None = None
    message_id: Text | None = None
    reply_chain_message_id: Text | None = None


class LobbyBypassSettings(GraphModel):
    """Who skips the lobby. Note ``organization`` *includes* guests."""

    scope: Text | None = None
    is_dial_in_bypass_enabled: bool | None = None


class JoinMeetingIdSettings(GraphModel):
    join_meeting_id: Text | None = None
    is_passcode_required: bool | None = None
    passcode: Text | None = None


class OnlineMeeting(GraphModel):
    """A Teams meeting's settings and identifiers. Its ``id`` is opaque."""

    id: GraphId
    join_web_url: Text | None = None
    subject: Text | None = None
    creation_date_time: UtcDateTime | None = None
    start_date_time: UtcDateTime | None = None
    end_date_time: UtcDateTime | None = None
    chat_info: ChatInfo | None = None
    participants: MeetingParticipants | None = None
    allowed_presenters: Text | None = None
    lobby_bypass_settings: LobbyBypassSettings | None = None
    allow_meeting_chat: Text | None = None
    allow_attendee_to_enable_camera: bool | None = None
    allow_attendee_to_enable_mic: bool | None = None
    record_automatically: bool | None = None
    is_entry_exit_announced: bool | None = None
    join_meeting_id_settings: JoinMeetingIdSettings | None = None
    share_meeting_chat_history_default: Text | None = None
    video_teleconference_id: Text | None = None


# --------------------------------------------------------------------------------------
# Attendance reports.
# --------------------------------------------------------------------------------------


class AttendanceInterval(GraphModel):
    join_date_time: UtcDateTime | None = None
    leave_date_time: UtcDateTime | None = None
    duration_in_seconds: int | None = None


class AttendanceRecord(GraphModel):
    """One attendee's time in one meeting session.

    ``identity`` is a communicationsUserIdentity; its ``tenantId`` is ``null`` in the
    reference examples even for organisation users, so it cannot on its own prove a
    participant is internal.
    """

    id: Text | None = None
    email_address: Text | None = None
    role: Text | None = None
    total_attendance_in_seconds: int | None = None
    identity: Identity | None = None
    attendance_intervals: NullableList[AttendanceInterval] = Field(default_factory=list)


class MeetingAttendanceReport(GraphModel):
    """Attendance for one session; ``attendanceRecords`` is ``None`` unless expanded.

    The list endpoint always returns ``attendanceRecords: []``, so an empty list from
    a *list* call means "not fetched", not "nobody attended".
    """

    id: GraphId
    total_participant_count: int | None = None
    meeting_start_date_time: UtcDateTime | None = None
    meeting_end_date_time: UtcDateTime | None = None
    attendance_records: list[AttendanceRecord] | None = None


# --------------------------------------------------------------------------------------
# Call records.
# --------------------------------------------------------------------------------------


class CallRecordParticipant(GraphModel):
    """A ``callRecords.participant`` (``organizer_v2`` or an item of ``participants_v2``)."""

    id: GraphId
    identity: IdentitySet | None = None


class CallRecord(GraphModel):
    """A completed call or meeting session.

    ``organizer`` and ``participants`` read Graph's ``organizer_v2`` and
    ``participants_v2``; the deprecated ``organizer``/``participants`` properties stop
    returning data on 2026-06-30 and are ignored. ``participants`` is ``None`` unless
    expanded, and an expanded list can itself be paged: check
    :attr:`participants_next_link`.
    """

    id: GraphId
    version: int | None = None
    type: Text | None = None
    modalities: NullableList[Text] = Field(default_factory=list)
    start_date_time: UtcDateTime | None = None
    end_date_time: UtcDateTime | None = None
    last_modified_date_time: UtcDateTime | None = None
    join_web_url: Text | None = None
    organizer: CallRecordParticipant | None = Field(default=None, alias="organizer_v2")
    participants: list[CallRecordParticipant] | None = Field(default=None, alias="participants_v2")
    participants_next_link: Text | None = Field(
        default=None, alias="participants_v2@odata.nextLink"
    )


# --------------------------------------------------------------------------------------
# Chats and chat messages.
# --------------------------------------------------------------------------------------


class ChatMessageFrom(IdentitySet):
    """The ``from`` of a chat message: a ``chatMessageFromIdentitySet``."""

    _KINDS: ClassVar[tuple[str, ...]] = (*IdentitySet._KINDS, "conversation")

    conversation: Identity | None = None


class CallParticipantInfo(GraphModel):
    participant: IdentitySet | None = None


class ChatMessageEventDetail(ODataTyped):
    """The ``eventDetail`` of a system message; ``odata_type`` names the event.

    One model covers the event types remote_guard reads (call started/ended,
    recording, transcript, members added/joined/left, meeting policy updated);
    properties of other types are ignored.
    """

    initiator: IdentitySet | None = None
    call_id: Text | None = None
    call_event_type: Text | None = None
    call_duration: Duration | None = None
    call_participants: NullableList[CallParticipantInfo] = Field(default_factory=list)
    call_recording_status: Text | None = None
    call_recording_url: Text | None = None
    call_recording_display_name: Text | None = None
    call_recording_duration: Duration | None = None
    call_transcript_i_cal_uid: Text | None = None
    meeting_organizer: IdentitySet | None = None
    members: NullableList[Identity] = Field(default_factory=list)
    visible_history_start_date_time: UtcDateTime | None = None
    chat_id: Text | None = None
    chat_display_name: Text | None = None
    meeting_chat_id: Text | None = None
    meeting_chat_enabled: bool | None = None

    @property
    def event_type(self) -> str | None:
        """``@odata.type`` without its namespace, e.g. ``callEndedEventMessageDetail``."""
        if self.odata_type is None:
            return None
        return self.odata_type.rsplit(".", 1)[-1]


class ChannelIdentity(GraphModel):
    team_id: Text | None = None
    channel_id: Text | None = None


_SYSTEM_EVENT_BODY: Final = "<systemEventMessage/>"


class ChatMessage(GraphModel):
    """A message in a chat or channel.

    Without ``Prefer: include-unknown-enum-members`` Graph reports system messages
    as ``messageType: "unknownFutureValue"``; :attr:`is_system` recognises both forms.
    """

    id: GraphId
    reply_to_id: Text | None = None
    message_type: Text | None = None
    created_date_time: UtcDateTime | None = None
    last_modified_date_time: UtcDateTime | None = None
    last_edited_date_time: UtcDateTime | None = None
    deleted_date_time: UtcDateTime | None = None
    from_: ChatMessageFrom | None = Field(default=None, alias="from")
    body: ItemBody | None = None
    event_detail: ChatMessageEventDetail | None = None
    chat_id: Text | None = None
    channel_identity: ChannelIdentity | None = None
    web_url: Text | None = None

    @property
    def _has_sender(self) -> bool:
        # An identity set whose members are all null names nobody, like a null "from".
        return self.from_ is not None and self.from_.primary() is not None

    @property
    def is_system(self) -> bool:
        """True for a Teams system event (call started, member joined...), not a person.

        Requires no sender, plus one of: ``messageType`` ``systemEventMessage``;
        ``unknownFutureValue`` with the ``<systemEventMessage/>`` body; an
        ``eventDetail``. A message that names a sender is never a system message.
        """
        if self._has_sender:
            return False
        if self.message_type == "systemEventMessage" or self.event_detail is not None:
            return True
        body = self.body.content if self.body is not None else None
        return (
            self.message_type == "unknownFutureValue"
            and body is not None
            and body.strip() == _SYSTEM_EVENT_BODY
        )

    @property
    def sender_user_id(self) -> str | None:
        """The Entra object id of the person who sent it, if a person did."""
        if self.from_ is None or self.from_.user is None:
            return None
        return self.from_.user.id

    @property
    def is_application(self) -> bool:
        """True when an application (bot, connector) sent it rather than a person."""
        return self.from_ is not None and self.from_.application is not None


class ConversationMember(ODataTyped):
    """A member of a chat (usually ``aadUserConversationMember``)."""

    id: GraphId
    display_name: Text | None = None
    user_id: Text | None = None
    email: Text | None = None
    tenant_id: Text | None = None
    roles: NullableList[Text] = Field(default_factory=list)
    visible_history_start_date_time: UtcDateTime | None = None


class TeamworkOnlineMeetingInfo(GraphModel):
    """``chat.onlineMeetingInfo``: set on meeting chats only."""

    calendar_event_id: Text | None = None
    join_web_url: Text | None = None
    organizer: Identity | None = None


class Chat(GraphModel):
    """A chat; ``members`` is ``None`` unless requested with ``$expand=members``."""

    id: GraphId
    topic: Text | None = None
    chat_type: Text | None = None
    created_date_time: UtcDateTime | None = None
    last_updated_date_time: UtcDateTime | None = None
    tenant_id: Text | None = None
    web_url: Text | None = None
    members: list[ConversationMember] | None = None
    online_meeting_info: TeamworkOnlineMeetingInfo | None = None


# --------------------------------------------------------------------------------------
# Recordings and transcripts.
# --------------------------------------------------------------------------------------


class _MeetingArtefact(GraphModel):
    """What a callRecording and a callTranscript have in common."""

    id: GraphId
    meeting_id: Text | None = None
    call_id: Text | None = None
    content_correlation_id: Text | None = None
    created_date_time: UtcDateTime | None = None
    end_date_time: UtcDateTime | None = None
    meeting_organizer: IdentitySet | None = None


class CallRecording(_MeetingArtefact):
    recording_content_url: Text | None = None


class CallTranscript(_MeetingArtefact):
    transcript_content_url: Text | None = None


# --------------------------------------------------------------------------------------
# Directory and teams.
# --------------------------------------------------------------------------------------


class User(GraphModel):
    """A directory user; ``userType`` is ``Member`` or ``Guest`` when selected."""

    id: GraphId
    display_name: Text | None = None
    user_principal_name: Text | None = None
    mail: Text | None = None
    user_type: Text | None = None
    job_title: Text | None = None
    account_enabled: bool | None = None


class DirectoryObject(ODataTyped):
    """An item of ``transitiveMembers``: a user, group, device or service principal."""

    id: GraphId
    display_name: Text | None = None
    user_principal_name: Text | None = None
    user_type: Text | None = None
    mail: Text | None = None


class Group(GraphModel):
    """A group from ``GET /groups`` (default properties, or those named in ``$select``)."""

    id: GraphId
    display_name: Text | None = None
    mail: Text | None = None
    mail_nickname: Text | None = None
    mail_enabled: bool | None = None
    security_enabled: bool | None = None
    group_types: NullableList[Text] = Field(default_factory=list)


class Team(GraphModel):
    id: GraphId
    display_name: Text | None = None
    description: Text | None = None
    web_url: Text | None = None
    is_archived: bool | None = None


class Channel(GraphModel):
    id: GraphId
    display_name: Text | None = None
    description: Text | None = None
    membership_type: Text | None = None
    email: Text | None = None
    web_url: Text | None = None
    tenant_id: Text | None = None
    created_date_time: UtcDateTime | None = None


# --------------------------------------------------------------------------------------
# Errors and batches.
# --------------------------------------------------------------------------------------


class GraphInnerError(GraphModel):
    """``innerError``: diagnostics for support; ``date`` is left as Graph wrote it
    (naive, and a placeholder in some examples), since nothing decides on it."""

    code: Text | None = None
    message: Text | None = None
    date: Text | None = None
    request_id: Text | None = Field(default=None, alias="request-id")
    client_request_id: Text | None = Field(default=None, alias="client-request-id")
    status: Text | None = None


class GraphError(GraphModel):
    code: Text | None = None
    message: Text | None = None
    # The OData spec and errors.md's schema say "innererror"; every example says
    # "innerError". Both are accepted.
    inner_error: GraphInnerError | None = Field(
        default=None,
        validation_alias=AliasChoices("innerError", "innererror"),
        serialization_alias="innerError",
    )


class GraphErrorBody(GraphModel):
    """The body of a Graph error response: ``{"error": {"code", "message", ...}}``."""

    error: GraphError


def _numbers_as_text(value: object) -> object:
    """Header values are text, but a batch item may carry ``Retry-After`` as a number."""
    if not isinstance(value, dict):
        return value
    return {
        key: str(item) if isinstance(item, int | float) and not isinstance(item, bool) else item
        for key, item in value.items()
    }


class BatchResponseItem(GraphModel):
    """One response inside a ``$batch`` reply; ``status`` is that request's HTTP status."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    status: int
    headers: Annotated[dict[Text, Text], BeforeValidator(_numbers_as_text)] = Field(
        default_factory=dict
    )
    body: JsonValue = None


class BatchResponse(GraphModel):
    """A ``$batch`` reply; responses can come back in any order."""

    responses: list[BatchResponseItem]


# --------------------------------------------------------------------------------------
# Entry point.
# --------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


class PayloadError(ValueError):
    """A Graph payload did not match what remote_guard expects.

    Attributes:
        what: which payload it was, as the caller described it.
        location: dotted path of the first problem, in Graph's property names.
        problem: what was wrong there (never the offending value, which may hold
            personal data or be arbitrarily large).
        count: how many problems validation found.
    """

    def __init__(self, *, what: str, location: str, problem: str, count: int) -> None:
        self.what = what
        self.location = location
        self.problem = problem
        self.count = count
        more = f" (and {count - 1} more)" if count > 1 else ""
        where = location or "top level"
        super().__init__(f"unexpected Graph payload for {what}: {where}: {problem}{more}")


def _clip(text: str) -> str:
    return text if len(text) <= _PROBLEM_MAX_CHARS else text[: _PROBLEM_MAX_CHARS - 1] + "…"


def parse(model: type[M], data: object, *, what: str) -> M:
    """Validate one Graph JSON object (already decoded) into ``model``.

    Args:
        model: the model class, e.g. :class:`Event`.
        data: the decoded JSON object (one item of ``value``, or a whole body).
        what: a short description for the error, e.g. ``"calendarView event"``.

    Raises:
        PayloadError: ``data`` does not fit ``model``. No other exception escapes for
            any JSON-like input.
    """
    # `from None` below drops pydantic's own error from the traceback on purpose: its
    # text echoes input values, which may be chat content or personal data.
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        first = errors[0] if errors else {"loc": (), "msg": "invalid"}
        location = ".".join(str(part) for part in first["loc"])
        raise PayloadError(
            what=what,
            location=_clip(location),
            problem=_clip(str(first["msg"])),
            count=len(errors),
        ) from None
    except RecursionError:
        # A pathologically nested object can exhaust the interpreter's stack before
        # pydantic's own depth guard reports it; it is still just a bad payload.
        raise PayloadError(
            what=what, location="", problem="payload is nested too deeply", count=1
        ) from None


class CallEndpoint(ODataTyped):
    """A call session's caller or callee (participantEndpoint or serviceEndpoint)."""

    identity: IdentitySet | None = None


class CallRecordSession(GraphModel):
    """One leg of a call record: for a meeting, one participant's time in it.

    Read with ``GET /communications/callRecords/{id}?$expand=sessions($expand=segments)``; the
    only source of join and leave times for channel meetings, which have no attendance reports.
    """

    id: GraphId
    caller: CallEndpoint | None = None
    callee: CallEndpoint | None = None
    start_date_time: UtcDateTime | None = None
    end_date_time: UtcDateTime | None = None
    modalities: NullableList[Text] = Field(default_factory=list)
