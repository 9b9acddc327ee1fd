"""Live alerts to SLT: a member of staff alone with one pupil, now, without a valid registration.

With roster events on, every change to a live meeting's roster is judged at once: when the call
holds exactly one member of staff and one pupil, and no one-to-one registration covers them (as
the ``one_to_one_without_consent`` rule of the school's profile judges it: SLT approval, an
approved activity, parental consent, with the rule's own parameters), an alert is stored, shown
on the SLT board with the meeting's join link so SLT can drop in while it is happening, and
(with ``[notify]`` on) e-mailed to SLT once it has lasted ``live_alert_mail_after_seconds``, so
the moment at the start of every lesson when the first pupil is alone with the teacher does not
mail anyone. The alert clears when the roster changes or the call ends. Every step is audited.

The alert is a prompt to look, not a finding: the rule itself still judges the session (live,
once the stretch passes its threshold, and again after the meeting from the attendance report).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

import structlog
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from remote_guard import audit
from remote_guard.clock import Clock
from remote_guard.collect.models import SessionRow
from remote_guard.collect.snapshot import HUMAN_KINDS, Person, PersonKind, SessionSnapshot
from remote_guard.consent.service import load_registers
from remote_guard.dropins.board import teams_join_url
from remote_guard.graph.client import GraphClient
from remote_guard.graph.errors import GraphError
from remote_guard.poll.service import Poller
from remote_guard.rules._consent import Cover, one_to_one_cover
from remote_guard.settings import Settings
from remote_guard.store.db import transaction
from remote_guard.subscriptions.live import LiveState, latest_snapshot
from remote_guard.subscriptions.models import LiveAlertRow, LiveAlertStatus

log = structlog.get_logger(__name__)

RULE_ID = "one_to_one_without_consent"
_SELECT = {"$select": "id,displayName,mail,userPrincipalName", "$top": "999"}


def rule_params(poller: Poller) -> BaseModel | None:
    """The one-to-one rule's parameters in the school's profile; None if it does not check
    one-to-ones (then no live alert is raised either)."""
    for bound in poller.policy.bound_rules:
        if bound.rule_id == RULE_ID:
            return bound.params
    return None


def staff_pupil_pair(people: list[Person]) -> tuple[Person, Person] | None:
    """(staff, pupil) if exactly these two people are in the call (apps do not count)."""
    humans = [person for person in people if person.kind in HUMAN_KINDS]
    if len(humans) != 2:
        return None
    kinds = {person.kind: person for person in humans}
    if set(kinds) != {PersonKind.STAFF, PersonKind.PUPIL}:
        return None
    return kinds[PersonKind.STAFF], kinds[PersonKind.PUPIL]


@dataclass(frozen=True)
class LiveAlertView:
    """An open alert as the SLT board shows it."""

    id: str
    session_id: str
    subject: str
    teacher_name: str
    pupil_name: str
    school: str | None
    join_url: str | None
    raised_at: datetime
    reason: str


class SltMailer:
    """E-mail to SLT about a live alert, through Graph as ``[notify] service_mailbox``."""

    def __init__(self, settings: Settings, graph: GraphClient) -> None:
        self._settings = settings
        self._graph = graph

    def recipients(self, school: str | None) -> list[str]:
        """``[notifications] slt_recipients``, else the SLT groups' members who see ``school``.

        Raises:
            GraphError: a group or user could not be read.
        """
        configured = self._settings.notifications.slt_recipients
        if configured:
            return [self._address_of(value) for value in configured]
        members: dict[str, str] = {}
        for group_id in self._settings.directory.slt_group_ids:
            members.update(self._members(group_id))
        if self._settings.schools:
            if school is None:
                return []
            ids: set[str] = set()
            for entry in self._settings.schools:
                if entry.key == school:
                    for group_id in entry.group_ids:
                        ids |= set(self._members(group_id))
            members = {pid: address for pid, address in members.items() if pid in ids}
        return sorted({address.lower(): address for address in members.values()}.values())

    def _members(self, group_id: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for item in self._graph.iter_items(f"/groups/{group_id}/transitiveMembers", params=_SELECT):
            address = item.get("mail") or item.get("userPrincipalName")
            if item.get("@odata.type") not in (None, "#microsoft.graph.user"):
                continue
            if isinstance(item.get("id"), str) and isinstance(address, str) and address:
                found[item["id"]] = address
        return found

    def _address_of(self, value: str) -> str:
        if "@" in value:
            return value
        user = self._graph.get(
            f"/users/{quote(value, safe='')}", params={"$select": "mail,userPrincipalName"}
        )
        address = user.get("mail") or user.get("userPrincipalName")
        if not isinstance(address, str) or not address:
            raise GraphError(f"user {value} has no e-mail address", endpoint="/users/{id}")
        return address

    def send(self, to: list[str], *, subject: str, body: str) -> None:
        """Raises: GraphError: Graph refused the message."""
        mailbox = quote(self._settings.notify.service_mailbox or "", safe="@.")
        self._graph.post(
            f"/users/{mailbox}/sendMail",
            {
                "message": {
                    "subject": subject,
                    "body": {"contentType": "text", "content": body},
                    "toRecipients": [{"emailAddress": {"address": address}} for address in to],
                },
                "saveToSentItems": False,
            },
        )


def alert_text(*, subject: str, when: str, join_url: str | None, board_url: str) -> str:
    """The e-mail: no names (e-mail is forwarded); the join link and the board hold the rest."""
    lines = [
        "Hello,",
        "",
        f"A member of staff is alone with one pupil right now in {subject}{when}, and no "
        "approved one-to-one registration with parental consent covers it.",
        "",
    ]
    if join_url:
        lines += [f"Join the lesson now (Microsoft Teams): {join_url}", ""]
    lines += [
        f"The SLT board shows who is involved: {board_url}",
        "",
        "The alert clears by itself when someone else joins, either of them leaves, or the call "
        "ends; the session is reviewed as usual after the meeting.",
    ]
    return "\n".join(lines) + "\n"


class LiveAlerts:
    """Raises, clears and mails live one-to-one alerts for sessions whose roster changed."""

    def __init__(
        self,
        *,
        poller: Poller,
        live: LiveState,
        mailer: SltMailer | None,
        clock: Clock,
        mail_after: timedelta,
    ) -> None:
        self._poller = poller
        self._live = live
        self._mailer = mailer
        self._clock = clock
        self._mail_after = mail_after
        # Told of each alert raised (the demo prints it); an error is logged, never raised.
        self.listeners: list[Callable[[LiveAlertRow], None]] = []

    @property
    def db(self) -> sessionmaker[Session]:
        return self._poller.db

    def check(self, session_id: str) -> LiveAlertRow | None:
        """Judge the session's roster now; return its open alert, if any."""
        now = self._clock()
        complete, people = self._live.present(session_id)
        if not complete:
            # Who else is in the call is not known: nothing can be concluded.
            return self._open(session_id)
        pair = staff_pupil_pair(people)
        if pair is None:
            self.clear(session_id, f"the roster changed: {len(people)} in the call", now=now)
            return None
        params = rule_params(self._poller)
        if params is None:
            return None
        staff, pupil = pair
        with self.db() as db:
            snapshot = latest_snapshot(db, session_id)
            session = db.get(SessionRow, session_id)
            registers = load_registers(db)
        if snapshot is None or session is None:
            return None
        start = min(snapshot.scheduled_start or now, now)
        cover = one_to_one_cover(
            registers,
            staff_id=staff.id,
            pupil_id=pupil.id,
            join_url=snapshot.join_url,
            start=start,
            require_approved_activity=bool(getattr(params, "require_approved_activity", True)),
            require_consent=bool(getattr(params, "require_consent", True)),
            consent_scope=str(getattr(params, "consent_scope", "one_to_one")),
            zone=ZoneInfo(self._poller.settings.school_day.timezone),
        )
        if cover.covered:
            self.clear(session_id, f"covered: {cover.reason}", now=now)
            return None
        return self._raise(session, snapshot, staff, pupil, cover, now=now)

    def _open(self, session_id: str) -> LiveAlertRow | None:
        with self.db() as db:
            return db.scalars(
                select(LiveAlertRow).where(
                    LiveAlertRow.session_id == session_id,
                    LiveAlertRow.status == LiveAlertStatus.OPEN.value,
                )
            ).first()

    def _raise(
        self,
        session: SessionRow,
        snapshot: SessionSnapshot,
        staff: Person,
        pupil: Person,
        cover: Cover,
        *,
        now: datetime,
    ) -> LiveAlertRow:
        with transaction(self.db) as db:
            open_alerts = list(
                db.scalars(
                    select(LiveAlertRow).where(
                        LiveAlertRow.session_id == session.id,
                        LiveAlertRow.status == LiveAlertStatus.OPEN.value,
                    )
                )
            )
            for alert in open_alerts:
                if alert.staff_id == staff.id and alert.pupil_id == pupil.id:
                    return alert
                self._clear_row(db, alert, "a different pair is alone now", now)
            alert = LiveAlertRow(
                id=str(uuid.uuid4()),
                session_id=session.id,
                school=session.school,
                staff_id=staff.id,
                pupil_id=pupil.id,
                join_url=snapshot.join_url,
                reason=cover.reason,
                status=LiveAlertStatus.OPEN.value,
                raised_at=now,
                details={
                    "staff_name": staff.display_name,
                    "pupil_name": pupil.display_name,
                    "registration_id": cover.registration_id,
                },
            )
            db.add(alert)
            audit.record(
                db,
                "live_alert.raised",
                object_type="live_alert",
                object_id=alert.id,
                after={
                    "session_id": session.id,
                    "staff_id": staff.id,
                    "pupil_id": pupil.id,
                    "reason": cover.reason,
                },
                at=now,
            )
        log.warning("notifications.live_one_to_one", session_id=session.id, alert_id=alert.id)
        for listener in self.listeners:
            try:
                listener(alert)
            except Exception:
                log.exception("notifications.alert_listener_failed")
        if self._mail_after <= timedelta(0):
            self.mail_due()
        return alert

    def clear(self, session_id: str, reason: str, *, now: datetime | None = None) -> int:
        """Clear the session's open alerts; returns how many."""
        moment = now or self._clock()
        with transaction(self.db) as db:
            alerts = list(
                db.scalars(
                    select(LiveAlertRow).where(
                        LiveAlertRow.session_id == session_id,
                        LiveAlertRow.status == LiveAlertStatus.OPEN.value,
                    )
                )
            )
            for alert in alerts:
                self._clear_row(db, alert, reason, moment)
        return len(alerts)

    @staticmethod
    def _clear_row(db: Session, alert: LiveAlertRow, reason: str, now: datetime) -> None:
        alert.status = LiveAlertStatus.CLEARED.value
        alert.cleared_at = now
        alert.cleared_reason = reason
        audit.record(
            db,
            "live_alert.cleared",
            object_type="live_alert",
            object_id=alert.id,
            before={"status": LiveAlertStatus.OPEN.value},
            after={"status": LiveAlertStatus.CLEARED.value, "reason": reason},
            at=now,
        )

    def open_session_ids(self) -> list[str]:
        with self.db() as db:
            return sorted(
                set(
                    db.scalars(
                        select(LiveAlertRow.session_id).where(
                            LiveAlertRow.status == LiveAlertStatus.OPEN.value
                        )
                    )
                )
            )

    def mail_due(self) -> int:
        """Mail the open alerts that have lasted long enough and were not mailed yet. Returns
        how many were sent. Never raises: a failure is kept on the alert and tried again."""
        if self._mailer is None:
            return 0
        now = self._clock()
        with self.db() as db:
            due = list(
                db.scalars(
                    select(LiveAlertRow).where(
                        LiveAlertRow.status == LiveAlertStatus.OPEN.value,
                        LiveAlertRow.mailed_at.is_(None),
                        LiveAlertRow.raised_at <= now - self._mail_after,
                    )
                )
            )
        sent = 0
        for alert in due:
            try:
                sent += self._mail(alert, now)
            except Exception as exc:  # noqa: BLE001 - kept on the alert, tried again next time
                reason = exc.reason if isinstance(exc, GraphError) else type(exc).__name__
                log.warning("notifications.alert_mail_failed", alert_id=alert.id, reason=reason)
                with transaction(self.db) as db:
                    row = db.get(LiveAlertRow, alert.id)
                    if row is not None:
                        row.mail_error = reason[:500]
        return sent

    def _mail(self, alert: LiveAlertRow, now: datetime) -> int:
        from remote_guard.cases.notify import pseudonymous_subject

        assert self._mailer is not None  # noqa: S101 - checked by mail_due
        settings = self._poller.settings
        with self.db() as db:
            session = db.get(SessionRow, alert.session_id)
            snapshot = latest_snapshot(db, alert.session_id)
        to = self._mailer.recipients(alert.school)
        if not to:
            log.warning("notifications.alert_no_recipients", alert_id=alert.id)
            return 0
        zone = ZoneInfo(settings.school_day.timezone)
        start = session.scheduled_start if session is not None else None
        when = f" (it started at {start.astimezone(zone):%H:%M})" if start else ""
        body = alert_text(
            subject=pseudonymous_subject(session.subject if session else None, snapshot),
            when=when,
            join_url=alert.join_url,
            board_url=f"{settings.web.base_url}/slt",
        )
        self._mailer.send(to, subject="remote_guard: staff alone with a pupil now", body=body)
        with transaction(self.db) as db:
            row = db.get(LiveAlertRow, alert.id)
            if row is not None:
                row.mailed_at = now
                row.mail_error = None
            audit.record(
                db,
                "live_alert.mailed",
                object_type="live_alert",
                object_id=alert.id,
                detail={"to": to},
                at=now,
            )
        return 1


def open_alerts(
    db: Session, *, visible: Callable[[str | None], bool], school: str | None = None
) -> list[LiveAlertView]:
    """Open live alerts whose school ``visible`` allows (and only ``school`` if given), newest
    first, for the SLT board."""
    query = (
        select(LiveAlertRow, SessionRow)
        .join(SessionRow, SessionRow.id == LiveAlertRow.session_id)
        .where(LiveAlertRow.status == LiveAlertStatus.OPEN.value)
        .order_by(LiveAlertRow.raised_at.desc(), LiveAlertRow.id)
    )
    if school is not None:
        query = query.where(LiveAlertRow.school == school)
    views = []
    for alert, session in db.execute(query).all():
        if not visible(alert.school):
            continue
        snapshot = latest_snapshot(db, session.id)
        teacher = snapshot.people.get(alert.staff_id) if snapshot else None
        pupil = snapshot.people.get(alert.pupil_id) if snapshot else None
        details = alert.details or {}
        views.append(
            LiveAlertView(
                id=alert.id,
                session_id=session.id,
                subject=session.subject or (snapshot.subject if snapshot else None) or "",
                teacher_name=(teacher.display_name if teacher else "")
                or str(details.get("staff_name") or ""),
                pupil_name=(pupil.display_name if pupil else "")
                or str(details.get("pupil_name") or ""),
                school=alert.school,
                join_url=teams_join_url(alert.join_url),
                raised_at=alert.raised_at,
                reason=alert.reason,
            )
        )
    return views
