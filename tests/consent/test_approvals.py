"""SLT's decisions on registrations and the approved-activity list, in the store, and what a
retired activity means to the one-to-one check."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from remote_guard import audit
from remote_guard.consent import approvals
from remote_guard.consent.approvals import ApprovalError
from remote_guard.consent.models import RegistrationRow
from remote_guard.consent.registers import ApprovalStatus, Consent, Registers, Registration
from remote_guard.consent.service import load_registers, save_approved_activity, save_registration
from remote_guard.rules._consent import one_to_one_cover
from remote_guard.settings import AuditSettings
from remote_guard.store.db import make_engine, migrate, session_factory, transaction

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
SLT = audit.Actor(id="slt-1", role="slt")


@pytest.fixture
def db(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    migrate(engine)
    audit.configure(engine, AuditSettings())
    factory = session_factory(engine)
    with transaction(factory) as session:
        save_approved_activity(session, name="reading", approved_by=None, now=NOW)
        save_registration(
            session,
            registration=Registration(
                id="reg-1", staff_id="teacher-1", pupil_id="pupil-1", activity="Reading"
            ),
            consent_id=None,
            recorded_by="teacher-1",
            now=NOW - timedelta(days=1),
        )
    yield factory
    engine.dispose()


def test_approving_keeps_the_teacher_as_recorder(db: sessionmaker[Session]) -> None:
    with transaction(db) as session:
        row = session.get(RegistrationRow, "reg-1")
        assert row is not None
        approvals.decide(session, row, approve=True, reason=None, by=SLT, now=NOW)
    with db() as session:
        row = session.get(RegistrationRow, "reg-1")
    assert row is not None
    assert (row.status, row.approved_by, row.approved_at) == ("approved", "slt-1", NOW)
    assert (row.recorded_by, row.recorded_at) == ("teacher-1", NOW - timedelta(days=1))


def test_only_pending_registrations_are_approved_and_declines_need_a_reason(
    db: sessionmaker[Session],
) -> None:
    with transaction(db) as session:
        row = session.get(RegistrationRow, "reg-1")
        assert row is not None
        with pytest.raises(ApprovalError, match="Give a reason"):
            approvals.decide(session, row, approve=False, reason="  ", by=SLT, now=NOW)
        approvals.decide(session, row, approve=True, reason=None, by=SLT, now=NOW)
        with pytest.raises(ApprovalError, match="Only a registration waiting"):
            approvals.decide(session, row, approve=True, reason=None, by=SLT, now=NOW)
        # SLT may still withdraw their approval, with a reason.
        approvals.decide(session, row, approve=False, reason="Consent unclear", by=SLT, now=NOW)
        assert (row.status, row.decision_reason) == ("declined", "Consent unclear")
        with pytest.raises(ApprovalError, match="already declined"):
            approvals.decide(session, row, approve=False, reason="again", by=SLT, now=NOW)


def test_a_retired_activity_cannot_be_approved_and_can_be_reinstated(
    db: sessionmaker[Session],
) -> None:
    with transaction(db) as session:
        approvals.retire_activity(session, name="reading", by=SLT, now=NOW)
        row = session.get(RegistrationRow, "reg-1")
        assert row is not None
        with pytest.raises(ApprovalError, match="not on the approved list"):
            approvals.decide(session, row, approve=True, reason=None, by=SLT, now=NOW)
        with pytest.raises(ApprovalError, match="already retired"):
            approvals.retire_activity(session, name="reading", by=SLT, now=NOW)
        again = approvals.add_activity(session, name="READING", by=SLT, now=NOW)
        assert (again.name, again.retired_at) == ("reading", None)
    with db() as session:
        assert load_registers(session).approved_activities == frozenset({"reading"})


def _registers(retired_at: datetime | None) -> Registers:
    registration = Registration(
        id="r",
        staff_id="t",
        pupil_id="p",
        activity="Talk Times",
        join_url="https://teams.microsoft.com/l/meetup-join/x",
        status=ApprovalStatus.APPROVED,
        approved_at=NOW - timedelta(days=30),
    )
    consent = Consent(
        id="c",
        pupil_id="p",
        granted_by="Mum",
        relationship="mother",
        granted_at=NOW - timedelta(days=60),
    )
    return Registers(
        registrations=(registration,),
        consents=(consent,),
        approved_activities=frozenset() if retired_at else frozenset({"Talk Times"}),
        retired_activities={"Talk Times": retired_at} if retired_at else {},
    )


@pytest.mark.parametrize(
    ("session_start", "covered"),
    [(NOW - timedelta(days=1), True), (NOW + timedelta(days=1), False)],
)
def test_retiring_an_activity_affects_only_later_sessions(
    session_start: datetime, covered: bool
) -> None:
    """A session before the retirement stays approved for the activity; one after is not."""
    cover = one_to_one_cover(
        _registers(retired_at=NOW),
        staff_id="t",
        pupil_id="p",
        join_url="https://teams.microsoft.com/l/meetup-join/x",
        start=session_start,
        require_approved_activity=True,
        require_consent=True,
        consent_scope="one_to_one",
    )
    assert cover.covered is covered
    if not covered:
        assert cover.reason == "the activity 'Talk Times' is not on the SLT-approved list"
