"""E-mail to the DSL and deputy DSLs when a poll finds a new high-severity problem.

The poller tells :meth:`DslNotifier.on_finding` of each new or changed open finding; the ones
worth an e-mail wait in memory until the end of the cycle, when :meth:`DslNotifier.flush` sends
one message per recipient through Graph (``POST /users/{service mailbox}/sendMail``) as the
configured service mailbox. A message that cannot be sent is kept and tried again at the end of
the next cycle; nothing here ever raises into the poller.

What is worth an e-mail: a HIGH finding that is now a breach (fail or warn, not exempted) and
was not one before (new, or changed from pass, not applicable or error). Errors (data that
could not be read) are not mailed: a Graph outage would otherwise mail every DSL about every
session; they wait in the review queue.

The message names nobody. A pupil is "a pupil in <class team>", other people by kind; pupils'
names are taken out of the session's subject too. It gives the rule, the session's subject and
local time, and a link to the evidence page, where the DSL signs in to see the rest.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from remote_guard import audit
from remote_guard.clock import Clock
from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.collect.snapshot import PersonKind, SessionSnapshot
from remote_guard.graph.client import GraphClient
from remote_guard.graph.errors import GraphError
from remote_guard.rules.base import Finding, Rule, Severity, Status
from remote_guard.settings import Settings
from remote_guard.store.db import transaction

log = structlog.get_logger(__name__)

# A finding is mailed when it becomes one of these from anything else.
MAILED_STATUSES = frozenset({Status.FAIL, Status.WARN})

_PERSON_KINDS = {
    PersonKind.STAFF: "a member of staff",
    PersonKind.GUEST: "a guest account",
    PersonKind.ANONYMOUS: "someone who joined anonymously",
    PersonKind.EXTERNAL: "someone from another organisation",
    PersonKind.PHONE: "someone who dialled in by phone",
    PersonKind.APPLICATION: "an app",
    PersonKind.UNKNOWN: "someone outside the configured groups",
}
_REDACTED = "[a pupil]"
# Bidirectional overrides, isolates and marks, and other invisible format characters.
_CONTROLS = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_SELECT = {"$select": "id,displayName,mail,userPrincipalName", "$top": "999"}


@dataclass(frozen=True)
class Alert:
    """One finding as the e-mail tells of it: no names, nothing a DSL needs to sign in for."""

    finding_key: str
    session_id: str
    school: str | None
    rule: str
    about: str
    subject: str
    when: str
    link: str
    start: datetime | None = None  # for the order of the list


@dataclass(frozen=True)
class Recipient:
    address: str
    schools: frozenset[str] | None  # None: every school


@dataclass
class DslNotifier:
    """Collects alert-worthy findings during a cycle and mails them at its end."""

    settings: Settings
    graph: GraphClient
    db: sessionmaker[Session]
    registry: Mapping[str, Rule]
    clock: Clock
    _pending: dict[str, Finding] = field(default_factory=dict)
    # recipient address -> finding key -> alert, kept until that recipient's message is sent
    _outbox: dict[str, dict[str, Alert]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- during the cycle ---------------------------------------------------------------------

    def on_finding(self, finding: Finding, previous: str | None) -> None:
        """The poller's listener: keep ``finding`` if it is a new high-severity breach."""
        if not self.worth_mailing(finding, previous):
            return
        with self._lock:
            self._pending[finding.key] = finding

    @staticmethod
    def worth_mailing(finding: Finding, previous: str | None) -> bool:
        if finding.severity is not Severity.HIGH or finding.exempted:
            return False
        if finding.status not in MAILED_STATUSES:
            return False
        return previous is None or previous not in {status.value for status in MAILED_STATUSES}

    # --- at the end of the cycle --------------------------------------------------------------

    def flush(self, _result: object = None) -> int:
        """Send what is waiting: one message per recipient. Returns how many were sent.

        Never raises: a recipient whose message fails keeps it for the next cycle, and if the
        recipients or the findings' sessions cannot be read, the findings wait as well.
        """
        with self._lock:
            pending = dict(self._pending)
        if pending:
            try:
                recipients = self.recipients()
                alerts = self._alerts(list(pending.values()))
            except Exception as exc:  # noqa: BLE001 - the poller must go on; retried next cycle
                log.warning("notify.prepare_failed", reason=str(exc), waiting=len(pending))
                return 0
            with self._lock:
                for key in pending:
                    self._pending.pop(key, None)
                for recipient in recipients:
                    for alert in alerts:
                        if _sees(recipient, alert.school):
                            self._outbox.setdefault(recipient.address, {})[alert.finding_key] = (
                                alert
                            )
        sent = 0
        with self._lock:
            outbox = {address: dict(items) for address, items in self._outbox.items() if items}
        for address, items in sorted(outbox.items()):
            alerts = sorted(
                items.values(),
                key=lambda alert: (alert.start is None, alert.start, alert.finding_key),
            )
            try:
                self._send(address, alerts)
            except GraphError as exc:
                log.warning(
                    "notify.send_failed", reason=exc.reason, status=exc.status, waiting=len(alerts)
                )
                continue
            except Exception:  # the poller must go on; retried next cycle
                log.exception("notify.send_failed", waiting=len(alerts))
                continue
            sent += 1
            with self._lock:
                left = self._outbox.get(address, {})
                for alert in alerts:
                    left.pop(alert.finding_key, None)
            self._record_sent(address, alerts)
        return sent

    @property
    def waiting(self) -> int:
        """How many (recipient, finding) alerts are waiting to be sent, plus unsorted findings."""
        with self._lock:
            return len(self._pending) + sum(len(items) for items in self._outbox.values())

    # --- recipients ---------------------------------------------------------------------------

    def recipients(self) -> list[Recipient]:
        """Who gets the e-mail: the configured addresses (told of every school), or the members
        of the DSL and deputy DSL groups, each told only of the schools whose groups they are in.

        Raises:
            GraphError: a group or user could not be read.
        """
        notify = self.settings.notify
        if notify.dsl_recipients:
            return [
                Recipient(address=self._address_of(value), schools=None)
                for value in notify.dsl_recipients
            ]
        directory = self.settings.directory
        people: dict[str, str] = {}
        for group_id in (*directory.dsl_group_ids, *directory.deputy_dsl_group_ids):
            people.update(self._members(group_id))
        federation = self.settings.schools
        school_members = {
            school.key: {
                member for group_id in school.group_ids for member in self._members(group_id)
            }
            for school in federation
        }
        found: dict[str, Recipient] = {}
        for person_id, address in sorted(people.items()):
            schools = (
                frozenset(key for key, ids in school_members.items() if person_id in ids)
                if federation
                else None
            )
            found.setdefault(address.lower(), Recipient(address=address, schools=schools))
        return list(found.values())

    def _members(self, group_id: str) -> dict[str, str]:
        members: dict[str, str] = {}
        for item in self.graph.iter_items(f"/groups/{group_id}/transitiveMembers", params=_SELECT):
            if item.get("@odata.type") not in (None, "#microsoft.graph.user"):
                continue
            address = item.get("mail") or item.get("userPrincipalName")
            if isinstance(item.get("id"), str) and isinstance(address, str) and address:
                members[item["id"]] = address
        return members

    def _address_of(self, value: str) -> str:
        if "@" in value:
            return value
        user = self.graph.get(
            f"/users/{quote(value, safe='')}", params={"$select": "mail,userPrincipalName"}
        )
        address = (user or {}).get("mail") or (user or {}).get("userPrincipalName")
        if not isinstance(address, str) or not address:
            raise GraphError(f"user {value} has no e-mail address", endpoint="/users/{id}")
        return address

    # --- the message --------------------------------------------------------------------------

    def _alerts(self, findings: Sequence[Finding]) -> list[Alert]:
        session_ids = sorted({finding.session_id for finding in findings})
        with self.db() as db:
            rows = {
                row.id: (row, data)
                for row, data in db.execute(
                    select(SessionRow, SnapshotRow.data)
                    .outerjoin(SnapshotRow, SnapshotRow.id == SessionRow.latest_snapshot_id)
                    .where(SessionRow.id.in_(session_ids))
                ).all()
            }
        snapshots = {
            session_id: SessionSnapshot.model_validate(data)
            for session_id, (_row, data) in rows.items()
            if data is not None
        }
        pupils = {
            finding.subject_key
            for finding in findings
            if (snapshot := snapshots.get(finding.session_id)) is not None
            and finding.subject_key in snapshot.people
            and snapshot.people[finding.subject_key].kind is PersonKind.PUPIL
        }
        classes = _class_names(self.graph, pupils) if pupils else {}
        zone = ZoneInfo(self.settings.school_day.timezone)
        base = self.settings.web.base_url
        alerts: list[Alert] = []
        for finding in findings:
            row, _data = rows.get(finding.session_id, (None, None))
            snapshot = snapshots.get(finding.session_id)
            start = row.scheduled_start if row is not None else None
            rule = self.registry.get(finding.rule_id)
            alerts.append(
                Alert(
                    finding_key=finding.key,
                    session_id=finding.session_id,
                    school=row.school if row is not None else None,
                    rule=rule.title if rule is not None else finding.rule_id,
                    about=_about(finding, snapshot, classes),
                    subject=pseudonymous_subject(
                        row.subject if row is not None else None, snapshot
                    ),
                    when=start.astimezone(zone).strftime("%a %-d %b %H:%M") if start else "",
                    link=f"{base}/dsl/sessions/{quote(finding.session_id, safe='')}",
                    start=start,
                )
            )
        return alerts

    def _send(self, address: str, alerts: Sequence[Alert]) -> None:
        mailbox = quote(self.settings.notify.service_mailbox or "", safe="@.")
        count = len(alerts)
        subject = (
            "remote_guard: a new high-severity finding"
            if count == 1
            else f"remote_guard: {count} new high-severity findings"
        )
        self.graph.post(
            f"/users/{mailbox}/sendMail",
            {
                "message": {
                    "subject": subject,
                    "body": {"contentType": "text", "content": message_text(alerts)},
                    "toRecipients": [{"emailAddress": {"address": address}}],
                },
                "saveToSentItems": False,
            },
        )

    def _record_sent(self, address: str, alerts: Sequence[Alert]) -> None:
        try:
            with transaction(self.db) as db:
                audit.record(
                    db,
                    "notify.sent",
                    object_type="notification",
                    object_id=alerts[0].finding_key,
                    detail={
                        "to": address,
                        "findings": [alert.finding_key for alert in alerts],
                        "sessions": sorted({alert.session_id for alert in alerts}),
                    },
                    actor=audit.SYSTEM,
                    at=self.clock(),
                )
        except Exception:  # the e-mail went; the poller must go on
            log.exception("notify.audit_failed")


def message_text(alerts: Sequence[Alert]) -> str:
    """The plain-text body: the alerts, then what to do and why no names are given."""
    lines = [
        "Hello,",
        "",
        "remote_guard has found "
        + (
            "a new high-severity problem"
            if len(alerts) == 1
            else f"{len(alerts)} new high-severity problems"
        )
        + " in remote sessions:",
        "",
    ]
    for number, alert in enumerate(alerts, start=1):
        lines += [
            f"{number}. {alert.rule}",
            f"   Session: {alert.subject}" + (f", {alert.when}" if alert.when else ""),
            f"   About: {alert.about}",
            f"   Evidence: {alert.link}",
            "",
        ]
    lines += [
        "Open a link and sign in to see who was involved, the evidence and the clause of the code "
        "of practice, and to take the case into review.",
        "",
        "This e-mail names nobody on purpose: e-mail is copied and forwarded, so the details stay "
        "in remote_guard.",
    ]
    return "\n".join(lines) + "\n"


def pseudonymous_subject(subject: str | None, snapshot: SessionSnapshot | None) -> str:
    """The session's subject with the names of the pupils in it taken out, on one line and
    without the direction controls that could make a plain-text e-mail read differently."""
    text = _CONTROLS.sub("", " ".join((subject or "").split()))[:200] or "(no subject)"
    if snapshot is None:
        return f'"{text}"'
    names: set[str] = set()
    for person in snapshot.people.values():
        if person.kind is not PersonKind.PUPIL or not person.display_name.strip():
            continue
        names.add(person.display_name.strip())
        first = person.display_name.split()[0]
        if len(first) >= 3:
            names.add(first)
    for name in sorted(names, key=len, reverse=True):
        text = re.sub(rf"(?<!\w){re.escape(name)}(?!\w)", _REDACTED, text, flags=re.IGNORECASE)
    return f'"{text}"'


def _about(finding: Finding, snapshot: SessionSnapshot | None, classes: Mapping[str, str]) -> str:
    if not finding.subject_key:
        return "the session"
    person = snapshot.people.get(finding.subject_key) if snapshot is not None else None
    if person is None:
        return "someone in the session"
    if person.kind is PersonKind.PUPIL:
        class_name = classes.get(person.id)
        return f"a pupil in {class_name}" if class_name else "a pupil"
    return _PERSON_KINDS.get(person.kind, "someone in the session")


def _class_names(graph: GraphClient, pupil_ids: Iterable[str]) -> dict[str, str]:
    """Each pupil's class team (the first by name if several). Best effort: a team that cannot
    be read is skipped, and a pupil in none is just "a pupil"."""
    wanted = set(pupil_ids)
    found: dict[str, str] = {}
    try:
        teams = sorted(
            (str(team.get("displayName") or ""), str(team["id"]))
            for team in graph.iter_items("/teams", params={"$select": "id,displayName"})
            if isinstance(team.get("id"), str)
        )
    except GraphError as exc:
        log.info("notify.teams_unreadable", reason=exc.reason)
        return found
    for name, team_id in teams:
        if not wanted - found.keys():
            break
        try:
            members = {
                str(item.get("id"))
                for item in graph.iter_items(
                    f"/groups/{team_id}/members", params={"$select": "id", "$top": "999"}
                )
            }
        except GraphError:
            continue
        for pupil in wanted & members:
            found.setdefault(pupil, name)
    return found


def _sees(recipient: Recipient, school: str | None) -> bool:
    """As ``web.access.can_see_school``: a session of an unknown school goes only to those who
    see every school."""
    if recipient.schools is None:
        return True
    if school is None:
        return False
    return school in recipient.schools
