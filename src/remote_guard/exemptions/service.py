"""Granting, revoking and reading exemptions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from remote_guard import audit
from remote_guard.exemptions.exemption import Exemption, ExemptionScope
from remote_guard.exemptions.models import ExemptionRow


class ExemptionNotFoundError(LookupError):
    """No exemption has the given id."""


def save_exemption(session: Session, exemption: Exemption) -> None:
    """Store a new exemption, or update one with the same id."""
    row = session.get(ExemptionRow, exemption.id) or ExemptionRow(id=exemption.id)
    row.rule_id = exemption.rule_id
    row.scope = exemption.scope.value
    row.pupil_id = exemption.pupil_id
    row.staff_id = exemption.staff_id
    row.series_id = exemption.series_id
    row.session_id = exemption.session_id
    row.reason = exemption.reason
    row.granted_by = exemption.granted_by
    row.granted_at = exemption.granted_at
    row.expires_at = exemption.expires_at
    row.revoked_at = exemption.revoked_at
    row.revoked_by = exemption.revoked_by
    audit.record_row_change(session, row, object_type="exemption")
    session.merge(row)


def revoke_exemption(session: Session, exemption_id: str, *, by: str, now: datetime) -> Exemption:
    """End an exemption at ``now``; the row stays, with who ended it.

    Raises:
        ExemptionNotFoundError: no exemption has that id.
    """
    row = session.get(ExemptionRow, exemption_id)
    if row is None:
        raise ExemptionNotFoundError(exemption_id)
    if row.revoked_at is None:
        row.revoked_at = now
        row.revoked_by = by
        audit.record_row_change(session, row, object_type="exemption", action="exemption.revoked")
    return _from_row(row)


def load_exemptions(session: Session) -> tuple[Exemption, ...]:
    """Every exemption, revoked and expired ones included (rules check ``active``)."""
    return tuple(
        _from_row(row)
        for row in session.scalars(select(ExemptionRow).order_by(ExemptionRow.granted_at))
    )


def _from_row(row: ExemptionRow) -> Exemption:
    return Exemption(
        id=row.id,
        rule_id=row.rule_id,
        scope=ExemptionScope(row.scope),
        pupil_id=row.pupil_id,
        staff_id=row.staff_id,
        series_id=row.series_id,
        session_id=row.session_id,
        reason=row.reason,
        granted_by=row.granted_by,
        granted_at=row.granted_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        revoked_by=row.revoked_by,
    )
