"""The teacher's actions, shared by the pages (``routes.teacher``) and the JSON API
(``routes.teacher_api``): what they may choose from, registering a one-to-one, recording a
withdrawal of consent, and adding context to a flagged session.

Each change commits in one transaction with its audit entries; the sessions it may affect are
then re-evaluated at once (``web.evaluation.reevaluate``), so the page the teacher goes back to
already shows the new findings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import select

from remote_guard.cases.models import NOTE_MAX_CHARS, NoteKind
from remote_guard.cases.service import CaseError, add_note, open_or_get_case
from remote_guard.collect.models import SessionRow
from remote_guard.consent.models import ConsentRow, RegistrationRow
from remote_guard.findings.models import FindingEventRow, FindingRow
from remote_guard.one_to_ones import service as one_to_ones
from remote_guard.one_to_ones.models import ConsentWithdrawalRow
from remote_guard.one_to_ones.service import (
    MeetingChoice,
    Registered,
    RegistrationDraft,
    WithdrawalDraft,
)
from remote_guard.poll.service import Reevaluation
from remote_guard.rules.base import OPEN_STATUSES
from remote_guard.store.db import transaction
from remote_guard.web import access, audit_log
from remote_guard.web.access import User
from remote_guard.web.context import WebContext
from remote_guard.web.evaluation import reevaluate
from remote_guard.web.people import Roster

log = structlog.get_logger(__name__)

OPEN_STATUS_VALUES = frozenset(status.value for status in OPEN_STATUSES)


class NotFoundError(LookupError):
    """The record asked for does not exist."""


class RefusedError(PermissionError):
    """The signed-in user may not do this (the caller answers 403)."""


@dataclass(frozen=True)
class PupilChoice:
    id: str
    name: str
    class_name: str


@dataclass(frozen=True)
class Choices:
    """What the register form offers the teacher."""

    pupils: list[PupilChoice]
    activities: list[str]
    meetings: list[MeetingChoice]

    @property
    def pupil_names(self) -> dict[str, str]:
        return {pupil.id: pupil.name for pupil in self.pupils}

    @property
    def meetings_by_id(self) -> dict[str, MeetingChoice]:
        return {meeting.session_id: meeting for meeting in self.meetings}

    def classes(self) -> list[tuple[str, list[PupilChoice]]]:
        """Pupils grouped by class, classes and pupils by name."""
        grouped: dict[str, list[PupilChoice]] = {}
        for pupil in self.pupils:
            grouped.setdefault(pupil.class_name, []).append(pupil)
        return [(name, grouped[name]) for name in sorted(grouped, key=str.casefold)]


def zone_of(web: WebContext) -> ZoneInfo:
    return web.settings.school_day.zone


def school_of(roster: Roster, person_id: str) -> str | None:
    """The ``[[schools]]`` key ``person_id`` belongs to (None without a federation)."""
    return next((key for key, ids in sorted(roster.school_ids.items()) if person_id in ids), None)


def pupil_name(roster: Roster, pupil_id: str) -> str:
    return roster.names.get(pupil_id) or "A pupil"


def choices_for(web: WebContext, user: User) -> Choices:
    """The teacher's class pupils, the approved activities and their upcoming Teams meetings.

    Raises:
        RosterUnavailableError: the classes cannot be read from Microsoft 365 just now.
    """
    roster = web.people.roster()
    pupils: dict[str, PupilChoice] = {}
    for team in sorted(roster.class_teams, key=lambda team: team.name.casefold()):
        if user.id not in team.owner_ids:
            continue
        for pupil_id in team.pupil_ids:
            if pupil_id in user.class_pupil_ids and pupil_id not in pupils:
                pupils[pupil_id] = PupilChoice(
                    pupil_id, pupil_name(roster, pupil_id), team.name or "Class"
                )
    with web.db() as db:
        activities = one_to_ones.approved_activities(db)
        meetings = one_to_ones.upcoming_meetings(db, user.id, now=web.clock())
    ordered = sorted(pupils.values(), key=lambda pupil: (pupil.class_name, pupil.name.casefold()))
    return Choices(pupils=ordered, activities=activities, meetings=meetings)


# --- parsing what a form sent -------------------------------------------------------------------

_UK_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def parse_date(text: str) -> date | None:
    """``2026-11-18`` (what a date field sends) or ``18/11/2026``.

    Raises:
        ValueError: the text is neither.
    """
    text = text.strip()
    if not text:
        return None
    match = _UK_DATE.match(text)
    if match:
        day, month, year = (int(part) for part in match.groups())
        return date(year, month, day)
    return date.fromisoformat(text)


def parse_local_datetime(text: str, zone: ZoneInfo) -> datetime | None:
    """``2026-11-18T10:00`` (what a date-and-time field sends), ``2026-11-18 10:00`` or
    ``18/11/2026 10:00``, read as school local time.

    Raises:
        ValueError: the text is none of these.
    """
    text = text.strip()
    if not text:
        return None
    if "/" in text:
        day_part, _, clock = text.partition(" ")
        parsed_day = parse_date(day_part)
        if parsed_day is None or not clock:
            raise ValueError(text)
        text = f"{parsed_day.isoformat()}T{clock.strip()}"
    value = datetime.fromisoformat(text.replace(" ", "T", 1))
    return aware(value, zone)


def aware(value: datetime, zone: ZoneInfo) -> datetime:
    """``value`` as an aware datetime: a naive one is school local time."""
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def clean(text: object) -> str:
    return text.strip() if isinstance(text, str) else ""


def registration_from_form(
    form: Mapping[str, str], zone: ZoneInfo
) -> tuple[RegistrationDraft, dict[str, str]]:
    """The draft a register form describes, and the fields that could not be read."""
    errors: dict[str, str] = {}

    def read_date(name: str, message: str) -> date | None:
        try:
            return parse_date(form.get(name, ""))
        except ValueError:
            errors[name] = message
            return None

    def read_time(name: str, message: str) -> datetime | None:
        try:
            return parse_local_datetime(form.get(name, ""), zone)
        except ValueError:
            errors[name] = message
            return None

    covers = clean(form.get("covers"))
    draft = RegistrationDraft(
        pupil_id=clean(form.get("pupil")),
        activity=clean(form.get("activity")),
        covers=covers,
        session_id=clean(form.get("meeting")) or None,
        starts_at=read_time(
            "starts_at", "Enter the start as a date and time, like 18/11/2026 10:00."
        )
        if covers == "window"
        else None,
        ends_at=read_time("ends_at", "Enter the end as a date and time, like 18/11/2026 10:30.")
        if covers == "window"
        else None,
        consent=one_to_ones.ConsentDraft(
            given_by=clean(form.get("given_by")),
            relationship=clean(form.get("relationship")),
            given_on=read_date("given_on", "Enter the date consent was given, like 18/11/2026."),
            method=clean(form.get("method")),
            evidence_ref=clean(form.get("evidence_ref")),
            scope=clean(form.get("scope")) or one_to_ones.CONSENT_SCOPE,
            expires_on=read_date(
                "expires_on", "Enter the expiry date like 18/11/2027, or leave it empty."
            ),
            contact_email=clean(form.get("contact_email")) or None,
        ),
    )
    return draft, errors


def withdrawal_from_form(
    form: Mapping[str, str], zone: ZoneInfo
) -> tuple[WithdrawalDraft, dict[str, str]]:
    errors: dict[str, str] = {}
    withdrawn_at = None
    try:
        withdrawn_at = parse_local_datetime(form.get("withdrawn_at", ""), zone)
    except ValueError:
        errors["withdrawn_at"] = "Enter the date and time like 18/11/2026 10:00."
    draft = WithdrawalDraft(
        withdrawn_at=withdrawn_at, told_by=clean(form.get("told_by")), note=clean(form.get("note"))
    )
    return draft, errors


# --- registering --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """The result of an action: what was saved, or the problems per field (nothing saved)."""

    errors: dict[str, str] = field(default_factory=dict)
    registered: Registered | None = None
    withdrawal_id: str | None = None
    note_id: int | None = None
    reevaluation: Reevaluation = field(default_factory=Reevaluation)

    @property
    def ok(self) -> bool:
        return not self.errors


def register_one_to_one(
    web: WebContext,
    user: User,
    draft: RegistrationDraft,
    *,
    parse_errors: Mapping[str, str] | None = None,
    choices: Choices | None = None,
) -> Outcome:
    """Check and save a registration with its consent, then re-evaluate the sessions it may
    cover. Nothing is saved when a field is wrong.

    Raises:
        RefusedError: the user may not register one-to-ones at all.
        RosterUnavailableError: the classes cannot be read just now.
        AuditError: the audit trail cannot be written (nothing is saved).
    """
    if not access.can_register_one_to_ones(user):
        raise RefusedError
    choices = choices or choices_for(web, user)
    now = web.clock()
    zone = zone_of(web)
    errors = one_to_ones.check_registration(
        draft,
        now=now,
        zone=zone,
        pupils=choices.pupil_names,
        activities=choices.activities,
        meetings=choices.meetings_by_id,
    )
    if draft.pupil_id and not access.can_register_one_to_one(user, draft.pupil_id):
        errors.setdefault("pupil", "Choose a pupil from one of your classes.")
    errors.update(parse_errors or {})
    if errors:
        return Outcome(errors=errors)
    meeting = (
        choices.meetings_by_id.get(draft.session_id or "") if draft.covers == "meeting" else None
    )
    with transaction(web.db) as db:
        registered = one_to_ones.register(
            db,
            draft,
            staff_id=user.id,
            meeting=meeting,
            activities=choices.activities,
            zone=zone,
            now=now,
        )
        audit_log.record_change(
            db,
            "one_to_one.registered",
            object_type="registration",
            object_id=registered.registration_id,
            after={
                "status": "pending",
                "covers": draft.covers,
                "session_id": meeting.session_id if meeting else None,
                "consent_id": registered.consent_id,
            },
        )
        affected = one_to_ones.affected_sessions(
            db,
            pupil_id=registered.pupil_id,
            staff_ids=[user.id],
            join_urls=[registered.join_url] if registered.join_url else [],
            since=now - timedelta(days=one_to_ones.REEVALUATE_DAYS),
        )
    return Outcome(registered=registered, reevaluation=_reevaluate(web, affected))


def _reevaluate(web: WebContext, session_ids: list[str]) -> Reevaluation:
    """Re-evaluate after the change committed. A failure here leaves the change in place (the
    next poll re-evaluates anyway), so it is logged, not shown as the change failing."""
    try:
        return reevaluate(web, session_ids)
    except Exception:
        log.exception("web.reevaluate_failed", sessions=len(session_ids))
        return Reevaluation()


def registrations_for(web: WebContext, user: User) -> list[one_to_ones.RegistrationView]:
    with web.db() as db:
        return one_to_ones.registrations_of(db, user.id)


# --- withdrawing consent ------------------------------------------------------------------------


@dataclass
class ConsentContext:
    """A consent with what the withdrawal page shows about it."""

    consent: ConsentRow
    pupil_name: str
    registrations: list[RegistrationRow]
    withdrawal: ConsentWithdrawalRow | None


def consent_for(web: WebContext, user: User, consent_id: str) -> ConsentContext:
    """The consent ``consent_id`` if the user may see it.

    Raises:
        NotFoundError: there is no such consent.
        RefusedError: the user may not see it.
        RosterUnavailableError: who is in which school cannot be read just now.
    """
    with web.db() as db:
        consent = db.get(ConsentRow, consent_id)
        if consent is None:
            raise NotFoundError(consent_id)
        registrations = list(
            db.scalars(
                select(RegistrationRow)
                .where(RegistrationRow.consent_id == consent_id)
                .order_by(RegistrationRow.recorded_at)
            )
        )
        withdrawal = one_to_ones.latest_withdrawal(db, consent)
    roster = web.people.roster()
    runs = any(user.id in (row.staff_id, row.recorded_by) for row in registrations)
    if not access.can_manage_consent(
        user, consent.pupil_id, school_of(roster, consent.pupil_id), runs_registration=runs
    ):
        raise RefusedError
    return ConsentContext(
        consent=consent,
        pupil_name=pupil_name(roster, consent.pupil_id),
        registrations=registrations,
        withdrawal=withdrawal,
    )


def withdraw_consent(
    web: WebContext,
    user: User,
    consent_id: str,
    draft: WithdrawalDraft,
    *,
    parse_errors: Mapping[str, str] | None = None,
) -> Outcome:
    """Record that consent was withdrawn; it takes effect at once, and the pupil's sessions
    are re-evaluated straight away.

    Raises:
        NotFoundError: there is no such consent.
        RefusedError: the user may not manage this pupil's consent.
        AuditError: the audit trail cannot be written (nothing is saved).
    """
    context = consent_for(web, user, consent_id)
    now = web.clock()
    zone = zone_of(web)
    with transaction(web.db) as db:
        consent = db.get(ConsentRow, consent_id)
        if consent is None:
            raise NotFoundError(consent_id)
        errors = one_to_ones.check_withdrawal(draft, consent, now=now, zone=zone)
        errors.update(parse_errors or {})
        if errors:
            return Outcome(errors=errors)
        row = one_to_ones.withdraw(db, consent, draft, by=user.id, now=now)
        audit_log.record_change(
            db,
            "consent.withdrawal_recorded",
            object_type="consent",
            object_id=consent.id,
            after={"withdrawn_at": consent.withdrawn_at},
            detail={"withdrawal_id": row.id, "note_chars": len(draft.note)},
        )
        staff = one_to_ones.staff_with_registrations(db, consent.pupil_id) | {user.id}
        affected = one_to_ones.affected_sessions(
            db,
            pupil_id=consent.pupil_id,
            staff_ids=staff,
            join_urls=[r.join_url for r in context.registrations if r.join_url],
            since=min(
                consent.withdrawn_at or now, now - timedelta(days=one_to_ones.REEVALUATE_DAYS)
            ),
        )
    return Outcome(withdrawal_id=row.id, reevaluation=_reevaluate(web, affected))


# --- context on a flagged session ---------------------------------------------------------------


def own_session(web: WebContext, user: User, session_id: str) -> SessionRow:
    """The stored session ``session_id`` if the user may add context to it.

    Raises:
        NotFoundError: there is no such session.
        RefusedError: it is not the user's own session.
    """
    with web.db() as db:
        row = db.get(SessionRow, session_id)
    if row is None:
        raise NotFoundError(session_id)
    if not access.can_add_context(user, row):
        raise RefusedError
    return row


def add_context(web: WebContext, user: User, session_id: str, text: str) -> Outcome:
    """Add the teacher's context note to the case of their session (opened if need be). It
    never changes the case's status: only the DSL moves a case.

    Raises:
        NotFoundError: there is no such session.
        RefusedError: it is not the user's own session.
        AuditError: the audit trail cannot be written (nothing is saved).
    """
    own_session(web, user, session_id)
    cleaned = text.strip()
    if not cleaned:
        return Outcome(errors={"text": "Write your note before adding it."})
    if len(cleaned) > NOTE_MAX_CHARS:
        return Outcome(errors={"text": f"A note can be at most {NOTE_MAX_CHARS:,} characters."})
    if one_to_ones.has_control_characters(cleaned):
        return Outcome(errors={"text": "Remove the control characters from your note."})
    with web.db() as db:
        # Flagged: a finding of the session is open now or was at some point.
        flagged = db.scalars(
            select(FindingEventRow.id)
            .join(FindingRow, FindingRow.key == FindingEventRow.finding_key)
            .where(
                FindingRow.session_id == session_id,
                FindingEventRow.to_status.in_(sorted(OPEN_STATUS_VALUES)),
            )
            .limit(1)
        ).first()
    if flagged is None:
        return Outcome(errors={"text": "Nothing was found on this session to add context to."})
    now = web.clock()
    by = audit_log.actor_for(user)
    try:
        with transaction(web.db) as db:
            case = open_or_get_case(db, session_id, now=now, by=by)
            note = add_note(db, case, text=cleaned, kind=NoteKind.CONTEXT, by=by, now=now)
            note_id = note.id
    except CaseError as exc:
        # Raised inside the transaction, so a case opened for the note is rolled back too.
        return Outcome(errors={"text": str(exc)})
    return Outcome(note_id=note_id)
