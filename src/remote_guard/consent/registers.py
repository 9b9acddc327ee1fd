"""The school's own records that rules need: one-to-one registrations, consents, approvals.

These are plain values handed to rules (which do no I/O); ``consent.models`` stores them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from remote_guard.exemptions.exemption import Exemption


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"


class Consent(BaseModel):
    """A parent's or carer's consent for one pupil, and its withdrawal if any."""

    model_config = ConfigDict(frozen=True)

    id: str
    pupil_id: str
    scope: str = "one_to_one"  # what the consent covers
    granted_by: str
    relationship: str
    contact_email: str | None = None  # the parent's or carer's address, to recognise them
    granted_at: datetime
    method: str = "signed_form"
    evidence_ref: str | None = None
    expires_at: datetime | None = None
    withdrawn_at: datetime | None = None

    def valid_for(self, *, start: datetime, scope: str = "one_to_one") -> bool:
        """Whether this consent covers a session starting at ``start``: given before, not
        withdrawn or expired by then."""
        if self.scope != scope or self.granted_at > start:
            return False
        if self.withdrawn_at is not None and self.withdrawn_at <= start:
            return False
        return self.expires_at is None or self.expires_at > start


class Registration(BaseModel):
    """A teacher's registration of a one-to-one session (or series) with one pupil."""

    model_config = ConfigDict(frozen=True)

    id: str
    staff_id: str
    pupil_id: str
    activity: str
    join_url: str | None = None  # ties the registration to one Teams meeting
    starts_at: datetime | None = None  # or to a window of time
    ends_at: datetime | None = None
    status: ApprovalStatus = ApprovalStatus.PENDING
    approved_by: str | None = None
    approved_at: datetime | None = None

    def covers(
        self, *, staff_id: str, pupil_id: str, join_url: str | None, start: datetime | None
    ) -> bool:
        """Whether this registration is for this staff member, pupil and session."""
        if (self.staff_id, self.pupil_id) != (staff_id, pupil_id):
            return False
        if self.join_url is not None and join_url is not None:
            return _same_join_url(self.join_url, join_url)
        if self.starts_at is not None and self.ends_at is not None and start is not None:
            return self.starts_at <= start < self.ends_at
        return False


def _same_join_url(left: str, right: str) -> bool:
    from urllib.parse import unquote

    return unquote(left).rstrip("/").lower() == unquote(right).rstrip("/").lower()


class Registers(BaseModel):
    """All of the school's records a rule may consult."""

    model_config = ConfigDict(frozen=True)

    registrations: tuple[Registration, ...] = ()
    consents: tuple[Consent, ...] = ()
    approved_activities: frozenset[str] = Field(default_factory=frozenset)
    # Activities SLT took off the list, and when: sessions before then were approved for them.
    retired_activities: dict[str, datetime] = Field(default_factory=dict)
    exemptions: tuple[Exemption, ...] = ()

    def consents_for(self, pupil_id: str) -> list[Consent]:
        return [consent for consent in self.consents if consent.pupil_id == pupil_id]

    def activity_approved(self, activity: str, *, at: datetime) -> bool:
        """Whether ``activity`` was on the SLT-approved list for a session starting at ``at``:
        on the list now, or retired only after ``at`` (retiring affects later sessions only).
        Names are compared without regard to case."""
        name = activity.casefold()
        if any(approved.casefold() == name for approved in self.approved_activities):
            return True
        return any(
            retired.casefold() == name and retired_at > at
            for retired, retired_at in self.retired_activities.items()
        )
