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
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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
    """Someone without an account in the school tenant."""

    key: str
    kind: Literal["anonymous", "external", "phone"]
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
    status: Literal["fail", "warn", "error", "breach"] = "breach"  # breach = fail or warn


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
    school_day: dict[str, Any] = Field(default_factory=dict)  # overrides [school_day] settings
    faults: FaultSpec = Field(default_factory=FaultSpec)
    expect: list[ExpectationSpec] = Field(default_factory=list)
    expect_absent: list[ExpectationSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references_resolve(self) -> Scenario:
        problems = _reference_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # --- identity helpers -------------------------------------------------------------------

    def person_id(self, key: str) -> str:
        """The Entra object id of the person with ``key``."""
        for person in self.people:
            if person.key == key:
                return person.id or derive_id(self.tenant.id, "user", key)
        raise KeyError(key)

    def person_upn(self, key: str) -> str:
        for person in self.people:
            if person.key == key:
                return person.upn or f"{key}@{self.tenant.domain}"
        raise KeyError(key)

    def group_id(self, key: str) -> str:
        for group in self.groups:
            if group.key == key:
                return group.id or derive_id(self.tenant.id, "group", key)
        raise KeyError(key)

    def team_id(self, key: str) -> str:
        for team in self.teams:
            if team.key == key:
                return team.id or derive_id(self.tenant.id, "team", key)
        raise KeyError(key)

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
    problems: list[str] = []
    person_keys = {person.key for person in scenario.people}
    external_keys = {external.key for external in scenario.externals}
    group_keys = {group.key for group in scenario.groups}
    team_channels = {
        f"{team.key}/{channel.key}" for team in scenario.teams for channel in team.channels
    }
    session_keys = (
        {meeting.key for meeting in scenario.meetings}
        | {call.key for call in scenario.calls}
        | {chat.key for chat in scenario.chats}
    )
    for kind, keys in (
        ("people", [p.key for p in scenario.people]),
        ("groups", [g.key for g in scenario.groups]),
        (
            "sessions",
            [m.key for m in scenario.meetings]
            + [c.key for c in scenario.calls]
            + [c.key for c in scenario.chats],
        ),
    ):
        seen: set[str] = set()
        for key in keys:
            if key in seen:
                problems.append(f"{kind}: key {key!r} is used twice")
            seen.add(key)

    def check_person(where: str, key: str, *, allow_external: bool = False) -> None:
        if key in person_keys or (allow_external and key in external_keys):
            return
        problems.append(
            f"{where}: {key!r} is not a person{' or external joiner' if allow_external else ''} key"
        )

    for group in scenario.groups:
        for member in group.members:
            if member not in person_keys and member not in group_keys:
                problems.append(
                    f"groups[{group.key}].members: {member!r} is not a person or group key"
                )
    for team in scenario.teams:
        for member in [*team.owners, *team.members]:
            check_person(f"teams[{team.key}]", member)
    for meeting in scenario.meetings:
        where = f"meetings[{meeting.key}]"
        check_person(f"{where}.organizer", meeting.organizer, allow_external=True)
        for invitee in meeting.invitees:
            if "@" not in invitee and invitee not in person_keys and invitee not in group_keys:
                problems.append(
                    f"{where}.invitees: {invitee!r} is not a person key, group key or e-mail"
                )
        if meeting.channel is not None and meeting.channel not in team_channels:
            problems.append(f"{where}.channel: {meeting.channel!r} is not a team_key/channel_key")
        for attendance in meeting.attendance:
            check_person(f"{where}.attendance", attendance.who, allow_external=True)
        for message in meeting.chat:
            if message.sender != "system" and not message.sender.startswith("bot:"):
                check_person(f"{where}.chat", message.sender, allow_external=True)
        for recording in meeting.recordings:
            check_person(f"{where}.recordings", recording.started_by, allow_external=True)
    for call in scenario.calls:
        check_person(f"calls[{call.key}].caller", call.caller, allow_external=True)
        check_person(f"calls[{call.key}].callee", call.callee, allow_external=True)
    for chat in scenario.chats:
        for member in chat.members:
            check_person(f"chats[{chat.key}].members", member, allow_external=True)
    meeting_keys = {meeting.key for meeting in scenario.meetings}
    for registration in scenario.registrations:
        where = f"registrations[{registration.key}]"
        check_person(f"{where}.teacher", registration.teacher)
        check_person(f"{where}.pupil", registration.pupil)
        if registration.meeting is not None and registration.meeting not in meeting_keys:
            problems.append(f"{where}.meeting: {registration.meeting!r} is not a meeting key")
        if registration.approved_by is not None:
            check_person(f"{where}.approved_by", registration.approved_by)
        if registration.meeting is None and (
            registration.starts_at is None or registration.ends_at is None
        ):
            problems.append(f"{where}: give either meeting, or starts_at and ends_at")
    for expectation in [*scenario.expect, *scenario.expect_absent]:
        if expectation.session not in session_keys:
            problems.append(
                f"expect: session {expectation.session!r} is not a meeting, call or chat key"
            )
        if (
            expectation.subject is not None
            and expectation.subject not in person_keys | external_keys
        ):
            problems.append(
                f"expect: subject {expectation.subject!r} is not a person or joiner key"
            )
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
            where = ".".join(str(part) for part in item["loc"]) or "(top level)"
            lines.append(f"  - {where}: {item['msg'].removeprefix('Value error, ')}")
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
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc
    return parse_scenario(data, source=str(path))


def dump_scenario(scenario: Scenario) -> str:
    """The scenario as YAML, omitting defaults so files stay short."""
    data = scenario.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
