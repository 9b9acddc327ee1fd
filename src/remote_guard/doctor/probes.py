"""One minimal Graph call per application permission, and what its answer says.

Each probe makes the cheapest call that needs exactly that permission (``$top=1``, ``$select``,
or a lookup of an id that does not exist: Graph checks the app's roles before it looks the
object up, so a 404 there means the permission let the call through). Calls that would write
(an event, an e-mail) are never sent to Microsoft: with a real Entra token the ``roles`` claim
says whether the permission is granted; only an opaque token (the fake tenant's) gets a write
call with a body Graph must refuse before anything is created.

A 403 is read for its reason: the Teams application access policy and the protected-API
approval are separate from the permission, and each has its own check and its own fix.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from remote_guard.doctor.report import Check, Status
from remote_guard.graph.client import GraphClient
from remote_guard.graph.errors import GraphError
from remote_guard.graph.permissions import GRAPH_CALLS, least_permissions

APP_PAGE = "Entra admin centre (entra.microsoft.com) > App registrations > your remote_guard app"
# Teams' protected APIs (message content): Microsoft must approve the app as well.
PROTECTED_PERMISSIONS = frozenset({"Chat.Read.All", "ChannelMessage.Read.All"})
# A join URL no meeting has, in the shape Teams uses, for the onlineMeetings lookup.
DUMMY_JOIN_URL = (
    "https://teams.microsoft.com/l/meetup-join/19%3ameeting_remote-guard-doctor%40thread.v2/0"
)
DUMMY_MEETING_ID = "MSpyZW1vdGUtZ3VhcmQtZG9jdG9yKjAqKjE5Om1lZXRpbmdfZG9jdG9yQHRocmVhZC52Mg"
DUMMY_CHAT_ID = "19:remote-guard-doctor@thread.v2"
DUMMY_TEAM_ID = "00000000-0000-4000-8000-000000000000"
DUMMY_CHANNEL_ID = "19:remote-guard-doctor@thread.tacv2"


class Outcome(Enum):
    """What one probe's answer means for its permission."""

    ACCEPTED = "accepted"  # the permission let the call through
    POLICY = "policy"  # accepted, then stopped by the missing Teams application access policy
    PROTECTED = "protected"  # accepted, then stopped: the protected-API approval is missing
    DENIED = "denied"  # 403: the permission is missing (or consent was not granted)
    UNKNOWN = "unknown"  # Graph failed otherwise (outage, throttling, odd answer)
    NOT_RUN = "not_run"  # a prerequisite (a staff member to act for) is missing


@dataclass
class ProbeResult:
    permission: str
    outcome: Outcome
    call: str  # what was sent, ids shown as {id}
    reason: str = ""  # the error, when there was one


@dataclass
class Targets:
    """The real objects probes act on, found as the probes go (ids are not secrets)."""

    user_id: str | None = None
    user_name: str = ""
    mailbox: str | None = None
    chat_id: str | None = None
    team_id: str | None = None
    channel_id: str | None = None
    roles: frozenset[str] | None = None  # from a JWT access token; None for an opaque one
    notes: list[str] = field(default_factory=list)


def token_roles(token: str) -> frozenset[str] | None:
    """The application permissions in an Entra access token (its ``roles`` claim), read
    without checking the signature (only Graph needs to trust it); None if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    roles = claims.get("roles") if isinstance(claims, dict) else None
    if not isinstance(roles, list):
        return frozenset() if isinstance(claims, dict) else None
    return frozenset(str(role) for role in roles)


def classify(error: GraphError | None, *, absent_ok: bool, policy: bool) -> Outcome:
    """Read one answer. ``absent_ok``: the call names an object that may not exist, so a 404
    (or Graph's 400 for an id of the wrong shape) still shows the permission was accepted."""
    if error is None:
        return Outcome.ACCEPTED
    text = str(error).lower()
    if error.status == 403:
        if "protected api" in text:
            return Outcome.PROTECTED
        if policy and (
            "application access policy" in text
            or ((error.code or "").lower() == "unauthorized" and "not authorized" in text)
        ):
            return Outcome.POLICY
        return Outcome.DENIED
    if (
        absent_ok
        and error.status in (400, 404)
        and "resource not found for the segment" not in text
    ):
        return Outcome.ACCEPTED
    return Outcome.UNKNOWN


class Prober:
    """Runs the probes with one client, remembering what each found for the next."""

    def __init__(self, graph: GraphClient, targets: Targets) -> None:
        self.graph = graph
        self.targets = targets

    def _run(
        self,
        permission: str,
        method: str,
        path: str,
        *,
        shown: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        absent_ok: bool = False,
        policy: bool = False,
    ) -> tuple[ProbeResult, Any]:
        answer: Any = None
        error: GraphError | None = None
        try:
            if method == "GET":
                answer = self.graph.get(path, params=params)
            else:
                answer = self.graph.post(path, body)
        except GraphError as exc:
            error = exc
        outcome = classify(error, absent_ok=absent_ok, policy=policy)
        reason = "" if error is None else _reason(error)
        return ProbeResult(permission, outcome, f"{method} {shown}", reason), answer

    def _needs_user(self, permission: str, shown: str) -> ProbeResult | None:
        if self.targets.user_id is None:
            return ProbeResult(
                permission,
                Outcome.NOT_RUN,
                f"GET {shown}",
                "no staff member to act for (the staff group could not be read); pass "
                "--user <a staff member's UPN>",
            )
        return None

    # --- one method per permission -----------------------------------------------------------

    def user_read_all(self) -> ProbeResult:
        result, _ = self._run(
            "User.Read.All",
            "GET",
            "/users",
            shown="/users?$top=1",
            params={"$top": "1", "$select": "id"},
        )
        return result

    def group_member_read_all(self) -> ProbeResult:
        result, _ = self._run(
            "GroupMember.Read.All",
            "GET",
            "/groups",
            shown="/groups?$top=1",
            params={"$top": "1", "$select": "id"},
        )
        return result

    def calendars_read(self) -> ProbeResult:
        shown = "/users/{staff}/calendarView"
        missing = self._needs_user("Calendars.Read", shown)
        if missing is not None:
            return missing
        now = datetime.now(UTC).replace(microsecond=0)
        result, _ = self._run(
            "Calendars.Read",
            "GET",
            f"/users/{self.targets.user_id}/calendarView",
            shown=shown,
            params={
                "startDateTime": now.isoformat().replace("+00:00", "Z"),
                "endDateTime": (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
                "$top": "1",
                "$select": "id",
            },
        )
        return result

    def online_meetings_read_all(self) -> ProbeResult:
        shown = "/users/{staff}/onlineMeetings?$filter=JoinWebUrl eq '...'"
        missing = self._needs_user("OnlineMeetings.Read.All", shown)
        if missing is not None:
            return missing
        result, _ = self._run(
            "OnlineMeetings.Read.All",
            "GET",
            f"/users/{self.targets.user_id}/onlineMeetings",
            shown=shown,
            params={"$filter": f"JoinWebUrl eq '{DUMMY_JOIN_URL}'"},
            policy=True,
        )
        return result

    def _artifact(self, permission: str, segment: str) -> ProbeResult:
        shown = f"/users/{{staff}}/onlineMeetings/{{id}}/{segment}"
        missing = self._needs_user(permission, shown)
        if missing is not None:
            return missing
        result, _ = self._run(
            permission,
            "GET",
            f"/users/{self.targets.user_id}/onlineMeetings/{DUMMY_MEETING_ID}/{segment}",
            shown=shown,
            absent_ok=True,
            policy=True,
        )
        return result

    def online_meeting_artifact_read_all(self) -> ProbeResult:
        return self._artifact("OnlineMeetingArtifact.Read.All", "attendanceReports")

    def online_meeting_recording_read_all(self) -> ProbeResult:
        return self._artifact("OnlineMeetingRecording.Read.All", "recordings")

    def online_meeting_transcript_read_all(self) -> ProbeResult:
        return self._artifact("OnlineMeetingTranscript.Read.All", "transcripts")

    def call_records_read_all(self) -> ProbeResult:
        since = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
        result, _ = self._run(
            "CallRecords.Read.All",
            "GET",
            "/communications/callRecords",
            shown="/communications/callRecords?$filter=startDateTime ge ...",
            params={"$filter": f"startDateTime ge {since.isoformat().replace('+00:00', 'Z')}"},
        )
        return result

    def chat_read_basic_all(self) -> ProbeResult:
        shown = "/users/{staff}/chats?$top=1"
        missing = self._needs_user("Chat.ReadBasic.All", shown)
        if missing is not None:
            return missing
        result, answer = self._run(
            "Chat.ReadBasic.All",
            "GET",
            f"/users/{self.targets.user_id}/chats",
            shown=shown,
            params={"$top": "1"},
        )
        self.targets.chat_id = _first_id(answer) or self.targets.chat_id
        return result

    def chat_read_all(self) -> ProbeResult:
        chat = self.targets.chat_id or DUMMY_CHAT_ID
        result, _ = self._run(
            "Chat.Read.All",
            "GET",
            f"/chats/{chat}/messages",
            shown="/chats/{id}/messages?$top=1",
            params={"$top": "1"},
            absent_ok=True,
        )
        return result

    def team_read_basic_all(self) -> ProbeResult:
        result, answer = self._run(
            "Team.ReadBasic.All",
            "GET",
            "/teams",
            shown="/teams?$top=1",
            params={"$top": "1", "$select": "id"},
        )
        self.targets.team_id = _first_id(answer) or self.targets.team_id
        return result

    def channel_read_basic_all(self) -> ProbeResult:
        team = self.targets.team_id or DUMMY_TEAM_ID
        result, answer = self._run(
            "Channel.ReadBasic.All",
            "GET",
            f"/teams/{team}/channels",
            shown="/teams/{id}/channels",
            params={"$select": "id"},
            absent_ok=True,
        )
        if self.targets.team_id is not None:
            self.targets.channel_id = _first_id(answer) or self.targets.channel_id
        return result

    def channel_message_read_all(self) -> ProbeResult:
        team = self.targets.team_id or DUMMY_TEAM_ID
        channel = self.targets.channel_id or DUMMY_CHANNEL_ID
        result, _ = self._run(
            "ChannelMessage.Read.All",
            "GET",
            f"/teams/{team}/channels/{channel}/messages",
            shown="/teams/{id}/channels/{id}/messages?$top=1",
            params={"$top": "1"},
            absent_ok=True,
        )
        return result

    def _write(self, permission: str, path: str, shown: str, body: Any) -> ProbeResult:
        roles = self.targets.roles
        if roles is not None:
            # A real Entra token: the grant is read from it, and nothing is written. Exchange can
            # also grant these through RBAC for Applications, which the token does not show, so
            # an absent role is a question, not a failure.
            if permission in roles:
                return ProbeResult(
                    permission,
                    Outcome.ACCEPTED,
                    "granted in Entra (seen in the token; not called, as the call would write)",
                )
            return ProbeResult(
                permission,
                Outcome.UNKNOWN,
                "the access token's roles",
                "not granted in Entra; if you granted it through Exchange RBAC for Applications "
                "(docs/setup-entra.md, step 8) that is right, and the doctor cannot see it",
            )
        # An opaque token (not Entra's): a body Graph refuses before creating anything.
        result, _ = self._run(permission, "POST", path, shown=shown, body=body, absent_ok=True)
        return result

    def calendars_read_write(self) -> ProbeResult:
        shown = "/users/{staff}/events (an event without a start: refused, nothing created)"
        missing = self._needs_user("Calendars.ReadWrite", shown)
        if missing is not None and self.targets.roles is None:
            return missing
        return self._write(
            "Calendars.ReadWrite",
            f"/users/{self.targets.user_id}/events",
            shown,
            {"subject": "remote_guard doctor (never created: no start or end)"},
        )

    def mail_send(self) -> ProbeResult:
        sender = self.targets.mailbox or self.targets.user_id
        shown = "/users/{mailbox}/sendMail (without a message: refused, nothing sent)"
        if sender is None and self.targets.roles is None:
            return ProbeResult(
                "Mail.Send", Outcome.NOT_RUN, f"POST {shown}", "no mailbox to send as"
            )
        return self._write(
            "Mail.Send", f"/users/{sender}/sendMail", shown, {"saveToSentItems": False}
        )


PROBES: dict[str, Callable[[Prober], ProbeResult]] = {
    "User.Read.All": Prober.user_read_all,
    "GroupMember.Read.All": Prober.group_member_read_all,
    "Calendars.Read": Prober.calendars_read,
    "OnlineMeetings.Read.All": Prober.online_meetings_read_all,
    "OnlineMeetingArtifact.Read.All": Prober.online_meeting_artifact_read_all,
    "OnlineMeetingRecording.Read.All": Prober.online_meeting_recording_read_all,
    "OnlineMeetingTranscript.Read.All": Prober.online_meeting_transcript_read_all,
    "CallRecords.Read.All": Prober.call_records_read_all,
    "Chat.ReadBasic.All": Prober.chat_read_basic_all,
    "Chat.Read.All": Prober.chat_read_all,
    "Team.ReadBasic.All": Prober.team_read_basic_all,
    "Channel.ReadBasic.All": Prober.channel_read_basic_all,
    "ChannelMessage.Read.All": Prober.channel_message_read_all,
    "Calendars.ReadWrite": Prober.calendars_read_write,
    "Mail.Send": Prober.mail_send,
}
# The order probes run in: those that find objects (a chat, a team, a channel) first.
_ORDER = (
    "User.Read.All",
    "GroupMember.Read.All",
    "Calendars.Read",
    "OnlineMeetings.Read.All",
    "OnlineMeetingArtifact.Read.All",
    "OnlineMeetingRecording.Read.All",
    "OnlineMeetingTranscript.Read.All",
    "CallRecords.Read.All",
    "Chat.ReadBasic.All",
    "Chat.Read.All",
    "Team.ReadBasic.All",
    "Channel.ReadBasic.All",
    "ChannelMessage.Read.All",
    "Calendars.ReadWrite",
    "Mail.Send",
)


def purposes(permission: str) -> list[str]:
    """What remote_guard uses a permission for, from the list of its Graph calls."""
    return [call.purpose for call in GRAPH_CALLS if call.permission == permission]


def needs_access_policy(permission: str) -> bool:
    return any(call.access_policy for call in GRAPH_CALLS if call.permission == permission)


def permission_fix(permission: str, tenant_name: str = "your school") -> str:
    uses = "; ".join(purposes(permission)) or "remote_guard's features"
    return (
        f"grant {permission}: {APP_PAGE} > API permissions > Add a permission > Microsoft "
        f'Graph > Application permissions > {permission}, then press "Grant admin consent for '
        f'{tenant_name}" (it can take a few minutes to apply). remote_guard needs it for: {uses}'
    )


def access_policy_fix(client_id: str) -> str:
    return (
        "create and grant a Teams application access policy for the app, in PowerShell as a "
        "Teams administrator (Install-Module MicrosoftTeams; Connect-MicrosoftTeams):\n"
        f'New-CsApplicationAccessPolicy -Identity remote-guard -AppIds "{client_id}" '
        '-Description "remote_guard reads meeting options, attendance and recordings"\n'
        "Grant-CsApplicationAccessPolicy -PolicyName remote-guard -Global\n"
        "It takes up to 30 minutes to apply; then run remote-guard doctor again"
    )


def protected_api_fix(client_id: str) -> str:
    return (
        "request access to Microsoft Teams' protected APIs for this app with Microsoft's form "
        "(https://aka.ms/teamsgraph/requestaccess): app id "
        f"{client_id}, APIs: chat messages (Chat.Read.All) and channel messages "
        "(ChannelMessage.Read.All), reason: safeguarding checks of staff-pupil remote "
        "sessions. Until Microsoft approves it, meeting-chat and direct-chat checks end in "
        "errors (never a pass)"
    )


def run_probes(prober: Prober, permissions: list[str] | None = None) -> list[ProbeResult]:
    """Run one probe per permission the install needs (``least_permissions()``), in order."""
    wanted = permissions if permissions is not None else least_permissions()
    ordered = [name for name in _ORDER if name in wanted] + [
        name for name in wanted if name not in _ORDER
    ]
    results: list[ProbeResult] = []
    for permission in ordered:
        probe = PROBES.get(permission)
        if probe is None:
            results.append(
                ProbeResult(
                    permission,
                    Outcome.UNKNOWN,
                    "(none)",
                    "remote-guard doctor has no test call for this permission",
                )
            )
            continue
        results.append(probe(prober))
    return results


def permission_checks(results: list[ProbeResult], *, tenant_name: str) -> list[Check]:
    """One checklist line per permission."""
    checks: list[Check] = []
    for result in results:
        check_id = f"permission:{result.permission}"
        title = f"Permission {result.permission}"
        if result.outcome is Outcome.ACCEPTED:
            checks.append(Check(check_id, title, Status.PASS, result.call))
        elif result.outcome is Outcome.POLICY:
            checks.append(
                Check(
                    check_id,
                    title,
                    Status.PASS,
                    f"{result.call}: accepted; Graph then stopped at the Teams application "
                    "access policy (see that check)",
                )
            )
        elif result.outcome is Outcome.PROTECTED:
            checks.append(
                Check(
                    check_id,
                    title,
                    Status.PASS,
                    f"{result.call}: accepted; Graph then stopped because Microsoft has not "
                    "approved the app for protected APIs (see that check)",
                )
            )
        elif result.outcome is Outcome.DENIED:
            checks.append(
                Check(
                    check_id,
                    title,
                    Status.FAIL,
                    f"{result.call} was refused: {result.reason or 'HTTP 403'}",
                    permission_fix(result.permission, tenant_name),
                )
            )
        elif result.outcome is Outcome.NOT_RUN:
            checks.append(Check(check_id, title, Status.SKIP, f"{result.call}: {result.reason}"))
        else:
            checks.append(
                Check(
                    check_id,
                    title,
                    Status.WARN,
                    f"{result.call} could not be checked: {result.reason}",
                    "run remote-guard doctor again in a few minutes; if it persists, check "
                    f"{APP_PAGE} > API permissions lists {result.permission} with admin consent "
                    "granted",
                )
            )
    return checks


def access_policy_check(results: list[ProbeResult], *, client_id: str, acting_as: str) -> Check:
    """The Teams application access policy, read from the onlineMeetings probes."""
    title = "Teams application access policy"
    policy_results = [r for r in results if needs_access_policy(r.permission)]
    if any(r.outcome is Outcome.POLICY for r in policy_results):
        return Check(
            "access_policy",
            title,
            Status.FAIL,
            f"Graph refused to read online meetings for {acting_as}: no application access "
            "policy covers the app for that user",
            access_policy_fix(client_id),
        )
    if any(r.outcome is Outcome.ACCEPTED for r in policy_results):
        return Check(
            "access_policy", title, Status.PASS, f"online meetings readable for {acting_as}"
        )
    return Check(
        "access_policy",
        title,
        Status.SKIP,
        "not checked: no online-meeting permission let a call through (see the permission "
        "checks above)",
    )


def protected_api_check(results: list[ProbeResult], *, client_id: str) -> Check:
    """Microsoft's approval for the protected Teams APIs, read from the message probes."""
    title = "Teams protected APIs (chat messages)"
    protected = [r for r in results if r.permission in PROTECTED_PERMISSIONS]
    if not protected:
        return Check("protected_api", title, Status.SKIP, "no message permission is needed")
    if any(r.outcome is Outcome.PROTECTED for r in protected):
        return Check(
            "protected_api",
            title,
            Status.FAIL,
            "Graph refused to read messages: Microsoft has not approved this app for the "
            "protected Teams APIs",
            protected_api_fix(client_id),
        )
    if all(r.outcome is Outcome.ACCEPTED for r in protected):
        return Check("protected_api", title, Status.PASS, "chat and channel messages readable")
    return Check(
        "protected_api",
        title,
        Status.SKIP,
        "not checked: a message permission is missing or could not be checked (see above)",
    )


def extra_permissions_check(roles: frozenset[str] | None, needed: list[str]) -> Check | None:
    """With a real token: permissions granted beyond what remote_guard needs (least privilege)."""
    if roles is None:
        return None
    extra = sorted(roles - set(needed))
    if not extra:
        return Check(
            "least_privilege",
            "No permissions beyond what is needed",
            Status.PASS,
            f"{len(roles)} application permissions granted",
        )
    return Check(
        "least_privilege",
        "No permissions beyond what is needed",
        Status.WARN,
        f"the app also holds {', '.join(extra)}, which remote_guard does not use",
        f"remove them at {APP_PAGE} > API permissions (... > Remove permission), then "
        "Grant admin consent again",
    )


def _first_id(answer: Any) -> str | None:
    if not isinstance(answer, dict):
        return None
    value = answer.get("value")
    if isinstance(value, list) and value and isinstance(value[0], dict):
        found = value[0].get("id")
        return str(found) if found else None
    return None


def _reason(error: GraphError) -> str:
    parts = [f"HTTP {error.status}" if error.status else "no answer"]
    if error.code:
        parts.append(error.code)
    text = str(error)
    if len(text) > 240:
        text = text[:237] + "..."
    return f"{' '.join(parts)}: {text}"
