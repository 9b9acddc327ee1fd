"""Whether the school's registers cover a one-to-one: registration, SLT approval, consent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from remote_guard.consent.registers import ApprovalStatus, Registers, Registration


@dataclass(frozen=True)
class Cover:
    """The answer, with the reason a DSL can read when the one-to-one is not covered."""

    covered: bool
    reason: str
    registration_id: str | None = None
    consent_id: str | None = None


def one_to_one_cover(
    registers: Registers,
    *,
    staff_id: str,
    pupil_id: str,
    join_url: str | None,
    start: datetime,
    require_approved_activity: bool,
    require_consent: bool,
    consent_scope: str,
    zone: ZoneInfo | None = None,
) -> Cover:
    """Find a registration that covers this one-to-one, or say why none does (times in the
    reason are in ``zone``, the school's, Europe/London unless given)."""
    candidates = [
        registration
        for registration in registers.registrations
        if registration.covers(staff_id=staff_id, pupil_id=pupil_id, join_url=join_url, start=start)
    ]
    if not candidates:
        return Cover(False, "no one-to-one registration for this teacher, pupil and session")
    reasons: list[str] = []
    for registration in candidates:
        verdict = _check(
            registers,
            registration,
            start=start,
            require_approved_activity=require_approved_activity,
            require_consent=require_consent,
            consent_scope=consent_scope,
            zone=zone or ZoneInfo("Europe/London"),
        )
        if verdict.covered:
            return verdict
        reasons.append(verdict.reason)
    return Cover(False, "; ".join(dict.fromkeys(reasons)), candidates[0].id)


def _check(
    registers: Registers,
    registration: Registration,
    *,
    start: datetime,
    require_approved_activity: bool,
    require_consent: bool,
    consent_scope: str,
    zone: ZoneInfo,
) -> Cover:
    if registration.status is ApprovalStatus.PENDING:
        return Cover(False, "the registration is still waiting for SLT approval", registration.id)
    if registration.status is ApprovalStatus.DECLINED:
        return Cover(False, "SLT declined the registration", registration.id)
    if registration.approved_at is not None and registration.approved_at > start:
        return Cover(
            False, "SLT approved the registration only after the session started", registration.id
        )
    if require_approved_activity and not registers.activity_approved(
        registration.activity, at=start
    ):
        return Cover(
            False,
            f"the activity {registration.activity!r} is not on the SLT-approved list",
            registration.id,
        )
    if not require_consent:
        return Cover(True, "registered and approved", registration.id)
    consents = [
        c for c in registers.consents_for(registration.pupil_id) if c.scope == consent_scope
    ]
    if not consents:
        return Cover(False, "no parental consent is recorded for this pupil", registration.id)
    for consent in consents:
        if consent.valid_for(start=start, scope=consent_scope):
            return Cover(
                True, "registered, approved, with parental consent", registration.id, consent.id
            )
    latest = max(consents, key=lambda c: c.granted_at)
    if latest.withdrawn_at is not None and latest.withdrawn_at <= start:
        why = f"parental consent was withdrawn on {latest.withdrawn_at.astimezone(zone):%d %b %Y %H:%M}"
    elif latest.granted_at > start:
        why = (
            "parental consent was given only after the session started "
            f"({latest.granted_at.astimezone(zone):%d %b %Y %H:%M})"
        )
    elif latest.expires_at is not None and latest.expires_at <= start:
        why = f"parental consent expired on {latest.expires_at.astimezone(zone):%d %b %Y}"
    else:
        why = "no parental consent covers this session"
    return Cover(False, why, registration.id, latest.id)
