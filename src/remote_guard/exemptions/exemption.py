"""Exemptions (waivers): a DSL or SLT decision that one rule does not apply to one object.

An exemption is scoped to one object (this pupil with this teacher, this meeting series, this
session, this person), names who granted it and why, and expires. A finding it covers is still
produced and stored, marked as exempted, so nothing disappears from the record.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from remote_guard.collect.snapshot import PersonKind, SessionSnapshot


class ExemptionScope(StrEnum):
    PAIR = "pair"  # one pupil with one member of staff, in any session
    SERIES = "series"  # every occurrence of one recurring meeting
    SESSION = "session"  # one session
    PERSON = "person"  # one pupil, or one member of staff, in any session


class Exemption(BaseModel):
    """One waiver of one rule for one object, valid from ``granted_at`` until ``expires_at``."""

    model_config = ConfigDict(frozen=True)

    id: str
    rule_id: str
    scope: ExemptionScope
    pupil_id: str | None = None
    staff_id: str | None = None
    series_id: str | None = None
    session_id: str | None = None
    reason: str = Field(min_length=3)
    granted_by: str
    granted_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @model_validator(mode="after")
    def _scope_has_its_object(self) -> Exemption:
        needed = {
            ExemptionScope.PAIR: ("pupil_id", "staff_id"),
            ExemptionScope.SERIES: ("series_id",),
            ExemptionScope.SESSION: ("session_id",),
        }.get(self.scope, ())
        missing = [name for name in needed if not getattr(self, name)]
        if self.scope is ExemptionScope.PERSON and not (self.pupil_id or self.staff_id):
            missing = ["pupil_id or staff_id"]
        if missing:
            raise ValueError(f"a {self.scope.value} exemption needs {', '.join(missing)}")
        if self.expires_at <= self.granted_at:
            raise ValueError("an exemption must expire after it is granted")
        return self

    def active(self, now: datetime) -> bool:
        """Whether it is in force at ``now``: granted, not yet expired, not revoked."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.granted_at <= now < self.expires_at

    def applies(self, *, rule_id: str, subject_key: str, snapshot: SessionSnapshot) -> bool:
        """Whether this exemption covers a finding of ``rule_id`` about ``subject_key``."""
        if rule_id != self.rule_id:
            return False
        if self.scope is ExemptionScope.SESSION:
            return snapshot.session_id == self.session_id
        if self.scope is ExemptionScope.SERIES:
            return self.series_id in {snapshot.series_id, snapshot.session_id}
        staff_here = {
            pid for pid, person in snapshot.people.items() if person.kind is PersonKind.STAFF
        } | ({snapshot.organizer_id} if snapshot.organizer_id else set())
        if self.scope is ExemptionScope.PERSON:
            if self.pupil_id is not None:
                return subject_key == self.pupil_id or (
                    subject_key not in snapshot.people and self.pupil_id in snapshot.people
                )
            return subject_key == self.staff_id or self.staff_id in staff_here
        # A pair: the pupil is the finding's subject (or, for a finding about the session as a
        # whole, in the session), and the member of staff is in the same session.
        pupil_matches = subject_key == self.pupil_id or (
            subject_key not in snapshot.people and self.pupil_id in snapshot.people
        )
        return pupil_matches and self.staff_id in staff_here


class ExemptionRef(BaseModel):
    """What a finding carries about the exemption that covers it."""

    model_config = ConfigDict(frozen=True)

    id: str
    reason: str
    granted_by: str
    expires_at: datetime
