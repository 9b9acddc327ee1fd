"""The scenario file: a simulated school tenant, what happened in it, and what should be found.

A scenario is YAML or JSON (schema in ``docs/scenario.md``). People, groups and meetings are named
by short ``key`` handles; object ids are derived from them deterministically unless given.
Times are *time expressions* (see :func:`resolve_time`) so a scenario can be relative to "now".
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

When = str  # a time expression, resolved against the scenario's "now"

_RELATIVE = re.compile(
    r"^now\s*(?:(?P<sign>[+-])\s*(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[smhd]))?$"
)
_DAY_RELATIVE = re.compile(
    r"^(?P<day>today|tomorrow|yesterday|[+-]\d+d)\s+(?P<hh>\d{1,2}):(?P<mm>\d{2})(?::(?P<ss>\d{2}))?$"
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ScenarioError(Exception):
    """The scenario cannot be used; ``str()`` names the file, the place and the problem."""


def resolve_time(expression: str, *, now: datetime, zone: ZoneInfo) -> datetime:
    """Turn a time expression into an aware UTC datetime.

    Accepted forms: ``now``, ``now+90m`` / ``now-2h`` / ``now+1d`` / ``now+30s``;
    ``today 09:00``, ``tomorrow 15:31``, ``yesterday 08:59``, ``+2d 10:00`` (school local time,
    so daylight saving is honoured); an ISO 8601 date-time with offset (``2026-03-29T08:59:00Z``)
    or without (read as school local time).

    Raises:
        ValueError: the expression is in none of these forms.
    """
    text = expression.strip()
    match = _RELATIVE.match(text)
    if match:
        if not match.group("sign"):
            return now.astimezone(UTC)
        seconds = float(match.group("amount")) * _UNIT_SECONDS[match.group("unit")]
        delta = timedelta(seconds=seconds)
        return (now + delta if match.group("sign") == "+" else now - delta).astimezone(UTC)
    match = _DAY_RELATIVE.match(text)
    if match:
        day_word = match.group("day")
        offsets = {"today": 0, "tomorrow": 1, "yesterday": -1}
        offset = offsets[day_word] if day_word in offsets else int(day_word[:-1])
        local_day = now.astimezone(zone).date() + timedelta(days=offset)
        clock = time(int(match.group("hh")), int(match.group("mm")), int(match.group("ss") or 0))
        return datetime.combine(local_day, clock, tzinfo=zone).astimezone(UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{expression!r} is not a time: use now, now+90m, now-2h, today 09:00, "
            "tomorrow 15:31, or an ISO date-time such as 2026-03-29T08:59:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantSpec(_Spec):
    id: str = "7d9f3e2a-1b4c-4e8d-9a6f-5c2b1e0d4a37"
    domain: str = "bramhamshadwell.sch.uk"
    name: str = "Bramham and Shadwell Federation"


ALL_APP_PERMISSIONS = (
    "User.Read.All",
    "GroupMember.Read.All",
    "Calendars.Read",
    "Calendars.ReadWrite",
    "OnlineMeetings.Read.All",
    "OnlineMeetingArtifact.Read.All",
    "OnlineMeetingRecording.Read.All",
    "OnlineMeetingTranscript.Read.All",
    "CallRecords.Read.All",
    "Chat.Read.All",
    "Chat.ReadBasic.All",
    "ChannelMessage.Read.All",
    "Team.ReadBasic.All",
    "Channel.ReadBasic.All",
    "Mail.Send",
)


class AppSpec(_Spec):
    """The remote_guard app registration as the tenant sees it."""

    client_id: str = "0b3c6a5e-8f21-4d7a-b9e0-2c4f6a8d1e35"
    client_secret: str = "demo-secret-not-for-production"
    permissions: list[str] = Field(default_factory=lambda: list(ALL_APP_PERMISSIONS))
    # Teams application access policy: "global", "none", or the person keys it is granted to.
    access_policy: Literal["global", "none"] | list[str] = "global"


class PersonSpec(_Spec):
    key: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    name: str
    kind: Literal["staff", "pupil", "guest"]
    id: str | None = None
    upn: str | None = None
    school: str | None = None
    roles: list[Literal["teacher", "slt", "dsl", "deputy_dsl"]] = Field(default_factory=list)
    job_title: str | None = None


class GroupSpec(_Spec):
    key: str
    name: str
    id: str | None = None
    # What the group means to remote_guard's configuration, if anything.
    role: Literal["staff", "pupils", "slt", "dsl", "deputy_dsl", "school"] | None = None
    school: str | None = None  # with role "school": the school key
    members: list[str] = Field(default_factory=list)  # person keys or group keys (nested)


class ChannelSpec(_Spec):
    key: str
    name: str
    id: str | None = None  # the channel thread id, e.g. 19:abc@thread.tacv2


class TeamSpec(_Spec):
    key: str
    name: str
    id: str | None = None
    school: str | None = None
    owners: list[str] = Field(default_factory=list)
    members: list[str] = Field(default_factory=list)
    channels: list[ChannelSpec] = Field(default_factory=list)


class ExternalJoinerSpec(_Spec):
    """Someone without an account in the school tenant, or an application (``bot``)."""

    key: str
    # bot: an application identity (a recording or attendance bot) that joins calls; Graph names
    # it as an application, so it is not a person in the session.
    kind: Literal["anonymous", "external", "phone", "bot"]
    name: str
    tenant_id: str | None = None  # for "external": their home tenant
    phone: str | None = None  # for "phone": the caller's number (masked by Graph)
    email: str | None = None


class AttendanceSpec(_Spec):
    who: str  # a person key or an external joiner key
    intervals: list[tuple[When, When]]


class ChatMessageSpec(_Spec):
    at: When
    sender: str  # a person key, "system", or "bot:<name>"
    event: (
        Literal[
            "callStarted",
            "callEnded",
            "callRecording",
            "callTranscript",
            "membersAdded",
            "membersJoined",
            "membersLeft",
        ]
        | None
    ) = None
    text: str = "Hello"
    initiator: str | None = None  # for call events: who started the call or recording


class RecordingSpec(_Spec):
    kind: Literal["recording", "transcript"] = "recording"
    started_by: str  # person key
    at: When
    end: When | None = None


class MeetingSettingsSpec(_Spec):
    allow_meeting_chat: Literal["enabled", "disabled", "limited"] = "enabled"
    lobby_scope: Literal[
        "organizer",
        "organization",
        "organizationAndFederated",
        "everyone",
        "invited",
        "organizationExcludingGuests",
    ] = "organization"
    dial_in_bypass: bool = False
    allowed_presenters: Literal["everyone", "organization", "roleIsPresenter", "organizer"] = (
        "organizer"
    )
    record_automatically: bool = False


class MeetingSpec(_Spec):
    """A meeting on a calendar, and what happened in it."""

    key: str
    subject: str
    organizer: str  # a person key, or an external joiner key for a meeting organised elsewhere
    start: When
    end: When
    invitees: list[str] = Field(default_factory=list)  # person keys, group keys or e-mail addresses
    channel: str | None = None  # "team_key/channel_key" for a channel meeting
    series: str | None = None  # meetings with the same series key are occurrences of one series
    is_online: bool = True
    provider: Literal["teamsForBusiness", "skypeForBusiness", "skypeForConsumer", "unknown"] = (
        "teamsForBusiness"
    )
    location: str | None = None
    body: str | None = None  # may carry a foreign link, e.g. a Zoom URL
    cancelled: bool = False
    settings: MeetingSettingsSpec = Field(default_factory=MeetingSettingsSpec)
    attendance: list[AttendanceSpec] = Field(default_factory=list)
    chat: list[ChatMessageSpec] = Field(default_factory=list)
    recordings: list[RecordingSpec] = Field(default_factory=list)
    call_record: bool = True  # whether Graph has a call record once the meeting has ended
    attendance_report: bool = True  # whether an attendance report exists once it has ended
    # False: an ad-hoc ("Meet now") meeting with no calendar event; Graph has its onlineMeeting,
    # chat and, once it has ended, call record and attendance report, but no calendar shows it.
    calendar: bool = True


class PeerCallSpec(_Spec):
    """A direct Teams call between two people (a peerToPeer call record, no calendar event)."""

    key: str
    caller: str
    callee: str
    start: When
    end: When
    modalities: list[str] = Field(default_factory=lambda: ["audio", "video"])


class DirectChatSpec(_Spec):
    """A 1:1 or group chat outside any meeting."""

    key: str
    members: list[str]
    messages: list[ChatMessageSpec] = Field(default_factory=list)
    created: When = "now-7d"


class ConsentSpec(_Spec):
    granted_by: str
    relationship: str = "parent"
    contact_email: str | None = None  # the parent's or carer's address, to recognise them
    granted_at: When
    method: Literal["signed_form", "email", "letter", "phone_call", "online_form"] = "signed_form"
    evidence_ref: str | None = None
    scope: str = "one_to_one"
    expires_at: When | None = None
    withdrawn_at: When | None = None


class RegistrationSpec(_Spec):
    """A one-to-one session a teacher registered in remote_guard, with its consent."""

    key: str
    teacher: str
    pupil: str
    activity: str
    meeting: str | None = None  # a meeting key
    starts_at: When | None = None
    ends_at: When | None = None
    status: Literal["pending", "approved", "declined"] = "approved"
    approved_by: str | None = None
    approved_at: When | None = None
    consent: ConsentSpec | None = None


class StandaloneConsentSpec(ConsentSpec):
    """A consent on the register that is not tied to one registration (e.g. a recording consent
    or a parent's contact details)."""

    key: str
    pupil: str


class ExemptionSpec(_Spec):
    """A waiver a DSL or SLT member granted, scoped to one object."""

    key: str
    rule: str
    scope: Literal["pair", "series", "session", "person"]
    pupil: str | None = None  # for "pair" and "person"
    staff: str | None = None  # for "pair" (and "person" when it is about a member of staff)
    session: str | None = None  # a meeting key, for "series" and "session"
    reason: str
    granted_by: str
    granted_at: When = "now-1d"
    expires_at: When | None = None


class FaultSpec(_Spec):
    """Fault injection in the fake tenant."""

    latency_ms: float = Field(default=0.0, ge=0)
    rate_429: float = Field(default=0.0, ge=0, le=1)
    rate_503: float = Field(default=0.0, ge=0, le=1)
    retry_after_seconds: float = Field(default=0.2, ge=0)
    seed: int = 0
    token_lifetime_seconds: int = Field(default=3599, ge=1)
    page_size: int = Field(default=5, ge=1, le=999)


class ExpectationSpec(_Spec):
    """Ground truth, written by hand: a finding that must (or must not) be produced."""

    rule: str
    session: str  # a meeting, peer call or direct chat key
    subject: str | None = None  # a person or joiner key, when the finding is about one person
    # breach = fail or warn, not exempted; exempted = a fail or warn an exemption covers
    status: Literal["fail", "warn", "error", "breach", "exempted"] = "breach"


# What Scenario._spec looks up by key.
_Keyed = TypeVar("_Keyed", PersonSpec, GroupSpec, TeamSpec)


class Scenario(_Spec):
    """A whole simulated tenant."""

    name: str
    description: str = ""
    now: When | None = None  # a fixed "now" (ISO); default: the real time when loaded
    timezone: str = "Europe/London"
    profile: str = "bramham-shadwell"
    tenant: TenantSpec = Field(default_factory=TenantSpec)
    app: AppSpec = Field(default_factory=AppSpec)
    people: list[PersonSpec] = Field(default_factory=list)
    groups: list[GroupSpec] = Field(default_factory=list)
    teams: list[TeamSpec] = Field(default_factory=list)
    externals: list[ExternalJoinerSpec] = Field(default_factory=list)
    meetings: list[MeetingSpec] = Field(default_factory=list)
    calls: list[PeerCallSpec] = Field(default_factory=list)
    chats: list[DirectChatSpec] = Field(default_factory=list)
    approved_activities: list[str] = Field(default_factory=lambda: ["reading", "Talk Times"])
    registrations: list[RegistrationSpec] = Field(default_factory=list)
    consents: list[StandaloneConsentSpec] = Field(default_factory=list)
    exemptions: list[ExemptionSpec] = Field(default_factory=list)
    packs: list[str] = Field(default_factory=list)  # extra clause packs, e.g. national-guidance
    # The rules this scenario's ground truth covers; findings of other rules are not scored.
    # Empty: every rule is scored, so any unexpected finding counts against precision.
    scope: list[str] = Field(default_factory=list)
    school_day: dict[str, Any] = Field(default_factory=dict)  # overrides [school_day] settings
    faults: FaultSpec = Field(default_factory=FaultSpec)
    expect: list[ExpectationSpec] = Field(default_factory=list)
    expect_absent: list[ExpectationSpec] = Field(default_factory=list)
    # The folder of the file it was read from: a profile given as a relative .toml path is
    # found next to the scenario.
    _base_dir: Path | None = PrivateAttr(default=None)
    # id(list) -> (the list, key -> first position): see _spec.
    _key_index: dict[int, tuple[list[Any], dict[str, int]]] = PrivateAttr(default_factory=dict)

    def profile_ref(self, name: str) -> str:
        """A profile or pack name, or a .toml path made absolute against the scenario's folder."""
        if name.endswith(".toml") and self._base_dir is not None and not Path(name).is_absolute():
            return str(self._base_dir / name)
        return name

    @model_validator(mode="after")
    def _references_resolve(self) -> Scenario:
        problems = _reference_problems(self)
        if problems:
            # One problem per line; parse_scenario lists each as its own item.
            raise ValueError("\n".join(problems))
        return self

    # --- identity helpers -------------------------------------------------------------------

    def _spec(self, specs: list[_Keyed], key: str) -> _Keyed:
        """The first of ``specs`` with ``key``, through an index kept per list (a large trust has
        tens of thousands of people; a scan per lookup made building its tenant quadratic).

        The index is rebuilt whenever the list it was built from is no longer the same list
        holding the same object at the indexed place, so scenarios edited in place stay right.

        Raises:
            KeyError: no spec in ``specs`` has ``key``.
        """
        cached = self._key_index.get(id(specs))
        if cached is None or cached[0] is not specs or len(cached[1]) > len(specs):
            cached = (specs, {})
            for position in range(len(specs) - 1, -1, -1):
                cached[1][specs[position].key] = position
            self._key_index[id(specs)] = cached
        at = cached[1].get(key)
        if at is not None and at < len(specs) and specs[at].key == key:
            return specs[at]
        for found in specs:
            if found.key == key:
                self._key_index.pop(id(specs), None)
                return found
        raise KeyError(key)

    def person_id(self, key: str) -> str:
        """The Entra object id of the person with ``key``."""
        person = self._spec(self.people, key)
        return person.id or derive_id(self.tenant.id, "user", key)

    def person_upn(self, key: str) -> str:
        person = self._spec(self.people, key)
        return person.upn or f"{key}@{self.tenant.domain}"

    def group_id(self, key: str) -> str:
        group = self._spec(self.groups, key)
        return group.id or derive_id(self.tenant.id, "group", key)

    def team_id(self, key: str) -> str:
        team = self._spec(self.teams, key)
        return team.id or derive_id(self.tenant.id, "team", key)

    def group_ids_for_role(self, role: str) -> list[str]:
        return [self.group_id(group.key) for group in self.groups if group.role == role]

    def reference_now(self) -> datetime:
        """The scenario's "now": fixed if the file says so, else the real time."""
        if self.now is None:
            return datetime.now(UTC)
        return resolve_time(self.now, now=datetime.now(UTC), zone=ZoneInfo(self.timezone))

    def when(self, expression: str, now: datetime) -> datetime:
        return resolve_time(expression, now=now, zone=ZoneInfo(self.timezone))


def derive_id(tenant_id: str, kind: str, key: str) -> str:
    """A stable GUID for a scenario object, so runs and files agree on ids."""
    return str(
        uuid.uuid5(
            uuid.UUID(tenant_id) if _is_guid(tenant_id) else uuid.NAMESPACE_URL, f"{kind}:{key}"
        )
    )


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _reference_problems(scenario: Scenario) -> list[str]:
    """Every broken reference, duplicate key, bad time and backwards interval, each naming where
    it is (``meetings[oak-maths].attendance[freya.s].intervals[1]: ...``)."""
    checker = _ReferenceChecker(scenario)
    checker.keys()
    checker.directory()
    checker.meetings()
    checker.ad_hoc_meetings()
    checker.calls_and_chats()
    checker.registers()
    checker.expectations()
    return [*checker.problems, *_time_problems(scenario)]


class _ReferenceChecker:
    """The cross-reference checks of one scenario, section by section, into ``problems``."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.problems: list[str] = []
        self.person_keys = {person.key for person in scenario.people}
        self.external_kinds = {external.key: external.kind for external in scenario.externals}
        self.external_keys = set(self.external_kinds)
        self.group_keys = {group.key for group in scenario.groups}
        # A key that is both a person's and a group's makes a reference to it ambiguous.
        self.ambiguous = self.group_keys & self.person_keys
        self.meeting_keys = {meeting.key for meeting in scenario.meetings}
        self.session_keys = (
            self.meeting_keys
            | {call.key for call in scenario.calls}
            | {chat.key for chat in scenario.chats}
        )

    def person(self, where: str, key: str, *, allow_external: bool = False) -> None:
        if key in self.person_keys or (allow_external and key in self.external_keys):
            return
        self.problems.append(
            f"{where}: {key!r} is not a person{' or external joiner' if allow_external else ''} key"
        )

    def sender(self, where: str, sender: str) -> None:
        if sender != "system" and not sender.startswith("bot:"):
            self.person(where, sender, allow_external=True)

    def keys(self) -> None:
        scenario = self.scenario
        for kind, keys in (
            ("people", [p.key for p in scenario.people]),
            ("externals", [e.key for e in scenario.externals]),
            ("groups", [g.key for g in scenario.groups]),
            ("teams", [t.key for t in scenario.teams]),
            (
                "sessions",
                [m.key for m in scenario.meetings]
                + [c.key for c in scenario.calls]
                + [c.key for c in scenario.chats],
            ),
            ("registrations", [r.key for r in scenario.registrations]),
            ("consents", [c.key for c in scenario.consents]),
            ("exemptions", [e.key for e in scenario.exemptions]),
        ):
            seen: set[str] = set()
            for key in keys:
                if key in seen:
                    self.problems.append(f"{kind}: key {key!r} is used twice")
                seen.add(key)
        # The fake tenant knows people and joiners by one key space.
        for key in sorted(self.external_keys & self.person_keys):
            self.problems.append(f"externals[{key}]: key {key!r} is also a person key")

    def directory(self) -> None:
        for group in self.scenario.groups:
            for member in group.members:
                if member not in self.person_keys and member not in self.group_keys:
                    self.problems.append(
                        f"groups[{group.key}].members: {member!r} is not a person or group key"
                    )
                elif member in self.ambiguous:
                    self.problems.append(
                        f"groups[{group.key}].members: {member!r} is both a person and a group key"
                    )
        for team in self.scenario.teams:
            for member in [*team.owners, *team.members]:
                self.person(f"teams[{team.key}]", member)

    def meetings(self) -> None:
        team_channels = {
            f"{team.key}/{channel.key}" for team in self.scenario.teams for channel in team.channels
        }
        series_organizers: dict[str, set[str]] = {}
        for meeting in self.scenario.meetings:
            where = f"meetings[{meeting.key}]"
            self.person(f"{where}.organizer", meeting.organizer, allow_external=True)
            if self.external_kinds.get(meeting.organizer) == "bot":
                self.problems.append(
                    f"{where}.organizer: {meeting.organizer!r} is a bot; bots organise nothing"
                )
            for invitee in meeting.invitees:
                if "@" in invitee:
                    continue
                if invitee not in self.person_keys and invitee not in self.group_keys:
                    self.problems.append(
                        f"{where}.invitees: {invitee!r} is not a person key, group key or e-mail"
                    )
                elif invitee in self.ambiguous:
                    self.problems.append(
                        f"{where}.invitees: {invitee!r} is both a person and a group key"
                    )
            if meeting.channel is not None and meeting.channel not in team_channels:
                self.problems.append(
                    f"{where}.channel: {meeting.channel!r} is not a team_key/channel_key"
                )
            if meeting.series is not None:
                series_organizers.setdefault(meeting.series, set()).add(meeting.organizer)
            for attendance in meeting.attendance:
                self.person(f"{where}.attendance", attendance.who, allow_external=True)
            for index, message in enumerate(meeting.chat):
                self.sender(f"{where}.chat[{index}].sender", message.sender)
                if message.initiator is not None:
                    self.person(
                        f"{where}.chat[{index}].initiator", message.initiator, allow_external=True
                    )
            for recording in meeting.recordings:
                self.person(f"{where}.recordings", recording.started_by, allow_external=True)
        for series, organizers in sorted(series_organizers.items()):
            if len(organizers) > 1:
                self.problems.append(
                    f"meetings: series {series!r} has more than one organizer "
                    f"({', '.join(sorted(organizers))}); a series belongs to one calendar"
                )
        self.series_share_one_meeting()

    def series_share_one_meeting(self) -> None:
        """The occurrences of a recurring Teams meeting are one onlineMeeting (one join URL, one
        set of meeting options, one chat), so what that meeting holds must agree."""
        by_series: dict[str, list[MeetingSpec]] = {}
        for meeting in self.scenario.meetings:
            if meeting.series is not None:
                by_series.setdefault(meeting.series, []).append(meeting)
        for series, meetings in sorted(by_series.items()):
            first = meetings[0]
            for field_name in ("channel", "is_online", "provider", "settings"):
                if any(getattr(m, field_name) != getattr(first, field_name) for m in meetings):
                    self.problems.append(
                        f"meetings: series {series!r} has occurrences with different "
                        f"{field_name}; the occurrences of a series share one Teams meeting"
                    )
            for meeting in meetings:
                if not meeting.calendar:
                    self.problems.append(
                        f"meetings[{meeting.key}].calendar: a series occurrence is on a calendar "
                        "by definition; an ad-hoc meeting (calendar: false) has no series"
                    )

    def ad_hoc_meetings(self) -> None:
        """A meeting without a calendar event is a Teams "Meet now" held in this tenant."""
        for meeting in self.scenario.meetings:
            if meeting.calendar:
                continue
            where = f"meetings[{meeting.key}]"
            if not meeting.is_online or meeting.provider != "teamsForBusiness":
                self.problems.append(
                    f"{where}.calendar: only a Teams meeting (is_online, provider "
                    "teamsForBusiness) can exist without a calendar event"
                )
            if meeting.organizer not in self.person_keys:
                self.problems.append(
                    f"{where}.calendar: an ad-hoc meeting is started by a person of this tenant, "
                    f"not {meeting.organizer!r}"
                )
            if meeting.invitees:
                self.problems.append(
                    f"{where}.invitees: an ad-hoc meeting (calendar: false) has no invitation"
                )

    def calls_and_chats(self) -> None:
        for call in self.scenario.calls:
            self.person(f"calls[{call.key}].caller", call.caller, allow_external=True)
            self.person(f"calls[{call.key}].callee", call.callee, allow_external=True)
        pairs: dict[frozenset[str], str] = {}
        for chat in self.scenario.chats:
            where = f"chats[{chat.key}]"
            for member in chat.members:
                self.person(f"{where}.members", member, allow_external=True)
                kind = self.external_kinds.get(member)
                if kind in ("anonymous", "phone", "bot"):
                    self.problems.append(
                        f"{where}.members: {member!r} is a {kind} joiner; only people with an "
                        "account (here or in another tenant) are chat members"
                    )
            if len(set(chat.members)) != len(chat.members):
                self.problems.append(f"{where}.members: a member is listed twice")
            if len(set(chat.members)) < 2:
                self.problems.append(f"{where}.members: a chat needs at least two members")
            if len(chat.members) == 2:
                pair = frozenset(chat.members)
                if pair in pairs:
                    self.problems.append(
                        f"{where}.members: {pairs[pair]!r} is already the 1:1 chat of these two "
                        "people (Teams keeps one per pair)"
                    )
                pairs.setdefault(pair, chat.key)
            for index, message in enumerate(chat.messages):
                self.sender(f"{where}.messages[{index}].sender", message.sender)
                known = message.sender in self.person_keys | self.external_keys
                if known and message.sender not in chat.members:
                    self.problems.append(
                        f"{where}.messages[{index}].sender: {message.sender!r} is not a member "
                        "of the chat"
                    )

    def registers(self) -> None:
        for registration in self.scenario.registrations:
            where = f"registrations[{registration.key}]"
            self.person(f"{where}.teacher", registration.teacher)
            self.person(f"{where}.pupil", registration.pupil)
            if registration.meeting is not None and registration.meeting not in self.meeting_keys:
                self.problems.append(
                    f"{where}.meeting: {registration.meeting!r} is not a meeting key"
                )
            if registration.approved_by is not None:
                self.person(f"{where}.approved_by", registration.approved_by)
            if registration.meeting is None and (
                registration.starts_at is None or registration.ends_at is None
            ):
                self.problems.append(f"{where}: give either meeting, or starts_at and ends_at")
        for consent in self.scenario.consents:
            self.person(f"consents[{consent.key}].pupil", consent.pupil)
        for exemption in self.scenario.exemptions:
            self.exemption(exemption)

    def exemption(self, exemption: ExemptionSpec) -> None:
        where = f"exemptions[{exemption.key}]"
        if exemption.pupil is not None:
            self.person(f"{where}.pupil", exemption.pupil)
        if exemption.staff is not None:
            self.person(f"{where}.staff", exemption.staff)
        series = exemption.scope == "series"
        if exemption.session is not None and exemption.session not in (
            self.meeting_keys if series else self.session_keys
        ):
            self.problems.append(
                f"{where}.session: {exemption.session!r} is not a "
                f"{'meeting' if series else 'meeting, call or chat'} key"
            )
        needed = {
            "pair": ("pupil", "staff"),
            "series": ("session",),
            "session": ("session",),
        }.get(exemption.scope, ())
        missing = [name for name in needed if getattr(exemption, name) is None]
        if exemption.scope == "person" and exemption.pupil is None and exemption.staff is None:
            missing = ["pupil or staff"]
        if missing:
            self.problems.append(
                f"{where}: a {exemption.scope} exemption needs {' and '.join(missing)}"
            )

    def expectations(self) -> None:
        for field_name in ("expect", "expect_absent"):
            expectations: list[ExpectationSpec] = getattr(self.scenario, field_name)
            for index, expectation in enumerate(expectations):
                where = f"{field_name}[{index}]"
                if expectation.session not in self.session_keys:
                    self.problems.append(
                        f"{where}.session: {expectation.session!r} is not a meeting, call or "
                        "chat key"
                    )
                if (
                    expectation.subject is not None
                    and expectation.subject not in self.person_keys | self.external_keys
                ):
                    self.problems.append(
                        f"{where}.subject: {expectation.subject!r} is not a person or joiner key"
                    )


def _time_problems(scenario: Scenario) -> list[str]:
    """Time expressions that do not resolve, and ends before their starts, each with its place.

    Every expression is resolved against the scenario's ``now`` (or the real time), as the fake
    tenant will when it is built, so a file that loads cannot fail later on a time.
    """
    problems: list[str] = []
    try:
        zone = ZoneInfo(scenario.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return [f"timezone: {scenario.timezone!r} is not an IANA time zone"]
    now = datetime.now(UTC)
    if scenario.now is not None:
        try:
            now = resolve_time(scenario.now, now=now, zone=zone)
        except (ValueError, OverflowError) as exc:
            problems.append(f"now: {exc}")

    def at(where: str, expression: str | None) -> datetime | None:
        if expression is None:
            return None
        try:
            return resolve_time(expression, now=now, zone=zone)
        except (ValueError, OverflowError) as exc:
            problems.append(f"{where}: {exc}")
            return None

    def ordered(where: str, start: datetime | None, end: datetime | None, what: str) -> None:
        if start is not None and end is not None and end < start:
            problems.append(f"{where}: {what}")

    for meeting in scenario.meetings:
        where = f"meetings[{meeting.key}]"
        start, end = at(f"{where}.start", meeting.start), at(f"{where}.end", meeting.end)
        ordered(where, start, end, "end is before start")
        for attendance in meeting.attendance:
            for index, (joined, left) in enumerate(attendance.intervals):
                place = f"{where}.attendance[{attendance.who}].intervals[{index}]"
                ordered(
                    place,
                    at(f"{place}[0]", joined),
                    at(f"{place}[1]", left),
                    "leaves before joining",
                )
        for index, message in enumerate(meeting.chat):
            at(f"{where}.chat[{index}].at", message.at)
        for index, recording in enumerate(meeting.recordings):
            place = f"{where}.recordings[{index}]"
            ordered(
                place,
                at(f"{place}.at", recording.at),
                at(f"{place}.end", recording.end),
                "end is before at",
            )
    for call in scenario.calls:
        where = f"calls[{call.key}]"
        ordered(
            where,
            at(f"{where}.start", call.start),
            at(f"{where}.end", call.end),
            "end is before start",
        )
    for chat in scenario.chats:
        where = f"chats[{chat.key}]"
        at(f"{where}.created", chat.created)
        for index, message in enumerate(chat.messages):
            at(f"{where}.messages[{index}].at", message.at)

    def consent_times(where: str, consent: ConsentSpec) -> None:
        at(f"{where}.granted_at", consent.granted_at)
        at(f"{where}.expires_at", consent.expires_at)
        at(f"{where}.withdrawn_at", consent.withdrawn_at)

    for registration in scenario.registrations:
        where = f"registrations[{registration.key}]"
        ordered(
            where,
            at(f"{where}.starts_at", registration.starts_at),
            at(f"{where}.ends_at", registration.ends_at),
            "ends_at is before starts_at",
        )
        at(f"{where}.approved_at", registration.approved_at)
        if registration.consent is not None:
            consent_times(f"{where}.consent", registration.consent)
    for consent in scenario.consents:
        consent_times(f"consents[{consent.key}]", consent)
    for exemption in scenario.exemptions:
        where = f"exemptions[{exemption.key}]"
        granted = at(f"{where}.granted_at", exemption.granted_at)
        expires = at(f"{where}.expires_at", exemption.expires_at)
        if granted is not None and expires is not None and expires <= granted:
            problems.append(f"{where}: expires_at is not after granted_at")
    return problems


def parse_scenario(data: Any, *, source: str) -> Scenario:
    """Validate parsed scenario data.

    Raises:
        ScenarioError: the data does not match the schema; the message names ``source``, where,
            and what is wrong.
    """
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario must be a mapping at the top level")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: the scenario is not valid."]
        for item in exc.errors():
            message = item["msg"].removeprefix("Value error, ")
            if not item["loc"]:
                # The cross-reference check: each line already names its place.
                lines.extend(f"  - {line}" for line in message.splitlines())
                continue
            where = ".".join(str(part) for part in item["loc"])
            lines.append(f"  - {where}: {message}")
        raise ScenarioError("\n".join(lines)) from exc


def load_scenario(path: Path) -> Scenario:
    """Read a scenario from a YAML or JSON file.

    Raises:
        ScenarioError: the file is missing, unreadable, not YAML/JSON, or not a valid scenario.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            f"{path}: is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, RecursionError) as exc:
        # RecursionError: nesting too deep for the parser, as hostile files can be.
        raise ScenarioError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
            f"{exc if not isinstance(exc, RecursionError) else 'nested too deeply'}"
        ) from exc
    scenario = parse_scenario(data, source=str(path))
    scenario._base_dir = path.resolve().parent
    return scenario


def dump_scenario(scenario: Scenario) -> str:
    """The scenario as YAML, omitting defaults so files stay short."""
    data = scenario.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
