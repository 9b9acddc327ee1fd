"""Reading and writing the school's registers (registrations, consents, approved activities)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from remote_guard import audit
from remote_guard.consent.models import ApprovedActivityRow, ConsentRow, RegistrationRow
from remote_guard.consent.registers import ApprovalStatus, Consent, Registers, Registration
from remote_guard.exemptions.service import load_exemptions


def load_registers(session: Session) -> Registers:
    """Everything the rules need from the registers, as plain values."""
    consents = tuple(
        Consent(
            id=row.id,
            pupil_id=row.pupil_id,
            scope=row.scope,
            granted_by=row.granted_by,
            relationship=row.relationship,
            contact_email=row.contact_email,
            granted_at=row.granted_at,
            method=row.method,
            evidence_ref=row.evidence_ref,
            expires_at=row.expires_at,
            withdrawn_at=row.withdrawn_at,
        )
        for row in session.scalars(select(ConsentRow).order_by(ConsentRow.id))
    )
    registrations = tuple(
        Registration(
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
        for row in session.scalars(select(RegistrationRow).order_by(RegistrationRow.id))
    )
    activity_rows = list(session.scalars(select(ApprovedActivityRow)))
    return Registers(
        registrations=registrations,
        consents=consents,
        approved_activities=frozenset(row.name for row in activity_rows if row.retired_at is None),
        retired_activities={
            row.name: row.retired_at for row in activity_rows if row.retired_at is not None
        },
        exemptions=load_exemptions(session),
    )


def save_consent(
    session: Session, *, consent: Consent, recorded_by: str | None, now: datetime
) -> None:
    row = session.get(ConsentRow, consent.id) or ConsentRow(id=consent.id)
    row.pupil_id = consent.pupil_id
    row.scope = consent.scope
    row.granted_by = consent.granted_by
    row.relationship = consent.relationship
    row.contact_email = consent.contact_email
    row.granted_at = consent.granted_at
    row.method = consent.method
    row.evidence_ref = consent.evidence_ref
    row.expires_at = consent.expires_at
    row.withdrawn_at = consent.withdrawn_at
    row.recorded_by = recorded_by
    row.recorded_at = now
    audit.record_row_change(session, row, object_type="consent")
    session.merge(row)


def save_registration(
    session: Session,
    *,
    registration: Registration,
    consent_id: str | None,
    recorded_by: str | None,
    now: datetime,
) -> None:
    row = session.get(RegistrationRow, registration.id) or RegistrationRow(id=registration.id)
    row.staff_id = registration.staff_id
    row.pupil_id = registration.pupil_id
    row.activity = registration.activity
    row.join_url = registration.join_url
    row.starts_at = registration.starts_at
    row.ends_at = registration.ends_at
    row.status = registration.status.value
    row.approved_by = registration.approved_by
    row.approved_at = registration.approved_at
    row.consent_id = consent_id
    row.recorded_by = recorded_by
    row.recorded_at = now
    audit.record_row_change(session, row, object_type="registration")
    session.merge(row)


def save_approved_activity(
    session: Session, *, name: str, approved_by: str | None, now: datetime
) -> None:
    if session.get(ApprovedActivityRow, name) is None:
        session.add(ApprovedActivityRow(name=name, approved_by=approved_by, approved_at=now))
        audit.record(session, "activity.approved", object_type="activity", object_id=name)
