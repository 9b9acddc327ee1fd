"""Registering one-to-ones with their parental consent, and recording withdrawals of consent.

A teacher registers a one-to-one with a pupil of their classes, for an activity on SLT's
approved list, tied either to one Teams meeting (its join link, as
``consent.registers.Registration.join_url``) or to a window of time, with the parental
consent behind it. A registration starts ``pending``; SLT approve or decline it. A withdrawal
of consent takes effect at once: it sets ``withdrawn_at`` on the consent, which the rules read.

The checks (:func:`check_registration`, :func:`check_withdrawal`) are pure and give one
message per field, in words a teacher can act on. The writes work in the caller's transaction
and audit every row they change there (``consent.service`` and ``audit.record_row_change``).
:func:`affected_sessions` names the stored sessions whose findings a change may alter, for the
caller to re-evaluate once the change has committed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from remote_guard import audit
from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.consent.models import ApprovedActivityRow, ConsentRow, RegistrationRow
from remote_guard.consent.registers import ApprovalStatus, Consent, Registration
from remote_guard.consent.service import save_consent, save_registration
from remote_guard.one_to_ones.models import ConsentWithdrawalRow

CONSENT_SCOPE = "one_to_one"

METHOD_LABELS = {
    "signed_form": "Signed form",
    "email": "Email",
    "letter": "Letter",
    "phone_call": "Phone call",
    "online_form": "Online form",
}

STATUS_LABELS = {
    ApprovalStatus.PENDING.value: "Waiting for SLT approval",
    ApprovalStatus.APPROVED.value: "Approved by SLT",
    ApprovalStatus.DECLINED.value: "Declined by SLT",
}

# Longest text accepted in each field (the columns are Text, but a register is not an essay).
MAX_NAME = 200
MAX_RELATIONSHIP = 64
MAX_EVIDENCE = 200
MAX_EMAIL = 320
MAX_NOTE = 2000
# A registration window longer than a school year is a typing mistake, not a plan.
MAX_WINDOW = timedelta(days=366)
# Consent older than this is not a date anyone meant to type.
MAX_CONSENT_AGE = timedelta(days=3 * 366)
# A withdrawal "now" sent by a script may run a little ahead of the server's clock.
CLOCK_SKEW = timedelta(minutes=2)
# How far back a change to the registers is re-evaluated: the sessions "My sessions" shows.
REEVALUATE_DAYS = 28

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Characters no one types into a form (NUL cannot even be stored by PostgreSQL); a one-line
# field takes no line breaks or tabs either.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_OR_BREAK = re.compile(r"[\x00-\x1f\x7f]")


class Covers(StrEnum):
    """What a registration is tied to."""

    MEETING = "meeting"  # one Teams meeting (every occurrence of it, for a series)
    WINDOW = "window"  # any one-to-one of this teacher and pupil within a window of time


@dataclass(frozen=True)
class MeetingChoice:
    """One of the teacher's upcoming Teams meetings, offered to tie a registration to."""

    session_id: str
    join_url: str
    subject: str
    start: datetime | None
    end: datetime | None
    invitee_ids: frozenset[str]


@dataclass(frozen=True)
class ConsentDraft:
    given_by: str = ""
    relationship: str = ""
    given_on: date | None = None
    method: str = ""
    evidence_ref: str = ""
    scope: str = CONSENT_SCOPE
    expires_on: date | None = None
    contact_email: str | None = None


@dataclass(frozen=True)
class RegistrationDraft:
    """What a teacher asked to register (already parsed; the checks come next)."""

    pupil_id: str = ""
    activity: str = ""
    covers: str = ""
    session_id: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    consent: ConsentDraft = field(default_factory=ConsentDraft)


@dataclass(frozen=True)
class WithdrawalDraft:
    withdrawn_at: datetime | None = None
    told_by: str = ""
    note: str = ""


# --- what a teacher may choose --------------------------------------------------------------


def approved_activities(db: Session) -> list[str]:
    """The activities SLT approved for one-to-ones (retired ones left out), by name."""
    names = db.scalars(
        select(ApprovedActivityRow.name).where(ApprovedActivityRow.retired_at.is_(None))
    )
    return sorted(names, key=str.casefold)


def upcoming_meetings(db: Session, staff_id: str, *, now: datetime) -> list[MeetingChoice]:
    """The Teams meetings ``staff_id`` organises that have not started yet, soonest first, with
    who is invited to each (from the latest snapshot)."""
    rows = db.execute(
        select(SessionRow, SnapshotRow.data)
        .join(SnapshotRow, SnapshotRow.id == SessionRow.latest_snapshot_id)
        .where(
            SessionRow.organizer_id == staff_id,
            SessionRow.scheduled_start > now,
            SessionRow.join_url.is_not(None),
            SessionRow.kind.in_(("meeting", "channel_meeting")),
        )
        .order_by(SessionRow.scheduled_start, SessionRow.id)
    ).all()
    choices = []
    for session, data in rows:
        if data.get("is_cancelled") or not session.join_url:
            continue
        channel = data.get("channel") or {}
        invited = {*data.get("invitee_ids", ()), *channel.get("member_ids", ())}
        choices.append(
            MeetingChoice(
                session_id=session.id,
                join_url=session.join_url,
                subject=session.subject or "Untitled meeting",
                start=session.scheduled_start,
                end=session.scheduled_end,
                invitee_ids=frozenset(str(person) for person in invited),
            )
        )
    return choices


# --- checks ---------------------------------------------------------------------------------


def _text(
    errors: dict[str, str],
    name: str,
    value: str,
    *,
    label: str,
    limit: int,
    required: bool,
    multiline: bool = False,
) -> None:
    if required and not value:
        errors[name] = f"Enter {label}."
    elif len(value) > limit:
        errors[name] = f"{label[0].upper()}{label[1:]} can be at most {limit} characters."
    elif has_control_characters(value, multiline=multiline):
        errors[name] = f"Remove the control characters or line breaks from {label}."


def has_control_characters(text: str, *, multiline: bool = True) -> bool:
    """Whether ``text`` holds characters no one types (line breaks and tabs allowed only in
    ``multiline`` text)."""
    return bool((_CONTROL if multiline else _CONTROL_OR_BREAK).search(text))


def check_registration(
    draft: RegistrationDraft,
    *,
    now: datetime,
    zone: ZoneInfo,
    pupils: Mapping[str, str],
    activities: Collection[str],
    meetings: Mapping[str, MeetingChoice],
) -> dict[str, str]:
    """What is wrong with ``draft``, one message per field (empty: nothing).

    ``pupils`` are the teacher's class pupils (id -> name), ``activities`` the SLT-approved
    list, ``meetings`` the teacher's upcoming Teams meetings by session id.
    """
    errors: dict[str, str] = {}
    if not draft.pupil_id:
        errors["pupil"] = "Choose the pupil."
    elif draft.pupil_id not in pupils:
        errors["pupil"] = "Choose a pupil from one of your classes."
    if not draft.activity:
        errors["activity"] = "Choose the activity."
    elif draft.activity.casefold() not in {name.casefold() for name in activities}:
        errors["activity"] = "Choose an activity from the list SLT approved."
    if draft.covers == Covers.MEETING:
        _check_meeting(draft, errors, pupils=pupils, meetings=meetings)
    elif draft.covers == Covers.WINDOW:
        _check_window(draft, errors, now=now)
    else:
        errors["covers"] = "Choose whether this is for one Teams meeting or a time window."
    errors.update(_check_consent(draft.consent, today=now.astimezone(zone).date()))
    return errors


def _check_meeting(
    draft: RegistrationDraft,
    errors: dict[str, str],
    *,
    pupils: Mapping[str, str],
    meetings: Mapping[str, MeetingChoice],
) -> None:
    if not draft.session_id:
        errors["meeting"] = "Choose the Teams meeting."
        return
    meeting = meetings.get(draft.session_id)
    if meeting is None:
        errors["meeting"] = "Choose one of your Teams meetings that has not started yet."
    elif draft.pupil_id in pupils and draft.pupil_id not in meeting.invitee_ids:
        errors["meeting"] = (
            f"{pupils[draft.pupil_id]} is not invited to this meeting. Invite them in Teams "
            "first (the list updates at the next check), or register a time window instead."
        )


def _check_window(draft: RegistrationDraft, errors: dict[str, str], *, now: datetime) -> None:
    if draft.starts_at is None:
        errors["starts_at"] = "Enter when the one-to-one starts."
    if draft.ends_at is None:
        errors["ends_at"] = "Enter when the one-to-one ends."
    if draft.starts_at is None or draft.ends_at is None:
        return
    if draft.ends_at <= draft.starts_at:
        errors["ends_at"] = "The end must be after the start."
    elif draft.ends_at <= now:
        errors["ends_at"] = "The end has passed: register a one-to-one before it takes place."
    elif draft.ends_at - draft.starts_at > MAX_WINDOW:
        errors["ends_at"] = "A registration can cover at most a year; register each year anew."


def _check_consent(consent: ConsentDraft, *, today: date) -> dict[str, str]:
    errors: dict[str, str] = {}
    _text(
        errors,
        "given_by",
        consent.given_by,
        label="the name of the person who gave consent",
        limit=MAX_NAME,
        required=True,
    )
    _text(
        errors,
        "relationship",
        consent.relationship,
        label="their relationship to the pupil",
        limit=MAX_RELATIONSHIP,
        required=True,
    )
    if consent.given_on is None:
        errors["given_on"] = "Enter the date consent was given."
    elif consent.given_on > today:
        errors["given_on"] = "The date consent was given cannot be in the future."
    elif today - consent.given_on > MAX_CONSENT_AGE:
        errors["given_on"] = "Consent given more than three years ago needs renewing."
    if consent.method not in METHOD_LABELS:
        errors["method"] = "Choose how consent was given."
    _text(
        errors,
        "evidence_ref",
        consent.evidence_ref,
        label="an evidence reference (where the form, e-mail or note of the call is kept)",
        limit=MAX_EVIDENCE,
        required=True,
    )
    if consent.scope != CONSENT_SCOPE:
        errors["scope"] = "Consent recorded here covers one-to-one sessions."
    if consent.expires_on is not None:
        if consent.given_on is not None and consent.expires_on <= consent.given_on:
            errors["expires_on"] = "The expiry date must be after the date consent was given."
        elif consent.expires_on <= today:
            errors["expires_on"] = (
                "This consent has already expired: ask the parent or carer to renew it."
            )
    email = consent.contact_email or ""
    if has_control_characters(email, multiline=False):
        errors["contact_email"] = (
            "Enter an e-mail address like name@example.com, or leave it empty."
        )
    elif len(email) > MAX_EMAIL:
        errors["contact_email"] = f"An e-mail address can be at most {MAX_EMAIL} characters."
    elif email and not _EMAIL.match(email):
        errors["contact_email"] = (
            "Enter an e-mail address like name@example.com, or leave it empty."
        )
    return errors


def check_withdrawal(
    draft: WithdrawalDraft, consent: ConsentRow, *, now: datetime, zone: ZoneInfo
) -> dict[str, str]:
    """What is wrong with recording ``draft`` against ``consent``, one message per field."""
    errors: dict[str, str] = {}
    if consent.withdrawn_at is not None:
        errors["withdrawn_at"] = (
            "This consent was already withdrawn on "
            f"{consent.withdrawn_at.astimezone(zone):%a %-d %b %Y %H:%M}."
        )
    elif draft.withdrawn_at is None:
        errors["withdrawn_at"] = "Enter the date and time consent was withdrawn."
    elif draft.withdrawn_at > now + CLOCK_SKEW:
        errors["withdrawn_at"] = (
            "The withdrawal cannot be in the future: record it when it happens."
        )
    elif draft.withdrawn_at < consent.granted_at:
        errors["withdrawn_at"] = (
            "The withdrawal cannot be before consent was given "
            f"({consent.granted_at.astimezone(zone):%a %-d %b %Y})."
        )
    _text(
        errors,
        "told_by",
        draft.told_by,
        label="who told the school",
        limit=MAX_NAME,
        required=True,
    )
    _text(
        errors, "note", draft.note, label="the note", limit=MAX_NOTE, required=False, multiline=True
    )
    return errors


# --- writes ---------------------------------------------------------------------------------


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The start of ``day`` in the school's time zone, as an aware datetime."""
    return datetime.combine(day, time(0, 0), tzinfo=zone)


@dataclass(frozen=True)
class Registered:
    registration_id: str
    consent_id: str
    pupil_id: str
    join_url: str | None


def register(
    db: Session,
    draft: RegistrationDraft,
    *,
    staff_id: str,
    meeting: MeetingChoice | None,
    activities: Sequence[str],
    zone: ZoneInfo,
    now: datetime,
) -> Registered:
    """Save the consent and the pending registration (both audited) in ``db``'s transaction.

    ``draft`` must have passed :func:`check_registration`; the activity is stored under the
    approved list's own spelling. Consent dates are kept as the start of that day, school time
    (given on the 3rd covers a session on the 3rd; expiring on the 10th no longer covers one).

    Raises:
        AuditError: the audit trail cannot be written (nothing is saved).
    """
    canonical = {name.casefold(): name for name in activities}
    consent = Consent(
        id=f"consent-{uuid.uuid4().hex}",
        pupil_id=draft.pupil_id,
        scope=draft.consent.scope,
        granted_by=draft.consent.given_by,
        relationship=draft.consent.relationship,
        contact_email=draft.consent.contact_email or None,
        granted_at=local_midnight(_required(draft.consent.given_on), zone),
        method=draft.consent.method,
        evidence_ref=draft.consent.evidence_ref,
        expires_at=local_midnight(draft.consent.expires_on, zone)
        if draft.consent.expires_on
        else None,
    )
    by_window = meeting is None
    registration = Registration(
        id=f"registration-{uuid.uuid4().hex}",
        staff_id=staff_id,
        pupil_id=draft.pupil_id,
        activity=canonical.get(draft.activity.casefold(), draft.activity),
        join_url=None if meeting is None else meeting.join_url,
        starts_at=draft.starts_at if by_window else None,
        ends_at=draft.ends_at if by_window else None,
        status=ApprovalStatus.PENDING,
    )
    save_consent(db, consent=consent, recorded_by=staff_id, now=now)
    db.flush()  # the registration refers to the consent
    save_registration(
        db, registration=registration, consent_id=consent.id, recorded_by=staff_id, now=now
    )
    db.flush()
    return Registered(
        registration_id=registration.id,
        consent_id=consent.id,
        pupil_id=registration.pupil_id,
        join_url=registration.join_url,
    )


def _required(value: date | None) -> date:
    if value is None:
        raise ValueError("a checked draft has a date here")
    return value


def withdraw(
    db: Session, consent: ConsentRow, draft: WithdrawalDraft, *, by: str, now: datetime
) -> ConsentWithdrawalRow:
    """Mark ``consent`` withdrawn at ``draft.withdrawn_at`` and keep the account of it, in
    ``db``'s transaction; the consent's change is audited (the parent's name and the note stay
    in the withdrawal row, out of the audit trail).

    Raises:
        ValueError: ``draft`` has no time (it must have passed :func:`check_withdrawal`).
        AuditError: the audit trail cannot be written (nothing is saved).
    """
    if draft.withdrawn_at is None:
        raise ValueError("a checked withdrawal has a time")
    consent.withdrawn_at = draft.withdrawn_at
    audit.record_row_change(db, consent, object_type="consent")
    row = ConsentWithdrawalRow(
        id=f"withdrawal-{uuid.uuid4().hex}",
        consent_id=consent.id,
        withdrawn_at=draft.withdrawn_at,
        told_by=draft.told_by,
        note=draft.note or None,
        recorded_by=by,
        recorded_at=now,
    )
    db.add(row)
    db.flush()
    return row


# --- reading --------------------------------------------------------------------------------


@dataclass
class RegistrationView:
    """A registration with its consent and the consent's withdrawal, for showing."""

    registration: RegistrationRow
    consent: ConsentRow | None
    withdrawal: ConsentWithdrawalRow | None
    meeting_subject: str | None = None
    meeting_start: datetime | None = None

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.registration.status, self.registration.status)

    def consent_state(self, now: datetime) -> str:
        """``withdrawn``, ``expired``, ``current`` or ``none``."""
        consent = self.consent
        if consent is None:
            return "none"
        if consent.withdrawn_at is not None and consent.withdrawn_at <= now:
            return "withdrawn"
        if consent.expires_at is not None and consent.expires_at <= now:
            return "expired"
        return "current"


def registrations_of(db: Session, staff_id: str) -> list[RegistrationView]:
    """The one-to-ones ``staff_id`` registered or runs, newest first."""
    rows = db.scalars(
        select(RegistrationRow)
        .where(or_(RegistrationRow.staff_id == staff_id, RegistrationRow.recorded_by == staff_id))
        .order_by(RegistrationRow.recorded_at.desc(), RegistrationRow.id)
    ).all()
    return [registration_view(db, row) for row in rows]


def registration_view(db: Session, row: RegistrationRow) -> RegistrationView:
    consent = db.get(ConsentRow, row.consent_id) if row.consent_id else None
    view = RegistrationView(
        registration=row, consent=consent, withdrawal=latest_withdrawal(db, consent)
    )
    if row.join_url:
        session = db.scalars(
            select(SessionRow)
            .where(SessionRow.join_url == row.join_url)
            .order_by(SessionRow.scheduled_start.desc())
            .limit(1)
        ).first()
        if session is not None:
            view.meeting_subject = session.subject
            view.meeting_start = session.scheduled_start
    return view


def latest_withdrawal(db: Session, consent: ConsentRow | None) -> ConsentWithdrawalRow | None:
    if consent is None or consent.withdrawn_at is None:
        return None
    return db.scalars(
        select(ConsentWithdrawalRow)
        .where(ConsentWithdrawalRow.consent_id == consent.id)
        .order_by(ConsentWithdrawalRow.recorded_at.desc())
        .limit(1)
    ).first()


def staff_with_registrations(db: Session, pupil_id: str) -> set[str]:
    """Who runs a registered one-to-one with ``pupil_id``."""
    return set(
        db.scalars(select(RegistrationRow.staff_id).where(RegistrationRow.pupil_id == pupil_id))
    )


def affected_sessions(
    db: Session,
    *,
    pupil_id: str,
    staff_ids: Collection[str],
    join_urls: Collection[str] = (),
    since: datetime,
) -> list[str]:
    """Stored sessions from ``since`` on (and those with no time) that ``pupil_id`` is part of
    (invited, present or seen) and that one of ``staff_ids`` organised or that use one of
    ``join_urls``: the sessions whose findings a registration or consent of the pupil decides.
    """
    owners = sorted(set(staff_ids))
    urls = sorted(set(join_urls))
    conditions: list[Any] = []
    if owners:
        conditions.append(SessionRow.organizer_id.in_(owners))
    if urls:
        conditions.append(SessionRow.join_url.in_(urls))
    if not conditions:
        return []
    rows = db.execute(
        select(SessionRow.id, SnapshotRow.data)
        .join(SnapshotRow, SnapshotRow.id == SessionRow.latest_snapshot_id)
        .where(
            or_(*conditions),
            or_(SessionRow.scheduled_start >= since, SessionRow.scheduled_start.is_(None)),
        )
    ).all()
    return sorted(
        session_id
        for session_id, data in rows
        if pupil_id in (data.get("people") or {}) or pupil_id in (data.get("invitee_ids") or ())
    )
