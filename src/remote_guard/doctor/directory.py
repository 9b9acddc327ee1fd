"""The configured groups: each id is a group, has members, and staff and pupils are apart.

Also the service mailbox e-mail alerts are sent as, when one is configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from remote_guard.directory.service import group_users
from remote_guard.doctor.report import Check, Status
from remote_guard.graph.client import GraphClient
from remote_guard.graph.errors import GraphError
from remote_guard.settings import Settings

_GROUP_PAGE = "Entra admin centre > Groups > All groups > the group > Overview > Object ID"
# (check key, label, settings attribute, required: an empty group makes every check wrong)
_ROLES = (
    ("staff", "Staff", "staff_group_ids", True),
    ("pupils", "Pupil", "pupil_group_ids", True),
    ("slt", "SLT", "slt_group_ids", False),
    ("dsl", "DSL", "dsl_group_ids", False),
    ("deputy_dsl", "Deputy DSL", "deputy_dsl_group_ids", False),
)
OVERLAP_EXAMPLES = 3


@dataclass
class GroupFindings:
    """What the group checks read: members per role, for the overlap check and the probes."""

    members: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> id -> name
    readable: dict[str, bool] = field(default_factory=dict)  # role -> all its groups were read


def _groups_to_check(settings: Settings) -> list[tuple[str, str, str, bool]]:
    """(role key, label, group id, required) for every configured group, schools included."""
    wanted: list[tuple[str, str, str, bool]] = []
    for key, label, attribute, required in _ROLES:
        for group_id in getattr(settings.directory, attribute):
            wanted.append((key, label, group_id, required))
    for school in settings.schools:
        for group_id in school.group_ids:
            wanted.append((f"school:{school.key}", f"School {school.name}", group_id, False))
    return wanted


def group_checks(graph: GraphClient, settings: Settings) -> tuple[list[Check], GroupFindings]:
    """One line per configured group id: it exists, it is a group, it has members."""
    findings = GroupFindings()
    checks: list[Check] = []
    same = set(settings.directory.staff_group_ids) & set(settings.directory.pupil_group_ids)
    for group_id in sorted(same):
        checks.append(
            Check(
                f"group:same:{group_id}",
                "Staff and pupil groups are different",
                Status.FAIL,
                f"the group {group_id} is listed in both staff_group_ids and pupil_group_ids",
                "list the staff group(s) in staff_group_ids and the pupil group(s) in "
                "pupil_group_ids, each once",
            )
        )
    for role, label, group_id, required in _groups_to_check(settings):
        check, members = _one_group(graph, role, label, group_id, required=required)
        checks.append(check)
        if members is None:
            findings.readable[role] = False
        else:
            findings.readable.setdefault(role, True)
            findings.members.setdefault(role, {}).update(members)
    return checks, findings


def _one_group(
    graph: GraphClient, role: str, label: str, group_id: str, *, required: bool
) -> tuple[Check, dict[str, str] | None]:
    check_id = f"group:{role}:{group_id}"
    title = f"{label} group {group_id}"
    try:
        group = graph.get(f"/groups/{group_id}", params={"$select": "id,displayName"})
    except GraphError as exc:
        return _group_error(graph, check_id, title, group_id, exc), None
    name = str(group.get("displayName") or group_id)
    title = f"{label} group '{name}'"
    try:
        users = group_users(graph, group_id)
    except GraphError as exc:
        return (
            Check(
                check_id,
                title,
                Status.WARN,
                f"its members could not be read: {exc.reason}",
                "run remote-guard doctor again; if it persists check GroupMember.Read.All",
            ),
            None,
        )
    members = {user.id: (user.display_name or user.id) for user in users}
    if not members:
        what = {
            "staff": "nobody will be recognised as staff, so no session can be checked",
            "pupils": "nobody will be recognised as a pupil, so no session can be checked",
        }.get(role, "nobody will have this role in remote_guard")
        return (
            Check(
                check_id,
                title,
                Status.FAIL if required else Status.WARN,
                f"the group has no members (directly or through nested groups): {what}",
                "add the people to the group in Entra, or set the id of the group that holds "
                f"them ({_GROUP_PAGE})",
            ),
            members,
        )
    return (
        Check(check_id, title, Status.PASS, f"{len(members)} members ({group_id})"),
        members,
    )


def _group_error(
    graph: GraphClient, check_id: str, title: str, group_id: str, exc: GraphError
) -> Check:
    fix = f"set the group's Object ID ({_GROUP_PAGE})"
    if exc.status == 403:
        return Check(
            check_id,
            title,
            Status.SKIP,
            "not checked: groups cannot be read without GroupMember.Read.All (see above)",
        )
    if exc.status in (400, 404):
        user = _user_named(graph, group_id)
        if user is not None:
            return Check(
                check_id,
                title,
                Status.FAIL,
                f"this id is the user {user}, not a group",
                fix,
            )
        return Check(
            check_id,
            title,
            Status.FAIL,
            "no group has this id in the tenant"
            + (" (it is not even an id in the right shape)" if exc.status == 400 else ""),
            fix,
        )
    return Check(
        check_id,
        title,
        Status.WARN,
        f"could not be read: {exc.reason}",
        "run remote-guard doctor again in a few minutes",
    )


def _user_named(graph: GraphClient, object_id: str) -> str | None:
    try:
        user = graph.get(f"/users/{object_id}", params={"$select": "id,displayName"})
    except GraphError:
        return None
    return str(user.get("displayName") or object_id)


def overlap_check(findings: GroupFindings) -> Check:
    """Staff and pupils should be different people; anyone in both is treated as a pupil."""
    title = "Staff and pupil groups do not overlap"
    if not (findings.readable.get("staff") and findings.readable.get("pupils")):
        return Check("groups_overlap", title, Status.SKIP, "not checked: a group could not be read")
    staff = findings.members.get("staff", {})
    pupils = findings.members.get("pupils", {})
    both = sorted(set(staff) & set(pupils), key=lambda user_id: staff[user_id])
    if not both:
        return Check(
            "groups_overlap",
            title,
            Status.PASS,
            f"{len(staff)} staff and {len(pupils)} pupils, nobody in both",
        )
    examples = ", ".join(staff[user_id] for user_id in both[:OVERLAP_EXAMPLES])
    more = f" and {len(both) - OVERLAP_EXAMPLES} more" if len(both) > OVERLAP_EXAMPLES else ""
    return Check(
        "groups_overlap",
        title,
        Status.WARN,
        f"{len(both)} accounts are in both the staff and the pupil groups ({examples}{more}); "
        "remote_guard treats them as pupils, so their sessions with pupils are not checked as "
        "staff sessions",
        "remove each account from the group it does not belong to (a test or shared account "
        "belongs in neither)",
    )


def pick_user(
    graph: GraphClient, findings: GroupFindings, wanted: str | None
) -> tuple[str | None, str]:
    """The staff member the probes act for: ``wanted`` (a UPN or id), else the first staff
    member by name, else the first member account of the tenant. Returns (id, label)."""
    if wanted:
        try:
            user: dict[str, Any] = graph.get(
                f"/users/{wanted}", params={"$select": "id,displayName"}
            )
        except GraphError:
            return wanted, wanted
        return str(user.get("id") or wanted), str(user.get("displayName") or wanted)
    staff = findings.members.get("staff", {})
    if staff:
        user_id = min(staff, key=lambda key: (staff[key], key))
        return user_id, staff[user_id]
    try:
        page = graph.get(
            "/users",
            params={"$top": "1", "$filter": "userType eq 'Member'", "$select": "id,displayName"},
        )
    except GraphError:
        return None, ""
    value = page.get("value")
    if isinstance(value, list) and value and isinstance(value[0], dict) and value[0].get("id"):
        first = value[0]
        return str(
            first["id"]
        ), f"{first.get('displayName') or first['id']} (not from the staff group)"
    return None, ""


def mailbox_check(graph: GraphClient | None, mailbox: str | None, enabled: bool) -> Check:
    """The mailbox e-mail alerts are sent as exists in the tenant."""
    title = "Service mailbox for e-mail alerts"
    if not mailbox:
        return Check(
            "mailbox",
            title,
            Status.SKIP,
            "e-mail alerts are not configured ([notify] service_mailbox)",
        )
    if graph is None:
        return Check("mailbox", title, Status.SKIP, "not checked: no token")
    try:
        user = graph.get(f"/users/{mailbox}", params={"$select": "id,displayName,mail"})
    except GraphError as exc:
        if exc.status == 403:
            return Check(
                "mailbox",
                title,
                Status.SKIP,
                "not checked: users cannot be read without User.Read.All (see above)",
            )
        if exc.status in (400, 404):
            return Check(
                "mailbox",
                title,
                Status.FAIL if enabled else Status.WARN,
                f"no user or shared mailbox {mailbox} exists in the tenant",
                "create a shared mailbox for remote_guard in the Exchange admin centre "
                "(admin.exchange.microsoft.com > Recipients > Mailboxes > Add a shared mailbox) "
                "and set [notify] service_mailbox to its address",
            )
        return Check(
            "mailbox",
            title,
            Status.WARN,
            f"could not be read: {exc.reason}",
            "run remote-guard doctor again in a few minutes",
        )
    address = user.get("mail")
    if not address:
        return Check(
            "mailbox",
            title,
            Status.FAIL if enabled else Status.WARN,
            f"{mailbox} is an account without a mailbox (no mail address)",
            "use a shared mailbox, created in the Exchange admin centre > Recipients > "
            "Mailboxes, as [notify] service_mailbox",
        )
    return Check("mailbox", title, Status.PASS, f"{user.get('displayName') or mailbox} <{address}>")
