"""SLT's side of the registers: deciding one-to-one registrations and keeping the list of
approved one-to-one activities.

Every function that changes something works in the caller's transaction and writes its audit
entries there (``save_registration`` records the row's changed fields; the decision itself is
recorded as ``registration.approved`` / ``registration.declined`` with the reason). Who acted is
passed in (``by``, an ``audit.Actor``).

A registration moves pending -> approved or declined; an approved one may still be declined
(SLT withdraw their approval), with a reason. Approving needs the activity to be on the
approved list now. Retiring an activity keeps its row (with who retired it and when): rules
treat sessions before the retirement as approved for it, and later ones as not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from remote_guard import audit
from remote_guard.consent.models import ApprovedActivityRow, RegistrationRow
from remote_guard.consent.registers import ApprovalStatus, Registration
from remote_guard.consent.service import save_registration
from remote_guard.one_to_ones.service import (
    RegistrationView,
    approved_activities,
    registration_view,
)

ACTIVITY_MAX_CHARS = 100
REASON_MAX_CHARS = 2_000


class ApprovalError(ValueError):
    """A decision or list change that is not allowed; ``str()`` is safe to show to the user."""


@dataclass(frozen=True)
class ApprovalItem:
    """One registration as SLT see it: the registration with its consent and meeting (as the
    teacher's pages show it), and whether its activity is on the approved list now."""

    view: RegistrationView
    activity_approved: bool

    @property
    def row(self) -> RegistrationRow:
        return self.view.registration


def _registration(row: RegistrationRow) -> Registration:
    return Registration(
        id=row.id,
        staff_id=row.staff_id,
        pupil_id=row.pupil_id,
        activity=row.activity,
        join_url=row.join_url,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        status=ApprovalStatus(row.status),
        approved_by=row.approved_by,
        approved_at=row.approved_at,
    )


def active_activity_names(db: Session) -> set[str]:
    """The approved activities not retired, case-folded."""
    return {name.casefold() for name in approved_activities(db)}


def list_registrations(
    db: Session, *, statuses: Iterable[ApprovalStatus] | None = None
) -> list[ApprovalItem]:
    """Registrations (of ``statuses``, default all), oldest recorded first."""
    query = select(RegistrationRow).order_by(RegistrationRow.recorded_at, RegistrationRow.id)
    if statuses is not None:
        query = query.where(RegistrationRow.status.in_([status.value for status in statuses]))
    active = active_activity_names(db)
    return [
        ApprovalItem(
            view=registration_view(db, row),
            activity_approved=row.activity.casefold() in active,
        )
        for row in db.scalars(query)
    ]


def get_registration(db: Session, registration_id: str) -> RegistrationRow | None:
    return db.get(RegistrationRow, registration_id)


def decide(
    db: Session,
    row: RegistrationRow,
    *,
    approve: bool,
    reason: str | None,
    by: audit.Actor,
    now: datetime,
) -> RegistrationRow:
    """Approve or decline ``row``. The teacher who registered it keeps being its recorder.

    Raises:
        ApprovalError: approving one that is not pending or whose activity is not on the
            approved list; declining one already declined, or without a reason; a reason that
            is too long.
        AuditError: the audit trail cannot be written.
    """
    current = ApprovalStatus(row.status)
    text = (reason or "").strip()
    if len(text) > REASON_MAX_CHARS:
        raise ApprovalError(f"The reason can be at most {REASON_MAX_CHARS:,} characters.")
    if approve:
        if current is not ApprovalStatus.PENDING:
            raise ApprovalError("Only a registration waiting for approval can be approved.")
        if row.activity.casefold() not in active_activity_names(db):
            raise ApprovalError(
                f"The activity {row.activity!r} is not on the approved list. Add it to the "
                "approved activities first, or decline the registration."
            )
        target = ApprovalStatus.APPROVED
    else:
        if current is ApprovalStatus.DECLINED:
            raise ApprovalError("This registration is already declined.")
        if not text:
            raise ApprovalError("Give a reason for declining, so the teacher knows what to do.")
        target = ApprovalStatus.DECLINED
    registration = _registration(row).model_copy(
        update={"status": target, "approved_by": by.id, "approved_at": now}
    )
    save_registration(
        db,
        registration=registration,
        consent_id=row.consent_id,
        recorded_by=row.recorded_by,
        now=row.recorded_at,
    )
    row.decision_reason = text or None
    audit.record(
        db,
        "registration.approved" if approve else "registration.declined",
        object_type="registration",
        object_id=row.id,
        before={"status": current.value},
        after={"status": target.value, "reason": text or None},
        actor=by,
        at=now,
    )
    return row


# --- approved activities -------------------------------------------------------------------------


def list_activities(db: Session) -> list[ApprovedActivityRow]:
    """Every activity ever approved: the current ones first, then the retired, by name."""
    rows = list(db.scalars(select(ApprovedActivityRow)))
    return sorted(rows, key=lambda row: (row.retired_at is not None, row.name.casefold()))


def add_activity(db: Session, *, name: str, by: audit.Actor, now: datetime) -> ApprovedActivityRow:
    """Put ``name`` on the approved list (a retired activity of that name is approved again).

    Raises:
        ApprovalError: the name is empty, too long, or already on the list (in any case).
        AuditError: the audit trail cannot be written.
    """
    cleaned = " ".join(name.split())
    if not cleaned:
        raise ApprovalError("Give the activity a name.")
    if len(cleaned) > ACTIVITY_MAX_CHARS:
        raise ApprovalError(f"An activity's name can be at most {ACTIVITY_MAX_CHARS} characters.")
    same = [
        row
        for row in db.scalars(select(ApprovedActivityRow))
        if row.name.casefold() == cleaned.casefold()
    ]
    current = [row for row in same if row.retired_at is None]
    if current:
        raise ApprovalError(f"{current[0].name!r} is already on the approved list.")
    if same:
        row = same[0]
        before = {"retired_at": row.retired_at, "retired_by": row.retired_by}
        row.retired_at = None
        row.retired_by = None
        row.approved_by = by.id
        row.approved_at = now
        audit.record(
            db,
            "activity.reinstated",
            object_type="activity",
            object_id=row.name,
            before=before,
            after={"approved_by": by.id, "approved_at": now},
            actor=by,
            at=now,
        )
        return row
    row = ApprovedActivityRow(name=cleaned, approved_by=by.id, approved_at=now)
    db.add(row)
    audit.record(
        db,
        "activity.approved",
        object_type="activity",
        object_id=cleaned,
        after={"approved_by": by.id, "approved_at": now},
        actor=by,
        at=now,
    )
    return row


def retire_activity(
    db: Session, *, name: str, by: audit.Actor, now: datetime
) -> ApprovedActivityRow:
    """Take ``name`` off the approved list from ``now`` on; the row and its history stay.

    Raises:
        ApprovalError: no such activity, or it is retired already.
        AuditError: the audit trail cannot be written.
    """
    row = db.get(ApprovedActivityRow, name)
    if row is None:
        raise ApprovalError("There is no such activity.")
    if row.retired_at is not None:
        raise ApprovalError(f"{row.name!r} is already retired.")
    row.retired_at = now
    row.retired_by = by.id
    audit.record(
        db,
        "activity.retired",
        object_type="activity",
        object_id=row.name,
        before={"retired_at": None},
        after={"retired_at": now, "retired_by": by.id},
        actor=by,
        at=now,
    )
    return row
