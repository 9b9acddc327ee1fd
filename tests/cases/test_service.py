"""The case service: allowed moves, the resolution a close needs, notes, assignment, the queue,
and the audit entries each change writes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from remote_guard import audit
from remote_guard.audit.models import AuditEntryRow
from remote_guard.cases import service as cases
from remote_guard.cases.models import NOTE_MAX_CHARS, CaseNoteRow, CaseRow, CaseStatus, NoteKind
from remote_guard.collect.models import SessionRow
from remote_guard.findings.models import FindingRow
from remote_guard.settings import AuditSettings
from remote_guard.store.db import make_engine, migrate, session_factory, transaction

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
DSL = audit.Actor(id="dsl-1", role="dsl")
DEPUTY = audit.Actor(id="deputy-1", role="deputy_dsl")


@pytest.fixture
def db(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    migrate(engine)
    audit.configure(engine, AuditSettings())
    yield session_factory(engine)
    engine.dispose()


def add_session(
    db: Session, session_id: str, *, school: str | None = "north", start: datetime = NOW
) -> SessionRow:
    row = SessionRow(
        id=session_id,
        kind="meeting",
        subject=f"Session {session_id}",
        organizer_id="t-1",
        school=school,
        scheduled_start=start,
        scheduled_end=start + timedelta(minutes=30),
        first_seen_at=start,
        last_collected_at=start,
    )
    db.add(row)
    return row


def add_finding(
    db: Session,
    session_id: str,
    *,
    rule: str = "one_to_one_without_consent",
    status: str = "fail",
    severity: str = "high",
    exempted: bool = False,
    changed: datetime = NOW,
    subject_key: str = "",
) -> FindingRow:
    row = FindingRow(
        key=f"{session_id}-{rule}-{subject_key}"[:40],
        profile_id="bramham-shadwell",
        rule_id=rule,
        clause_id="BSF-1",
        clause_version=1,
        session_id=session_id,
        subject_key=subject_key,
        status=status,
        exemption={"id": "ex-1", "reason": "agreed"} if exempted else None,
        severity=severity,
        phase="ended",
        observed="seen",
        message="A message.",
        next_step="",
        evidence={},
        sources=["attendance"],
        first_seen_at=changed,
        last_seen_at=changed,
        last_changed_at=changed,
    )
    db.add(row)
    return row


def entries(factory: sessionmaker[Session], action: str) -> list[AuditEntryRow]:
    with factory() as db:
        return list(
            db.scalars(
                select(AuditEntryRow)
                .where(AuditEntryRow.action == action)
                .order_by(AuditEntryRow.seq)
            )
        )


def opened_case(factory: sessionmaker[Session], session_id: str = "s1") -> int:
    with transaction(factory) as db:
        add_session(db, session_id)
        db.flush()
        return cases.open_or_get_case(db, session_id, now=NOW, by=DSL).id


# --- moves --------------------------------------------------------------------------------------


def test_a_case_goes_new_in_review_closed_and_back(db: sessionmaker[Session]) -> None:
    case_id = opened_case(db)
    with transaction(db) as session:
        row = session.get(CaseRow, case_id)
        assert row is not None
        assert row.status == "new"
        cases.set_status(session, row, CaseStatus.IN_REVIEW, by=DEPUTY, now=NOW)
        cases.set_status(
            session,
            row,
            "closed",
            by=DSL,
            now=NOW + timedelta(hours=1),
            resolution="concern_recorded",
            note="Spoke to the teacher; logged on CPOMS.",
        )
        assert (row.status, row.resolution, row.closed_by) == (
            "closed",
            "concern_recorded",
            "dsl-1",
        )
        assert row.closed_at == NOW + timedelta(hours=1)
        cases.set_status(session, row, "in_review", by=DSL, now=NOW + timedelta(hours=2))
        # Reopening clears the resolution; the audit trail keeps what it was.
        assert (row.status, row.resolution, row.closed_at, row.closed_by) == (
            "in_review",
            None,
            None,
            None,
        )
    moves = entries(db, "case.status_changed")
    assert [(entry.actor_id, entry.actor_role) for entry in moves] == [
        ("deputy-1", "deputy_dsl"),
        ("dsl-1", "dsl"),
        ("dsl-1", "dsl"),
    ]
    assert '"resolution":"concern_recorded"' in moves[1].payload
    assert '"before":{"resolution":"concern_recorded","status":"closed"}' in moves[2].payload
    with db() as session:
        notes = session.scalars(select(CaseNoteRow)).all()
    assert [(note.kind, note.author_id) for note in notes] == [("status_change", "dsl-1")]


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ((), "closed"),  # new cannot be closed without a review
        (("in_review",), "new"),  # nothing goes back to new
        (("in_review",), "in_review"),
        (("in_review", "closed"), "closed"),
        (("in_review", "closed"), "new"),
    ],
)
def test_moves_outside_the_lifecycle_are_refused(
    db: sessionmaker[Session], path: tuple[str, ...], target: str
) -> None:
    case_id = opened_case(db)
    with transaction(db) as session:
        row = session.get(CaseRow, case_id)
        assert row is not None
        for step in path:
            cases.set_status(
                session,
                row,
                step,
                by=DSL,
                now=NOW,
                resolution="no_concern" if step == "closed" else None,
            )
        before = row.status
        with pytest.raises(cases.CaseError, match="cannot be moved"):
            cases.set_status(
                session,
                row,
                target,
                by=DSL,
                now=NOW,
                resolution="no_concern" if target == "closed" else None,
            )
        assert row.status == before


def test_closing_needs_a_known_resolution(db: sessionmaker[Session]) -> None:
    case_id = opened_case(db)
    with transaction(db) as session:
        row = session.get(CaseRow, case_id)
        assert row is not None
        cases.set_status(session, row, "in_review", by=DSL, now=NOW)
        with pytest.raises(cases.CaseError, match="Choose a resolution"):
            cases.set_status(session, row, "closed", by=DSL, now=NOW)
        with pytest.raises(cases.CaseError, match="not a known resolution"):
            cases.set_status(session, row, "closed", by=DSL, now=NOW, resolution="sorted")
        assert row.status == "in_review"
        cases.set_status(session, row, "closed", by=DSL, now=NOW, resolution="false_positive")
        with pytest.raises(cases.CaseError, match="only when closing"):
            # A resolution on a move that is not a close is refused, not silently dropped.
            cases.set_status(session, row, "in_review", by=DSL, now=NOW, resolution="no_concern")
        assert (row.status, row.resolution) == ("closed", "false_positive")


def test_the_database_refuses_a_closed_case_without_resolution(db: sessionmaker[Session]) -> None:
    from sqlalchemy.exc import IntegrityError

    case_id = opened_case(db)
    with db() as session:
        row = session.get(CaseRow, case_id)
        assert row is not None
        row.status = "closed"  # around the service: the CHECK constraint still holds
        with pytest.raises(IntegrityError):
            session.commit()


# --- notes and assignment ------------------------------------------------------------------------


def test_notes_are_kept_with_author_and_kind_and_limited_in_length(
    db: sessionmaker[Session],
) -> None:
    case_id = opened_case(db)
    teacher = audit.Actor(id="t-1", role="teacher")
    with transaction(db) as session:
        row = session.get(CaseRow, case_id)
        assert row is not None
        cases.add_note(session, row, text="  Parent\x00 rang.  ", by=DSL, now=NOW)
        cases.add_note(
            session, row, text="The guest was the TA's login.", kind="context", by=teacher, now=NOW
        )
        cases.add_note(session, row, text="x" * NOTE_MAX_CHARS, by=DSL, now=NOW)
        with pytest.raises(cases.CaseError, match="at most 10,000"):
            cases.add_note(session, row, text="x" * (NOTE_MAX_CHARS + 1), by=DSL, now=NOW)
        with pytest.raises(cases.CaseError, match="Write the note"):
            cases.add_note(session, row, text="   ", by=DSL, now=NOW)
        with pytest.raises(cases.CaseError, match="not a known note kind"):
            cases.add_note(session, row, text="hi", kind="gossip", by=DSL, now=NOW)
    with db() as session:
        notes = cases.list_notes(session, case_id)
    assert [(n.text[:14], n.kind, n.author_id, n.author_role) for n in notes] == [
        ("Parent rang.", "note", "dsl-1", "dsl"),
        ("The guest was ", NoteKind.CONTEXT.value, "t-1", "teacher"),
        ("xxxxxxxxxxxxxx", "note", "dsl-1", "dsl"),
    ]
    added = entries(db, "case.note_added")
    assert len(added) == 3
    # The trail says a note was added and how long it was, never what it says.
    assert all("Parent rang" not in entry.payload for entry in added)


def test_assignment_is_limited_to_the_allowed_people_and_audited(
    db: sessionmaker[Session],
) -> None:
    case_id = opened_case(db)
    with transaction(db) as session:
        row = session.get(CaseRow, case_id)
        assert row is not None
        with pytest.raises(cases.CaseError, match="only to the DSL or a deputy"):
            cases.assign(session, row, "t-1", by=DSL, now=NOW, allowed={"dsl-1", "deputy-1"})
        cases.assign(session, row, "deputy-1", by=DSL, now=NOW, allowed={"dsl-1", "deputy-1"})
        cases.assign(session, row, "deputy-1", by=DSL, now=NOW, allowed={"dsl-1", "deputy-1"})
        cases.assign(session, row, None, by=DEPUTY, now=NOW)
        assert row.assignee_id is None
    assigned = entries(db, "case.assigned")
    # Giving a case to whoever already holds it changes nothing and records nothing.
    assert len(assigned) == 2
    assert '"after":{"assignee_id":"deputy-1"}' in assigned[0].payload


def test_open_or_get_case_opens_once_and_needs_a_stored_session(
    db: sessionmaker[Session],
) -> None:
    first = opened_case(db)
    with transaction(db) as session:
        assert cases.open_or_get_case(session, "s1", now=NOW, by=DSL).id == first
        with pytest.raises(cases.CaseError, match="no such session"):
            cases.open_or_get_case(session, "missing", now=NOW, by=DSL)
    assert len(entries(db, "case.opened")) == 1


# --- what the poller does after a cycle ----------------------------------------------------------


def test_cases_open_for_open_unexempted_findings_only(db: sessionmaker[Session]) -> None:
    with transaction(db) as session:
        for session_id in ("open", "warned", "errored", "passed", "exempted"):
            add_session(session, session_id)
        session.flush()
        add_finding(session, "open", status="fail")
        add_finding(session, "warned", status="warn", severity="low")
        add_finding(session, "errored", status="error")
        add_finding(session, "passed", status="pass")
        add_finding(session, "exempted", status="fail", exempted=True)
    with transaction(db) as session:
        opened = cases.open_cases_for_open_findings(session, now=NOW)
        assert sorted(row.session_id for row in opened) == ["errored", "open", "warned"]
    with transaction(db) as session:
        assert cases.open_cases_for_open_findings(session, now=NOW) == []
    assert {entry.actor_id for entry in entries(db, "case.opened")} == {"system"}


def test_a_breach_found_after_closing_reopens_the_case(db: sessionmaker[Session]) -> None:
    case_id = opened_case(db)
    with transaction(db) as session:
        add_finding(session, "s1", rule="old_rule", changed=NOW - timedelta(hours=1))
        row = session.get(CaseRow, case_id)
        assert row is not None
        cases.set_status(session, row, "in_review", by=DSL, now=NOW)
        cases.set_status(session, row, "closed", by=DSL, now=NOW, resolution="no_concern")
    with transaction(db) as session:
        # Nothing new since the close: the case stays closed.
        assert cases.reopen_cases_with_new_breaches(session, now=NOW) == []
        add_finding(session, "s1", rule="new_rule", changed=NOW + timedelta(hours=1))
        add_finding(
            session, "s1", rule="error_rule", status="error", changed=NOW + timedelta(hours=1)
        )
    with transaction(db) as session:
        reopened = cases.reopen_cases_with_new_breaches(session, now=NOW + timedelta(hours=2))
        assert [row.id for row in reopened] == [case_id]
        assert reopened[0].status == "in_review"
        assert reopened[0].resolution is None
        notes = cases.list_notes(session, case_id)
    assert "new_rule" in notes[-1].text
    assert "error_rule" not in notes[-1].text
    assert notes[-1].author_id == "system"


# --- the queue ----------------------------------------------------------------------------------


def test_the_queue_groups_by_session_newest_first_and_filters(db: sessionmaker[Session]) -> None:
    with transaction(db) as session:
        add_session(session, "north-old", start=NOW - timedelta(days=3))
        add_session(session, "north-new", start=NOW)
        add_session(session, "south", school="south", start=NOW - timedelta(days=1))
        add_session(session, "nowhere", school=None, start=NOW - timedelta(days=2))
        session.flush()
        add_finding(session, "north-old", severity="low", status="warn")
        add_finding(session, "north-new", subject_key="p1")
        add_finding(session, "north-new", subject_key="p2")
        add_finding(session, "north-new", rule="meeting_chat", severity="low", status="warn")
        add_finding(session, "north-new", rule="passed_rule", status="pass")
        add_finding(session, "south", rule="meeting_chat", severity="medium", status="warn")
        add_finding(session, "nowhere", status="fail")
        cases.open_cases_for_open_findings(session, now=NOW)
        south = cases.case_for_session(session, "south")
        assert south is not None
        cases.set_status(session, south, "in_review", by=DSL, now=NOW)
        cases.assign(session, south, "deputy-1", by=DSL, now=NOW)

    def ids(filters: cases.QueueFilters, **kwargs: int) -> list[str]:
        with db() as session:
            return [row.session_id for row in cases.list_queue(session, filters, **kwargs).rows]

    everything = cases.QueueFilters()
    assert ids(everything) == ["north-new", "south", "nowhere", "north-old"]
    with db() as session:
        first = cases.list_queue(session, everything).rows[0]
    assert first.counts == {"high": 2, "medium": 0, "low": 1, "info": 0}
    assert (first.case_status, first.total) == ("new", 3)
    # A federation user sees only their schools; a session of no known school is left out.
    assert ids(cases.QueueFilters(schools=frozenset({"north"}))) == ["north-new", "north-old"]
    assert ids(cases.QueueFilters(schools=frozenset())) == []
    assert ids(cases.QueueFilters(school="south")) == ["south"]
    assert ids(cases.QueueFilters(rule_id="meeting_chat")) == ["north-new", "south"]
    assert ids(cases.QueueFilters(severity="high")) == ["north-new", "nowhere"]
    assert ids(cases.QueueFilters(case_status="in_review")) == ["south"]
    assert ids(cases.QueueFilters(case_status="new")) == ["north-new", "nowhere", "north-old"]
    assert ids(cases.QueueFilters(case_status="closed")) == []
    assert ids(cases.QueueFilters(finding_status="pass")) == ["north-new"]
    assert ids(cases.QueueFilters(assignee_id="deputy-1")) == ["south"]
    assert ids(cases.QueueFilters(unassigned=True)) == ["north-new", "nowhere", "north-old"]
    assert ids(
        cases.QueueFilters(start=NOW - timedelta(days=2, hours=1), end=NOW - timedelta(hours=1))
    ) == ["south", "nowhere"]
    # Pages: newest first, the same order page after page.
    assert ids(everything, page=1, per_page=3) == ["north-new", "south", "nowhere"]
    assert ids(everything, page=2, per_page=3) == ["north-old"]
    with db() as session:
        page = cases.list_queue(session, everything, page=2, per_page=3)
    assert (page.total, page.pages) == (4, 2)
